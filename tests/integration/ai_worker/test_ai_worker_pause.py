"""A worker stopped past its lease (SIGSTOP, a VM pause, swapping) while another takes the alert over.

Driven by events, not timing: the paused worker runs in a thread that a socstack_core fault point
holds until the test lets it go. Meanwhile the test moves time on for it (its monotonic clock jumps
past the lease) and ages its claim in IRIS past the TTL, which is what the pause would have done, and
runs the other worker to the end. Properties asserted: exactly one analysis comment, owner and note
unchanged, the paused worker writes nothing after waking (or heals what it wrote in the one window
no check can close).
"""

import threading
import time

import pytest
from iris_ai_worker import tags as worker_tags
from socstack_core import faults

TTL = 30.0


class Pause:
    """Hold the thread that reaches fault point ``name`` (the first time) until released."""

    def __init__(self, name):
        self.name = name
        self.reached = threading.Event()
        self.go_on = threading.Event()
        self.thread = None

    def hook(self, point):
        if point == self.name and threading.current_thread() is self.thread and not self.reached.is_set():
            self.reached.set()
            assert self.go_on.wait(60), "the test never released the paused worker"

    def run(self, worker):
        self.thread = threading.Thread(target=worker.run_cycle)
        self.thread.start()
        assert self.reached.wait(60), f"the worker never reached {self.name}"

    def release(self):
        self.go_on.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def pause(monkeypatch):
    def make(name):
        paused = Pause(name)
        monkeypatch.setattr(faults, "hook", paused.hook)
        return paused
    return make


def age_claims(stack, alert_id, seconds):
    """What a pause of ``seconds`` looks like to the other workers: every claim on the alert that old."""
    with stack.iris.lock:
        alert = next(a for a in stack.iris.state["alerts"] if a["alert_id"] == alert_id)
        tags = worker_tags.split_tags(alert["alert_tags"])
        for position, tag in enumerate(tags):
            token = worker_tags.ClaimToken.parse(tag)
            if token:
                tags[position] = worker_tags.ClaimToken(token.instance, token.epoch - int(seconds), token.nonce).tag()
        alert["alert_tags"] = worker_tags.join_tags(tags)


def paused_worker(stack, login):
    """A worker whose monotonic clock the test can move on (a pause moves it on too)."""
    shift = [0.0]
    worker = stack.worker(login, AI_WORKER_CLAIM_TTL=TTL)
    worker.claims.monotonic = lambda: time.monotonic() + shift[0]
    return worker, shift


def take_over_while_paused(stack, alert_id, shift):
    age_claims(stack, alert_id, TTL + 5)
    shift[0] = TTL + 5
    other = stack.worker("wb", AI_WORKER_CLAIM_TTL=TTL)
    other.run_cycle()
    assert "ai-takeovers:1" in stack.tags(alert_id) and "ai-reviewed" in stack.tags(alert_id)


def assert_one_analysis_and_nothing_else_changed(stack, alert_id, before, author):
    analyses = stack.analyses(alert_id)
    assert len(analyses) == 1 and analyses[0]["user"]["user_login"] == author
    after = stack.get(alert_id)
    assert after["alert_owner_id"] == before["alert_owner_id"]
    assert after["alert_note"] == before["alert_note"]
    assert stack.tags(alert_id) == ["wazuh", "ai-takeovers:1", "ai-reviewed"]


@pytest.mark.parametrize("owned", [False, True])
def test_paused_between_its_read_and_its_comment_past_the_lease_it_posts_nothing(ai_stack, pause, owned):
    alert_id = ai_stack.alert(alert_note="analyst note", alert_owner_id=ai_stack.analyst_id if owned else None)
    before = ai_stack.get(alert_id)
    paused = pause("ai_worker:comment:read")  # the alert was re-read; the claim and lease not yet re-checked
    a, shift = paused_worker(ai_stack, "wa")
    paused.run(a)
    take_over_while_paused(ai_stack, alert_id, shift)
    updates_before = len(ai_stack.updates_by("wa"))
    paused.release()
    assert len(ai_stack.updates_by("wa")) == updates_before  # it wrote nothing after waking
    assert not any(path.endswith("/comments/add") for _method, path in ai_stack.paths_by("wa"))
    assert ai_stack.messages(f"alert {alert_id}: lease ran out")
    assert_one_analysis_and_nothing_else_changed(ai_stack, alert_id, before, "wb")


