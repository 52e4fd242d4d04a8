"""Fault proofs of the forwarder's delivery guarantees (docs/forwarder.md, "Delivery"), against the IRIS emulator.

Each test provokes the fault that would break one promise and checks the promise still holds: a kill at each
step of a send or a drain, an IRIS that commits after the client gave up, a 200 that is not IRIS's answer, an
alert IRIS always fails on, a server that echoes the API key, a full disk, text that is not valid Unicode.
Everything moves on events: the child process stops at a named fault point (socstack_core.faults, through
tests/support/fault_runner.py) and reports it on a pipe; the emulator holds a request on a threading.Event.
No test depends on how long anything takes, so they hold on a loaded machine.
"""
import errno
import json
import os
import signal

import pytest
from socstack_core import faults

from tests.support.forwarder import FaultyChild, Hook, alert, late_commit, refs

ALERT_STEPS = ["alert:spooled", "deliver:marked", "iris:post-sending", "iris:post-answered", "deliver:delivered"]


def server_error(status, message):
    return status, {"status": "error", "message": message, "data": []}


# --------------------------------------------------------------------------------- kill mid-send
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("point", ALERT_STEPS)
def test_a_kill_at_any_step_of_an_alert_run_neither_loses_nor_doubles_it(manager, emu, point, sig):
    child = FaultyChild(manager, manager.argv(alert(1)), pause=[point])
    child.reach(point)
    assert child.kill(sig) == -sig
    (item,) = manager.spooled()  # written before any network I/O, and still there
    assert item["source_ref"] == alert(1)["id"]
    assert item["state"] == "unknown"  # the run may have been anywhere in the send
    posts_before = len(manager.posts())

    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]  # exactly once
    assert manager.spooled() == []
    reached_iris = point in ("iris:post-answered", "deliver:delivered")
    assert len(manager.posts()) == posts_before + (0 if reached_iris else 1)
    if reached_iris:
        assert f"spooled alert {alert(1)['id']} is already IRIS alert" in manager.log()


# Issue 22: the mark before a send is written in place (file:mark), no longer as a new file (file:rename).
DRAIN_STEPS = ["drain:lookup", "file:mark", "deliver:marked", "iris:post-sending", "iris:post-answered",
               "deliver:delivered"]


@pytest.mark.parametrize("point", DRAIN_STEPS)
def test_a_kill_at_any_step_of_a_drain_neither_loses_nor_doubles(manager, emu, point):
    with Hook(emu, lambda phase, body: server_error(502, "Bad Gateway") if phase == "before" else None):
        assert manager.run(alert(1), options={"outage_backoff": 60}) == 2  # unknown: to be looked up first
    assert manager.run(alert(2), options={"outage_backoff": 60}) == 2  # within the backoff: spooled unsent
    assert [item["state"] for item in manager.spooled()] == ["unknown", "unsent"]

    child = FaultyChild(manager, manager.replay_argv(), pause=[point])
    child.reach(point)
    assert child.kill() == -signal.SIGKILL
    assert len(manager.spooled()) == 2 if point in ("drain:lookup", "file:mark") else len(manager.spooled()) >= 1
    assert not list((manager.state / "spool").glob(".tmp-*"))

    assert manager.replay() == 0
    assert sorted(refs(emu)) == sorted([alert(1)["id"], alert(2)["id"]])  # each exactly once
    assert manager.spooled() == []


def test_the_drain_never_touches_an_alert_another_process_is_sending(manager, emu):
    child = FaultyChild(manager, manager.argv(alert(1)), pause=["iris:post-sending"])
    child.reach("iris:post-sending")  # its file is in the spool, unknown, locked by the child
    requests = len(emu.request_log)
    assert manager.replay() == 0
    assert len(emu.request_log) == requests  # no lookup, no POST: the item is in flight elsewhere
    child.resume()
    assert child.finish() == 0
    assert refs(emu) == [alert(1)["id"]]
    assert manager.spooled() == []


