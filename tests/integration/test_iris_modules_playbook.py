"""The iris_* modules through real ansible-playbook runs against the IRIS emulator, and with --real-iris also
against a real DFIR-IRIS 2.4.20 (tests/support/real_iris.py) reset to its first-boot state.

The playbooks are in targets/iris_modules/. The collection is found through a tmp symlink tree
``<tmp>/ansible_collections/socstack/wazuh_iris -> repo`` given in ANSIBLE_COLLECTIONS_PATH.
"""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import IRIS_ADMIN_KEY
from tests.emulators.iris import IrisEmulator

# The tests share one emulator and build on each other (first run, second run, absent): one xdist worker runs them
# all, in this order.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("iris_modules_playbook")]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "tests" / "integration" / "targets" / "iris_modules"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ADMIN_KEY = "adminKEY" * 8
WRONG_KEY = "wrongKEY" * 8
ALICE_PASSWORD = "Alice-Analyst-2026"  # test value; must never show in the output
RECAP = re.compile(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory):
    """Environment for ansible-playbook: the collection via a symlink tree, everything else in tmp."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("ansible-playbook not found beside %s" % sys.executable)
    base = tmp_path_factory.mktemp("ansible")
    namespace = base / "collections" / "ansible_collections" / "socstack"
    namespace.mkdir(parents=True)
    (namespace / "wazuh_iris").symlink_to(ROOT, target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "IRIS_"))}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(base / "collections"),
        ANSIBLE_HOME=str(base / "home"),
        ANSIBLE_LOCAL_TEMP=str(base / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        IRIS_API_KEY=ADMIN_KEY,
    )
    return env, base


def playbook(env, name, *args, extra=None):
    """Run one playbook; returns (returncode, stdout+stderr, (ok, changed, unreachable, failed))."""
    command = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOKS / name), *args]
    if extra:
        command += ["-e", json.dumps(extra)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    match = RECAP.search(output)
    assert match, output
    return proc.returncode, output, tuple(int(n) for n in match.groups())


def assert_no_secret(output, *secrets):
    for secret in (ADMIN_KEY, IRIS_ADMIN_KEY, WRONG_KEY, ALICE_PASSWORD, *secrets):
        assert secret not in output


class EmulatorView:
    """What the tests read of the emulator's state, by names (as RealView can read it from a real IRIS)."""

    def __init__(self, emu):
        self.emu = emu

    def _row(self, kind, key, value):
        with self.emu.lock:
            return next((dict(row) for row in self.emu.state[kind] if row[key] == value), None)

    def customer(self, name):
        row = self._row("customers", "customer_name", name)
        return row and (row["customer_description"], row["customer_sla"])

    def group_permissions(self, name):
        row = self._row("groups", "group_name", name)
        return row and row["group_permissions"]

    def user(self, login):
        row = self._row("users", "login", login)
        if row is None:
            return None
        with self.emu.lock:
            groups = [g["group_name"] for g in self.emu.state["groups"] if g["group_id"] in row["groups"]]
            customers = [c["customer_name"] for c in self.emu.state["customers"]
                         if c["customer_id"] in row["customers"]]
        return {"groups": sorted(groups), "customers": sorted(customers), "service": row["is_service_account"],
                "active": row["active"]}

    def key_login(self, key):
        row = self._row("users", "api_key", key)
        return row and row["login"]

    def posts(self):
        return [entry for entry in self.emu.request_log if entry[0] == "POST"]

    def forget_requests(self):
        self.emu.request_log.clear()


class RealView:
    """The same reads from a real IRIS through its API (admin key); it keeps no request log."""

    def __init__(self, server):
        self.server = server

    def _get(self, path, key=None):
        request = urllib.request.Request(self.server.url + path,
                                         headers={"Authorization": "Bearer " + (key or self.server.admin_api_key)})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.loads(answer.read())["data"]
        except urllib.error.HTTPError:
            return None

    def _find(self, kind, key, value):
        return next((row for row in self._get(f"/manage/{kind}/list") if row[key] == value), None)

    def customer(self, name):
        row = self._find("customers", "customer_name", name)
        details = row and self._get("/manage/customers/%d" % row["customer_id"])
        return details and (details["customer_description"], details["customer_sla"])

    def group_permissions(self, name):
        row = self._find("groups", "group_name", name)
        return row and row["group_permissions"]

    def user(self, login):
        row = self._find("users", "user_login", login)
        if row is None:
            return None
        details = self._get("/manage/users/%d" % row["user_id"])
        return {"groups": sorted(g["group_name"] for g in details["user_groups"]),
                "customers": sorted(c["customer_name"] for c in details["user_customers"]),
                "service": details["user_is_service_account"], "active": details["user_active"]}

    def key_login(self, key):
        identity = self._get("/user/whoami", key=key)
        return identity and identity["user_login"]

    def posts(self):
        return None  # not known: the real server keeps no request log for us

    def forget_requests(self):
        pass