def test_paused_after_its_last_check_its_duplicate_comment_is_healed(ai_stack, pause):
    """The window no lease can close: every check passed, then the pause, then the POST."""
    alert_id = ai_stack.alert(alert_note="analyst note")
    before = ai_stack.get(alert_id)
    paused = pause("ai_worker:comment:send")
    a, shift = paused_worker(ai_stack, "wa")
    paused.run(a)
    take_over_while_paused(ai_stack, alert_id, shift)
    paused.release()
    # wa posted a second analysis of the same round, saw it while healing and deleted it (not wb's: higher id).
    deletes = [path for method, path in ai_stack.paths_by("wa") if path.endswith("/delete")]
    assert len(deletes) == 1
    assert_one_analysis_and_nothing_else_changed(ai_stack, alert_id, before, "wb")


def test_paused_before_its_final_tag_write_it_leaves_the_takeover_alone(ai_stack, pause):
    alert_id = ai_stack.alert(alert_note="analyst note")
    before = ai_stack.get(alert_id)
    paused = pause("ai_worker:update:read")  # after its comment, before the final tags
    a, shift = paused_worker(ai_stack, "wa")
    paused.run(a)
    take_over_while_paused(ai_stack, alert_id, shift)  # wb finds wa's comment: tags only, no second analysis
    updates_before = len(ai_stack.updates_by("wa"))
    paused.release()
    assert len(ai_stack.updates_by("wa")) == updates_before
    assert_one_analysis_and_nothing_else_changed(ai_stack, alert_id, before, "wa")


def test_healing_deletes_a_planted_duplicate_and_a_repeat_delete_is_harmless(ai_stack):
    stale = worker_tags.ClaimToken("dead", int(time.time()) - 3600, "0000dead").tag()
    alert_id = ai_stack.alert(f"wazuh,ai-pending,ai-round:11112222,{stale}")
    first = ai_stack.plant_comment(alert_id, "[ai-triage round=11112222] first")
    ai_stack.plant_comment(alert_id, "note by an analyst", login="alice-helper")
    second = ai_stack.plant_comment(alert_id, "[ai-triage round=11112222] duplicate")
    worker = ai_stack.worker()
    worker.run_cycle()
    assert [c["comment_id"] for c in ai_stack.analyses(alert_id)] == [first]
    assert len(ai_stack.comment_texts(alert_id)) == 2  # the analyst's comment stays
    assert ai_stack.tags(alert_id) == ["wazuh", "ai-takeovers:1", "ai-reviewed"]
    assert ai_stack.ollama.calls == []
    assert worker.iris.delete_comment(alert_id, second) is False  # IRIS's 400 on a repeat: already deleted


def test_a_worker_whose_clock_is_off_refuses_to_claim_and_says_why(ai_stack):
    alert_id = ai_stack.alert()
    config_env = {"AI_WORKER_CLOCK_SKEW": "4"}
    worker = ai_stack.worker("slow-clock", **config_env)
    worker.clock.wall = worker.iris.wall = lambda: time.time() - 60
    worker.run_cycle()
    worker.run_cycle()
    assert ai_stack.updates_by("slow-clock") == []
    assert len(ai_stack.messages("clock: this host's clock is at least")) == 1
    ai_stack.worker("good-clock", **config_env).run_cycle()
    assert ai_stack.tags(alert_id) == ["wazuh", "ai-reviewed"]
