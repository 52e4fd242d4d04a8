"""End-to-end checks of the whole stack converged by playbooks/site.yml.

A Wazuh alert appended to alerts.json on the manager becomes an IRIS alert with the provisioned
customer, a severity chosen by name and the expected tags; the AI worker then leaves exactly one
comment and the tag ai-reviewed; an IDS alert with a known-bad IP produces an OpenCTI enrichment
event on analysisd's queue socket. Every question to IRIS goes from the manager over the lab
network to https://lab-iris:9094 and verifies TLS with the CA the stack distributed.
"""

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
import lab_checks
from lab_checks import append_alerts, iris_run, wait_for

testinfra_hosts = ["ansible://lab-wazuh"]

OSSEC = "/var/ossec"
ALERTS_JSON = f"{OSSEC}/logs/alerts/alerts.json"
CA_FILE = f"{OSSEC}/etc/iris-ca.pem"
IRIS = "https://lab-iris:9094"
KNOWN_BAD_IP = "45.155.205.233"  # in the OpenCTI emulator's sample intel; never contacted
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))


@pytest.fixture(scope="module")
def iris_host():
    return testinfra.get_host("ansible://lab-iris", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def admin_key(iris_host):
    env = iris_host.file("/opt/iris/.env").content_string
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("IRIS_ADM_API_KEY="))


@pytest.fixture(scope="module")
def settings(host):
    return host.ansible.get_variables()


def iris_get(host, key, path):
    return lab_checks.iris_get(host, f"{IRIS}{path}", CA_FILE, key)


def alert_by_ref(host, key, ref):
    """The IRIS alerts of Wazuh alert ref: their reference is <manager.name>:<Wazuh id> (docs/forwarder.md)."""
    data = iris_get(host, key, f"/alerts/filter?source_reference={ref}&per_page=50")
    return [a for a in data["alerts"] if a["alert_source_ref"] == f"lab-wazuh:{ref}"]


def test_iris_answers_the_manager_over_verified_tls(host, iris_host, admin_key):
    assert iris_host.socket("tcp://0.0.0.0:9094").is_listening
    assert iris_get(host, admin_key, "/api/ping") == []  # TLS verified against the distributed CA
    system_cas = "/etc/ssl/certs/ca-certificates.crt"
    wrong_ca = iris_run(host, f"{IRIS}/api/ping", system_cas, admin_key)
    assert wrong_ca.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in wrong_ca.stderr


def test_wazuh_alert_becomes_an_iris_alert_then_gets_one_ai_comment(host, admin_key):
    ref = f"stack-{uuid.uuid4().hex}"
    append_alerts(host, [{
        "timestamp": "2026-11-25T10:00:00.000+0000",
        "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system.",
                 "id": "5712", "groups": ["syslog", "sshd", "authentication_failures"],
                 "mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]}},
        "agent": {"id": "001", "name": "web-01", "ip": "10.0.0.5"},
        "manager": {"name": "lab-wazuh"},
        "id": ref,
        "full_log": "sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
        "location": "/var/log/secure",
    }])
    (alert,) = wait_for("the alert in IRIS", lambda: alert_by_ref(host, admin_key, ref))

    customers = {c["customer_id"]: c["customer_name"] for c in iris_get(host, admin_key, "/manage/customers/list")}
    assert customers[alert["alert_customer_id"]] == "IrisInitialClient"
    severities = {s["severity_id"]: s["severity_name"] for s in iris_get(host, admin_key, "/manage/severities/list")}
    assert severities[alert["alert_severity_id"]] == "High"  # level 10, resolved by name
    tags = set(alert["alert_tags"].split(","))
    assert {"wazuh", "rule:5712", "agent:web-01", "T1110", "lab"} <= tags
    assert tags & {"ai-pending", "ai-processing", "ai-reviewed"}, tags

    def reviewed():
        (current,) = alert_by_ref(host, admin_key, ref)
        return current if "ai-reviewed" in current["alert_tags"].split(",") else None

    done = wait_for("the AI worker's review", reviewed, timeout=180)
    comments = iris_get(host, admin_key, f"/alerts/{done['alert_id']}/comments/list")
    assert len(comments) == 1, comments
    assert done["alert_owner_id"] is None, "the worker must not make itself the owner"


