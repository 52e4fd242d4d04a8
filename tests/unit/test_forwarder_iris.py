"""Tests of the forwarder (files/integrations/iris_forwarder.py and its launcher custom-wazuh_iris.py)
against the IRIS emulator (127.0.0.1, ephemeral ports).

Most runs call the program's main() in this process with the argv integratord builds; a few run it as
a subprocess exactly like integratord (argv[0] "integrations", the literal "> /dev/null 2>&1" element,
cwd standing in for /var/ossec), through the launcher installed the way the role installs it: the
``install`` recipe of tests/bench/bench_forwarder.py, so that the tests and the benchmark check the
same layout (shebang ``#!<python> -IS``, module beside it, bytecode made by compileall).
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import iris_forwarder  # files/integrations is on sys.path (tests/conftest.py)
import pytest

from tests.bench.bench_forwarder import install, loads_precompiled
from tests.conftest import IRIS_ADMIN_KEY
from tests.emulators.iris import IrisEmulator

SOURCES = Path(__file__).resolve().parents[2] / "files" / "integrations"
LAUNCHER = SOURCES / "custom-wazuh_iris.py"
MODULE = SOURCES / "iris_forwarder.py"
REDIRECT = "> /dev/null 2>&1"
ADMIN_KEY = IRIS_ADMIN_KEY  # the key the shared iris_emulator fixture starts with
# Ids of a fresh IRIS 2.4.20 (not in natural order): severities and alert statuses.
SEVERITY_IDS = {"Medium": 1, "Unspecified": 2, "Informational": 3, "Low": 4, "High": 5, "Critical": 6}
STATUS_NEW, STATUS_ASSIGNED = 2, 3

ALERT_A = {
    "timestamp": "2025-06-03T10:02:11.730+0000",
    "rule": {"level": 3, "description": "Audit: Command: /usr/bin/curl.", "id": "80792",
             "groups": ["audit", "audit_command"]},
    "agent": {"id": "004", "name": "app01", "ip": "192.168.20.14"},
    "id": "1748944931.9912214",
    "full_log": 'type=EXECVE msg=audit(1748944931.712:8812): argc=3 a0="curl" a1="-sO"',
    "location": "/var/log/audit/audit.log",
}
ALERT_B = {
    "timestamp": "2022-05-11T12:29:19.905+0000",
    "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system.", "id": "5712",
             "mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]},
             "groups": ["syslog", "sshd", "authentication_failures"]},
    "agent": {"id": "000", "name": "wazuh-manager"},
    "id": "1652272159.1549653",
    "full_log": "May 11 12:29:18 localhost sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
    "location": "/var/log/secure",
}


def alert(number, **changes):
    """A distinct alert (its own Wazuh id) built from ALERT_B."""
    return dict(ALERT_B, id=f"1700000000.{number}", **changes)


class Manager:
    """A stand-in for a Wazuh manager's home (/var/ossec) running the forwarder like integratord."""

    def __init__(self, root, emu, api_key):
        self.fw = iris_forwarder
        self.root = root
        self.emu = emu
        self.api_key = api_key
        (root / "logs").mkdir(parents=True)
        (root / "tmp").mkdir()
        self.state = root / "var" / "iris-forwarder"
        self.log_file = root / "logs" / "integrations.log"
        self.key_file = root / "etc" / "iris.key"
        self.key_file.parent.mkdir()
        self.key_file.write_text(api_key + "\n")
        self.options = {"state_dir": str(self.state), "log_file": str(self.log_file), "outage_backoff": 0}
        self.count = 0

    @property
    def hook_url(self):
        return f"{self.emu.url}/alerts/add"

    def write_options(self, **changes):
        self.count += 1
        path = self.root / "tmp" / f"custom-wazuh_iris-{self.count}.options"
        path.write_text(json.dumps(dict(self.options, **changes)) + "\n")
        return str(path)

    def alert_file(self, content):
        self.count += 1
        path = self.root / "tmp" / f"custom-wazuh_iris-{self.count}.alert"
        path.write_bytes(content if isinstance(content, bytes) else (json.dumps(content) + "\n").encode())
        return str(path)

    def argv(self, content, *, key=None, url=None, debug="", timeout="10", retries="0", options=None):
        options_file = self.write_options(**(options or {}))
        tail = [] if debug else [REDIRECT]
        return ["integrations", self.alert_file(content), self.api_key if key is None else key,
                self.hook_url if url is None else url, debug, options_file, timeout, retries, *tail]

    def run(self, content, **kwargs):
        """One alert through main() in this process; returns the exit code."""
        return self.fw.main(self.argv(content, **kwargs))

    def replay(self, **options):
        base = {"hook_url": self.hook_url, "api_key_file": str(self.key_file)}
        return self.fw.main(["x", "--replay", "--options", self.write_options(**dict(base, **options))])

    def log(self):
        return self.log_file.read_text() if self.log_file.exists() else ""

    def spooled(self):
        spool = self.state / "spool"
        return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))] if spool.exists() else []

    def rejected(self):
        folder = self.state / "rejected"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def posts(self):
        return [entry for entry in self.emu.request_log if entry[:2] == ("POST", "/alerts/add")]


