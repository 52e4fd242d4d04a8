"""The AI worker's claim protocol under adversarial interleavings injected into the IRIS emulator.

Each worker gets its own service account, so an emulator hook can tell whose request it sees and
hold or delay it: the dangerous orderings happen on purpose, not by luck. Negative controls switch
off one part of the protocol and show the same interleaving then produces two analyses.
"""

import threading
import time

import pytest
from iris_ai_worker import claims as claims_module
from iris_ai_worker import settings
from iris_ai_worker import tags as worker_tags

from tests.support.ai_worker import run_together

CLAIM_TIMEOUT = 0.5  # settle time 1.1 s: room for the injected delays on a busy 2-core machine
ENV = {"AI_WORKER_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT)}


@pytest.fixture
def stack(ai_stack):
    """The shared AI stack; workers here claim with a 0.5 s claim timeout."""
    original = ai_stack.worker
    ai_stack.worker = lambda login="ai-bot", **env: original(login, **dict(ENV, **env))
    return ai_stack


def hold_reads_until_both_served(alert_id, logins):
    """Hook: the first GET of the alert by each login is answered only once all of them were served,
    so every worker decides on the same (free) state."""
    barrier = threading.Barrier(len(logins), timeout=10)
    seen = set()

    def hook(phase, method, path, query, body, login):
        if phase == "after" and method == "GET" and path == f"/alerts/{alert_id}" and login in logins - seen:
            seen.add(login)
            barrier.wait()

    return hook


def delay_first_claim_write(alert_id, login, seconds):
    """Hook: hold the first update by ``login`` on the server for ``seconds`` before it is applied."""
    done = []

    def hook(phase, method, path, query, body, login_):
        if phase == "before" and method == "POST" and path == f"/alerts/update/{alert_id}" and login_ == login \
                and not done:
            done.append(True)
            time.sleep(seconds)

    return hook


def tags_when_commenting(stack, alert_id, seen):
    """Hook: the alert's tags at the moment an analysis is about to be stored."""

    def hook(phase, method, path, query, body, login):
        if phase == "before" and method == "POST" and path == f"/alerts/{alert_id}/comments/add":
            seen.append(stack.tags(alert_id))

    return hook


def test_ai_processing_is_written_with_the_claim_and_removed_with_it_on_release(stack):
    """A claim adds ai-processing beside the claim tag; a release (stopping) removes both, keeps ai-pending."""
    alert_id = stack.alert()
    worker = stack.worker("wa")
    claim = worker.claims.claim(alert_id)
    tags = stack.tags(alert_id)
    assert claim is not None and tags == ["wazuh", "ai-pending", tags[2], "ai-processing", claim.token.tag()]
    worker.claims.release_if_mine(claim, "stopping")
    tags = stack.tags(alert_id)
    assert "ai-processing" not in tags and not worker_tags.claim_tags(tags) and "ai-pending" in tags


@pytest.mark.parametrize("late_by", [0.0, 0.15, 0.3])
def test_two_workers_that_read_the_same_free_alert_cannot_both_win(stack, late_by):
    """Both read 'free'; A's claim lands first, B's lands up to 0.6 x claim timeout later (server side)."""
    alert_id = stack.alert()
    a, b = stack.worker("wa"), stack.worker("wb")
    stack.iris.add_hook(hold_reads_until_both_served(alert_id, {"wa", "wb"}))
    stack.iris.add_hook(delay_first_claim_write(alert_id, "wb", late_by))
    during = []
    stack.iris.add_hook(tags_when_commenting(stack, alert_id, during))
    run_together(a, b)
    analyses = stack.analyses(alert_id)
    assert len(analyses) == 1  # two workers still never both process one alert
    assert len(during) == 1 and "ai-processing" in during[0] and len(worker_tags.claim_tags(during[0])) == 1
    assert "ai-processing" not in stack.tags(alert_id)
    assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"]
    loser = "wb" if analyses[0]["user"]["user_login"] == "wa" else "wa"
    assert len(stack.updates_by(loser)) == 1  # the loser wrote its claim and nothing else
    if late_by:
        assert loser == "wa"  # the last claim write wins; A saw B's claim at its read-back


def without_healing(monkeypatch):
    """Negative controls switch off the history replay too (issue 23), which would otherwise undo what the
    missing protocol step lets through: they show what the lease protocol alone needs."""
    monkeypatch.setattr(claims_module, "heal", lambda *args, **kwargs: False)


def test_negative_control_read_back_without_settle_lets_both_win(stack, monkeypatch):
    """The same interleaving against 'write, read back at once, proceed if still mine' gives two analyses."""
    without_healing(monkeypatch)
    monkeypatch.setattr(settings.Config, "settle_seconds", property(lambda self: 0.0))
    alert_id = stack.alert()
    a, b = stack.worker("wa"), stack.worker("wb")
    stack.iris.add_hook(hold_reads_until_both_served(alert_id, {"wa", "wb"}))
    stack.iris.add_hook(delay_first_claim_write(alert_id, "wb", 0.3))
    run_together(a, b)
    assert len(stack.analyses(alert_id)) == 2


def pause_after_first_read(worker, seconds):
    """Client-side stall (GC pause, overloaded host) after the worker's read came back."""
    original = worker.iris.alert
    paused = []

    def alert(alert_id, timeout=None):
        result = original(alert_id, timeout=timeout)
        if not paused:
            paused.append(True)
            time.sleep(seconds)
        return result

    worker.iris.alert = alert


def test_a_claimant_stalled_between_read_and_write_gives_up(stack):
    alert_id = stack.alert()
    a, b = stack.worker("wa"), stack.worker("wb")
    stack.iris.add_hook(hold_reads_until_both_served(alert_id, {"wa", "wb"}))
    pause_after_first_read(b, 3 * CLAIM_TIMEOUT)  # longer than A's settle time
    run_together(a, b)
    assert len(stack.analyses(alert_id)) == 1
    assert stack.updates_by("wb") == []  # B noticed its read was too old and wrote nothing
    assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"]


def stalled_claimant_without_freshness_check(stack):
    """A and B read the free alert; B stalls past A's settle time and writes its claim anyway (the freshness
    check switched off): B's claim is written on a read older than A's review. Returns the alert id."""
    alert_id = stack.alert()
    a, b = stack.worker("wa"), stack.worker("wb")
    b.claims.read_still_fresh = lambda read_sent: True
    stack.iris.add_hook(hold_reads_until_both_served(alert_id, {"wa", "wb"}))
    pause_after_first_read(b, 3 * CLAIM_TIMEOUT)
    run_together(a, b)
    return alert_id


def test_negative_control_without_the_freshness_check_a_stalled_claimant_undoes_the_result(stack, monkeypatch):
    """B's claim, written on a stale read after A finished, puts the reviewed alert back in the queue."""
    without_healing(monkeypatch)
    alert_id = stalled_claimant_without_freshness_check(stack)
    assert len(stack.analyses(alert_id)) == 1
    tags = stack.tags(alert_id)
    assert "ai-reviewed" not in tags and "ai-pending" in tags  # the next round will analyse it again


def test_a_stale_claim_write_that_lands_after_the_review_is_undone_by_the_history_replay(stack):
    """Issue 23: the same stale claim (what a write held past its timeout does) no longer undoes the result:
    B's confirm finds in IRIS's history that its own write put ai-pending back on a reviewed alert,
    replays the history without it, and stops. One analysis, ai-reviewed, nothing left pending."""
    alert_id = stalled_claimant_without_freshness_check(stack)
    assert len(stack.analyses(alert_id)) == 1
    assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"]
    assert stack.messages(f"alert {alert_id}: healed after"), stack.log_text()


def test_a_claim_acknowledged_beyond_the_bound_is_abandoned_and_reported(stack):
    """A write the server held past the bound (or a stall after the check) cannot be prevented
    client-side; the claimant must at least not act on it, and say so loudly."""
    alert_id = stack.alert()
    worker = stack.worker("wa")
    original = worker.iris.set_tags

    def stalled_set_tags(alert, tags, timeout=None):
        time.sleep(2.5 * CLAIM_TIMEOUT)  # after the freshness check, before the request leaves
        return original(alert, tags, timeout=timeout)

    worker.iris.set_tags = stalled_set_tags
    worker.run_cycle()
    assert "abandoning it" in stack.log_text()
    assert stack.ollama.calls == [] and stack.analyses(alert_id) == []


def test_a_fresh_claim_of_another_worker_is_left_alone(stack):
    token = worker_tags.ClaimToken("other", int(time.time()), "0000beef").tag()
    alert_id = stack.alert(f"ai-pending,ai-round:11112222,{token}")
    stack.worker("wa").run_cycle()
    assert stack.updates_by("wa") == []
    assert token in stack.tags(alert_id)


def test_two_workers_taking_over_the_same_stale_claim_cannot_both_win(stack):
    stale = worker_tags.ClaimToken("dead", int(time.time()) - 3600, "0000dead").tag()
    alert_id = stack.alert(f"wazuh,ai-pending,ai-round:11112222,{stale}")
    a, b = stack.worker("wa"), stack.worker("wb")
    stack.iris.add_hook(hold_reads_until_both_served(alert_id, {"wa", "wb"}))
    stack.iris.add_hook(delay_first_claim_write(alert_id, "wa", 0.2))
    run_together(a, b)
    assert len(stack.analyses(alert_id)) == 1
    assert stack.tags(alert_id) == ["wazuh", "ai-takeovers:1", "ai-reviewed"]


def test_takeover_after_a_crash_between_comment_and_tags_does_not_comment_twice(stack):
    """The dead worker posted this round's analysis but died before tagging: finish, do not re-analyse."""
    stale = worker_tags.ClaimToken("dead", int(time.time()) - 3600, "0000dead").tag()
    alert_id = stack.alert(f"ai-pending,ai-round:11112222,{stale}")
    stack.plant_comment(alert_id, "[ai-triage round=11112222] earlier")  # the dead worker managed to post it
    stack.worker("wa").run_cycle()
    assert len(stack.iris.comments(alert_id)) == 1
    assert stack.ollama.calls == []
    assert stack.tags(alert_id) == ["ai-takeovers:1", "ai-reviewed"]


def test_an_analysis_from_an_earlier_round_does_not_block_a_requested_re_triage(stack):
    alert_id = stack.alert("ai-pending")
    # an analysis from a finished round; an analyst then asked for a new one
    stack.plant_comment(alert_id, "[ai-triage round=aaaa0000] old analysis")
    stack.worker("wa").run_cycle()
    assert len(stack.analyses(alert_id)) == 2
    assert stack.tags(alert_id) == ["ai-reviewed"]


def test_partitioned_instances_wait_before_helping_with_another_share(stack):
    ids = [stack.alert() for _unused in range(4)]
    first = stack.worker("w1", AI_WORKER_INSTANCE=1, AI_WORKER_INSTANCES=2, AI_WORKER_TAKEOVER_GRACE=1.5)
    first.run_cycle()  # instance 1 owns alert_id % 2 == 0
    reviewed = {i for i in ids if "ai-reviewed" in stack.tags(i)}
    assert reviewed == {i for i in ids if i % 2 == 0}
    first.run_cycle()  # the other share has not waited long enough yet
    assert {i for i in ids if "ai-reviewed" in stack.tags(i)} == reviewed
    time.sleep(1.6)
    first.run_cycle()  # instance 2 looks dead: its share is taken over
    assert all("ai-reviewed" in stack.tags(i) for i in ids)


def test_a_claim_without_enough_lease_left_is_released_not_processed(stack):
    """Second alert of a batch: the first took so long that finishing the second could outlive the lease."""
    first_id, second_id = stack.alert(), stack.alert()
    worker = stack.worker("wa", AI_WORKER_CLAIM_TIMEOUT=0.2, AI_WORKER_OLLAMA_TIMEOUT=1, AI_WORKER_IRIS_TIMEOUT=0.5,
                          AI_WORKER_CLAIM_TTL=5.2, AI_WORKER_CLOCK_SKEW=0)
    stack.ollama.latency = 0.9  # issue 23: the first alert's final write now waits for the batch, so it takes
    worker.run_cycle()          # only settle + model before the second's lease check; 0.6 s left enough lease
    assert stack.tags(first_id) == ["wazuh", "ai-reviewed"]
    second = stack.tags(second_id)
    assert "ai-pending" in second and not worker_tags.claim_tags(second)
    assert not worker_tags.tag_value(second, worker_tags.ATTEMPTS_PREFIX)
    assert stack.analyses(second_id) == []
    stack.ollama.latency = 0
    worker.run_cycle()
    assert stack.tags(second_id) == ["wazuh", "ai-reviewed"]
