"""End-to-end checks of the whole stack converged by playbooks/site.yml, through the real Wazuh daemons.

sshd log lines handed to the manager's analysisd become the stock brute-force alert (5712, level 10);
integratord runs the forwarder, the alert is in IRIS exactly once with the provisioned customer, a
severity chosen by name and the expected tags; the AI worker then leaves exactly one comment and the
tag ai-reviewed. A stock Suricata alert line (86601, level 3) with a known-bad IP goes through
integratord to the OpenCTI enrichment, whose event analysisd turns into the 110202 alert, which reaches
IRIS in turn. Every question to IRIS goes from the manager over the lab network to https://lab-iris:9094
and verifies TLS with the CA the stack distributed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
import lab_checks
from lab_checks import alerts_count, alerts_since, iris_run, send_log_line, wait_for

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


def new_alerts_with(host, before, text, rule_id):
    """The alerts written since `before` that hold text, once one of them is of rule_id."""
    found = [a for a in alerts_since(host, before) if text in json.dumps(a)]
    return found if any(a["rule"]["id"] == rule_id for a in found) else None


def test_sshd_log_lines_become_an_iris_alert_then_get_one_ai_comment(host, admin_key):
    before = alerts_count(host)
    source = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    user = f"stack{uuid.uuid4().hex[:8]}"
    for n in range(8):  # stock 5712: 8 times 5710 from one address within 120 s
        send_log_line(host, "/var/log/auth.log", time.strftime("%b %e %H:%M:%S")
                      + f" lab-wazuh sshd[{4100 + n}]: Invalid user {user} from {source} port {50000 + n}")
    found = wait_for("the stock 5712 alert", lambda: new_alerts_with(host, before, source, "5712"))
    (wazuh_alert,) = [a for a in found if a["rule"]["id"] == "5712"]
    assert wazuh_alert["rule"]["level"] == 10
    ref = wazuh_alert["id"]
    (alert,) = wait_for("the alert in IRIS", lambda: alert_by_ref(host, admin_key, ref))

    customers = {c["customer_id"]: c["customer_name"] for c in iris_get(host, admin_key, "/manage/customers/list")}
    assert customers[alert["alert_customer_id"]] == "IrisInitialClient"
    severities = {s["severity_id"]: s["severity_name"] for s in iris_get(host, admin_key, "/manage/severities/list")}
    assert severities[alert["alert_severity_id"]] == "High"  # level 10, resolved by name
    tags = set(alert["alert_tags"].split(","))
    # (no MITRE tag: this manager core has no wazuh-db, so analysisd loads no MITRE data)
    assert {"wazuh", "rule:5712", "agent:lab-wazuh", "lab"} <= tags
    assert tags & {"ai-pending", "ai-processing", "ai-reviewed"}, tags
    for low in (a for a in found if a["rule"]["id"] == "5710"):  # level 5: below <level>7</level>
        assert alert_by_ref(host, admin_key, low["id"]) == []

    def reviewed():
        (current,) = alert_by_ref(host, admin_key, ref)
        return current if "ai-reviewed" in current["alert_tags"].split(",") else None

    done = wait_for("the AI worker's review", reviewed, timeout=180)
    comments = iris_get(host, admin_key, f"/alerts/{done['alert_id']}/comments/list")
    assert len(comments) == 1, comments
    assert done["alert_owner_id"] is None, "the worker must not make itself the owner"


def test_stock_ids_alert_with_a_known_bad_ip_is_enriched_and_the_enrichment_reaches_iris(host, admin_key):
    """86601 is level 3 in the stock ruleset: the role's second block sends it to the enrichment, whose
    match becomes the 110202 alert (level 12), which the forwarder sends to IRIS."""
    before = alerts_count(host)
    signature = f"ET CNC Known C2 {uuid.uuid4().hex[:12]}"
    send_log_line(host, "/var/log/suricata/eve.json", json.dumps({
        "timestamp": "2026-11-25T10:05:00.000000+0000", "event_type": "alert", "src_ip": "10.0.0.23",
        "src_port": 51234, "dest_ip": KNOWN_BAD_IP, "dest_port": 443, "proto": "TCP",
        "alert": {"action": "allowed", "signature": signature, "signature_id": 2000001, "severity": 1}}))
    stock = wait_for("the stock 86601 alert", lambda: new_alerts_with(host, before, signature, "86601"))[0]
    assert (stock["rule"]["id"], stock["rule"]["level"]) == ("86601", 3)

    def enrichment():
        return [a for a in alerts_since(host, before) if a["rule"]["id"] == "110202"
                and a["data"]["opencti"].get("source", {}).get("alert_id") == stock["id"]]

    (enriched,) = wait_for("the OpenCTI match alert (110202)", enrichment, timeout=90)
    assert enriched["rule"]["level"] == 12 and enriched["data"]["opencti"]["matched_value"] == KNOWN_BAD_IP
    (in_iris,) = wait_for("the enrichment alert in IRIS", lambda: alert_by_ref(host, admin_key, enriched["id"]))
    assert "rule:110202" in in_iris["alert_tags"].split(",")
    assert alert_by_ref(host, admin_key, stock["id"]) == []  # level 3: below the forwarder's level 7


def test_the_rollout_restarted_the_manager_once(host):
    """converge + idempotence: wazuh_iris and wazuh_opencti both changed the manager's configuration,
    and the one `restart wazuh-manager` handler restarted it once (a drop-in of prepare logs every start
    of the unit; prepare emptied the log)."""
    starts = host.file("/var/log/wazuh-manager-starts.log").content_string.splitlines()
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
