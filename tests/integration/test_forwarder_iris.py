"""Tests of the forwarder (files/integrations/iris_forwarder/ and its launcher custom-wazuh_iris.py)
against the IRIS emulator (127.0.0.1, ephemeral ports).

Most runs call the program's main() in this process with the argv integratord builds; a few run it as
a subprocess exactly like integratord (argv[0] "integrations", the literal "> /dev/null 2>&1" element,
cwd standing in for /var/ossec), through the launcher installed the way the role installs it: the
``install`` recipe of tests/bench/bench_forwarder.py, so that the tests and the benchmark check the
same layout (shebang ``#!<python> -IS``, packages beside it, bytecode made by compileall).
The harness is tests/support/forwarder.py; the fixtures are in tests/integration/conftest.py. The
fault proofs of the delivery guarantees are in test_forwarder_faults.py.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from socstack_core import clock, tls
from socstack_core.log import Log

from tests.bench.bench_forwarder import install, loads_precompiled
from tests.support.forwarder import (
    ALERT_A,
    ALERT_B,
    LAUNCHER,
    REDIRECT,
    SEVERITY_IDS,
    STATUS_ASSIGNED,
    STATUS_NEW,
    Hook,
    alert,
    refs,
    reply_once,
    run_like_integratord,
    wait_for,
)


# ----------------------------------------------------------------------------------- delivery
def test_inline_alerts_arrive_with_severity_and_status_by_name(manager, emu):
    assert manager.run(ALERT_A) == 0
    assert manager.run(ALERT_B) == 0
    first, second = emu.alerts()
    assert (first["alert_source_ref"], first["alert_severity_id"]) == (ALERT_A["id"], SEVERITY_IDS["Informational"])
    assert (second["alert_source_ref"], second["alert_severity_id"]) == (ALERT_B["id"], SEVERITY_IDS["High"])
    assert first["severity"]["severity_name"] == "Informational"
    assert second["severity"]["severity_name"] == "High"
    assert {first["alert_status_id"], second["alert_status_id"]} == {STATUS_NEW}
    assert second["alert_source_event_time"] == "2022-05-11T12:29:19"
    assert second["alert_tags"] == "wazuh,agent:wazuh-manager,rule:5712,T1110"
    assert second["alert_source"] == "Wazuh"
    assert second["alert_customer_id"] == 1
    assert second["alert_source_content"] == ALERT_B
    assert f"alert {ALERT_B['id']} -> IRIS alert {second['alert_id']}" in manager.log()


def test_nul_characters_in_text_fields_are_replaced_and_the_alert_arrives(manager, emu):
    """IRIS 2.4.20 refuses a NUL in a text column (400 "A string literal cannot contain NUL (0x00) characters.";
    found by test_iris_real.py against a real IRIS, 2026-12-07): the forwarder puts U+FFFD in its place and says
    so; the source content (a JSON column) keeps the NUL."""
    assert manager.run(alert(1, full_log="sshd[1]: user a\x00b", agent={"id": "001", "name": "web\x00"})) == 0
    assert manager.rejected() == []
    (created,) = emu.alerts()
    assert created["alert_title"].endswith("(web\ufffd)")
    assert "agent:web\ufffd" in created["alert_tags"]
    assert "NUL characters in alert_title, alert_description, alert_tags replaced by U+FFFD" in (
        created["alert_description"])
    assert "\x00" not in created["alert_description"]
    assert created["alert_source_content"]["full_log"] == "sshd[1]: user a\x00b"


def test_every_sample_alert_is_delivered(manager, emu, shared_reference):
    expected = {}
    for sample in sorted((shared_reference / "sample-alerts").glob("*.json")):
        content = json.loads(sample.read_text())
        assert manager.run(content) == 0, sample.name
        level = content["rule"]["level"]
        name = manager.fw.severity_for_level(level, manager.fw.default_options()["severity_by_level"])
        expected[f"{content['manager']['name']}:{content['id']}"] = SEVERITY_IDS[name]  # unique across nodes
    got = {a["alert_source_ref"]: a["alert_severity_id"] for a in emu.alerts()}
    assert got == expected
    assert set(got.values()) >= {SEVERITY_IDS["High"], SEVERITY_IDS["Medium"], SEVERITY_IDS["Low"],
                                 SEVERITY_IDS["Informational"]}


def test_status_option_and_customer_option(manager, emu):
    customer = emu.add_customer("Acme")
    with emu.lock:
        user = next(u for u in emu.state["users"] if u["login"] == "wazuh-forwarder")
        user["customers"].append(customer)
    options = {"status": "assigned", "customer_id": customer, "severity_by_level": {"0-15": "critical"}}
    assert manager.run(ALERT_A, options=options) == 0
    (created,) = emu.alerts()
    assert (created["alert_status_id"], created["alert_customer_id"]) == (STATUS_ASSIGNED, customer)
    assert created["alert_severity_id"] == SEVERITY_IDS["Critical"]


def test_lookup_cache_makes_the_common_path_one_request(manager, emu):
    assert manager.run(alert(1)) == 0
    first = list(emu.request_log)
    assert [entry[1] for entry in first] == ["/manage/severities/list", "/manage/alert-status/list", "/alerts/add"]
    assert manager.run(alert(2)) == 0
    assert [entry[1] for entry in emu.request_log[len(first):]] == ["/alerts/add"]

    cache = manager.state / "lookups.json"
    stale = json.loads(cache.read_text())
    stale["fetched"] -= 3601  # older than the default cache_ttl
    cache.write_text(json.dumps(stale))
    before = len(emu.request_log)
    assert manager.run(alert(3)) == 0
    assert len(emu.request_log) - before == 3

    before = len(emu.request_log)
    assert manager.run(alert(4), options={"cache_ttl": 0}) == 0
    assert len(emu.request_log) - before == 3


def test_cache_of_another_iris_is_not_used(manager, emu):
    cache = manager.state / "lookups.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"url": "https://other:443", "fetched": time.time(),
                                 "severities": {"High": 77}, "statuses": {"New": 77}}))
    assert manager.run(alert(1)) == 0
    assert emu.alerts()[0]["alert_severity_id"] == SEVERITY_IDS["High"]


def test_stale_cached_ids_are_refreshed_once(manager, emu):
    assert manager.run(alert(1)) == 0
    cache = manager.state / "lookups.json"
    wrong = json.loads(cache.read_text())
    wrong["severities"]["High"] = 99  # as if IRIS had been reinstalled with other ids
    cache.write_text(json.dumps(wrong))
    assert manager.run(alert(2)) == 0
    assert [a["alert_severity_id"] for a in emu.alerts()] == [5, 5]
    assert "refreshing them" in manager.log()
    assert json.loads(cache.read_text())["severities"]["High"] == 5


def test_unknown_severity_name_is_a_clear_error_and_the_alert_waits(manager, emu):
    assert manager.run(alert(1), options={"severity_by_level": {"0-15": "Severe"}}) == 5
    log = manager.log()
    assert "IRIS has no severity named 'Severe' (option severity_by_level)" in log
    assert "IRIS knows: Critical, High, Informational, Low, Medium, Unspecified" in log
    assert emu.alerts() == []
    (item,) = manager.spooled()
    assert item["severity"] == "Severe"
    item_path = next((manager.state / "spool").glob("*.json"))
    item["severity"] = "High"  # what an operator would do after fixing the options: fix or re-queue
    item_path.write_text(json.dumps(item))
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]


def test_unknown_status_name(manager, emu):
    assert manager.run(alert(1), options={"status": "Brand new"}) == 5
    assert "IRIS has no alert status named 'Brand new' (option status)" in manager.log()


# ------------------------------------------------------------------------------- store-and-forward
def test_503_spools_the_alert_and_the_next_run_drains_it_first(manager, emu):
    # Issue 22 changed this expectation: a proxy answers 503 also AFTER forwarding the request to IRIS, so a
    # 503 is an unknown outcome (looked up before the resend), no longer "IRIS did not take it".
    with Hook(emu, reply_once(503, "Service Unavailable")):
        assert manager.run(alert(1)) == 2
    (item,) = manager.spooled()
    assert (item["source_ref"], item["state"]) == (alert(1)["id"], "unknown")
    assert "kept in the spool: IRIS may have it" in manager.log()
    assert manager.run(alert(2)) == 0
    assert refs(emu) == [alert(1)["id"], alert(2)["id"]]
    assert manager.spooled() == []
    assert any(entry[1].startswith("/alerts/filter") for entry in emu.request_log)  # looked up before the resend
    assert "spool drain: 1 sent, 0 already present, 0 rejected" in manager.log()


def test_429_is_transient(manager, emu):
    with Hook(emu, reply_once(429, "Too many requests")):
        assert manager.run(alert(1)) == 2
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]


def test_4xx_is_a_permanent_rejection(manager, emu):
    with Hook(emu, reply_once(400, "{'alert_title': ['Not a valid string.']}")):
        assert manager.run(alert(1)) == 4
    assert manager.spooled() == []
    (name,) = manager.rejected()
    kept = json.loads((manager.state / "rejected" / name).read_text())
    assert kept["source_ref"] == alert(1)["id"]
    assert "HTTP 400: {'alert_title': ['Not a valid string.']}" in kept["rejected_reason"]
    assert "IRIS rejected alert 1700000000.1: POST /alerts/add -> HTTP 400" in manager.log()


def test_a_rejected_spooled_item_does_not_block_the_others(manager, emu):
    emu.stop()
    assert manager.run(alert(1)) == 2
    assert manager.run(alert(2)) == 2
    emu.start()
    with Hook(emu, reply_once(413, "too large")):
        assert manager.replay() == 0
    assert refs(emu) == [alert(2)["id"]]
    assert len(manager.rejected()) == 1


def test_http_500_on_one_item_lets_the_drain_go_on(manager, emu):
    emu.stop()
    for number in (1, 2, 3):
        assert manager.run(alert(number)) == 2
    emu.start()

    def fail_number_two(phase, body):
        if phase == "before" and body["alert_source_ref"] == alert(2)["id"]:
            return 500, {"status": "error", "message": "boom", "data": []}
        return None
    with Hook(emu, fail_number_two):
        assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"], alert(3)["id"]]
    (item,) = manager.spooled()
    assert (item["source_ref"], item["attempts"], item["state"]) == (alert(2)["id"], 1, "unknown")
    assert manager.replay() == 0  # checks first (it may have been created), then sends
    assert sorted(refs(emu)) == sorted(alert(n)["id"] for n in (1, 2, 3))


def test_wrong_api_key_keeps_the_alert(manager, emu):
    wrong = "W" * 64
    assert manager.run(alert(1), key=wrong) == 5
    assert "HTTP 401: Authentication required (check the API key" in manager.log()
    assert wrong not in manager.log()
    assert len(manager.spooled()) == 1


def test_user_not_linked_to_the_customer_keeps_the_alert(manager, emu):
    other = emu.add_customer("Globex")
    assert manager.run(alert(1), options={"customer_id": other}) == 5
    assert "not entitled" in manager.log()
    assert len(manager.spooled()) == 1


# ------------------------------------------------------------------------------------ deduplication
def test_timeout_after_the_request_was_sent_is_checked_before_resending(manager, emu):
    def slow_answer(phase, body):
        if phase == "after":
            time.sleep(3)  # IRIS created the alert; the answer comes after the client gave up
    with Hook(emu, slow_answer):
        started = time.monotonic()
        assert manager.run(alert(1), timeout="1") == 2
        assert time.monotonic() - started < 2.5
    (item,) = manager.spooled()
    assert item["state"] == "unknown"
    assert refs(emu) == [alert(1)["id"]]  # created before the "after" hook ran

    posts = len(manager.posts())
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]
    assert len(manager.posts()) == posts
    assert any(entry[1].startswith("/alerts/filter?source_reference=1700000000.1&") for entry in emu.request_log)
    assert "spooled alert 1700000000.1 is already IRIS alert 1; not sent again" in manager.log()
    assert manager.spooled() == []


def test_ambiguous_failure_without_creation_is_sent_once_despite_substring_matches(manager, emu):
    ref = alert(1)["id"]
    for near in (ref + "0", "x" + ref):  # the filter is a substring match: these must not count
        emu.create_alert(alert_title="near miss", alert_severity_id=4, alert_status_id=2, alert_customer_id=1,
                         alert_source_ref=near)
    with Hook(emu, reply_once(502, "Bad Gateway")):
        assert manager.run(alert(1)) == 2
    assert manager.spooled()[0]["state"] == "unknown"
    assert manager.replay() == 0
    assert refs(emu).count(ref) == 1
    assert len(emu.alerts()) == 3


def test_crash_after_iris_said_yes_does_not_duplicate(manager, emu, monkeypatch):
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    fw = manager.fw

    def crash(self, held):
        raise OSError("disk vanished")
    monkeypatch.setattr(fw.Spool, "done", crash)
    assert manager.replay() == 1  # IRIS has the alert, the spool could not record it
    monkeypatch.undo()
    assert manager.spooled()[0]["state"] == "unknown"  # written before the request went out
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]


# ----------------------------------------------------------------------------------------- outage
def test_outage_of_50_alerts_then_each_arrives_exactly_once(manager, emu):
    emu.stop()
    for number in range(50):
        assert manager.run(alert(number), options={"outage_backoff": 30}) == 2
    assert len(manager.spooled()) == 50
    assert "not retried before outage_backoff" in manager.log()
    emu.start()
    assert manager.replay() == 0
    assert refs(emu) == [alert(number)["id"] for number in range(50)]  # oldest first, once each
    assert len(manager.posts()) == 50
    assert manager.spooled() == []


def age_marker(marker, seconds):
    """Make the outage marker as old as seconds: it is timed on the boot clock (its first line), not its mtime."""
    reason = marker.read_text().split("\n", 1)[1]
    marker.write_text(f"{clock.boot_id()}@{clock.boot_seconds() - seconds:.3f}\n{reason}")


def test_outage_backoff_spools_without_waiting_for_iris(manager, emu):
    def hang(phase, body):
        if phase == "before":
            time.sleep(1.2)
            return 503, {"status": "error", "message": "slow", "data": []}
        return None
    with Hook(emu, hang):
        assert manager.run(alert(1), timeout="1", options={"outage_backoff": 60}) == 2
        wait_for(lambda: len(manager.posts()) == 1)  # the emulator finishes the abandoned request
        started = time.monotonic()
        assert manager.run(alert(2), timeout="1", options={"outage_backoff": 60}) == 2
        assert time.monotonic() - started < 0.5
    assert len(manager.posts()) == 1
    marker = manager.state / "unavailable"
    age_marker(marker, 120)
    assert manager.run(alert(3), options={"outage_backoff": 60}) == 0
    assert set(refs(emu)) >= {alert(2)["id"], alert(3)["id"]}
    assert not marker.exists()


def test_full_spool_drops_the_oldest_during_an_outage(manager, emu):
    emu.stop()
    for number in range(5):
        assert manager.run(alert(number), options={"spool_max_files": 3, "outage_backoff": 30}) == 2
    assert [item["source_ref"] for item in manager.spooled()] == [alert(n)["id"] for n in (2, 3, 4)]
    log = manager.log()
    assert "dropped the 1 oldest alert(s): 1700000000.0" in log
    assert "dropped the 1 oldest alert(s): 1700000000.1" in log


def test_overall_deadline_bounds_a_hanging_iris(manager, emu):
    def hang(phase, body):
        if phase == "before":
            time.sleep(3)
    with Hook(emu, hang):
        started = time.monotonic()
        assert manager.run(alert(1), timeout="1") == 2
        assert time.monotonic() - started < 2.5
    assert "no complete answer within 1.0 s" in manager.log()


def test_replay_with_an_empty_spool_is_quiet(manager):
    assert manager.replay() == 0
    assert manager.log() == ""


def test_replay_without_key_file_or_url_is_a_config_error(manager, emu):
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    assert manager.replay(api_key_file=None) == 5
    assert "replay needs the options hook_url and api_key_file" in manager.log()
    assert manager.replay(api_key_file=str(manager.root / "nokey")) == 5
    assert len(manager.spooled()) == 1


def test_replay_stops_on_auth_failure(manager, emu):
    emu.stop()
    assert manager.run(alert(1)) == 2
    assert manager.run(alert(2)) == 2
    emu.start()
    manager.key_file.write_text("Z" * 64)
    assert manager.replay() == 5
    assert len(manager.spooled()) == 2
    assert emu.request_log[-1][3] == 401
    assert len(emu.request_log) == 1  # the first 401 stopped the drain


# ------------------------------------------------------------------------------------------ locking
def test_a_held_lock_keeps_a_second_drain_away(manager, emu):
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    spool = manager.fw.Spool(dict(manager.fw.default_options(), state_dir=str(manager.state)),
                             Log("test", str(manager.log_file)))
    lock = spool.drain_lock()
    try:
        assert manager.replay() == 0
        assert "replay skipped" in manager.log()
        assert manager.run(alert(2)) == 0  # the alert itself still goes straight to IRIS
        assert refs(emu) == [alert(2)["id"]]
    finally:
        os.close(lock)
    assert manager.replay() == 0
    assert sorted(refs(emu)) == sorted([alert(1)["id"], alert(2)["id"]])


def test_two_concurrent_drains_never_send_an_item_twice(manager, emu, launcher):
    emu.stop()
    for number in range(12):
        assert manager.run(alert(number), options={"outage_backoff": 30}) == 2
    emu.start()

    def slow(phase, body):
        if phase == "before":
            time.sleep(0.02)
    options = manager.write_options(hook_url=manager.hook_url, api_key_file=str(manager.key_file))
    with Hook(emu, slow):
        procs = [subprocess.Popen([str(launcher), "--replay", "--options", options], cwd=manager.root)
                 for _drain in range(2)]
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0]
    assert sorted(refs(emu)) == sorted(alert(n)["id"] for n in range(12))
    assert len(manager.posts()) == 12


# --------------------------------------------------------------------------------------------- TLS
def test_tls_is_verified_against_the_ca_file(tls_manager, certificates):
    assert tls_manager.hook_url.startswith("https://127.0.0.1:")
    assert tls_manager.run(alert(1), options={"ca_file": str(certificates / "ca.pem")}) == 0
    assert refs(tls_manager.emu) == [alert(1)["id"]]
    assert "WARNING" not in tls_manager.log()


def test_tls_without_the_right_ca_is_refused(tls_manager, tls_files):
    assert tls_manager.run(alert(1)) == 5  # system CAs do not know the test CA
    # a CA file of another authority (not the server's own certificate: on Python 3.13 and later the context
    # has VERIFY_X509_PARTIAL_CHAIN, as ssl.create_default_context, so a certificate of the chain is trusted)
    assert tls_manager.run(alert(2), options={"ca_file": str(tls_files[0])}) == 5
    log = tls_manager.log()
    assert "kept in the spool: https://127.0.0.1" in log
    assert "TLS certificate verification failed: unable to get local issuer certificate (check ca_file)" in log
    assert tls_manager.emu.alerts() == []
    assert len(tls_manager.spooled()) == 2


def hashed_ca_dir(certificates, folder):
    """An OpenSSL hashed CA directory holding the test CA, as update-ca-certificates makes them."""
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(certificates / "ca.pem")],
                            check=True, capture_output=True, text=True).stdout.strip()
    folder.mkdir()
    (folder / f"{digest}.0").symlink_to(certificates / "ca.pem")
    return folder


def test_system_trust_uses_the_hashed_ca_directory_lazily(tls_manager, certificates, monkeypatch, tmp_path):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed_ca_dir(certificates, tmp_path / "certs")))
    context = tls.client_context().context
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed up front
    assert context.check_hostname is True
    assert tls_manager.run(alert(1)) == 0  # no ca_file: the CA is found in the directory
    assert refs(tls_manager.emu) == [alert(1)["id"]]


def test_system_trust_honours_ssl_cert_file(tls_manager, certificates, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "empty"))
    assert tls.client_context().context.cert_store_stats()["x509_ca"] == 1
    assert tls_manager.run(alert(1)) == 0


def test_tls_verification_off_works_but_warns(tls_manager):
    assert tls_manager.run(alert(1), options={"verify_tls": False}) == 0
    assert "WARNING: TLS certificate verification is OFF (verify_tls: false)" in tls_manager.log()


def test_unreadable_ca_file_is_a_config_error(tls_manager):
    assert tls_manager.run(alert(1), options={"ca_file": str(tls_manager.root / "none.pem")}) == 5
    assert "cannot load ca_file" in tls_manager.log()
    assert len(tls_manager.spooled()) == 1


# -------------------------------------------------------------------------------------------- secrets
def test_the_api_key_never_reaches_logs_state_or_output(manager, emu, capsys):
    secret = manager.api_key
    assert manager.run(alert(1), debug="debug") == 0
    with Hook(emu, reply_once(503, f"echo {secret}")):
        assert manager.run(alert(2), debug="debug") == 2
    assert manager.run(alert(3), key=secret + "x") == 5
    assert manager.fw.main(["integrations", "/nonexistent", secret]) == 5
    assert manager.replay(debug=True) == 0
    log = manager.log()
    assert "DEBUG: POST /alerts/add body" in log
    assert secret not in log
    assert secret not in capsys.readouterr().err
    for path in manager.state.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_full_alert_is_logged_only_in_debug_mode(manager):
    marker = "UNIQUE-FULL-LOG-TEXT-42"
    assert manager.run(alert(1, full_log=marker)) == 0
    assert marker not in manager.log()
    assert manager.run(alert(2, full_log=marker), debug="debug") == 0
    assert marker in manager.log()


# ------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_give_defined_exit_codes_and_no_traceback(manager, emu, launcher):
    cases = [
        (b'{"rule": {"id": "1"', 3, "is not JSON"),
        (b"", 3, "is empty"),
        (b"[]", 3, "holds a JSON list"),
        (b'{"id": "9.1", "rule": {"level": 5, "description": "caf\xe9"}, "agent": {"name": "a"}}', 0,
         "not valid UTF-8"),
        (json.dumps({"id": "9.2", "timestamp": "2024-01-01T00:00:00.000+0000"}).encode(), 0,
         "lacks rule, agent, rule.description"),
        (json.dumps(alert(3, full_log="L" * (10 * 1024 * 1024))).encode(), 0, "source content truncated"),
    ]
    for content, code, message in cases:
        result = run_like_integratord(manager, launcher, manager.argv(content))
        assert result.returncode == code, (message, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert message in manager.log()
    delivered = {a["alert_source_ref"]: a for a in emu.alerts()}
    assert set(delivered) == {"9.1", "9.2", alert(3)["id"]}
    assert delivered["9.1"]["alert_title"] == "caf\ufffd (a)"
    big = delivered[alert(3)["id"]]
    assert len(json.dumps(big["alert_source_content"])) < 300 * 1024
    assert "first 4096 of 10485760 characters" in big["alert_description"]
    assert len([name for name in manager.rejected() if name.endswith("-unparsed.alert")]) == 2


def test_unknown_argv_layout_is_logged_in_the_default_log(manager, launcher):
    result = run_like_integratord(manager, launcher, ["integrations", "/tmp/x.alert", manager.api_key, REDIRECT])
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert "unknown argument layout: got 3 arguments" in manager.log()
    assert "unknown argument layout" in result.stderr  # integratord shows the last output line in ossec.log
    assert manager.api_key not in manager.log() + result.stderr


def test_non_json_options_file_falls_back_to_defaults(manager, emu, launcher):
    argv = manager.argv(alert(1))
    Path(argv[5]).write_text("customer_id=1\n")
    result = run_like_integratord(manager, launcher, argv)
    assert result.returncode == 0, result.stderr
    assert "is not JSON" in manager.log()  # the defaults log to logs/integrations.log under cwd
    assert (manager.root / "var" / "iris-forwarder" / "lookups.json").exists()
    assert refs(emu) == [alert(1)["id"]]


def test_options_with_bad_keys_are_logged(manager, emu):
    assert manager.run(alert(1), options={"colour": "red", "verify_tls": "yes"}) == 0
    log = manager.log()
    assert "unknown option 'colour' ignored" in log
    assert "option 'verify_tls' must be true or false; using the default True" in log


def test_old_three_argument_form_runs_like_integratord(manager, emu, launcher):
    argv = ["integrations", manager.alert_file(alert(1)), manager.api_key, manager.hook_url]
    result = run_like_integratord(manager, launcher, argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert refs(emu) == [alert(1)["id"]]
    assert "-> IRIS alert 1" in manager.log()


def test_integratord_debug_layout_and_missing_alert_file(manager, emu, launcher):
    argv = manager.argv(alert(1), debug="debug")
    assert len(argv) == 8
    assert run_like_integratord(manager, launcher, argv).returncode == 0
    argv[1] = ""
    result = run_like_integratord(manager, launcher, argv)
    assert result.returncode == 3
    assert "integratord could not create its temp file" in manager.log()


def test_no_hook_url_keeps_the_alert(manager, emu):
    assert manager.run(alert(1), url="") == 5
    assert "no API key or hook_url was given" in manager.log()
    assert len(manager.spooled()) == 1


def test_unwritable_state_dir_loses_the_alert_loudly(manager, emu):
    blocker = manager.root / "file-not-dir"
    blocker.write_text("")
    emu.stop()
    assert manager.run(alert(1), options={"state_dir": str(blocker / "state")}) == 6
    assert "alert 1700000000.1 LOST" in manager.log()


def test_connection_retries_follow_the_retries_argument(manager, emu):
    port = emu.port
    emu.stop()
    timer = threading.Timer(0.3, emu.start)
    timer.start()
    try:
        assert manager.run(alert(1), retries="5") == 0  # refused, refused, ... then IRIS is back
    finally:
        timer.join()
    assert emu.port == port
    assert refs(emu) == [alert(1)["id"]]


# -------------------------------------------------------------------------------- installed launcher
def test_installed_launcher_loads_the_hash_checked_bytecode(manager, launcher):
    assert loads_precompiled(launcher, sys.executable, manager.root)
    pycs = list((launcher.parent / "iris_forwarder" / "__pycache__").glob("*.pyc"))
    pycs += list((launcher.parent / "socstack_core" / "__pycache__").glob("*.pyc"))
    assert len(pycs) >= 10
    for pyc in pycs:  # PEP 552: hash-based, checked against the source
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11, pyc


def test_launcher_without_bytecode_still_delivers_and_writes_none(manager, emu, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    for package in ("iris_forwarder", "socstack_core"):
        shutil.rmtree(launcher.parent / package / "__pycache__")
    result = run_like_integratord(manager, launcher, manager.argv(alert(1)))
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]
    assert sorted(path.name for path in launcher.parent.rglob("*") if path.is_dir()) == [
        "iris_forwarder", "socstack_core"]


def test_an_edited_module_runs_even_with_bytecode_of_the_old_one(manager, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    module = launcher.parent / "iris_forwarder" / "settings.py"
    before = module.stat()
    module.write_text(module.read_text().replace('PROG = "custom-wazuh_iris"', 'PROG = "custom-wazuh_irix"'))
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: only a hash tells
    assert module.stat().st_size == before.st_size
    assert run_like_integratord(manager, launcher, ["integrations", "x"]).returncode == 5
    assert "custom-wazuh_irix: ERROR: unknown argument layout" in manager.log()


def test_python_variables_and_files_beside_the_launcher_cannot_take_over(manager, emu, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    for name in ("_socket", "socket", "_json", "json"):  # would shadow the stdlib if first on the path
        (launcher.parent / f"{name}.py").write_text("raise SystemExit(99)\n")
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    for name in ("iris_forwarder", "socstack_core"):
        (decoy / f"{name}.py").write_text("raise SystemExit(98)\n")
    env = dict(os.environ, PYTHONPATH=str(decoy))
    result = run_like_integratord(manager, launcher, manager.argv(alert(1)), env=env)
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]


def test_the_repository_launcher_runs_as_it_is(manager, emu, tmp_path):
    """files/integrations/custom-wazuh_iris.py unchanged: '#!/usr/bin/env -S python3 -IS', module beside it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    result = run_like_integratord(manager, LAUNCHER, manager.argv(alert(1)), env=env)
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]


def test_a_delivery_loads_no_module_it_does_not_need(manager, emu, launcher):
    """Start-up cost guard: the public json/socket/ssl modules (enums, re), the idna codec, datetime, logging,
    the lock... stay unloaded; the C layers _json, _socket and _ssl do the work."""
    probe = ("import sys; sys.path.append(sys.argv.pop(1)); import iris_forwarder; "
             "code = iris_forwarder.main(sys.argv); print(' '.join(sorted(sys.modules))); sys.exit(code)")
    argv = manager.argv(alert(1))
    result = subprocess.run([sys.executable, "-IS", "-c", probe, str(launcher.parent), *argv[1:]], cwd=manager.root,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]
    loaded = set(result.stdout.split())
    assert {"_json", "_socket", "iris_forwarder", "socstack_core.http"} <= loaded
    unneeded = {"json", "socket", "ssl", "re", "enum", "encodings.idna", "unicodedata", "stringprep", "hashlib",
                "datetime", "logging", "email", "http", "urllib", "threading", "contextlib", "selectors"}
    assert loaded & unneeded == set()
