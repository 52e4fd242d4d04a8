"""Regressions of issue 22: faults outside the earlier lists, each of which broke a promise of the forwarder.

One test (or more) per defect; each failed on the code before the fix (the docstring says how). Faults are
made with events, hooks and patched clocks, never with sleeps, so they hold on a loaded machine.
"""
import errno
import json
import os
import threading
import time

import pytest
from iris_forwarder import routing
from socstack_core import clock

from tests.support.forwarder import Hook, alert, late_commit, refs

FILTER = "/alerts/filter"


def envelope(status, message):
    return status, {"status": "error", "message": message, "data": []}


def leaked(text, key, width=16):
    """The first run of `width` consecutive characters of key found in text, or None."""
    for start in range(len(key) - width + 1):
        if key[start:start + width] in text:
            return key[start:start + width]
    return None


def assert_no_key_anywhere(manager, *texts):
    key = manager.api_key
    for path, data in manager.files_written():
        assert leaked(data.decode("utf-8", "replace"), key) is None, path
    for text in texts:
        assert leaked(text, key) is None, text


# --------------------------------------------------------------------- server-wide write failure
def test_iris_failing_every_write_is_an_outage_and_rejects_nothing(manager, emu):
    """Was: each alert counted its own 500s as poison; after poison_max_attempts all went to rejected/."""
    with Hook(emu, lambda phase, body: envelope(500, "could not write: disk full") if phase == "before" else None):
        for number in range(6):
            assert manager.run(alert(number), options={"poison_max_attempts": 2}) == 2
        for _round in range(4):
            assert manager.replay(poison_max_attempts=2) in (0, 2)
        assert emu.alerts() == []
    assert manager.rejected() == []
    assert all(item["failures"] == 0 for item in manager.spooled())
    assert "moved to rejected" not in manager.log()
    for _round in range(2):
        assert manager.replay() == 0
    assert sorted(refs(emu)) == sorted(alert(number)["id"] for number in range(6))  # each exactly once
    assert manager.spooled() == []


def test_a_server_wide_write_failure_sets_the_outage_marker(manager, emu):
    with Hook(emu, lambda phase, body: envelope(500, "read-only transaction") if phase == "before" else None):
        emu.stop()
        for number in range(3):
            manager.run(alert(number))
        emu.start()
        assert manager.replay(outage_backoff=60) == 2
    assert (manager.state / "unavailable").exists()


