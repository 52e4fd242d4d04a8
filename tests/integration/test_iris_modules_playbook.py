"""The iris_* modules through real ansible-playbook runs against the IRIS emulator.

The playbooks are in targets/iris_modules/. The collection is found through a tmp symlink tree
``<tmp>/ansible_collections/socstack/wazuh_iris -> repo`` given in ANSIBLE_COLLECTIONS_PATH.
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
    for secret in (ADMIN_KEY, WRONG_KEY, ALICE_PASSWORD, *secrets):
        assert secret not in output


@pytest.fixture(scope="module")
def iris(ansible_env):
    """The emulator, the playbook environment pointing at it, and the extra vars of provision.yml."""
    env, base = ansible_env
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY).start()
    env = dict(env, IRIS_URL=emulator.url)
    extra = {"key_file": str(base / "soar-bot.key"), "alice_password": ALICE_PASSWORD}
    yield emulator, env, extra
    emulator.stop()


@pytest.fixture(scope="module")
def first_run(iris):
    _emu, env, extra = iris
    return playbook(env, "provision.yml", extra=extra)


def state(emu, kind, key, value):
    with emu.lock:
        return next((dict(row) for row in emu.state[kind] if row[key] == value), None)


def test_first_run_creates_everything(iris, first_run):
    emu, _env, extra = iris
    returncode, output, (ok, changed, _unreachable, failed) = first_run
    assert returncode == 0, output
    assert (ok, changed, failed) == (7, 6, 0), output  # the key check is the only unchanged task
    acme = state(emu, "customers", "customer_name", "Acme Corp")
    assert (acme["customer_description"], acme["customer_sla"]) == ("Production estate", "24h")
    assert state(emu, "groups", "group_name", "SOAR Bots")["group_permissions"] == 13
    bot = state(emu, "users", "login", "soar-bot")
    assert Path(extra["key_file"]).read_text() == bot["api_key"]
    assert (bot["groups"], sorted(bot["customers"]), bot["is_service_account"]) == ([4], [2, 3], True)
    assert state(emu, "users", "login", "alice")["groups"] == [2]
    assert_no_secret(output, bot["api_key"])


def test_second_run_changes_nothing(iris, first_run):
    emu, env, extra = iris
    returncode, output, (_ok, changed, _unreachable, failed) = playbook(env, "provision.yml", extra=extra)
    assert (returncode, changed, failed) == (0, 0, 0), output
    assert_no_secret(output, state(emu, "users", "login", "soar-bot")["api_key"])


def test_check_mode_with_diff_changes_nothing(iris, first_run):
    emu, env, extra = iris
    emu.request_log.clear()
    returncode, output, (_ok, changed, _unreachable, failed) = playbook(
        env, "provision.yml", "--check", "--diff", extra=dict(extra, acme_sla="8h"))
    assert (returncode, changed, failed) == (0, 1, 0), output
    assert re.search(r'^-\s+"sla": "24h"', output, re.MULTILINE), output
    assert re.search(r'^\+\s+"sla": "8h"', output, re.MULTILINE), output
    assert state(emu, "customers", "customer_name", "Acme Corp")["customer_sla"] == "24h"
    assert [entry for entry in emu.request_log if entry[0] == "POST"] == []


def test_absent_removes_including_linked_customer(iris, first_run):
    emu, env, _extra = iris
    returncode, output, (_ok, _changed, _unreachable, failed) = playbook(env, "teardown.yml")
    assert (returncode, failed) == (0, 0), output
    assert state(emu, "customers", "customer_name", "Acme Corp") is None
    assert state(emu, "customers", "customer_name", "Globex") is not None
    assert state(emu, "users", "login", "alice") is None
    bot = state(emu, "users", "login", "soar-bot")
    assert (bot["active"], bot["customers"]) == (False, [3])
    assert state(emu, "groups", "group_name", "SOAR Bots") is None
    assert_no_secret(output, bot["api_key"])


@pytest.fixture(scope="module")
def tls_emulator(tls_files):
    cert, key = tls_files
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY, tls_cert=str(cert), tls_key=str(key)).start()
    yield emulator, cert
    emulator.stop()


def test_bad_inputs_fail_with_clear_messages(iris, tls_emulator):
    emu, env, _extra = iris
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
    assert state(tls_emu, "customers", "customer_name", "TLS Corp") is not None
