"""One Wazuh, many IRIS customers, many manager nodes: the forwarder's routing and cluster identity against
the IRIS emulator (docs/forwarder.md, "Customers" and "Delivery").

The emulator copies what a real IRIS 2.4.20 answers here (reference: iris-2.4.20.md and the issue's facts):
``GET /manage/customers/list`` needs customers_read (403 "Permission denied" without), and ``POST /alerts/add``
for a customer the account is not linked to answers 400 "User not entitled to create alerts for the client".
"""
import json
import threading

import pytest

from tests.support.forwarder import Hook, Manager, alert, refs

SERVICE_GROUP = "wazuh-service"  # what iris_provision gives the forwarder's account
SERVICE_PERMISSIONS = ["standard_user", "alerts_read", "alerts_write"]


@pytest.fixture
def tenants(tmp_path, emu):
    """Customers Acme and Globex (linked to the account), Initech (not linked), and a manager routing them."""
    ids = {name: emu.add_customer(name) for name in ("Acme", "Globex", "Initech")}
    emu.add_group(SERVICE_GROUP, SERVICE_PERMISSIONS)
    _user, key = emu.add_user("wazuh-forwarder", groups=[SERVICE_GROUP],
                              customers=["IrisInitialClient", "Acme", "Globex"])
    manager = Manager(tmp_path / "ossec", emu, key)
    manager.options.update({
        "customer_field": "agent.labels.customer",
        "customer_routes": [{"field": "agent.name", "match": "web-*", "customer": "Globex"},
                            {"field": "rule.groups", "match": "initech_*", "customer": "Initech"}],
        "customers": {"Acme": ids["Acme"], "Globex": ids["Globex"], "Initech": ids["Initech"]},
        "customer_id": 1,
    })
    return manager, ids


def customer_of(emu):
    return {a["alert_source_ref"]: a["alert_customer_id"] for a in emu.alerts()}


def test_each_alert_lands_in_its_customer(tenants, emu):
    manager, ids = tenants
    assert manager.run(alert(1, agent={"name": "db-01", "labels": {"customer": "Acme"}}), debug="debug") == 0
    assert manager.run(alert(2, agent={"name": "web-07"}), debug="debug") == 0
    assert manager.run(alert(3, agent={"name": "lab-01"}), debug="debug") == 0
    assert customer_of(emu) == {alert(1)["id"]: ids["Acme"], alert(2)["id"]: ids["Globex"], alert(3)["id"]: 1}
    log = manager.log()
    assert f"alert {alert(1)['id']} routed: agent.labels.customer = 'Acme'" in log
    assert f"alert {alert(2)['id']} routed: route 1 (agent.name 'web-*' matched 'web-07')" in log
    assert f"alert {alert(3)['id']} routed: no route matched; customer_id" in log
    assert not any(entry[1].startswith("/manage/customers") for entry in emu.request_log)  # no lookup needed


def link(emu, login, customer_id, linked=True):
    """Link (or unlink) the account to an IRIS customer, as an administrator would."""
    with emu.lock:
        user = next(u for u in emu.state["users"] if u["login"] == login)
        user["customers"] = [c for c in user["customers"] if c != customer_id] + ([customer_id] if linked else [])


def test_an_unlinked_customers_alert_waits_in_the_spool_and_holds_nothing_up(tenants, emu):
    # Issue 22 changed this expectation: the alerts of a customer the account is not linked to used to go to
    # rejected/ (a person had to resend them). A link is configuration, fixed by linking: they now wait in
    # the spool, the other customers' alerts go on, and once linked they arrive by themselves.
    manager, ids = tenants
    emu.stop()
    assert manager.run(alert(1, agent={"name": "web-01"})) == 2
    assert manager.run(alert(2, rule=dict(alert(2)["rule"], groups=["initech_fw"]))) == 2
    assert manager.run(alert(5, rule=dict(alert(5)["rule"], groups=["initech_fw"]))) == 2
    assert manager.run(alert(3, agent={"name": "web-02"})) == 2
    emu.start()
    assert manager.replay() == 0
    assert customer_of(emu) == {alert(1)["id"]: ids["Globex"], alert(3)["id"]: ids["Globex"]}
    assert manager.rejected() == []
    assert sorted(item["source_ref"] for item in manager.spooled()) == sorted([alert(2)["id"], alert(5)["id"]])
    assert manager.log().count("User not entitled to create alerts for the client") == 1  # one try per drain
    assert "not linked to customer 'Initech'" in manager.log()
    assert manager.run(alert(4, rule=dict(alert(4)["rule"], groups=["initech_fw"]))) == 5  # alert mode too
    link(emu, "wazuh-forwarder", ids["Initech"])
    assert manager.replay() == 0
    assert sorted(customer_of(emu)) == sorted(alert(n)["id"] for n in (1, 2, 3, 4, 5))
    assert manager.spooled() == []


