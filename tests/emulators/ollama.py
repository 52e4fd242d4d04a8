"""Emulator of the Ollama HTTP API (``/api/generate``, ``/api/chat``, ``/api/tags``, ``/api/pull``), for tests.

What it copies, from ../shared/reference/ai-triage.md ("Ollama HTTP API"): the request fields
(``model``, ``prompt``/``messages``, ``stream``, ``system``, ``format``, ``options``); the non-streaming
answer shapes of generate (``model, created_at, response, done, done_reason, total_duration,
load_duration, prompt_eval_count, eval_count, eval_duration``, durations in ns) and chat
(``message: {role: assistant, content}``, ``done``); newline-delimited JSON chunks when ``stream`` is
left at its default (true); ``/api/tags`` listing ``{name, model, size, digest, details}``; and a
404 ``{"error": "model '…' not found"}`` for a model that is not pulled.

``/api/pull`` is NOT in the reference: it follows Ollama's public API documentation (docs/api.md of
ollama/ollama, "Pull a Model"): ``POST /api/pull {"model", "insecure"?, "stream"?}``; streamed (the
default) it answers one JSON object per line, ``{"status": "pulling manifest"}``, then
``{"status": "downloading <digest>", "digest", "total", "completed"}`` lines, then ``verifying sha256
digest``, ``writing manifest``, ``removing any unused layers`` and ``{"status": "success"}``; with
``"stream": false`` only ``{"status": "success"}``. The model is then listed by ``/api/tags``. The
error line for a model the library lacks (``{"error": ...}`` after the manifest line) and its text are
this emulator's choice, not a documented fact.

Test-only knobs (not claims about Ollama): ``latency`` (seconds per generate/chat), ``failure_rate``
with a deterministic ``seed`` (a failed call answers 500 ``{"error": ...}``), a ``responder`` that
writes the answer text, and ``calls`` (every generate/chat request with its outcome); for pulls,
``library`` (the models a pull can get; None: any), ``pull_delay`` (seconds between two status lines)
and ``pulls`` (the model of every pull request).
Standard library only. In a test it serves on 127.0.0.1, port 0 by default::

    emu = OllamaEmulator(models=["phi4-mini:latest"], latency=0.2, failure_rate=0.1, seed=7).start()
    ... emu.url ...
    emu.stop()

As a service (molecule runs it as a systemd unit) it serves until SIGTERM or SIGINT::

    python3 ollama.py --host 127.0.0.1 --port 11434 --model phi4-mini:latest [--model ...]
                      [--latency S] [--failure-rate F] [--seed N]
"""

import argparse
import hashlib
import json
import random
import re
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MODELS = ("phi4-mini:latest",)


def default_responder(prompt, system, fmt):
    """A plausible triage answer in the worker's JSON shape, mentioning the alert id it was asked about."""
    match = re.search(r'"alert_id":\s*(\d+)', prompt)
    alert = match.group(1) if match else "?"
    return json.dumps({
        "summary": f"Emulated triage of alert {alert}: repeated authentication failures from one source.",
        "verdict": "likely_true_positive",
        "reasons": ["many failures in a short time", "the user name does not exist"],
        "severity": "medium",
        "severity_reason": "no successful logon followed",
        "next_steps": ["block the source address", "check for a later successful logon"],
        "mitre": [{"technique_id": "T1110", "technique": "Brute Force", "tactic": "Credential Access"}],
    })


