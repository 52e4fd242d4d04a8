"""Checks of scenario tenants: one IRIS, two customers, two Wazuh manager nodes.

Alerts are appended to alerts.json on tenants-master and tenants-worker (real Wazuh managers, lab
image), go through the real integratord and the forwarder the wazuh_iris role installed, over the network to https://tenants-iris:8443,
and are looked up in IRIS with the admin key (which sees every customer). integratord is asynchronous,
so every check polls with a deadline.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
from lab_checks import append_alerts, iris_alerts, iris_get, wait_for

testinfra_hosts = ["ansible://tenants-iris"]

OSSEC = "/var/ossec"
OPTIONS = f"{OSSEC}/etc/iris-forwarder.json"
PROGRAM = f"{OSSEC}/integrations/custom-wazuh_iris.py"
PYTHON = f"{OSSEC}/framework/python/bin/python3"
CA_FILE = f"{OSSEC}/etc/iris-ca.pem"
REJECTED = f"{OSSEC}/var/iris-forwarder/rejected"
SPOOL = f"{OSSEC}/var/iris-forwarder/spool"
INTEGRATIONS_LOG = f"{OSSEC}/logs/integrations.log"
NODES = ("tenants-master", "tenants-worker")
EPOCH = int(time.time())  # Wazuh ids are <epoch>.<byte offset>: new ones on every verify run


def manager(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def settings(host):
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def iris(host, settings):
    """GET on IRIS from its own host, as the admin: iris(path) -> data."""
    base = f"https://127.0.0.1:{settings['molecule_iris_port']}"
    ca_file = f"{settings['molecule_iris_dir']}/ca.pem"
    key = settings["molecule_iris_admin_key"]

    def get(path):
        return iris_get(host, f"{base}{path}", ca_file, key)

    get.alerts = lambda ref_part: iris_alerts(host, base, ca_file, key, ref_part)
    return get


@pytest.fixture(scope="module")
def customers(iris):
    """name -> id of every IRIS customer."""
    return {c["customer_name"]: c["customer_id"] for c in iris("/manage/customers/list")}


def wazuh_alert(node, offset, agent, description="sshd: brute force trying to get access to the system.",
                full_log="sshd[17584]: Invalid user paco from 172.17.1.1 port 56404"):
    return {
        "timestamp": "2026-12-04T10:00:00.000+0000",
        "rule": {"level": 10, "description": description, "id": "5712",
                 "groups": ["syslog", "sshd", "authentication_failures"]},
        "agent": agent,
        "manager": {"name": node},
        "id": f"{EPOCH}.{offset}",
        "full_log": full_log,
        "location": "/var/log/secure",
    }


def ref_of(alert):
    return f"{alert['manager']['name']}:{alert['id']}"


def delivered(iris, alert):
    """The IRIS alert made from a Wazuh alert, polled until it is there."""
    ref = ref_of(alert)

    def matching():
        return [a for a in iris.alerts(alert["id"]) if a["alert_source_ref"] == ref]

    (found,) = wait_for(f"alert {ref} in IRIS", matching)
    return found


def rejected_items(node_host):
    """source_ref -> item of every alert in the node's rejected/."""
    items = {}
    for name in node_host.file(REJECTED).listdir() if node_host.file(REJECTED).exists else []:
        if name.endswith(".json"):
            item = json.loads(node_host.file(f"{REJECTED}/{name}").content_string)
            items[item["source_ref"]] = item
    return items


# -------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("node", NODES)
def test_manager_reaches_iris_by_name_with_the_published_ca(node, settings):
    answer = iris_get(manager(node), f"https://tenants-iris:{settings['molecule_iris_port']}/api/ping", CA_FILE,
                      settings["molecule_iris_admin_key"])
    assert answer == []


@pytest.mark.parametrize("node", NODES)
def test_routing_options_come_from_the_tenants(node, settings, customers):
    options = json.loads(manager(node).file(OPTIONS).content_string)
    assert options["hook_url"] == f"https://tenants-iris:{settings['molecule_iris_port']}/alerts/add"
    assert options["customer_id"] == customers["IrisInitialClient"]
    assert options["customer_field"] == "agent.labels.customer"
    assert options["customer_routes"] == [{"field": "agent.name", "match": "web-*", "customer": "Globex"}]
    provisioned = {name: customers[name] for name in ("IrisInitialClient", "Acme", "Globex")}
    # the worker's inventory adds the unlinked customer's id; the master uses the role's default
    assert options["customers"] == (dict(provisioned, Initech=customers["Initech"]) if node == "tenants-worker"
                                    else provisioned)


@pytest.mark.parametrize("node", NODES)
def test_the_preflight_names_a_customer_the_account_is_not_linked_to(node, customers):
    """The master's configuration passes the preflight (the role ran it on converge); the worker's names
    Initech, which the account is not linked to: the preflight fails and says so."""
    check = manager(node).run(f"runuser -u wazuh -- {PYTHON} -IS {PROGRAM} --check-connection --options {OPTIONS}")
    lines = check.stdout.splitlines()
    if node == "tenants-master":
        assert check.rc == 0, check.stdout + check.stderr
        assert f"ok customer: the account is linked to customer {customers['Acme']} (Acme)" in lines
    else:
        assert check.rc != 0
        assert any(line.startswith("error customer:") and f"not linked to customer {customers['Initech']}" in line
                   for line in lines), check.stdout


