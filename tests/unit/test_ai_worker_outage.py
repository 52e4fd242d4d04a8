"""The AI worker while Ollama is unavailable: alerts go back to ai-pending uncounted and the worker backs off.

Unavailable means: connection refused, a timeout, HTTP 5xx, or 404 ``model '…' not found``. Only a bad
answer from a working model (unusable output, another 4xx) counts an attempt.
"""

import re
import threading
import time

import pytest
from ai_worker import iris_ai_worker as w

from tests.emulators.iris import IrisEmulator
from tests.emulators.ollama import OllamaEmulator

MODEL = "phi4-mini:latest"
BACKOFF_MIN = 0.2
BACKOFF_MAX = 0.4
BASE_ENV = {
    "OLLAMA_MODEL": MODEL,
    "AI_WORKER_CLAIM_TIMEOUT": "0.2",
    "AI_WORKER_IRIS_TIMEOUT": "2",
    "AI_WORKER_OLLAMA_TIMEOUT": "3",
    "AI_WORKER_CLAIM_TTL": "20",
    "AI_WORKER_CLOCK_SKEW": "0",
    "AI_WORKER_POLL_SECONDS": "0.2",
    "AI_WORKER_MAX_PER_MINUTE": "0",
    "AI_WORKER_DEDUP_WINDOW": "0",
    "AI_WORKER_OLLAMA_BACKOFF_MIN": str(BACKOFF_MIN),
    "AI_WORKER_OLLAMA_BACKOFF_MAX": str(BACKOFF_MAX),
}
SSH_EVENT = {
    "rule": {"id": "5710", "level": 5, "description": "sshd: Attempt to login using a non-existent user",
             "groups": ["syslog", "sshd", "authentication_failed"]},
    "agent": {"id": "001", "name": "web01"},
    "data": {"srcip": "172.17.1.1", "srcuser": "paco"},
}


class Stack:
    """The IRIS and Ollama emulators, a worker account and helpers."""

    def __init__(self, iris, ollama):
        self.iris = iris
        self.ollama = ollama
        self.key = iris.add_user("ai-bot", groups=["Analysts"], customers=["IrisInitialClient"])[1]

    def worker(self, **env):
        settings = dict(BASE_ENV, IRIS_BASE_URL=self.iris.url, IRIS_BEARER=self.key, OLLAMA_URL=self.ollama.url)
        settings.update({name: str(value) for name, value in env.items()})
        return w.Worker.from_config(w.load_config(settings))

    def alert(self, rule_id="5710"):
        event = dict(SSH_EVENT, rule=dict(SSH_EVENT["rule"], id=rule_id))
        return self.iris.create_alert(alert_title="sshd: non-existent user", alert_severity_id=4, alert_status_id=2,
                                      alert_customer_id=1, alert_tags="wazuh,ai-pending",
                                      alert_source_content=event)["alert_id"]

    def tags(self, alert_id):
        return w.split_tags(next(a for a in self.iris.alerts() if a["alert_id"] == alert_id)["alert_tags"])

    def comments(self, alert_id):
        return self.iris.comments(alert_id)

    def updates(self):
        return [entry for entry in self.iris.request_log
                if entry[0] == "POST" and entry[1].startswith("/alerts/update/") and entry[2] == "ai-bot"]

    def analysed_ids(self):
        """Alert ids of the analysis calls Ollama received, in order (probes left out)."""
        return [int(re.search(r'"alert_id": (\d+)', call["prompt"]).group(1))
                for call in self.ollama.calls if call["prompt"] != w.PROBE_PROMPT]


@pytest.fixture
def stack():
    iris = IrisEmulator(admin_api_key="A" * 64).start()
    ollama = OllamaEmulator(models=[MODEL]).start()
    yield Stack(iris, ollama)
    iris.stop()
    ollama.stop()


def restart(emulator):
    """Start a stopped emulator again on its old port (retried: a client socket may hold it briefly)."""
    for _unused in range(20):
        try:
            return emulator.start()
        except OSError:
            time.sleep(0.1)
    return emulator.start()


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def messages(caplog, start):
    return [record for record in caplog.records if record.getMessage().startswith(start)]