@pytest.fixture(scope="module", params=["emulator", "real"])
def iris(request, ansible_env):
    """The IRIS (emulator, or with --real-iris the session's real IRIS back in its first-boot state), a view of
    its state, the playbook environment pointing at it, and the extra vars of provision.yml."""
    env, base = ansible_env
    extra = {"key_file": str(base / f"soar-bot-{request.param}.key"), "alice_password": ALICE_PASSWORD}
    if request.param == "real":
        server = request.getfixturevalue("real_iris").reset()
        yield RealView(server), dict(env, IRIS_URL=server.url, IRIS_API_KEY=server.admin_api_key), extra
        return
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY).start()
    yield EmulatorView(emulator), dict(env, IRIS_URL=emulator.url), extra
    emulator.stop()


@pytest.fixture(scope="module")
def first_run(iris):
    _view, env, extra = iris
    return playbook(env, "provision.yml", extra=extra)


def test_first_run_creates_everything(iris, first_run):
    view, _env, extra = iris
    returncode, output, (ok, changed, _unreachable, failed) = first_run
    assert returncode == 0, output
    assert (ok, changed, failed) == (7, 6, 0), output  # the key check is the only unchanged task
    assert view.customer("Acme Corp") == ("Production estate", "24h")
    assert view.group_permissions("SOAR Bots") == 13
    key = Path(extra["key_file"]).read_text()
    assert view.key_login(key) == "soar-bot"
    assert view.user("soar-bot") == {"groups": ["SOAR Bots"], "customers": ["Acme Corp", "Globex"], "service": True,
                                     "active": True}
    assert view.user("alice")["groups"] == ["Analysts"]
    assert_no_secret(output, key)


def test_second_run_changes_nothing(iris, first_run):
    _view, env, extra = iris
    returncode, output, (_ok, changed, _unreachable, failed) = playbook(env, "provision.yml", extra=extra)
    assert (returncode, changed, failed) == (0, 0, 0), output
    assert_no_secret(output, Path(extra["key_file"]).read_text())


def test_check_mode_with_diff_changes_nothing(iris, first_run):
    view, env, extra = iris
    view.forget_requests()
    returncode, output, (_ok, changed, _unreachable, failed) = playbook(
        env, "provision.yml", "--check", "--diff", extra=dict(extra, acme_sla="8h"))
    assert (returncode, changed, failed) == (0, 1, 0), output
    assert re.search(r'^-\s+"sla": "24h"', output, re.MULTILINE), output
    assert re.search(r'^\+\s+"sla": "8h"', output, re.MULTILINE), output
    assert view.customer("Acme Corp") == ("Production estate", "24h")
    assert view.posts() in ([], None)  # None: a real IRIS, whose unchanged SLA above is the check


def test_absent_removes_including_linked_customer(iris, first_run):
    view, env, extra = iris
    returncode, output, (_ok, _changed, _unreachable, failed) = playbook(env, "teardown.yml")
    assert (returncode, failed) == (0, 0), output
    assert view.customer("Acme Corp") is None
    assert view.customer("Globex") is not None
    assert view.user("alice") is None
    bot = view.user("soar-bot")
    assert (bot["active"], bot["customers"]) == (False, ["Globex"])
    assert view.group_permissions("SOAR Bots") is None
    assert_no_secret(output, Path(extra["key_file"]).read_text())


@pytest.fixture(scope="module")
def tls_emulator(tls_files):
    cert, key = tls_files
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY, tls_cert=str(cert), tls_key=str(key)).start()
    yield emulator, cert
    emulator.stop()


def test_bad_inputs_fail_with_clear_messages(iris, tls_emulator):
    view, env, _extra = iris
    if not isinstance(view, EmulatorView):
        pytest.skip("emulator only: its TLS twin and a closed port are this test's servers")
    emu = view.emu
    tls_emu, cert = tls_emulator
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_url = "http://127.0.0.1:%d" % sock.getsockname()[1]
    extra = {"iris_url": emu.url, "wrong_key": WRONG_KEY, "closed_url": closed_url, "tls_url": tls_emu.url,
             "tls_ca": str(cert)}
    returncode, output, (ok, _changed, _unreachable, failed) = playbook(env, "bad_inputs.yml", "-v", extra=extra)
    assert (returncode, ok, failed) == (0, 4, 0), output
    assert "IRIS rejected the API key (401)" in output
    assert "Connection refused" in output
    assert "CERTIFICATE_VERIFY_FAILED" in output
    assert "Traceback" not in output
    assert_no_secret(output)
    assert EmulatorView(tls_emu).customer("TLS Corp") is not None
