"""Benchmark custom-opencti.py against the OpenCTI emulator on 127.0.0.1.

Measures wall time per alert and OpenCTI requests per alert, cold (empty cache) and cached (same
alerts again), first in-process (the program's own cost) and then as integratord runs it: one
process per alert through the `custom-opencti` launcher (adds interpreter start-up).

    .venv/bin/python tests/bench/bench_opencti.py [--alerts 200] [--processes 20] [--latency 0]

Counts are bounded (at most 2000 in-process alerts and 100 processes).
"""

import argparse
import importlib.util
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.emulators.opencti import OpenCTIEmulator  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
PROGRAM = ROOT / "files/integrations/custom-opencti.py"
LAUNCHER = ROOT / "files/integrations/custom-opencti"


def load_program():
    spec = importlib.util.spec_from_file_location("custom_opencti_bench", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_alerts(count):
    """Suricata DNS alerts, each with its own public IP pair and query name; every 4th one is known intel."""
    alerts = []
    for i in range(count):
        src = "45.155.205.233" if i % 4 == 0 else f"185.{100 + i // 250}.{i % 250}.{1 + i % 200}"
        data = {"src_ip": src, "dest_ip": f"91.240.{i // 250}.{1 + i % 250}", "dns": {"rrname": f"host{i}.example.net"}}
        rule = {"id": "86601", "level": 3, "groups": ["ids", "suricata"], "description": "bench"}
        agent = {"id": "005", "name": "ids-sensor-01", "ip": "192.168.10.5"}
        alerts.append({"id": f"1748942062.{i}", "rule": rule, "agent": agent, "data": data, "location": "eve.json"})
    return alerts


class Bench:
    """Work directory, queue socket and options shared by all passes."""

    def __init__(self, emu):
        self.emu = emu
        self.dir = Path(tempfile.mkdtemp(prefix="ocb", dir="/tmp"))
        self.socket_path = str(self.dir / "queue")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.socket_path)
        self.sock.setblocking(False)
        self.events = 0

    def argv(self, alert_index, alert, state):
        alert_file = self.dir / f"alert-{alert_index}.json"
        alert_file.write_text(json.dumps(alert))
        options = self.dir / f"options-{state}.json"
        if not options.exists():
            state_dir = self.dir / f"state-{state}"
            opts = {"state_dir": str(state_dir), "queue_socket": self.socket_path, "log_file": str(self.dir / "log")}
            options.write_text(json.dumps(opts))
        return [str(PROGRAM), str(alert_file), TOKEN, self.emu.graphql_url, "", str(options), "10", "3",
                "> /dev/null 2>&1"]  # fmt: skip

    def drain(self):
        while True:
            try:
                self.sock.recv(70000)
                self.events += 1
            except BlockingIOError:
                return

    def measure(self, alerts, state, run_one):
        """(per-alert seconds, requests made, events received) for one pass."""
        before_requests, before_events = self.emu.request_count, self.events
        times = []
        for index, alert in enumerate(alerts):
            argv = self.argv(index, alert, state)
            started = time.perf_counter()
            code = run_one(argv)
            times.append(time.perf_counter() - started)
            if code != 0:
                raise SystemExit(f"alert {index} exited {code}; see {self.dir / 'log'}")
            self.drain()
        return times, self.emu.request_count - before_requests, self.events - before_events

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def report(name, alerts, result):
    times, requests, events = result
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(
        f"{name:<28} {len(alerts):>6} {statistics.mean(ms):>9.2f} {statistics.median(ms):>9.2f} {p95:>9.2f}"
        f" {requests / len(alerts):>10.2f} {events / len(alerts):>9.2f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200, help="in-process alerts per pass (max 2000)")
    parser.add_argument("--processes", type=int, default=20, help="alerts run as separate processes (max 100)")
    parser.add_argument("--latency", type=float, default=0.0, help="extra emulator delay per request, seconds")
    args = parser.parse_args()
    count, processes = min(max(args.alerts, 1), 2000), min(max(args.processes, 0), 100)

    program = load_program()
    emu = OpenCTIEmulator(token=TOKEN).start()
    emu.load_sample_data()
    emu.delay = args.latency
    bench = Bench(emu)
    alerts = make_alerts(count)
    try:
        print(f"python {sys.version.split()[0]}, emulator {emu.graphql_url}, latency {args.latency * 1000:.0f} ms")
        columns = ("alerts", 6), ("mean ms", 9), ("p50 ms", 9), ("p95 ms", 9), ("req/alert", 10), ("ev/alert", 9)
        print(f"{'pass':<28} " + " ".join(f"{title:>{width}}" for title, width in columns))
        report("in-process, cold", alerts, bench.measure(alerts, "inproc", program.main))
        report("in-process, cached", alerts, bench.measure(alerts, "inproc", program.main))
        if processes:
            subset = make_alerts(processes)

            def launch(argv):
                return subprocess.run([str(LAUNCHER), *argv[1:]], cwd=bench.dir, check=False).returncode

            report("process per alert, cold", subset, bench.measure(subset, "proc", launch))
            report("process per alert, cached", subset, bench.measure(subset, "proc", launch))
    finally:
        bench.close()
        emu.stop()


if __name__ == "__main__":
    main()