# ---------------------------------------------------------------------------------------------- alerts
def test_each_alert_lands_in_its_customer(customers, iris):
    on_master = manager("tenants-master")
    sent = [
        (wazuh_alert("tenants-master", 1001, {"id": "011", "name": "db-01", "labels": {"customer": "Acme"}}), "Acme"),
        (wazuh_alert("tenants-master", 1002, {"id": "021", "name": "web-07"}), "Globex"),
        (wazuh_alert("tenants-master", 1003, {"id": "001", "name": "lab-01"}), "IrisInitialClient"),
        # the label is tried before the routes
        (wazuh_alert("tenants-master", 1004, {"id": "012", "name": "web-08", "labels": {"customer": "Acme"}}), "Acme"),
    ]
    append_alerts(on_master, [alert for alert, _customer in sent])
    on_worker = (wazuh_alert("tenants-worker", 1005, {"id": "022", "name": "web-12"}), "Globex")
    append_alerts(manager("tenants-worker"), [on_worker[0]])
    for alert, customer in [*sent, on_worker]:
        assert delivered(iris, alert)["alert_customer_id"] == customers[customer], (ref_of(alert), customer)


def test_same_wazuh_id_from_both_nodes_both_arrive(customers, iris):
    master_alert = wazuh_alert("tenants-master", 4242, {"id": "013", "name": "db-02", "labels": {"customer": "Acme"}})
    worker_alert = wazuh_alert("tenants-worker", 4242, {"id": "023", "name": "web-09"},
                               description="Multiple web server 400 error codes from same source ip.",
                               full_log='10.0.0.9 - - "GET /admin HTTP/1.1" 404 153')
    assert master_alert["id"] == worker_alert["id"]
    append_alerts(manager("tenants-master"), [master_alert])
    append_alerts(manager("tenants-worker"), [worker_alert])
    from_master, from_worker = delivered(iris, master_alert), delivered(iris, worker_alert)
    assert from_master["alert_id"] != from_worker["alert_id"]
    expected = (customers["Acme"], customers["Globex"])
    assert (from_master["alert_customer_id"], from_worker["alert_customer_id"]) == expected
    assert from_master["alert_title"] == "sshd: brute force trying to get access to the system. (db-02)"
    assert from_worker["alert_title"] == "Multiple web server 400 error codes from same source ip. (web-09)"
    same_id = [a["alert_source_ref"] for a in iris.alerts(master_alert["id"])
               if a["alert_source_ref"].endswith(f":{master_alert['id']}")]
    assert sorted(same_id) == [ref_of(master_alert), ref_of(worker_alert)]


def test_unknown_customer_goes_to_rejected_and_holds_nothing_up(customers, iris):
    """The master runs the role's default customers option: Initech is looked up by name and the account
    sees only its own customers, so IRIS has no such customer for it: one alert's problem, rejected/."""
    node, reason = "tenants-master", "IRIS has no customer named 'Initech'"
    node_host = manager(node)
    unlinked = wazuh_alert(node, 7000, {"id": "031", "name": "fin-01", "labels": {"customer": "Initech"}})
    after = wazuh_alert(node, 7001, {"id": "014", "name": "db-03", "labels": {"customer": "Acme"}})
    append_alerts(node_host, [unlinked, after])

    assert delivered(iris, after)["alert_customer_id"] == customers["Acme"]
    item = wait_for(f"{ref_of(unlinked)} in rejected/", lambda: rejected_items(node_host).get(ref_of(unlinked)))
    assert reason in item["rejected_reason"], item["rejected_reason"]
    assert item["customer"] == "Initech"
    assert [a for a in iris.alerts(unlinked["id"]) if a["alert_source_ref"] == ref_of(unlinked)] == []
    assert node_host.run(f"grep -rl -F '{unlinked['id']}' {SPOOL}").stdout == ""
    log = node_host.file(INTEGRATIONS_LOG).content_string
    assert f"IRIS rejected alert {ref_of(unlinked)}: " in log


def test_unlinked_customer_waits_in_the_spool_and_holds_nothing_up(customers, iris):
    """The worker's customers option names Initech's id and IRIS refuses the alert (not entitled): a link is
    configuration, so the alert waits in the spool (docs/forwarder.md, issue 22) while the alerts of the
    other customers go on."""
    node = "tenants-worker"
    node_host = manager(node)
    unlinked = wazuh_alert(node, 7010, {"id": "031", "name": "fin-01", "labels": {"customer": "Initech"}})
    after = wazuh_alert(node, 7011, {"id": "014", "name": "db-03", "labels": {"customer": "Acme"}})
    append_alerts(node_host, [unlinked, after])

    assert delivered(iris, after)["alert_customer_id"] == customers["Acme"]
    wait_for("the refusal in the log", lambda: "not linked to customer 'Initech'"
             in node_host.file(INTEGRATIONS_LOG).content_string)
    assert node_host.run(f"grep -rl -F '{unlinked['id']}' {SPOOL}").stdout.strip()
    assert ref_of(unlinked) not in rejected_items(node_host)
    assert [a for a in iris.alerts(unlinked["id"]) if a["alert_source_ref"] == ref_of(unlinked)] == []
