"""Run tests/emulators/opencti.py (copied next to this file) as a service for molecule.

The emulator keeps the requests it answers in memory only; this wrapper also appends each one to a
JSON-lines file so that the verifier can count them:
``python3 opencti_service.py --port 8080 --request-log /var/lib/opencti-emulator/requests.jsonl``
(token from ``OPENCTI_TOKEN``). Serves the emulator's sample intel set. Standard library only.
"""

import argparse
import json
import os
import signal
import sys
import threading

from opencti import OpenCTIEmulator


class RecordedRequests(list):
    """The emulator's request list, with every appended request also written to a file."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def append(self, request):
        super().append(request)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(request) + "\n")


def main(argv=None):
    """Start the emulator with its sample data and block until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="OpenCTI GraphQL emulator as a service (tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--request-log", required=True, help="JSON-lines file of the requests received")
    args = parser.parse_args(argv)
    emulator = OpenCTIEmulator(os.environ.get("OPENCTI_TOKEN", "opencti-test-token"), args.host, args.port)
    emulator.requests = RecordedRequests(args.request_log)
    emulator.load_sample_data()
    emulator.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"OpenCTI emulator listening on {emulator.graphql_url}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