def test_ids_alert_with_a_known_bad_ip_is_enriched_from_opencti(host, settings):
    alert_id = f"stack-ids-{uuid.uuid4().hex}"
    append_alerts(host, [{
        "timestamp": "2026-11-25T10:05:00.000+0000",
        "rule": {"level": 6, "description": "Suricata: Alert - ET CNC Known C2", "id": "86601",
                 "groups": ["ids", "suricata"]},
        "agent": {"id": "002", "name": "sensor-01", "ip": "10.0.0.9"},
        "manager": {"name": "lab-wazuh"},
        "id": alert_id,
        "decoder": {"name": "json"},
        "data": {"src_ip": "10.0.0.23", "src_port": "51234", "dest_ip": KNOWN_BAD_IP, "dest_port": "443",
                 "proto": "TCP", "event_type": "alert",
                 "alert": {"signature": "ET CNC Known C2", "signature_id": "2000001", "severity": "1"}},
        "location": "/var/log/suricata/eve.json",
    }])
    record = settings["molecule_queue_record"]

    def enrichment_events():
        lines = host.run(f"cat {record} 2>/dev/null").stdout.splitlines()
        return [line for line in lines if alert_id in line and '"integration"' in line and "opencti" in line]

    events = wait_for("an OpenCTI enrichment event on the queue socket", enrichment_events, timeout=60)
    assert any(KNOWN_BAD_IP in event for event in events)


def test_the_rollout_restarted_the_manager_once(host):
    """converge + idempotence: wazuh_iris and wazuh_opencti both changed the manager's configuration,
    and the one `restart wazuh-manager` handler restarted it once (the stand-in logs every start;
    prepare emptied the log)."""
    starts = host.file("/var/log/wazuh-standin-starts.log").content_string.splitlines()
    assert starts == ["started"], starts


def test_ossec_conf_holds_no_iris_key(host):
    with host.sudo():
        key = host.file(f"{OSSEC}/etc/iris-forwarder.key").content_string.strip()
        conf = host.file(f"{OSSEC}/etc/ossec.conf").content_string
    block = conf.split("socstack.wazuh_iris.wazuh_iris - DFIR-IRIS forwarder")[1]
    assert key and key not in conf
    assert "<api_key>" not in block


def test_a_wrong_key_fails_the_preflight_with_iris_message_and_changes_nothing(host):
    """A second converge with a deliberately wrong key for the manager: the forwarder's preflight fails
    the play with IRIS's own 401 text before anything is written."""
    with host.sudo():
        before = {path: host.file(path).sha256sum for path in
                  (f"{OSSEC}/etc/ossec.conf", f"{OSSEC}/etc/iris-forwarder.key", f"{OSSEC}/etc/iris-forwarder.json")}
    wrong = "wrong" + uuid.uuid4().hex
    playbook = shutil.which("ansible-playbook")  # the one molecule runs with (its virtualenv is first on PATH)
    run = subprocess.run(  # noqa: S603 (fixed arguments; the key is ours)
        [playbook, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PROJECT / "playbooks" / "site.yml"),
         "-e", f"wazuh_iris_api_key={wrong}"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "Authentication required" in out, out[-3000:]  # IRIS's own 401 text
    assert wrong not in out
    recap = dict(re.findall(r"^(lab-\S+)\s*:\s*(.*)$", out, re.MULTILINE))
    assert "changed=0" in recap["lab-wazuh"] and "failed=1" in recap["lab-wazuh"], recap
    assert "changed=0" in recap["lab-iris"], recap
    with host.sudo():
        after = {path: host.file(path).sha256sum for path in before}
    assert after == before
