"""What following README.md's own-inventory section literally (converge: follow_readme.py) gave.

The copied inventory holds only new vault values (the example password opens none of them); IRIS
was created with the new admin password and admin API key and refuses the example's key; the
manager got the new OpenCTI token and the service account's key that IRIS issued, and a Wazuh alert
reaches IRIS through the forwarder the README run installed.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
from lab_checks import append_alerts, iris_run, wait_for

testinfra_hosts = ["ansible://readme-wazuh"]

PROJECT = Path(__file__).resolve().parents[3]
EXAMPLE_VAULT = PROJECT / "examples" / "inventory" / "group_vars" / "all" / "vault.yml"
EXAMPLE_PASSWORD = PROJECT / "examples" / "vault-password.example"
VAULT_NAMES = ["vault_iris_admin_password", "vault_iris_admin_api_key", "vault_wazuh_opencti_token"]
IRIS = "https://readme-iris:9094"
CA_FILE = "/var/ossec/etc/iris-ca.pem"


@pytest.fixture(scope="module")
def run():
    handoff = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "readme-run.json"
    return json.loads(handoff.read_text(encoding="utf-8"))


def vault_entries(path):
    """name -> the vault text of each `name: !vault |` entry of a group_vars file."""
    entries, name, body = {}, None, []
    for line in [*Path(path).read_text(encoding="utf-8").splitlines(), "END:"]:
        if line.startswith(" ") and name:
            body.append(line.strip())
            continue
        if name:
            entries[name] = "\n".join(body) + "\n"
        match = re.match(r"^(\w+): !vault \|$", line)
        name, body = (match.group(1), []) if match else (None, [])
    return entries


def decrypt(vault_text, password_file):
    """The plain value, or None when this password does not open it."""
    with tempfile.NamedTemporaryFile("w", suffix=".vault", encoding="utf-8") as handle:
        handle.write(vault_text)
        handle.flush()
        res = subprocess.run(  # noqa: S603 (ansible-vault of the virtualenv, fixed arguments)
            [str(Path(sys.executable).parent / "ansible-vault"), "decrypt", "--vault-password-file",
             str(password_file), "--output", "-", handle.name],
            capture_output=True, text=True, check=False, timeout=60,
        )
    return res.stdout if res.returncode == 0 else None


@pytest.fixture(scope="module")
def new_values(run):
    entries = vault_entries(Path(run["inventory"]) / "group_vars" / "all" / "vault.yml")
    assert sorted(entries) == sorted(VAULT_NAMES)
    return {name: decrypt(text, run["vault_password_file"]) for name, text in entries.items()}


@pytest.fixture(scope="module")
def example_admin_key():
    return decrypt(vault_entries(EXAMPLE_VAULT)["vault_iris_admin_api_key"], EXAMPLE_PASSWORD)


@pytest.fixture(scope="module")
def iris_host():
    return testinfra.get_host("ansible://readme-iris", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def iris_get(host, key, path):
    """The command result of a GET of one IRIS API path from the manager, with the distributed CA."""
    return iris_run(host, f"{IRIS}{path}", CA_FILE, key)


def test_vault_holds_the_new_values_only(run, new_values):
    assert new_values["vault_iris_admin_password"] == run["admin_password"]
    assert new_values["vault_wazuh_opencti_token"] == run["opencti_token"]
    assert re.fullmatch(r"[0-9a-f]{64}", new_values["vault_iris_admin_api_key"])  # openssl rand -hex 32
    copied = Path(run["inventory"]) / "group_vars" / "all" / "vault.yml"
    for name, text in vault_entries(copied).items():
        assert decrypt(text, EXAMPLE_PASSWORD) is None, f"{name} still opens with the example password"


def test_iris_was_created_with_the_new_admin_secrets(iris_host, run, new_values):
    env = dict(line.split("=", 1) for line in iris_host.file("/opt/iris/.env").content_string.splitlines()
               if "=" in line and not line.startswith("#"))
    assert env["IRIS_ADM_PASSWORD"] == run["admin_password"]
    assert env["IRIS_ADM_API_KEY"] == new_values["vault_iris_admin_api_key"]


def test_iris_answers_the_new_admin_key_and_refuses_the_example_one(host, new_values, example_admin_key):
    answer = iris_get(host, new_values["vault_iris_admin_api_key"], "/api/ping")
    assert answer.rc == 0 and json.loads(answer.stdout) == [], answer.stderr
    assert example_admin_key and example_admin_key != new_values["vault_iris_admin_api_key"]
    refused = iris_get(host, example_admin_key, "/api/ping")
    assert refused.rc != 0 and "401" in refused.stderr, refused.stdout + refused.stderr


def test_manager_got_the_new_opencti_token(host, run):
    # The token file, not ossec.conf (integratord would pass an <api_key> in argv, readable in /proc).
    assert host.file("/var/ossec/etc/opencti.token").content_string.strip() == run["opencti_token"]
    assert run["opencti_token"] not in host.file("/var/ossec/etc/ossec.conf").content_string


def test_a_wazuh_alert_reaches_iris_with_the_issued_service_key(host, new_values):
    ref = f"readme-{uuid.uuid4().hex}"
    append_alerts(host, [{
        "timestamp": "2026-12-04T10:00:00.000+0000",
        "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system.",
                 "id": "5712", "groups": ["syslog", "sshd", "authentication_failures"]},
        "agent": {"id": "001", "name": "web-01"},
        "manager": {"name": "readme-wazuh"},
        "id": ref,
        "full_log": "sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
        "location": "/var/log/secure",
    }])
    admin_key = new_values["vault_iris_admin_api_key"]

    def in_iris():
        answer = iris_get(host, admin_key, f"/alerts/filter?source_reference={ref}&per_page=50")
        assert answer.rc == 0, answer.stderr
        return [a for a in json.loads(answer.stdout)["alerts"] if a["alert_source_ref"] == f"readme-wazuh:{ref}"]

    (alert,) = wait_for("the alert in IRIS", in_iris)
    created_by = [entry["user"] for entry in (alert.get("modification_history") or {}).values()
                  if entry["action"] == "Alert created"]
    assert created_by == ["wazuh-service"], alert.get("modification_history")