# ------------------------------------------------------------------------- outcome not known
def test_an_iris_that_commits_after_the_client_gave_up_gets_the_alert_once(manager, emu):
    """nginx in front of IRIS waits 60 s for it; the forwarder only TIMEOUT. The replay must not look the
    alert up, let alone resend it, before the ambiguity window has passed since the send."""
    hook, release, committed = late_commit(emu)
    with hook:
        assert manager.run(alert(1), timeout="1", retries="3") == 2
        (item,) = manager.spooled()
        assert item["state"] == "unknown"
        assert len(manager.posts()) == 0  # the request is still held by the server...
        requests = len(emu.request_log)
        assert manager.replay(ambiguity_window=120) == 0
        assert len(emu.request_log) == requests  # ...and within the window nothing is asked or resent
        assert len(manager.spooled()) == 1
        release.set()
        assert committed.wait(60)  # IRIS commits the first request, long after the client's timeout
    assert manager.replay(ambiguity_window=0) == 0
    assert refs(emu) == [alert(1)["id"]]
    assert len(manager.posts()) == 1  # never re-POSTed: not by retries, not by the replay
    assert manager.spooled() == []


def test_an_ambiguous_alert_iris_never_got_is_resent_after_the_window(manager, emu):
    with Hook(emu, lambda phase, body: server_error(504, "Gateway Timeout") if phase == "before" else None):
        assert manager.run(alert(1)) == 2
    assert manager.replay(ambiguity_window=3600) == 0
    assert refs(emu) == []  # still within the window
    assert manager.replay(ambiguity_window=0) == 0
    assert refs(emu) == [alert(1)["id"]]
    assert any(entry[1].startswith("/alerts/filter?source_reference=") for entry in emu.request_log)


@pytest.mark.parametrize("reply", [
    (200, "<html><body>Welcome to nginx!</body></html>"),
    (200, {"unexpected": "shape"}),
    (201, {"status": "error", "message": "odd", "data": None}),
], ids=["html", "not-an-envelope", "error-envelope"])
def test_a_success_status_without_irises_envelope_is_an_unknown_outcome_not_a_resend(manager, emu, reply):
    """A proxy answering 200 with its own page after IRIS created the alert: never a second copy."""
    with Hook(emu, lambda phase, body: reply if phase == "after" else None):
        assert manager.run(alert(1)) == 2
    (item,) = manager.spooled()
    assert item["state"] == "unknown"
    assert "not IRIS's JSON success envelope" in item["last_error"]
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]
    assert len(manager.posts()) == 1


# -------------------------------------------------------------------------------- poison items
def test_items_iris_keeps_failing_back_off_and_never_starve_newer_ones(manager, emu):
    # Issue 22 changed the first round: two fresh alerts in a row answered 500 with nothing accepted look
    # like IRIS failing on every write (an outage), so that drain stops and counts nothing against them.
    emu.stop()
    for number in range(6):
        assert manager.run(alert(number)) == 2
    emu.start()
    poison = {alert(0)["id"], alert(1)["id"]}
    with Hook(emu, lambda phase, body: server_error(500, "boom") if phase == "before"
              and body["alert_source_ref"] in poison else None):
        assert manager.replay(replay_max_per_run=2, retry_backoff=3600) == 2  # 500, 500, nothing accepted
        assert all(item["failures"] == 0 for item in manager.spooled())
        for _round in range(2):  # the suspects go last: the newer alerts flow
            assert manager.replay(replay_max_per_run=2, retry_backoff=3600) == 0
        assert sorted(refs(emu)) == sorted(alert(number)["id"] for number in range(2, 6))
        for number in (10, 11):  # an alert run with IRIS accepting its alert counts the probed suspect's 500
            assert manager.run(alert(number), options={"retry_backoff": 3600}) == 0
    waiting = manager.spooled()
    assert sorted(item["source_ref"] for item in waiting) == sorted(poison)
    assert all(item["failures"] == 1 and item["not_before"] > item["created"] for item in waiting)


def test_an_alert_iris_always_fails_on_goes_to_rejected_after_the_bounded_attempts(manager, emu):
    # Issue 22: only failures while IRIS accepts other alerts count; here each round's new alert is accepted.
    with Hook(emu, lambda phase, body: server_error(500, "Internal Server Error") if phase == "before"
              and body["alert_source_ref"] == alert(1)["id"] else None):
        assert manager.run(alert(1), options={"poison_max_attempts": 3}) == 2
        for number in range(3):
            assert manager.run(alert(10 + number), options={"poison_max_attempts": 3}) == 0
    assert manager.spooled() == []
    (name,) = manager.rejected()
    kept = json.loads((manager.state / "rejected" / name).read_text())
    assert kept["source_ref"] == alert(1)["id"]
    # alert 1: its first 500 came in a run where IRIS accepted nothing (not counted), then 3 counted ones
    assert len(manager.posts()) == 4 + 3
    log = manager.log()
    assert log.count(f"alert {alert(1)['id']} moved to rejected/: IRIS failed on it 3 time(s)") == 1
    assert refs(emu) == [alert(10 + number)["id"] for number in range(3)]