@pytest.fixture
def emu(iris_emulator):
    """The shared IRIS emulator (tests/conftest.py), under this module's short name."""
    return iris_emulator


@pytest.fixture
def manager(tmp_path, emu):
    _user_id, api_key = emu.add_user("wazuh-forwarder", groups=["Analysts"], customers=["IrisInitialClient"])
    return Manager(tmp_path / "ossec", emu, api_key)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """The launcher installed as the role installs it, with this interpreter in its shebang."""
    return install(tmp_path_factory.mktemp("ossec") / "integrations", sys.executable)


def run_like_integratord(manager, launcher, argv, **kwargs):
    """Run the installed launcher by its path, through its shebang, with integratord's argv and cwd."""
    return subprocess.run(argv, executable=str(launcher), cwd=manager.root, capture_output=True, text=True,
                          timeout=60, check=False, **kwargs)


def refs(emu):
    return [a["alert_source_ref"] for a in emu.alerts()]


class Hook:
    """An emulator hook acting on POST /alerts/add: fn(phase, body) may sleep or return a reply."""

    def __init__(self, emu, fn):
        self.emu, self.fn = emu, fn

    def __call__(self, phase, method, path, *rest):
        """The emulator's hook call; rest is (query, body, login)."""
        if (method, path) == ("POST", "/alerts/add"):
            return self.fn(phase, rest[1])
        return None

    def __enter__(self):
        self.emu.add_hook(self)
        return self

    def __exit__(self, *exc):
        self.emu.remove_hook(self)


def wait_for(predicate, seconds=5.0):
    """Poll until predicate() is true (for requests the emulator is still finishing)."""
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def reply_once(status, message, phase="before"):
    """A hook function answering the first POST with (status, envelope) and letting later ones through."""
    calls = []

    def fn(hook_phase, body):
        if hook_phase == phase and not calls:
            calls.append(body)
            return status, {"status": "error", "message": message, "data": []}
        return None
    return fn


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


def test_every_sample_alert_is_delivered(manager, emu, shared_reference):
    expected = {}
    for sample in sorted((shared_reference / "sample-alerts").glob("*.json")):
        content = json.loads(sample.read_text())
        assert manager.run(content) == 0, sample.name
        level = content["rule"]["level"]
        name = manager.fw.severity_for_level(level, manager.fw.default_options()["severity_by_level"])
        expected[content["id"]] = SEVERITY_IDS[name]
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
    with Hook(emu, reply_once(503, "Service Unavailable")):
        assert manager.run(alert(1)) == 2
    (item,) = manager.spooled()
    assert (item["source_ref"], item["ambiguous"]) == (alert(1)["id"], False)
    assert "kept in the spool: IRIS did not take it" in manager.log()
    assert manager.run(alert(2)) == 0
    assert refs(emu) == [alert(1)["id"], alert(2)["id"]]
    assert manager.spooled() == []
    assert not any(entry[1].startswith("/alerts/filter") for entry in emu.request_log)  # it was not ambiguous
    assert "spool drain: 1 sent, 0 already present, 0 rejected, 0 waiting" in manager.log()


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
    assert (item["source_ref"], item["attempts"], item["ambiguous"]) == (alert(2)["id"], 1, True)
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
    assert item["ambiguous"] is True
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
    assert manager.spooled()[0]["ambiguous"] is True
    assert manager.replay() == 0
    assert refs(emu).count(ref) == 1
    assert len(emu.alerts()) == 3


