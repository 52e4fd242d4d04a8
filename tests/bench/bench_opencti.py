"""Benchmark: wall time per alert of the OpenCTI enrichment, installed and run the way integratord runs it.

Installs the program as the wazuh_opencti role does (through roles/host_program): the launcher
custom-opencti with the shebang ``#!<python> -IS``, the packages opencti_enrich and socstack_core
beside it, and their bytecode made with ``<python> -m compileall -q --invalidation-mode checked-hash``
(tests/bench/bench_forwarder.py's ``install``). Then it runs the launcher by its path, through that
shebang, one process per alert, exactly as wazuh-integratord 4.13 does: a one-line JSON alert in
/tmp/custom-opencti-<time>-<random>.alert, a .options file, argv
``integrations ALERT API_KEY HOOK_URL "" OPTIONS 10 3 "> /dev/null 2>&1"`` and cwd standing in for
/var/ossec. OpenCTI is the emulator (tests/emulators/opencti.py, sample intel) on 127.0.0.1 in this
process; events go to a datagram socket standing in for analysisd's queue.

Pass "cold": every alert carries observables nobody asked about before (1 GraphQL request each).
Pass "cached": the same alerts again (0 requests). Plain ``python3 -c pass`` (a symlink named python3
to --python, so both start the same interpreter) is timed in the same loop, interleaved, for
the ratio. No PYTHON* variable is passed to either.

    .venv/bin/python tests/bench/bench_opencti.py [-n 30] [--python /usr/bin/python3]
"""
import argparse
import contextlib
import json
import os
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

from tests.bench.bench_forwarder import install, percentile, timed  # noqa: E402
from tests.emulators.opencti import OpenCTIEmulator  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
LAUNCHER = "custom-opencti"
# The packages the role installs beside the launcher (roles/host_program), relative to files/.
PACKAGES = ("integrations/opencti_enrich", "socstack_core")
SHEBANG_FLAGS = "-IS"


def make_alert(number):
    """A Suricata DNS alert with its own public IP pair and query name; every 4th one is known intel."""
    src = "45.155.205.233" if number % 4 == 0 else f"185.{100 + number // 250}.{number % 250}.{1 + number % 200}"
    data = {"src_ip": src, "dest_ip": f"91.240.{number // 250}.{1 + number % 250}",
            "dns": {"rrname": f"host{number}.example.net"}}
    rule = {"id": "86601", "level": 3, "groups": ["ids", "suricata"], "description": "bench"}
    return {"id": f"1748942062.{number}", "rule": rule,
            "agent": {"id": "005", "name": "ids-sensor-01", "ip": "192.168.10.5"}, "data": data,
            "location": "eve.json"}


@contextlib.contextmanager
def integratord_files(alert, options):
    """(alert file, options file) as integratord 4.13 writes them for one run, removed afterwards."""
    base = f"/tmp/{LAUNCHER}-{int(time.time())}-{os.urandom(4).hex()}"
    paths = (Path(base + ".alert"), Path(base + ".options"))
    for path, value in zip(paths, (alert, options)):
        path.write_text(json.dumps(value) + "\n")
    try:
        yield tuple(map(str, paths))
    finally:
        for path in paths:
            path.unlink()


def loads_precompiled(launcher, python, home):
    """True when the launcher imports opencti_enrich and socstack_core from their __pycache__."""
    verbose = subprocess.run([python, f"{SHEBANG_FLAGS}v", str(launcher)], cwd=home, capture_output=True, text=True,
                             check=False)
    return all(f"code object from '{launcher.parent / name / '__pycache__'}{os.sep}__init__." in verbose.stderr
               for name in ("opencti_enrich", "socstack_core"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("-n", "--runs", type=int, default=30, help="alerts per pass (1-200)")
    parser.add_argument("--python", default=os.path.realpath(sys.executable),
                        help="interpreter of the shebang and of python3 (default: this one, symlinks resolved)")
    args = parser.parse_args()
    runs = min(max(args.runs, 1), 200)

    emulator = OpenCTIEmulator(token=TOKEN).start()
    emulator.load_sample_data()
    tmp = Path(tempfile.mkdtemp(prefix="ocb", dir="/tmp"))  # short: AF_UNIX paths are limited to 108 bytes
    queue = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    queue.bind(str(tmp / "queue"))
    queue.setblocking(False)
    try:
        home = tmp / "ossec"
        (home / "logs").mkdir(parents=True)
        launcher = install(home / "integrations", args.python, LAUNCHER, PACKAGES)
        if not loads_precompiled(launcher, args.python, home):
            raise SystemExit("the launcher did not load opencti_enrich from its __pycache__")
        python3 = tmp / "python3"  # the baseline runs --python by this name
        python3.symlink_to(args.python)
        clean_env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
        options = {"state_dir": str(home / "var" / "opencti"), "queue_socket": str(tmp / "queue")}

        def run_program(number):
            with integratord_files(make_alert(number), options) as (alert_file, options_file):
                return timed(["integrations", alert_file, TOKEN, emulator.graphql_url, "", options_file, "10", "3",
                              "> /dev/null 2>&1"], executable=str(launcher), cwd=home, env=clean_env)

        def run_baseline():
            return timed([str(python3), "-c", "pass"], env=clean_env)

        def events():
            count = 0
            while True:
                try:
                    queue.recv(70000)
                except BlockingIOError:
                    return count
                count += 1

        for number in range(3):  # warm-up (page cache), on alerts of their own
            run_program(100000 + number)
            events()
            run_baseline()
        passes = {}
        for name in ("cold", "cached"):
            before = emulator.request_count
            program, baseline = [], []
            sent = 0
            for number in range(runs):
                program.append(run_program(number))
                sent += events()  # analysisd reads the queue all the time; it holds few datagrams
                baseline.append(run_baseline())
            passes[name] = (program, baseline, emulator.request_count - before, sent)
    finally:
        queue.close()
        emulator.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"interpreter: {args.python}; launcher shebang: #!{args.python} {SHEBANG_FLAGS}; "
          "opencti_enrich and socstack_core loaded from __pycache__")
    print(f"alerts per pass: {runs} (+3 warm-up), one process each; emulator on 127.0.0.1, no added latency")
    ok = True
    for name, (program, baseline, requests, sent) in passes.items():
        wall = [w for w, _cpu in program]
        base = [w for w, _cpu in baseline]
        cpu = statistics.median(c for _w, c in program)
        base_cpu = statistics.median(c for _w, c in baseline)
        median, base_median = statistics.median(wall), statistics.median(base)
        print(f"{name:>6}: median {median * 1000:.1f} ms, p90 {percentile(wall, 0.9) * 1000:.1f} ms "
              f"(CPU {cpu * 1000:.1f} ms); python3 -c pass median {base_median * 1000:.1f} ms "
              f"(CPU {base_cpu * 1000:.1f} ms); ratio {median / base_median:.2f} (CPU {cpu / base_cpu:.2f}); "
              f"GraphQL requests per alert {requests / runs:.2f}; events per alert {sent / runs:.2f}")
        ok = ok and requests == (runs if name == "cold" else 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