# ------------------------------------------------------------------------------------- secrets
def test_a_key_echoed_by_iris_reaches_no_file(manager, emu):
    key = manager.api_key
    replies = {alert(1)["id"]: (500, f"boom, token {key}"), alert(2)["id"]: (503, f"busy Bearer {key}"),
               alert(3)["id"]: (400, f"bad request from {key}")}
    with Hook(emu, lambda phase, body: server_error(*replies[body["alert_source_ref"]]) if phase == "before"
              else None):
        assert manager.run(alert(3), debug="debug") == 4
        assert manager.run(alert(1), debug="debug") == 2
        assert manager.run(alert(2), debug="debug", options={"outage_backoff": 60}) == 2
    written = manager.files_written()
    names = {path.name for path, _data in written}
    assert {"unavailable", "lookups.json", "integrations.log"} <= names
    assert len([path for path, _data in written if path.parent.name == "spool"]) == 2
    assert len([path for path, _data in written if path.parent.name == "rejected"]) == 1
    for path, data in written:
        assert key.encode() not in data, path
    assert "busy Bearer ***" in (manager.state / "unavailable").read_text()


# ------------------------------------------------------------------------------------ full disk
def full_disk(monkeypatch, code=errno.ENOSPC):
    def no_space(_fd, _data):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "write", no_space)


def temp_files(manager):
    return list(manager.root.rglob(".tmp-*"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_disk_delivers_without_write_ahead_and_says_so(manager, emu, monkeypatch, code):
    full_disk(monkeypatch, code)
    assert manager.run(alert(1)) == 7
    monkeypatch.undo()
    assert refs(emu) == [alert(1)["id"]]
    assert f"alert {alert(1)['id']} -> IRIS alert 1, delivered WITHOUT write-ahead" in manager.log()
    assert temp_files(manager) == []


def test_a_full_disk_with_iris_down_loses_the_alert_loudly(manager, emu, monkeypatch):
    emu.stop()
    full_disk(monkeypatch)
    assert manager.run(alert(1)) == 6
    monkeypatch.undo()
    assert f"alert {alert(1)['id']} LOST" in manager.log()
    assert temp_files(manager) == []


def test_a_spool_that_filled_its_own_disk_still_drains(manager, emu, monkeypatch):
    # Issue 22 changed this expectation (it was: exit 7 and nothing sent until space is back). The unknown mark
    # is written in place, so it needs no free space: a backlog that filled the disk drains itself.
    emu.stop()
    for number in range(3):
        assert manager.run(alert(number)) == 2
    emu.start()
    full_disk(monkeypatch)
    assert manager.replay() == 0
    monkeypatch.undo()
    assert refs(emu) == [alert(number)["id"] for number in range(3)]
    assert manager.spooled() == []
    assert temp_files(manager) == []


def test_a_failure_between_write_and_rename_leaves_no_temp_file(manager, emu, monkeypatch):
    def fail_rename(name):
        if name == "file:rename":
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(faults, "hook", fail_rename)
    assert manager.run(alert(1)) == 7
    monkeypatch.undo()
    assert temp_files(manager) == []
    assert refs(emu) == [alert(1)["id"]]


# ------------------------------------------------------------------------------- hostile input
def test_valid_json_that_is_not_valid_unicode_is_delivered_with_a_note(manager, emu):
    raw = b'{"id": "1.5", "rule": {"level": 5, "description": "x\\ud800y", "id": "1"}, "agent": {"name": "a"},' \
          b' "full_log": "log \\udfff line"}'
    assert manager.run(raw) == 0
    (created,) = emu.alerts()
    assert created["alert_title"].startswith("x\ufffdy")
    assert "lone surrogates" in created["alert_description"]


def test_json_nested_too_deep_is_kept_in_rejected_with_the_reason(manager, emu):
    assert manager.run(b'{"id": "1.6", "a": ' + b"[" * 100000 + b"]" * 100000 + b"}") == 3
    (name,) = manager.rejected()
    assert name.endswith("-unparsed.alert")
    assert "nested too deeply" in manager.log()
    assert emu.alerts() == []


def test_json_nested_deep_but_parseable_is_delivered_cut(manager, emu):
    assert manager.run(b'{"id": "1.7", "a": ' + b"[" * 900 + b"]" * 900 + b"}") == 0
    (created,) = emu.alerts()
    assert "nested deeper than" in created["alert_description"]
