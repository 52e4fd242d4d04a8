"""The history replay (iris_ai_worker.heal): what a late write left behind is undone, an analyst's change wins."""
from iris_ai_worker import heal

WORKER, ANALYST = 3, 2


def entry(user, old=None, new=None, owner=None):
    parts = []
    if old is not None:
        parts.append(f'"alert_tags" from "{old}" to "{new}"')
    if owner is not None:
        parts.append(f'"alert_owner_id" from "{owner[0]}" to "{owner[1]}"')
    return {"user": f"u{user}", "user_id": user, "action": "updated alert: " + ",".join(parts)}


def history(*entries):
    return {f"{1000.0 + n}": e for n, e in enumerate(entries)}


def alert(tags, owner, *entries):
    return {"alert_id": 1, "alert_tags": tags, "alert_owner_id": owner, "modification_history": history(*entries)}


CLAIMED = "wazuh,ai-pending,ai-round:r1,ai-processing,ai-claim:1:100:aa"


def test_a_normal_history_needs_no_healing():
    done = alert("wazuh,ai-reviewed", None,
                 entry(WORKER, "wazuh,ai-pending", CLAIMED, owner=("None", "-1")),
                 entry(WORKER, CLAIMED, "wazuh,ai-reviewed"))
    assert heal.healed(done) is None


def test_a_claim_that_lands_after_the_review_is_undone_and_the_analyst_wins():
    late = alert(CLAIMED.replace("aa", "bb"), None,
                 entry(WORKER, "wazuh,ai-pending", CLAIMED),
                 entry(WORKER, CLAIMED, "wazuh,ai-reviewed"),
                 entry(ANALYST, "wazuh,ai-reviewed", "wazuh,ai-reviewed,escalated", owner=("None", "2")),
                 entry(WORKER, "wazuh,ai-reviewed,escalated", CLAIMED.replace("aa", "bb"), owner=("2", "-1")))
    tags, owner = heal.healed(late)
    assert set(tags) == {"wazuh", "ai-reviewed", "escalated"} and owner == ANALYST


def test_a_final_write_that_crossed_an_analysts_edit_keeps_the_edit():
    crossed = alert("wazuh,ai-reviewed", None,
                    entry(WORKER, "wazuh,ai-pending", CLAIMED),
                    entry(ANALYST, CLAIMED, CLAIMED + ",escalated", owner=("None", "2")),
                    entry(WORKER, CLAIMED + ",escalated", "wazuh,ai-reviewed", owner=("2", "-1")))
    tags, owner = heal.healed(crossed)
    assert set(tags) == {"wazuh", "ai-reviewed", "escalated"} and owner == ANALYST


def test_a_given_up_claim_is_removed_without_a_takeover():
    parked = alert(CLAIMED, None, entry(WORKER, "wazuh,ai-pending", CLAIMED))
    assert heal.healed(parked) is None  # nobody knows it was given up...
    tags, _owner = heal.healed(parked, disowned={"ai-claim:1:100:aa"})  # ...but its worker does
    assert tags == ["wazuh", "ai-pending"]


def test_an_analysts_requeue_is_a_new_round_not_a_stale_write():
    requeued = alert("wazuh,ai-pending", None,
                     entry(WORKER, "wazuh,ai-pending", CLAIMED),
                     entry(WORKER, CLAIMED, "wazuh,ai-reviewed"),
                     entry(ANALYST, "wazuh,ai-reviewed", "wazuh,ai-pending"))
    assert heal.healed(requeued) is None


def test_a_history_that_does_not_explain_the_alert_changes_nothing():
    edited_outside = alert("wazuh,ai-pending,other", None, entry(WORKER, "wazuh,ai-pending", CLAIMED))
    assert heal.healed(edited_outside) is None
    assert heal.healed({"alert_id": 1, "alert_tags": "a", "modification_history": "garbage"}) is None


def test_the_journal_keeps_each_unanswered_write(tmp_path):
    now = [0.0]
    journal = heal.Suspects(str(tmp_path), "1", window=10, wall=lambda: now[0])
    journal.sending(5, round_id="r")  # held: never answered
    journal.sending(5, round_id="r")  # the retry, answered
    journal.answered(5, round_id="r")
    journal.sending(6, token="ai-claim:1:1:x")
    journal.answered(6, token="ai-claim:1:1:x")
    reloaded = heal.Suspects(str(tmp_path), "1", window=10, wall=lambda: now[0])  # a restart reads the file
    assert reloaded.due(10) == [(5, frozenset(), ["r"])]
    assert reloaded.due(10) == []  # re-checked after a gap that doubles
    now[0] = heal.RECHECK_FIRST
    assert reloaded.due(10) == [(5, frozenset(), ["r"])]
    now[0] = 11
    assert journal.due(10) == []  # past the window


def test_a_claim_left_by_the_replay_keeps_ai_processing_beside_it():
    """Found by the 240-alert test: the skipped entry was the one that added ai-processing; a takeover after
    it changed only the claim. The replay keeps the pair together."""
    taken = CLAIMED.replace("aa", "cc") + ",ai-takeovers:1"
    alert_ = alert(taken, None,
                   entry(WORKER, "wazuh,ai-pending", CLAIMED),
                   entry(4, CLAIMED, taken))
    tags, _owner = heal.healed(alert_, disowned={"ai-claim:1:100:aa"})
    assert "ai-claim:1:100:cc" in tags and "ai-processing" in tags