class _Handler(BaseHTTPRequestHandler):
    server_version = "Ollama-emulator"

    def do_GET(self):
        if self.path == "/api/tags":
            self._send(200, {"models": [self.server.emulator.model_entry(name)
                                        for name in self.server.emulator.models]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        if self.path == "/api/pull" and isinstance(body, dict):
            self._send_pull(body)
            return
        if self.path not in ("/api/generate", "/api/chat"):
            self._send(404, {"error": "not found"})
            return
        if not isinstance(body, dict):
            self._send(400, {"error": "invalid request body"})
            return
        status, answer = self.server.emulator.answer(self.path, body)
        if status == 200 and body.get("stream", True):
            self._send_stream(self.path, answer)
        else:
            self._send(status, answer)

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, path, final):
        """The answer as NDJSON chunks of a few characters each, then the final ``done`` object."""
        text = final["response"] if path == "/api/generate" else final["message"]["content"]
        lines = []
        for start in range(0, len(text), 16):
            piece = text[start:start + 16]
            chunk = {"model": final["model"], "created_at": final["created_at"], "done": False}
            if path == "/api/generate":
                chunk["response"] = piece
            else:
                chunk["message"] = {"role": "assistant", "content": piece}
            lines.append(chunk)
        last = dict(final)
        if path == "/api/generate":
            last["response"] = ""
        else:
            last["message"] = {"role": "assistant", "content": ""}
        lines.append(last)
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_pull(self, body):
        """Status lines one by one (read until the connection closes), or one object when stream is false."""
        emulator = self.server.emulator
        model = str(body.get("model") or "")
        lines = emulator.pull_lines(model)
        # The model is listed before its final line goes out, as Ollama's is when a client reads "success"
        # (a client that asks /api/tags right after must find it: this was a race on a loaded machine).
        if body.get("stream", True) is False:
            final = lines[-1]
            emulator.pulled(model, lines)
            self._send(200 if "error" not in final else 500, final)  # 500 for an error: this emulator's choice
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for position, line in enumerate(lines):
                if position and emulator.pull_delay:
                    time.sleep(emulator.pull_delay)
                if position == len(lines) - 1:
                    emulator.pulled(model, lines)
                self.wfile.write(json.dumps(line).encode() + b"\n")
                self.wfile.flush()
        except OSError:
            return  # the client gave up (its deadline): like Ollama, the pull stops here

    def log_message(self, format, *args):
        """Silent: tests read emu.calls instead."""


class OllamaEmulator:
    """In-process Ollama server. Attributes ``latency``, ``failure_rate`` and ``responder`` may be
    changed while it runs; ``calls`` lists dicts ``{path, model, prompt, format, stream, failed}``."""

    def __init__(self, models=DEFAULT_MODELS, *, latency=0.0, failure_rate=0.0, seed=0, responder=None,
                 host="127.0.0.1", port=0, library=None, pull_delay=0.0):
        self.models = list(models)
        self.library = None if library is None else set(library)
        self.pull_delay = pull_delay
        self.pulls = []
        self.latency = latency
        self.failure_rate = failure_rate
        self.responder = responder or default_responder
        self.host = host
        self.port = port
        self.calls = []
        self.lock = threading.Lock()
        self._random = random.Random(seed)
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ollama-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @staticmethod
    def model_entry(name):
        digest = hashlib.sha256(name.encode()).hexdigest()
        family = name.split(":")[0]
        return {"name": name, "model": name, "size": 2_491_876_774, "digest": digest,
                "details": {"format": "gguf", "family": family}}  # details' content is illustrative

    def pull_lines(self, model):
        """The status objects of a pull of model (api.md, "Pull a Model"); the last is success or an error."""
        name = model if ":" in model else f"{model}:latest"
        with self.lock:
            self.pulls.append(model)
        lines = [{"status": "pulling manifest"}]
        if self.library is not None and model not in self.library and name not in self.library:
            return [*lines, {"error": "pull model manifest: file does not exist"}]  # text: this emulator's choice
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        total = 2_491_876_774
        for completed in (0, total // 2, total):
            lines.append({"status": f"downloading {digest}", "digest": digest, "total": total, "completed": completed})
        return [*lines, {"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                {"status": "removing any unused layers"}, {"status": "success"}]

    def pulled(self, model, lines):
        """Just before the final line goes out: the model is listed from now on."""
        name = model if ":" in model else f"{model}:latest"
        if lines[-1].get("status") == "success":
            with self.lock:
                if name not in self.models:
                    self.models.append(name)

    def answer(self, path, body):
        """(status, non-streaming answer) for a generate or chat request."""
        model = body.get("model")
        if model not in self.models:
            return 404, {"error": f"model '{model}' not found"}
        if path == "/api/generate":
            prompt, system = str(body.get("prompt", "")), body.get("system")
        else:
            messages = body.get("messages") if isinstance(body.get("messages"), list) else []
            prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") != "system")
            system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
        with self.lock:
            failed = self._random.random() < self.failure_rate
            self.calls.append({"path": path, "model": model, "prompt": prompt, "format": body.get("format"),
                               "stream": body.get("stream", True), "failed": failed})
        started = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        if failed:
            return 500, {"error": "emulated failure"}
        text = self.responder(prompt, system, body.get("format"))
        total = int((time.monotonic() - started) * 1e9)
        answer = {"model": model, "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
        if path == "/api/generate":
            answer["response"] = text
        else:
            answer["message"] = {"role": "assistant", "content": text}
        answer.update({"done": True, "done_reason": "stop", "total_duration": total, "load_duration": 0,
                       "prompt_eval_count": len(prompt.split()), "eval_count": len(text.split()),
                       "eval_duration": total})
        return 200, answer


def main(argv=None):
    """Serve the emulator on a fixed address until SIGTERM or SIGINT; exit 0."""
    parser = argparse.ArgumentParser(description="Ollama API emulator (a test double, not Ollama)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", required=True, help="a pulled model (repeatable)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generate/chat call")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answered with HTTP 500")
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error("--latency must be >= 0")
    if not 0 <= args.failure_rate <= 1:
        parser.error("--failure-rate must be between 0 and 1")
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before the server threads start: they inherit it
    emulator = OllamaEmulator(models=args.model, latency=args.latency, failure_rate=args.failure_rate,
                              seed=args.seed, host=args.host, port=args.port).start()
    print(f"Ollama emulator listening on {emulator.url} with models {', '.join(args.model)}", flush=True)
    signal.sigwait(stop_signals)
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
