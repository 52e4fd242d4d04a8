"""Benchmark: alerts triaged per minute by the AI worker (files/ai_worker), and IRIS requests per alert.

For each model latency and worker count, starts the IRIS and Ollama emulators on 127.0.0.1, creates
``workers x --alerts-per-worker`` pending alerts, runs that many worker PROCESSES (instances 1..N of N)
and times from their start until every alert is tagged ai-reviewed. Requests per alert counts every
HTTP request the workers sent to IRIS (polls included) divided by the number of alerts.

The emulated model answers requests in parallel, so these figures measure the worker (its claim
protocol and IRIS traffic), not what one Ollama host can serve: a CPU-bound Ollama serialises
inferences and then adding workers adds nothing.

    .venv/bin/python tests/bench/bench_ai_worker.py [--latencies 0.2,1] [--workers 1,2,4]
        [--alerts-per-worker 10] [--max-per-cycle 5] [--claim-timeout 3] [--max-per-minute 0] [--poll-seconds 1]

The share is the rate against the model-bound rate (workers / latency: every worker always waiting for
the model); with a rate limit, the rate reached at the limit against the configured one. With
--max-per-minute N (AI_WORKER_MAX_PER_MINUTE, per instance; 0: no limit, the default) the bound is also
N per worker. The limit is a sliding 60 s window, so each worker's claims come in bursts
of N a minute: the rate reached at the limit is measured between the end of the first burst and the end
of the run, workers x N alerts / that time (give --alerts-per-worker 2N: two windows); it must come to
the configured workers x N per minute. --poll-seconds (default 1) is AI_WORKER_POLL_SECONDS: with the
default 30 s, a worker that slept a whole poll interval at the limit would fall short of it.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "files"), str(ROOT / "files" / "ai_worker")]

from iris_ai_worker.tags import split_tags  # noqa: E402

from tests.emulators.iris import IrisEmulator  # noqa: E402
from tests.emulators.ollama import OllamaEmulator  # noqa: E402

PROGRAM = ROOT / "files" / "ai_worker" / "iris-ai-worker.py"
TIME_LIMIT = 300  # seconds per configuration


def event(number):
    return {"rule": {"id": "5710", "level": 5, "description": "sshd: non-existent user", "groups": ["sshd"]},
            "agent": {"id": "001", "name": "web01"},
            "full_log": f"sshd[{number}]: Invalid user u{number} from 10.0.{number // 250}.{number % 250}",
            "data": {"srcip": f"10.0.{number // 250}.{number % 250}", "srcuser": f"u{number}"}}


def run(latency, workers, args):
    """(alerts, seconds, IRIS requests, completion times from the start) for one configuration."""
    iris = IrisEmulator(admin_api_key="A" * 64).start()
    ollama = OllamaEmulator(latency=latency).start()
    processes = []
    try:
        _user, key = iris.add_user("ai-bot", groups=["Analysts"], customers=["IrisInitialClient"])
        total = workers * args.alerts_per_worker
        for number in range(total):
            iris.create_alert(alert_title=f"alert {number}", alert_severity_id=4, alert_status_id=2,
                              alert_customer_id=1, alert_tags="wazuh,ai-pending", alert_source_content=event(number))
        env = dict(os.environ, IRIS_BASE_URL=iris.url, IRIS_BEARER=key, OLLAMA_URL=ollama.url,
                   OLLAMA_MODEL="phi4-mini:latest", AI_WORKER_INSTANCES=str(workers),
                   AI_WORKER_POLL_SECONDS=str(args.poll_seconds),
                   AI_WORKER_MAX_PER_CYCLE=str(args.max_per_cycle),
                   AI_WORKER_MAX_PER_MINUTE=str(args.max_per_minute),
                   AI_WORKER_CLAIM_TIMEOUT=str(args.claim_timeout), AI_WORKER_DEDUP_WINDOW="0",
                   AI_WORKER_LOG_LEVEL="WARNING")
        started = time.monotonic()
        for instance in range(1, workers + 1):
            processes.append(subprocess.Popen([sys.executable, "-I", str(PROGRAM)],
                                              env=dict(env, AI_WORKER_INSTANCE=str(instance))))
        done = []  # the time each alert was seen ai-reviewed, from the start
        while time.monotonic() - started < TIME_LIMIT:
            reviewed = sum("ai-reviewed" in split_tags(a["alert_tags"]) for a in iris.alerts())
            done += [time.monotonic() - started] * (reviewed - len(done))
            if reviewed == total:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"latency {latency}s, {workers} workers: not done within {TIME_LIMIT}s")
        return total, time.monotonic() - started, len(iris.request_log), done
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        iris.stop()
        ollama.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--latencies", default="0.2,1", help="model latencies in seconds, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--alerts-per-worker", type=int, default=10)
    parser.add_argument("--max-per-cycle", type=int, default=5, help="AI_WORKER_MAX_PER_CYCLE (the batch size)")
    parser.add_argument("--claim-timeout", type=float, default=3.0, help="AI_WORKER_CLAIM_TIMEOUT (settle = 2.2x)")
    parser.add_argument("--max-per-minute", type=int, default=0,
                        help="AI_WORKER_MAX_PER_MINUTE per instance (0: no limit)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="AI_WORKER_POLL_SECONDS")
    args = parser.parse_args()
    limit = args.max_per_minute
    print(f"batch {args.max_per_cycle}, claim timeout {args.claim_timeout}s "
          f"(settle {2.2 * args.claim_timeout:.1f}s), {args.alerts_per_worker} alerts per worker, "
          f"rate limit {f'{limit}/min per worker' if limit else 'none'}, poll every {args.poll_seconds:g}s")
    print(f"{'model latency':>13} {'workers':>7} {'alerts':>6} {'seconds':>7} {'alerts/min':>10} {'bound/min':>9} "
          f"{'share':>6} {'req/alert':>9}" + (f" {'at limit/min':>12} {'configured':>10}" if limit else ""))
    for latency in (float(v) for v in args.latencies.split(",")):
        for workers in (int(v) for v in args.workers.split(",")):
            alerts, seconds, requests, done = run(latency, workers, args)
            rate = alerts / seconds * 60
            bound = workers / latency * 60 if latency else float("inf")
            if limit:
                bound = min(bound, workers * limit)
            burst = workers * limit
            if limit and alerts > burst:  # from the end of the first window's burst to the end of the run
                at_limit = (alerts - burst) / (done[-1] - done[burst - 1]) * 60
                line = (f"{latency:>12}s {workers:>7} {alerts:>6} {seconds:>7.1f} {rate:>10.1f} {bound:>9.0f} "
                        f"{at_limit / bound:>6.0%} {requests / alerts:>9.1f} {at_limit:>12.1f} {burst:>10}")
            else:
                line = (f"{latency:>12}s {workers:>7} {alerts:>6} {seconds:>7.1f} {rate:>10.1f} {bound:>9.0f} "
                        f"{rate / bound:>6.0%} {requests / alerts:>9.1f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