def released_uncounted(tags):
    """Back in the queue as it was: ai-pending, no claim, no attempt counted (the round id stays)."""
    return "ai-pending" in tags and not w.claim_tags(tags) and w.tag_value(tags, w.ATTEMPTS_PREFIX) is None


@pytest.mark.parametrize(
    ("status", "payload", "unavailable"),
    [
        (500, {"error": "emulated failure"}, True),
        (503, None, True),
        (404, {"error": f"model '{MODEL}' not found"}, True),
        (404, None, False),  # a 404 that is not about the model: a wrong URL, a bad answer
        (400, {"error": "invalid format"}, False),
        (200, {"done": True}, False),  # no response text
    ],
)
def test_only_5xx_and_a_missing_model_mean_unavailable(status, payload, unavailable):
    error = w.ollama_error(status, payload)
    assert isinstance(error, w.ServiceError)
    assert isinstance(error, w.OllamaUnavailable) is unavailable
    assert f"HTTP {status}" in str(error)


def make_unavailable(stack, kind):
    """Make Ollama unavailable in one way; return the function that makes it answer again."""
    emulator = stack.ollama
    if kind == "refused":
        emulator.stop()
        return lambda: restart(emulator)
    if kind == "timeout":
        emulator.latency = 1.5  # above the worker's AI_WORKER_OLLAMA_TIMEOUT=0.5 below
        return lambda: setattr(emulator, "latency", 0.0)
    if kind == "http-500":
        emulator.failure_rate = 1.0
        return lambda: setattr(emulator, "failure_rate", 0.0)
    emulator.models = ["another-model:1b"]  # "model-not-pulled"
    return lambda: setattr(emulator, "models", [MODEL])


@pytest.mark.parametrize("kind", ["refused", "timeout", "http-500", "model-not-pulled"])
def test_an_unavailable_ollama_releases_the_alert_without_counting_an_attempt(stack, caplog, kind):
    alert_id = stack.alert()
    worker = stack.worker(AI_WORKER_OLLAMA_TIMEOUT=0.5, AI_WORKER_MAX_ATTEMPTS=1)
    answer_again = make_unavailable(stack, kind)
    with caplog.at_level("INFO", logger="iris-ai-worker"):
        worker.run_cycle()
        tags = stack.tags(alert_id)
        assert released_uncounted(tags), tags  # with MAX_ATTEMPTS=1 a counted attempt would mean ai-failed
        assert w.tag_value(tags, w.ROUND_PREFIX)
        assert stack.comments(alert_id) == []
        assert worker.outage.active
        assert len(messages(caplog, "Ollama unavailable")) == 1
        assert worker.run_cycle() is False  # backing off (or its probe failed): nothing claimed
        answer_again()
        assert wait_for(lambda: worker.run_cycle() is False and "ai-reviewed" in stack.tags(alert_id), 5)
    assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"]
    assert len(stack.comments(alert_id)) == 1
    assert not worker.outage.active and worker.outage.delay == 0
    assert len(messages(caplog, "Ollama unavailable")) == 1
    assert len(messages(caplog, "Ollama answers again")) == 1


def test_a_4xx_answer_other_than_a_missing_model_counts_an_attempt(stack):
    alert_id = stack.alert()
    worker = stack.worker()

    def refuse(prompt):
        raise w.ollama_error(400, {"error": "invalid format"})

    worker.ollama.generate = refuse
    worker.run_cycle()
    assert "ai-attempts:1" in stack.tags(alert_id) and "ai-pending" in stack.tags(alert_id)
    assert not worker.outage.active


