"""Run tests/emulators/ollama.py (copied next to this file) as a long-lived service for molecule.

The emulator module has no command line of its own; this wrapper gives it one:
``python3 ollama_service.py --host 127.0.0.1 --port 11434 --model phi4-mini:latest [--model ...]``.
Standard library only. Runs until SIGTERM or SIGINT.
"""

import argparse
import signal
import sys
import threading

from ollama import OllamaEmulator


def main(argv=None):
    """Start the emulator with the given models and block until asked to stop."""
    parser = argparse.ArgumentParser(description="Ollama API emulator as a service (tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", default=[], help="a pulled model (repeatable)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generate/chat call")
    args = parser.parse_args(argv)
    emulator = OllamaEmulator(models=args.model, latency=args.latency, host=args.host, port=args.port).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"Ollama emulator listening on {emulator.url} with models {args.model}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
