"""The AI worker while Ollama is unavailable: alerts go back to ai-pending uncounted and the worker backs off.

Unavailable means: connection refused, a timeout, HTTP 5xx, or 404 ``model '…' not found``. Only a bad
answer from a working model (unusable output, another 4xx) counts an attempt.
"""

import re
import threading
import time

import pytest
from iris_ai_worker import ollama, prompt
from iris_ai_worker import tags as worker_tags

from tests.support.ai_worker import AI_MODEL, SSH_EVENT

MODEL = AI_MODEL
BACKOFF_MIN = 0.2
BACKOFF_MAX = 0.4
ENV = {
    "AI_WORKER_CLAIM_TIMEOUT": "0.2",
    "AI_WORKER_OLLAMA_BACKOFF_MIN": str(BACKOFF_MIN),
    "AI_WORKER_OLLAMA_BACKOFF_MAX": str(BACKOFF_MAX),
}


class Stack:
    """The shared AI stack with this module's settings, and what these tests look at."""

    def __init__(self, ai_stack):
        self.base = ai_stack
        self.iris = ai_stack.iris
        self.ollama = ai_stack.ollama

    def worker(self, **env):
        return self.base.worker("ai-bot", **dict(ENV, **env))

    def alert(self, rule_id="5710"):
        return self.base.alert(event=dict(SSH_EVENT, rule=dict(SSH_EVENT["rule"], id=rule_id)))

    def tags(self, alert_id):
        return self.base.tags(alert_id)

    def comments(self, alert_id):
        return self.iris.comments(alert_id)

    def updates(self):
        return self.base.updates_by("ai-bot")

    def messages(self, start):
        return self.base.messages(start)

    def analysed_ids(self):
        """Alert ids of the analysis calls Ollama received, in order (probes left out)."""
        return [int(re.search(r'"alert_id":\s*(\d+)', call["prompt"]).group(1))
                for call in self.ollama.calls if call["prompt"] != prompt.PROBE_PROMPT]


@pytest.fixture
def stack(ai_stack):
    return Stack(ai_stack)


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


def released_uncounted(tags):
    """Back in the queue as it was: ai-pending, no claim, no attempt counted (the round id stays)."""
    uncounted = worker_tags.tag_value(tags, worker_tags.ATTEMPTS_PREFIX) is None
    return "ai-pending" in tags and not worker_tags.claim_tags(tags) and uncounted


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
def test_an_unavailable_ollama_releases_the_alert_without_counting_an_attempt(stack, kind):
    alert_id = stack.alert()
    worker = stack.worker(AI_WORKER_OLLAMA_TIMEOUT=0.5, AI_WORKER_MAX_ATTEMPTS=1)
    answer_again = make_unavailable(stack, kind)
    worker.run_cycle()
    tags = stack.tags(alert_id)
    assert released_uncounted(tags), tags  # with MAX_ATTEMPTS=1 a counted attempt would mean ai-failed
    assert worker_tags.tag_value(tags, worker_tags.ROUND_PREFIX)
    assert stack.comments(alert_id) == []
    assert worker.outage.active
    assert len(stack.messages("Ollama unavailable")) == 1
    assert worker.run_cycle() is False  # backing off (or its probe failed): nothing claimed
    answer_again()
    assert wait_for(lambda: worker.run_cycle() is False and "ai-reviewed" in stack.tags(alert_id), 5)
    assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"]
    assert len(stack.comments(alert_id)) == 1
    assert not worker.outage.active and worker.outage.delay == 0
    assert len(stack.messages("Ollama unavailable")) == 1
    assert len(stack.messages("Ollama answers again")) == 1


def test_a_4xx_answer_other_than_a_missing_model_counts_an_attempt(stack):
    alert_id = stack.alert()
    worker = stack.worker()

    def refuse(prompt):
        raise ollama.ollama_error(400, {"error": "invalid format"})

    worker.ollama.generate = refuse
    worker.run_cycle()
    assert "ai-attempts:1" in stack.tags(alert_id) and "ai-pending" in stack.tags(alert_id)
    assert not worker.outage.active


def test_while_ollama_is_down_the_worker_waits_without_touching_alerts_then_finishes_them(stack):
    waiting = [stack.alert() for _unused in range(3)]
    skipped = stack.alert(rule_id="5712")  # allowlisted: needs no model, so the outage does not hold it up
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=4, AI_WORKER_ALLOWLIST_RULE_IDS="5712")
    stack.ollama.stop()
    runner = threading.Thread(target=worker.run_forever, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: stack.tags(skipped) == ["wazuh", "ai-skipped"], 10)
        assert wait_for(lambda: all(not worker_tags.claim_tags(stack.tags(i)) for i in waiting), 5)
        updates = len(stack.updates())
        time.sleep(6 * BACKOFF_MAX)  # several probes fail meanwhile
        assert len(stack.updates()) == updates == 8  # 4 claims, 3 releases, 1 ai-skipped; then nothing
        assert all(released_uncounted(stack.tags(i)) for i in waiting)
        assert worker.deferred == {waiting[0]}  # the one whose own call met the outage
        assert len(stack.messages("Ollama unavailable")) == 1
        assert len(stack.messages("Ollama still unavailable")) >= 3
        assert BACKOFF_MIN < worker.outage.delay <= BACKOFF_MAX
        restart(stack.ollama)
        assert wait_for(lambda: all(stack.tags(i) == ["wazuh", "ai-reviewed"] for i in waiting), 10)
    finally:
        worker.request_stop()
        runner.join(timeout=10)
    assert all(len(stack.comments(i)) == 1 for i in waiting)
    assert stack.ollama.calls[0]["prompt"] == prompt.PROBE_PROMPT and stack.ollama.calls[0]["format"] is None
    assert sorted(stack.analysed_ids()) == waiting
    assert stack.analysed_ids()[-1] == waiting[0]  # the deferred alert went last
    assert len(stack.messages("Ollama unavailable")) == 1
    assert len(stack.messages("Ollama answers again")) == 1


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