# ------------------------------------------------------------------------------ mask, then cut
@pytest.mark.parametrize("reply", ["html", "envelope"])
def test_a_key_straddling_the_cut_of_a_server_message_is_masked(manager, emu, reply):
    """Was: the message was cut (300 bytes / 500 characters) before masking; the key minus its tail survived."""
    key = manager.api_key
    if reply == "html":  # not IRIS's envelope: its body is cut at 300 characters, the key crosses the cut
        answer = (500, {"detail": "x" * (300 - len('{"detail": "') - len(key) // 2) + key})
    else:
        answer = envelope(503, "y" * (500 - len(key) // 2) + key)
    with Hook(emu, lambda phase, data: answer if phase == "before" else None):
        assert manager.run(alert(1), debug="debug", options={"outage_backoff": 60}) == 2
    assert_no_key_anywhere(manager, manager.log())


def test_the_connection_check_masks_before_it_cuts(manager, emu, capsys):
    key = manager.api_key
    hook = Hook(emu, lambda phase, body: envelope(503, "z" * (500 - len(key) // 2) + key) if phase == "before"
                else None, method="GET", path="/api/ping")
    with hook:
        code, lines, err = manager.check(capsys)
    assert code == 2
    assert leaked("\n".join(lines) + err, key) is None


# ------------------------------------------------------------------------------------ outage marker
def test_the_outage_marker_is_not_refreshed_by_runs_that_did_not_ask_iris(manager, emu):
    """Was: every run held back by outage_backoff rewrote the marker, so alert mode never tried IRIS again."""
    emu.stop()
    assert manager.run(alert(1), options={"outage_backoff": 60}) == 2
    marker = manager.state / "unavailable"
    reason = marker.read_text().split("\n", 1)[1]
    marker.write_text(f"{clock.boot_id()}@{clock.boot_seconds() - 50:.3f}\n{reason}")
    before = marker.read_bytes()
    assert manager.run(alert(2), options={"outage_backoff": 60}) == 2  # held back: IRIS not asked
    assert marker.read_bytes() == before  # not refreshed
    emu.start()
    marker.write_text(f"{clock.boot_id()}@{clock.boot_seconds() - 61:.3f}\n{reason}")
    assert manager.run(alert(3), options={"outage_backoff": 60}) == 0
    assert sorted(refs(emu)) == sorted(alert(n)["id"] for n in (1, 2, 3))


# ------------------------------------------------------------------------------------------- clocks
def test_a_clock_stepped_forward_does_not_resend_an_alert_still_in_flight(manager, emu, monkeypatch):
    """Was: the ambiguity window was wall-clock time; a step forward ended it while IRIS still worked: 2 copies."""
    hook, release, committed = late_commit(emu)
    with hook:
        assert manager.run(alert(1), timeout="1") == 2
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 86400)  # NTP steps the clock a day forward
        assert manager.replay(ambiguity_window=120) == 0
        assert len(manager.posts()) == 0 and len(manager.spooled()) == 1  # not looked up, not resent
        release.set()
        assert committed.wait(60)
    monkeypatch.undo()
    assert manager.replay(ambiguity_window=0) == 0
    assert refs(emu) == [alert(1)["id"]]


def confirmed_failure(manager, emu, **options):
    """Alert 1 spooled with one counted 500 (IRIS accepted alert 9 in the same run) and its retry backoff."""
    with Hook(emu, lambda phase, body: envelope(500, "boom") if phase == "before"
              and body["alert_source_ref"] == alert(1)["id"] else None):
        assert manager.run(alert(1), options=options) == 2
        assert manager.run(alert(9), options=options) == 0
    (item,) = manager.spooled()
    assert item["failures"] == 1
    return item


def test_a_clock_stepped_back_does_not_hold_a_retry_for_a_day(manager, emu, monkeypatch):
    """Was: not_before was wall time; a clock set back a day made the item wait a day, with no log line."""
    confirmed_failure(manager, emu, retry_backoff=60)
    real_time, real_boot = time.time, clock.boot_seconds
    monkeypatch.setattr(time, "time", lambda: real_time() - 86400)
    monkeypatch.setattr(clock, "boot_seconds", lambda: real_boot() + 61)  # the backoff really passed
    assert manager.replay(retry_backoff=60) == 0
    assert alert(1)["id"] in refs(emu)


def test_a_retry_time_from_another_boot_further_than_the_backoff_is_not_waited_for(manager, emu):
    """After a reboot only the wall clock is left: a retry time further away than the backoff is clamped."""
    item = confirmed_failure(manager, emu, retry_backoff=60)
    (path,) = (manager.state / "spool").glob("*.json")
    document = json.loads(path.read_text())
    document.update(failed_clock="another-boot@5.0", not_before=time.time() + 86400)
    path.write_text(json.dumps(document))
    assert manager.replay(retry_backoff=60) == 0
    assert item["source_ref"] in refs(emu)
    assert "more than its backoff" in manager.log()


@pytest.mark.parametrize("value", [1e308, "1e308", float("inf")], ids=["1e308", "text", "inf"])
def test_a_corrupt_not_before_does_not_wait_forever(manager, emu, value):
    """Was: not_before 1e308 was compared with the time as it is: the item waited for ever."""
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    (path,) = (manager.state / "spool").glob("*.json")
    document = json.loads(path.read_text())
    document["not_before"] = value
    path.write_text(json.dumps(document, allow_nan=True))
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]


# ---------------------------------------------------------------- proxies answering after creating
@pytest.mark.parametrize("status", [503, 429, 404, 502])
def test_an_error_after_iris_created_the_alert_never_gives_two_copies(manager, emu, status):
    """Was: 503/429 (unavailable) and 404 (config) were definite failures: the alert was sent again."""
    with Hook(emu, lambda phase, body: envelope(status, "upstream reset") if phase == "after" else None):
        assert manager.run(alert(1)) in (2, 5)
    (item,) = manager.spooled()
    assert item["state"] == "unknown"
    assert len(emu.alerts()) == 1  # IRIS has it
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]
    assert len(manager.posts()) == 1
    assert any(entry[1].startswith(FILTER) for entry in emu.request_log)


# ----------------------------------------------------------------------------------- spool contents
@pytest.mark.parametrize("change", [
    {"severity": 5}, {"status": ["New"]}, {"payload": []}, {"source_ref": 7}, {"customer": {"a": 1}},
    {"attempts": "many", "created": None, "mark": 3},
], ids=["severity", "status", "payload", "source_ref", "customer", "numbers-and-mark"])
def test_a_spool_item_with_wrong_field_types_goes_to_rejected_instead_of_crashing(manager, emu, change):
    """Was: AttributeError/KeyError/TypeError, exit 1 on every run, and the item was never moved."""
    emu.stop()
    assert manager.run(alert(1)) == 2
    assert manager.run(alert(2)) == 2
    emu.start()
    first = sorted((manager.state / "spool").glob("*.json"))[0]
    document = json.loads(first.read_text())
    document.update(change)
    first.write_text(json.dumps(document))
    assert manager.replay() == 0
    numbers_only = "attempts" in change  # defaults taken; a damaged mark makes it unknown: looked up first
    assert manager.rejected() == ([] if numbers_only else [first.name])
    assert sorted(refs(emu)) == sorted(alert(n)["id"] for n in ((1, 2) if numbers_only else (2,)))


def test_a_fifo_named_like_a_spool_file_does_not_hang_a_drain(manager, emu):
    """Was: the drain opened every *.json, and opening a FIFO blocks until a writer comes: for ever."""
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    os.mkfifo(manager.state / "spool" / "00000000000000000000-fifo.json")
    result = []
    runner = threading.Thread(target=lambda: result.append(manager.replay()), daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the drain hangs on the FIFO"
    assert result == [0]
    assert refs(emu) == [alert(1)["id"]]


# ------------------------------------------------------------------------------------------ smaller
def test_a_node_name_holding_a_colon_cannot_make_two_alerts_one():
    """Was: <node>:<id> with node 'a:1', id '2' and node 'a', id '1:2' gave the same reference."""
    first = routing.source_ref({"manager": {"name": "a:1"}}, "2")
    second = routing.source_ref({"manager": {"name": "a"}}, "1:2")
    assert first != second
    assert routing.source_ref({"manager": {"name": "wazuh-1"}}, "5.6") == "wazuh-1:5.6"  # unchanged without ':'


def test_a_key_file_every_user_can_read_is_refused(manager, emu):
    """Was: the key file's mode was never checked."""
    manager.key_file.chmod(0o644)
    assert manager.run(alert(1), options={"api_key_file": str(manager.key_file)}) == 5
    assert "is open to every local user (mode 0644)" in manager.log()
    assert refs(emu) == []
    assert len(manager.spooled()) == 1


def test_an_agent_controlled_megabyte_label_is_bounded_in_the_log(manager, emu):
    """Was: a 1 MB agent label (the routed customer name) was copied whole into a log line."""
    label = "L" * (1024 * 1024)
    code = manager.run(alert(1, agent={"name": "a", "labels": {"customer": label}}), debug="debug",
                       options={"customer_field": "agent.labels.customer"})
    assert code == 4  # IRIS has no such customer: rejected/
    assert all(len(line) < 70 * 1024 for line in manager.log().splitlines())


def test_millions_of_tiny_values_are_refused_before_they_cost_seconds_and_gigabytes(manager, emu):
    """Was: 6 M tiny lists took 29 s and 1.7 GiB before the first network call (past the run's deadline)."""
    raw = b'{"id": "1.9", "a": [' + b",".join([b"[]"] * 300_000) + b"]}"
    started = time.process_time()
    assert manager.run(raw) == 3
    assert time.process_time() - started < 5
    assert "more than 200000" in manager.log()
    assert emu.alerts() == []


def test_the_mark_before_a_send_needs_no_free_space(manager, emu, monkeypatch):
    """Was: every send first rewrote its item (a new file the item's size): with a full disk, nothing drained."""
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()

    def no_space(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", no_space)
    assert manager.replay() == 0
    monkeypatch.undo()
    assert refs(emu) == [alert(1)["id"]]
