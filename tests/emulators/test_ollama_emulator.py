"""The Ollama emulator answers with the shapes ../shared/reference/ai-triage.md records."""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.emulators import ollama as ollama_module
from tests.emulators.ollama import OllamaEmulator

GENERATE_KEYS = {"model", "created_at", "response", "done", "done_reason", "total_duration", "load_duration",
                 "prompt_eval_count", "eval_count", "eval_duration"}


def call(url, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


@pytest.fixture
def ollama():
    emulator = OllamaEmulator(models=["phi4-mini:latest", "qwen2.5:3b"]).start()
    yield emulator
    emulator.stop()


def test_reference_documents_the_emulated_shapes(shared_reference):
    text = " ".join((shared_reference / "ai-triage.md").read_text().split())
    for fact in ("/api/generate", "/api/chat", "/api/tags", "' not found\"}", "done_reason", "newline-delimited"):
        assert fact in text


def test_tags_lists_the_configured_models(ollama):
    status, _type, body = call(ollama.url, "/api/tags")
    models = json.loads(body)["models"]
    assert status == 200
    assert [m["name"] for m in models] == ["phi4-mini:latest", "qwen2.5:3b"]
    assert all({"name", "model", "size", "digest", "details"} <= m.keys() for m in models)


def test_generate_without_streaming_answers_one_object(ollama):
    status, _type, body = call(ollama.url, "/api/generate",
                               {"model": "phi4-mini:latest", "prompt": '{"alert_id": 4}', "stream": False,
                                "format": "json"})
    answer = json.loads(body)
    assert status == 200
    assert set(answer) == GENERATE_KEYS
    assert answer["done"] is True and isinstance(answer["total_duration"], int)
    assert json.loads(answer["response"])["summary"].startswith("Emulated triage of alert 4")
    assert ollama.calls[0]["format"] == "json" and ollama.calls[0]["stream"] is False


def test_generate_streams_ndjson_by_default(ollama):
    status, content_type, body = call(ollama.url, "/api/generate", {"model": "phi4-mini:latest", "prompt": "x"})
    chunks = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and "ndjson" in content_type
    assert len(chunks) > 2 and all(c["done"] is False for c in chunks[:-1]) and chunks[-1]["done"] is True
    assert json.loads("".join(c["response"] for c in chunks))["verdict"] == "likely_true_positive"


def test_chat_answers_an_assistant_message(ollama):
    status, _type, body = call(ollama.url, "/api/chat", {
        "model": "qwen2.5:3b", "stream": False,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    answer = json.loads(body)
    assert status == 200 and answer["done"] is True
    assert answer["message"]["role"] == "assistant" and answer["message"]["content"]


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_a_model_that_is_not_pulled_gives_404(ollama, path):
    status, _type, body = call(ollama.url, path, {"model": "llama3:70b", "prompt": "x", "messages": [],
                                                  "stream": False})
    assert status == 404
    assert json.loads(body) == {"error": "model 'llama3:70b' not found"}


def test_failures_follow_the_seed_and_latency_applies():
    outcomes = []
    for _run in range(2):
        emulator = OllamaEmulator(failure_rate=0.5, seed=42, latency=0.05).start()
        try:
            started = time.monotonic()
            statuses = [call(emulator.url, "/api/generate", {"model": "phi4-mini:latest", "prompt": "p",
                                                             "stream": False})[0] for _unused in range(12)]
            assert time.monotonic() - started >= 12 * 0.05
        finally:
            emulator.stop()
        outcomes.append(statuses)
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}


def test_the_command_line_serves_until_sigterm():
    """``python3 ollama.py ...`` as molecule runs it: the models and knobs it was given, exit 0 on SIGTERM."""
    command = [sys.executable, str(Path(ollama_module.__file__)), "--host", "127.0.0.1", "--port", "0",
               "--model", "phi4-mini:latest", "--model", "qwen2.5:3b", "--latency", "0.2", "--failure-rate", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split(" listening on ")[1].split()[0]
        status, _type, body = call(url, "/api/tags")
        assert status == 200 and [m["name"] for m in json.loads(body)["models"]] == ["phi4-mini:latest", "qwen2.5:3b"]
        started = time.monotonic()
        status, _type, body = call(url, "/api/generate", {"model": "qwen2.5:3b", "prompt": "x", "stream": False})
        assert status == 200 and json.loads(body)["done"] is True
        assert time.monotonic() - started >= 0.2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=5)


@pytest.mark.parametrize(
    "arguments", [[], ["--model", "m", "--failure-rate", "1.5"], ["--model", "m", "--latency", "-1"]]
)
def test_the_command_line_refuses_bad_arguments(arguments):
    result = subprocess.run([sys.executable, str(Path(ollama_module.__file__)), "--port", "0", *arguments],
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 2 and "error:" in result.stderr


def test_pull_streams_the_documented_status_lines_then_lists_the_model(ollama):
    """api.md "Pull a Model": pulling manifest, downloading <digest> lines, verifying, writing, removing, success."""
    status, content_type, body = call(ollama.url, "/api/pull", {"model": "llama3.2"})
    lines = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and "ndjson" in content_type
    assert lines[0] == {"status": "pulling manifest"}
    downloads = [line for line in lines if line["status"].startswith("downloading ")]
    assert downloads and all({"digest", "total", "completed"} <= line.keys() for line in downloads)
    assert downloads[-1]["completed"] == downloads[-1]["total"]
    assert [line["status"] for line in lines[-4:]] == ["verifying sha256 digest", "writing manifest",
                                                       "removing any unused layers", "success"]
    _status, _type, tags = call(ollama.url, "/api/tags")
    assert "llama3.2:latest" in [m["name"] for m in json.loads(tags)["models"]]
    assert ollama.pulls == ["llama3.2"]


def test_pull_without_streaming_answers_one_success_object(ollama):
    status, _type, body = call(ollama.url, "/api/pull", {"model": "qwen2.5:0.5b", "stream": False})
    assert status == 200 and json.loads(body) == {"status": "success"}
    _status, _type, tags = call(ollama.url, "/api/tags")
    assert "qwen2.5:0.5b" in [m["name"] for m in json.loads(tags)["models"]]


def test_pull_of_a_model_outside_the_library_ends_with_an_error_line():
    emulator = OllamaEmulator(models=[], library=["phi4-mini:latest"]).start()
    try:
        status, _type, body = call(emulator.url, "/api/pull", {"model": "no-such-model:1b"})
        lines = [json.loads(line) for line in body.splitlines()]
        assert status == 200 and lines[0] == {"status": "pulling manifest"} and "error" in lines[-1]
        assert call(emulator.url, "/api/tags")[2] == '{"models": []}'
    finally:
        emulator.stop()


def test_pull_lines_come_one_by_one_with_the_delay():
    emulator = OllamaEmulator(models=[], pull_delay=0.05).start()
    try:
        started = time.monotonic()
        status, _type, body = call(emulator.url, "/api/pull", {"model": "phi4-mini:latest"})
        assert status == 200 and len(body.splitlines()) >= 8
        assert time.monotonic() - started >= 0.05 * (len(body.splitlines()) - 1)
    finally:
        emulator.stop()