def test_crash_after_iris_said_yes_does_not_duplicate(manager, emu, monkeypatch):
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    fw = manager.fw

    def crash(self, path):
        raise OSError("disk vanished")
    monkeypatch.setattr(fw.Spool, "remove", crash)
    assert manager.replay() == 1  # IRIS has the alert, the spool could not record it
    monkeypatch.undo()
    assert manager.spooled()[0]["ambiguous"] is True  # written before the request went out
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
    os.utime(marker, (time.time() - 120, time.time() - 120))
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
    assert "no answer within 1.0 s" in manager.log()


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
                             manager.fw.Log(str(manager.log_file)))
    lock = spool.try_lock()
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
@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    for step in (  # the extensions are those Python 3.13's strict X.509 checks require
        f"req -x509 -newkey rsa:2048 -nodes -keyout {folder}/ca.key -out {folder}/ca.pem -days 2 -subj /CN=test-ca "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        f"req -newkey rsa:2048 -nodes -keyout {folder}/srv.key -out {folder}/srv.csr -subj /CN=127.0.0.1",
        f"x509 -req -in {folder}/srv.csr -CA {folder}/ca.pem -CAkey {folder}/ca.key -CAcreateserial "
        f"-out {folder}/srv.pem -days 2 -extfile {folder}/san.ext",
    ):
        subprocess.run(["openssl", *step.split()], check=True, capture_output=True)
    return folder


@pytest.fixture
def tls_manager(tmp_path, certificates):
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY, tls_cert=str(certificates / "srv.pem"),
                            tls_key=str(certificates / "srv.key")).start()
    _user_id, api_key = emulator.add_user("wazuh-forwarder", groups=["Analysts"], customers=["IrisInitialClient"])
    yield Manager(tmp_path / "ossec", emulator, api_key)
    emulator.stop()


def test_tls_is_verified_against_the_ca_file(tls_manager, certificates):
    assert tls_manager.hook_url.startswith("https://127.0.0.1:")
    assert tls_manager.run(alert(1), options={"ca_file": str(certificates / "ca.pem")}) == 0
    assert refs(tls_manager.emu) == [alert(1)["id"]]
    assert "WARNING" not in tls_manager.log()


def test_tls_without_the_right_ca_is_refused(tls_manager, certificates):
    assert tls_manager.run(alert(1)) == 5  # system CAs do not know the test CA
    assert tls_manager.run(alert(2), options={"ca_file": str(certificates / "srv.pem")}) == 5
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
    context = tls_manager.fw._system_trust_context()
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed up front
    assert context.check_hostname is True
    assert tls_manager.run(alert(1)) == 0  # no ca_file: the CA is found in the directory
    assert refs(tls_manager.emu) == [alert(1)["id"]]


def test_system_trust_honours_ssl_cert_file(tls_manager, certificates, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "empty"))
    assert tls_manager.fw._system_trust_context().cert_store_stats()["x509_ca"] == 1
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
    (pyc,) = (launcher.parent / "__pycache__").glob("iris_forwarder.*.pyc")
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # PEP 552: hash-based, checked against the source


def test_launcher_without_bytecode_still_delivers_and_writes_none(manager, emu, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    shutil.rmtree(launcher.parent / "__pycache__")
    result = run_like_integratord(manager, launcher, manager.argv(alert(1)))
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]
    assert sorted(path.name for path in launcher.parent.iterdir()) == ["custom-wazuh_iris.py", "iris_forwarder.py"]


def test_an_edited_module_runs_even_with_bytecode_of_the_old_one(manager, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    module = launcher.parent / "iris_forwarder.py"
    before = module.stat()
    module.write_text(module.read_text().replace('PROG = "custom-wazuh_iris"', 'PROG = "custom-wazuh_irix"'))
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: only a hash tells
    assert module.stat().st_size == before.st_size
    assert run_like_integratord(manager, launcher, ["integrations", "x"]).returncode == 5
    assert "custom-wazuh_irix: ERROR: unknown argument layout" in manager.log()


def test_python_variables_and_files_beside_the_launcher_cannot_take_over(manager, emu, tmp_path):
    launcher = install(tmp_path / "integrations", sys.executable)
    (launcher.parent / "socket.py").write_text("raise SystemExit(99)\n")  # would shadow the stdlib if first on the path
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "iris_forwarder.py").write_text("raise SystemExit(98)\n")
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
    """Start-up cost guard: the idna codec (a str host), datetime, logging, the lock... stay unloaded."""
    probe = ("import sys; sys.path.append(sys.argv.pop(1)); import iris_forwarder; "
             "code = iris_forwarder.main(sys.argv); print(' '.join(sorted(sys.modules))); sys.exit(code)")
    argv = manager.argv(alert(1))
    result = subprocess.run([sys.executable, "-IS", "-c", probe, str(launcher.parent), *argv[1:]], cwd=manager.root,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert refs(emu) == [alert(1)["id"]]
    loaded = set(result.stdout.split())
    assert {"json", "socket", "ssl", "iris_forwarder"} <= loaded
    unneeded = {"encodings.idna", "unicodedata", "stringprep", "hashlib", "fcntl", "datetime", "logging", "email",
                "http", "urllib", "threading"}
    assert loaded & unneeded == set()