def test_an_unlinked_default_customer_never_blocks_the_routed_ones(tenants, emu):
    """The default customer_id unlinked: its alerts wait, every routed customer's alerts are still sent."""
    manager, ids = tenants
    link(emu, "wazuh-forwarder", 1, linked=False)
    emu.stop()
    for number in range(3):
        assert manager.run(alert(number, agent={"name": "lab-01"})) == 2  # customer_id 1
    assert manager.run(alert(7, agent={"name": "web-07"})) == 2  # Globex
    emu.start()
    assert manager.replay() == 0
    assert customer_of(emu) == {alert(7)["id"]: ids["Globex"]}
    assert len(manager.spooled()) == 3
    link(emu, "wazuh-forwarder", 1)
    assert manager.replay() == 0
    assert len(emu.alerts()) == 4 and manager.spooled() == []


def test_a_name_missing_from_customers_is_looked_up_once_when_the_account_may(tenants, emu):
    manager, ids = tenants
    emu.add_group("customer-readers", ["customers_read"])
    user = next(u for u in emu.state["users"] if u["login"] == "wazuh-forwarder")
    user["groups"].append(next(g["group_id"] for g in emu.state["groups"] if g["group_name"] == "customer-readers"))
    manager.options["customers"] = {}
    assert manager.run(alert(1, agent={"name": "x", "labels": {"customer": "acme"}})) == 0  # names: any case
    assert manager.run(alert(2, agent={"name": "web-9"})) == 0
    assert customer_of(emu) == {alert(1)["id"]: ids["Acme"], alert(2)["id"]: ids["Globex"]}
    lookups = [entry for entry in emu.request_log if entry[1] == "/manage/customers/list"]
    assert len(lookups) == 1  # cached for cache_ttl


def test_a_name_the_account_may_not_look_up_is_rejected_with_the_reason(tenants, emu):
    manager, _ids = tenants
    manager.options["customers"] = {}
    assert manager.run(alert(1, agent={"name": "web-1"})) == 4
    assert manager.run(alert(2, agent={"name": "lab-1"})) == 0  # the fallback customer needs no lookup
    (name,) = manager.rejected()
    reason = json.loads((manager.state / "rejected" / name).read_text())["rejected_reason"]
    assert "customer 'Globex' is not in the customers option" in reason
    assert "HTTP 403: Permission denied" in reason
    assert refs(emu) == [alert(2)["id"]]


def test_an_unknown_customer_name_is_rejected(tenants, emu):
    manager, _ids = tenants
    manager.options["customers"] = {}
    emu.add_group("customer-readers", ["customers_read"])
    user = next(u for u in emu.state["users"] if u["login"] == "wazuh-forwarder")
    user["groups"].append(next(g["group_id"] for g in emu.state["groups"] if g["group_name"] == "customer-readers"))
    assert manager.run(alert(1, agent={"name": "x", "labels": {"customer": "Umbrella"}})) == 4
    assert "IRIS has no customer named 'Umbrella' that the account can see" in manager.log()


# ----------------------------------------------------------------------------------------- cluster
def test_same_id_alerts_from_two_nodes_both_arrive_and_a_retry_never_doubles(tenants, emu):
    """node-a's alert 1796000000.4242 is delivered; node-b's different alert with the same id times out on
    its first send. The replay must not take it for node-a's, and must not send it twice either."""
    manager, _ids = tenants
    same = "1796000000.4242"
    node_a = dict(alert(1), id=same, manager={"name": "node-a"}, full_log="on node a")
    node_b = dict(alert(2), id=same, manager={"name": "node-b"}, full_log="on node b")
    assert manager.run(node_a) == 0
    release, committed = threading.Event(), threading.Event()

    def late(phase, body):
        if body["alert_source_ref"] == f"node-b:{same}":
            if phase == "before":
                assert release.wait(60)
            else:
                committed.set()
    with Hook(emu, late):
        assert manager.run(node_b, timeout="1") == 2  # outcome unknown
        release.set()
        assert committed.wait(60)
    assert manager.replay() == 0  # looks node-b's up: present, so not sent again
    assert manager.replay() == 0
    assert sorted(refs(emu)) == [f"node-a:{same}", f"node-b:{same}"]
    assert sorted(a["alert_source_content"]["full_log"] for a in emu.alerts()) == ["on node a", "on node b"]


def test_an_alert_spooled_by_version_0_1_is_still_recognised(tenants, emu):
    """0.1 used the bare Wazuh id as the reference; its spooled items keep theirs and are found by it."""
    manager, _ids = tenants
    old = alert(1, manager={"name": "node-a"})
    emu.create_alert(alert_title="sent by 0.1", alert_severity_id=4, alert_status_id=2, alert_customer_id=1,
                     alert_source_ref=old["id"])
    (manager.state / "spool").mkdir(parents=True)
    item = {"v": 1, "source_ref": old["id"], "severity": "High", "status": "New", "created": 1.0, "attempts": 1,
            "ambiguous": True, "last_error": "timeout",
            "payload": {"alert_title": "sent by 0.1", "alert_source": "Wazuh", "alert_source_ref": old["id"],
                        "alert_customer_id": 1, "alert_description": "x", "alert_tags": "wazuh",
                        "alert_source_content": old}}
    (manager.state / "spool" / f"00000000000000000001-aaaaaa-{old['id']}.json").write_text(json.dumps(item))
    assert manager.replay() == 0
    assert refs(emu) == [old["id"]]
    assert f"spooled alert {old['id']} is already IRIS alert" in manager.log()