def test_while_ollama_is_down_the_worker_waits_without_touching_alerts_then_finishes_them(stack, caplog):
    waiting = [stack.alert() for _unused in range(3)]
    skipped = stack.alert(rule_id="5712")  # allowlisted: needs no model, so the outage does not hold it up
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=4, AI_WORKER_ALLOWLIST_RULE_IDS="5712")
    stack.ollama.stop()
    runner = threading.Thread(target=worker.run_forever, daemon=True)
    with caplog.at_level("DEBUG", logger="iris-ai-worker"):
        runner.start()
        try:
            assert wait_for(lambda: stack.tags(skipped) == ["wazuh", "ai-skipped"], 10)
            assert wait_for(lambda: all(not w.claim_tags(stack.tags(i)) for i in waiting), 5)
            updates = len(stack.updates())
            time.sleep(6 * BACKOFF_MAX)  # several probes fail meanwhile
            assert len(stack.updates()) == updates == 8  # 4 claims, 3 releases, 1 ai-skipped; then nothing
            assert all(released_uncounted(stack.tags(i)) for i in waiting)
            assert worker.deferred == {waiting[0]}  # the one whose own call met the outage
            assert len(messages(caplog, "Ollama unavailable")) == 1
            assert len(messages(caplog, "Ollama still unavailable")) >= 3
            assert BACKOFF_MIN < worker.outage.delay <= BACKOFF_MAX
            restart(stack.ollama)
            assert wait_for(lambda: all(stack.tags(i) == ["wazuh", "ai-reviewed"] for i in waiting), 10)
        finally:
            worker.request_stop()
            runner.join(timeout=10)
    assert all(len(stack.comments(i)) == 1 for i in waiting)
    assert stack.ollama.calls[0]["prompt"] == w.PROBE_PROMPT and stack.ollama.calls[0]["format"] is None
    assert sorted(stack.analysed_ids()) == waiting
    assert stack.analysed_ids()[-1] == waiting[0]  # the deferred alert went last
    assert len(messages(caplog, "Ollama unavailable")) == 1
    assert len(messages(caplog, "Ollama answers again")) == 1


def test_a_stop_request_ends_the_backoff_at_once(stack):
    stack.alert()
    worker = stack.worker(AI_WORKER_OLLAMA_BACKOFF_MIN=60, AI_WORKER_OLLAMA_BACKOFF_MAX=60)
    stack.ollama.stop()
    runner = threading.Thread(target=worker.run_forever, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: worker.outage.active, 10)
        time.sleep(0.2)
    finally:
        stopped = time.monotonic()
        worker.request_stop()
        runner.join(timeout=5)
    assert not runner.is_alive() and time.monotonic() - stopped < 1


def test_the_backoff_doubles_up_to_its_bound_and_logs_each_change_of_state_once(caplog):
    now = [100.0]
    outage = w.OllamaOutage(1.0, 10.0, clock=lambda: now[0])
    delays = []
    with caplog.at_level("INFO", logger="iris-ai-worker"):
        for _unused in range(6):
            outage.failed("connection refused")
            delays.append(outage.delay)
        assert outage.retry_at == now[0] + 10.0
        now[0] += 42
        outage.answered(probe=True)
        outage.answered(probe=True)
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [r.getMessage()[:22] for r in caplog.records] == ["Ollama unavailable (co", "Ollama answers again a"]
    assert "after 42s" in caplog.records[1].getMessage()
    outage.failed("HTTP 500")  # a probe's answer keeps the delay: a flapping Ollama is not hammered
    assert outage.delay == 10.0
    outage.answered()  # a real analysis call got an answer: start over
    outage.failed("HTTP 500")
    assert outage.delay == 1.0


def test_backoff_settings_are_checked():
    env = dict(BASE_ENV, IRIS_BASE_URL="http://127.0.0.1:1", IRIS_BEARER="k", AI_WORKER_OLLAMA_BACKOFF_MIN="10",
               AI_WORKER_OLLAMA_BACKOFF_MAX="5")
    with pytest.raises(w.ConfigError, match="BACKOFF_MAX must not be below"):
        w.load_config(env)
    config = w.load_config(dict(env, AI_WORKER_OLLAMA_BACKOFF_MIN="", AI_WORKER_OLLAMA_BACKOFF_MAX=""))
    assert (config.backoff_min, config.backoff_max) == (5.0, 300.0)
