"""opencti_enrich without sockets or subprocesses: observables per alert family, addresses, the answer
read with its types checked, ranking and caps, the queue message format, cache, options and argv.

Answers come from the OpenCTI emulator's GraphQL executor called in this process (never started, no
socket). The sample alerts use documentation ranges, which the program must skip, so alerts that should
match are built here with real public addresses.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from opencti_enrich import addresses, answer, cache, graphql, observables, ranking, settings, wazuh_queue
from opencti_enrich.addresses import Observable

from tests.emulators.opencti import OpenCTIEmulator
from tests.support.opencti import DOMAIN, IP6, IP_A, IP_B, IP_C, IP_E, SHA, ids_alert, ip_pattern, make_alert

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "files/rules/opencti_rules.xml"
CAPS = {"max_ind_alerts": 3, "max_obs_alerts": 2}


def load_sample(shared_reference, name):
    return json.loads((shared_reference / "sample-alerts" / name).read_text(encoding="utf-8"))


def extract(alert, limit=20):
    return [tuple(o) for o in observables.extract_observables(alert, limit)]


def answer_for(emu, observed):
    """{observable: result} as the program makes it from the emulator's answer to its own request."""
    data = emu.execute(graphql.LOOKUP_QUERY, graphql.build_variables(observed))
    raw = json.dumps({"data": data}).encode()
    return answer.read_answer(200, raw, observed)


@pytest.fixture
def emu():
    return OpenCTIEmulator(token="unit-token-0123456789")  # executor only: never started


# --------------------------------------------------------------------------- observables per family
def test_syscheck_sample_gives_its_sha256(shared_reference):
    alert = load_sample(shared_reference, "syscheck_modified_550.json")
    assert extract(alert) == [("sha256", "48f09f8c313b303ce2ca9365f70ae8d992c5589c56493ac055f0ab129d82c365")]


def test_syscheck_skips_the_empty_file_hash_and_deleted_files(shared_reference):
    alert = load_sample(shared_reference, "syscheck_modified_550.json")
    alert["syscheck"]["sha256_after"] = addresses.EMPTY_FILE_SHA256
    assert extract(alert) == []
    alert["syscheck"]["sha256_after"] = SHA
    alert["rule"]["groups"] = ["ossec", "syscheck", "syscheck_entry_deleted", "syscheck_file"]
    assert extract(alert) == []
    alert["rule"]["groups"] = ["ossec", "syscheck", "syscheck_entry_added", "syscheck_file"]
    assert extract(alert) == [("sha256", SHA)]


def test_sysmon_event_1_sample_gives_the_sha256_lower_case(shared_reference):
    alert = load_sample(shared_reference, "sysmon_eid1_cmd_92002.json")
    assert extract(alert) == [("sha256", "b99d61d874728edc0918ca0eb10eab93d381e7367e377406e65963366c874450")]


@pytest.mark.parametrize(("group", "event_id"), [
    ("sysmon_eid1_detections", 1), ("sysmon_event3", 3), ("sysmon_event_22", 22), ("sysmon_process-anomalies", 1),
    ("sysmon_event_x", None), ("sysmon_eid", None), ("windows_sysmon_eid1", None),
])
def test_sysmon_event_id_from_the_groups(group, event_id):
    assert observables.sysmon_event_id({}, {group}) == event_id


def test_sysmon_event_3_gives_public_destination_and_hostname():
    eventdata = {"destinationIp": IP_A, "destinationHostname": "CDN.Example.NET.", "sourceIp": "10.0.0.5"}
    alert = make_alert(["sysmon", "sysmon_eid3_detections"], {"win": {"eventdata": eventdata}})
    assert extract(alert) == [("ipv4", IP_A), ("domain", "cdn.example.net")]
    eventdata["destinationIp"] = "192.168.1.20"
    assert extract(alert) == [("domain", "cdn.example.net")]


def test_sysmon_event_22_gives_query_name_cnames_and_public_answers():
    results = f"type:  5 edge.example-cdn.com;::ffff:{IP_A};{IP6.upper()};10.1.2.3;type: 5 two words;"
    eventdata = {"queryName": "www.example.org", "queryResults": results}
    system = {"providerName": "Microsoft-Windows-Sysmon", "eventID": "22"}
    alert = make_alert(["sysmon", "windows"], {"win": {"system": system, "eventdata": eventdata}})
    assert extract(alert) == [("domain", "www.example.org"), ("domain", "edge.example-cdn.com"), ("ipv4", IP_A),
                              ("ipv6", IP6)]


def test_suricata_sample_uses_documentation_ranges_so_nothing_is_looked_up(shared_reference):
    assert extract(load_sample(shared_reference, "suricata_alert_86601.json")) == []


def test_suricata_gives_public_ips_dns_queries_and_answers():
    dns = {
        "type": "answer",
        "rrname": DOMAIN,
        "answers": [{"rrtype": "CNAME", "rdata": "cdn.example.com"}, {"rrtype": "A", "rdata": IP_C}],
        "grouped": {"A": [IP_C, IP_E], "AAAA": ["2001:db8::1"]},
    }
    alert = ids_alert(src_ip="10.0.0.4", dest_ip=IP_A, dns=dns)
    assert extract(alert) == [("ipv4", IP_A), ("domain", DOMAIN), ("domain", "cdn.example.com"), ("ipv4", IP_C),
                              ("ipv4", IP_E)]
    v3 = ids_alert(dns={"version": 3, "queries": [{"rrname": "a.example.org"}]})
    assert extract(v3) == [("domain", "a.example.org")]


def test_audit_sample_url_is_in_a_documentation_range(shared_reference):
    assert extract(load_sample(shared_reference, "audit_command_80792.json")) == []


def test_audit_command_gives_urls_their_hosts_and_bare_domains_and_ips():
    execve = {
        "a0": "curl", "a1": "-sO", "a2": f"http://{DOMAIN}/stage2.ps1", "a3": f"--proxy=https://{IP_A}:8443/p",
        "a4": "payload.sh", "a5": "malware-drop.example.org", "a6": f"root@{IP_B}:22", "a7": "/tmp/x.example.com",
        "a8": "http://10.0.0.1/internal",
    }
    alert = make_alert(["audit", "audit_command"], {"audit": {"execve": execve, "exe": "/usr/bin/curl"}})
    assert extract(alert) == [
        ("url", f"http://{DOMAIN}/stage2.ps1"), ("domain", DOMAIN), ("url", f"https://{IP_A}:8443/p"),
        ("ipv4", IP_A), ("domain", "malware-drop.example.org"), ("ipv4", IP_B),
    ]


@pytest.mark.parametrize(("text", "urls"), [
    ("see HTTP://A.example.org/x, and ftp://b.example.org'", ["HTTP://A.example.org/x,", "ftp://b.example.org"]),
    ("xhttp://no.example.org http:// https://[2a03:2880::1]:8443/p|tail", ["https://[2a03:2880::1]:8443/p"]),
    ("(https://user@c.example.org:8080/a?b#c)", ["https://user@c.example.org:8080/a?b#c)"]),
])
def test_urls_are_found_as_the_pattern_in_the_docs_says(text, urls):
    assert observables.find_urls(text) == urls


def test_url_hosts_and_their_observables():
    assert observables.url_host("https://user@Evil.Example.org:8443/p") == "evil.example.org"
    assert observables.url_host("https://[2A03:2880::1]:8443/p") == "2a03:2880::1"
    assert observables.url_host("https://[2a03:2880::1/p") is None
    assert [tuple(o) for o in observables.url_observables("get https://[2a03:2880::1]/x.")] == [
        ("url", "https://[2a03:2880::1]/x"), ("ipv6", "2a03:2880::1")]


def test_audit_arguments_are_read_in_numeric_order():
    execve = {f"a{i}": f"host{i}.example.com" for i in (10, 2, 1)}
    alert = make_alert(["audit_command"], {"audit": {"execve": {**execve, "argc": "3", "ax": "y.example.com"}}})
    expected = ["host1.example.com", "host2.example.com", "host10.example.com"]
    assert [value for _kind, value in extract(alert)] == expected


def test_sonicwall_gives_public_source_and_destination():
    assert extract(make_alert(["sonicwall"], {"srcip": IP_A, "dstip": "192.168.1.10", "srcport": "443"})) == [
        ("ipv4", IP_A)]


def test_fortigate_traffic_gives_public_ips():
    data = {"type": "traffic", "subtype": "forward", "srcip": "10.0.0.8", "dstip": IP_B, "action": "accept"}
    assert extract(make_alert(["fortigate", "firewall"], data)) == [("ipv4", IP_B)]


@pytest.mark.parametrize("data", [
    {"type": "event", "subtype": "system", "logdesc": "Admin login successful", "action": "login"},
    {"type": "event", "subtype": "system", "logdesc": "Admin logout successful", "action": "logout"},
    {"type": "event", "subtype": "system", "logdesc": "Object attribute configured", "action": "Edit",
     "cfgpath": "firewall.policy", "cfgattr": "status[enable->disable]"},
], ids=["login", "logout", "config"])
def test_fortigate_admin_events_are_skipped(data):
    assert extract(make_alert(["fortigate"], dict(data, srcip=IP_A, dstip=IP_B, user="admin"))) == []


def test_osquery_gives_file_sha256_and_remote_address():
    columns = {"path": "/usr/bin/x", "sha256": SHA.upper(), "remote_address": IP_C}
    alert = make_alert(["osquery", "osquery_file"], {"osquery": {"name": "pack_files", "columns": columns}})
    assert extract(alert) == [("sha256", SHA), ("ipv4", IP_C)]


@pytest.mark.parametrize("address", [
    "192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1", "3fff::1", "10.0.0.1", "172.16.0.1", "192.168.1.1",
    "127.0.0.1", "169.254.1.1", "100.64.0.1", "224.0.0.251", "0.0.0.0", "255.255.255.255", "::1", "::", "fe80::1",
    "fd00::1", "ff02::1", "2001::1", "not-an-ip", "", "01.2.3.4", "1.2.3", "256.1.1.1", "1::2::3", "1:2:3:4:5:6:7:8:9",
    "::ffff:10.0.0.1",
])
def test_non_public_and_invalid_addresses_are_skipped(address):
    assert addresses.public_ip(address) is None


def test_ipv6_is_looked_up_in_compressed_form():
    assert addresses.public_ip("2A03:2880:F12F:0083:FACE:B00C:0000:25DE") == Observable("ipv6", IP6)
    assert addresses.public_ip(f"::ffff:{IP_A}") == Observable("ipv4", IP_A)
    assert addresses.public_ip("[2a03:2880:0:0:1:0:0:1%eth0]") == Observable("ipv6", "2a03:2880::1:0:0:1")
    assert addresses.public_ip(" 8.8.8.8 ") == Observable("ipv4", "8.8.8.8")


@pytest.mark.parametrize(("name", "expected"), [
    ("Evil.Example.ORG.", "evil.example.org"), ("a_b.example.com", "a_b.example.com"), ("x.io", "x.io"),
    ("localhost", None), ("host.local", None), ("a.b", None), ("-a.example.com", None), ("a-.example.com", None),
    ("a.example.c0m-", "a.example.c0m-"), ("a.1com", None), ("ex ample.com", None), ("ünï.example.com", None),
    ("a" * 64 + ".example.com", None), ("dc.corp.internal", None),
])
def test_domain_names(name, expected):
    found = addresses.domain_name(name)
    assert (found.value if found else None) == expected


def test_alerts_of_other_families_give_nothing(shared_reference):
    for name in ("sshd_bruteforce_5712.json", "sshd_invalid_user_5710.json", "web_sqli_31103.json"):
        assert extract(load_sample(shared_reference, name)) == []


def test_observables_are_deduplicated_and_capped():
    alert = make_alert(["sonicwall", "ids"], {"srcip": IP_A, "src_ip": IP_A, "dstip": IP_B})
    assert extract(alert) == [("ipv4", IP_B), ("ipv4", IP_A)]  # ids: destination first
    assert extract(alert, 1) == [("ipv4", IP_B)]


def test_malformed_alert_parts_give_nothing_instead_of_crashing():
    assert extract({"rule": {"groups": "ids"}, "data": {"audit": "x", "win": []}}) == []
    alert = make_alert(["audit_command", "sysmon_eid1_detections", "ids"],
                       {"audit": "x", "win": {"eventdata": "y"}, "dns": {"answers": "z", "queries": 1}})
    assert extract(alert) == []


def test_source_context_copies_scalars_only():
    alert = ids_alert(src_ip=IP_A, src_port=4444, proto=["TCP"], dest_port=float("nan"))
    source = observables.source_context(alert)
    assert source["src_port"] == 4444 and source["agent_name"] == "ids-sensor-01"
    assert "proto" not in source and "dest_port" not in source


# --------------------------------------------------------------------------- the answer and the events
def test_answer_becomes_ranked_events_with_every_field(emu):
    emu.load_sample_data()
    observed = [Observable("ipv4", IP_A)]
    events = ranking.build_events(list(answer_for(emu, observed).items()), {"alert_id": "1"}, "http://oc", CAPS)
    assert [e["event_type"] for e in events] == ["indicator_pattern_match", "observable_with_indicator"]
    indicator = events[0]["indicator"]
    assert indicator["name"] == f"Cobalt Strike C2 {IP_A}" and indicator["pattern"] == ip_pattern(IP_A)
    assert (indicator["confidence"], indicator["x_opencti_score"], indicator["x_opencti_detection"]) == (85, 90, True)
    assert indicator["labels"] == ["c2", "cobalt-strike"]
    assert indicator["kill_chain_phases"] == ["mitre-attack:command-and-control"]
    assert indicator["created_by"] == "CERT Example"
    assert indicator["references"] == ["https://threatfox.abuse.ch/ioc/1234/"]
    assert indicator["link"] == f"http://oc/dashboard/observations/indicators/{indicator['id']}"
    assert events[1]["observable_value"] == IP_A and events[1]["multiple_indicators"] is False


def test_related_indicator_event(emu):
    emu.load_sample_data()
    events = ranking.build_events(list(answer_for(emu, [Observable("domain", DOMAIN)]).items()), {}, "http://x", CAPS)
    assert [e["event_type"] for e in events] == ["observable_with_related_indicator"]
    related = events[0]["related"]
    assert related["value"] == IP_A and related["relationship"] == "resolves-to" and related["type"] == "IPv4-Addr"
    assert related["indicator"]["name"] == f"Cobalt Strike C2 {IP_A}"


def ranking_results(emu):
    emu.add_indicator("a", ip_pattern(IP_A), x_opencti_score=90, confidence=50, x_opencti_detection=True)
    emu.add_indicator("b", ip_pattern(IP_B), x_opencti_score=90, confidence=80, x_opencti_detection=True)
    emu.add_indicator("c", ip_pattern(IP_C), x_opencti_score=95, confidence=90, x_opencti_detection=False)
    emu.add_indicator("d", f"[domain-name:value = '{DOMAIN}']", x_opencti_score=100, revoked=True)
    emu.add_indicator("e", ip_pattern(IP_E), x_opencti_score=None, confidence=None, x_opencti_detection=True)
    observed = [Observable("ipv4", ip) for ip in (IP_A, IP_B, IP_C, IP_E)] + [Observable("domain", DOMAIN)]
    return list(answer_for(emu, observed).items())


def test_indicators_are_ranked_and_capped(emu):
    results = ranking_results(emu)
    assert [e["indicator"]["name"] for e in ranking.build_events(results, {}, "x", CAPS)] == ["b", "a", "e"]
    events = ranking.build_events(results, {}, "x", {"max_ind_alerts": 5, "max_obs_alerts": 2})
    assert [e["indicator"]["name"] for e in events] == ["b", "a", "e", "c", "d"]
    assert ranking.build_events(results, {}, "x", {"max_ind_alerts": 0, "max_obs_alerts": 0}) == []


def test_expired_indicator_ranks_after_a_valid_one():
    records = [
        {"id": "1", "name": "old", "exact": True, "x_opencti_score": 100, "valid_until": "2001-01-01T00:00:00Z"},
        {"id": "2", "name": "new", "exact": True, "x_opencti_score": 10, "valid_until": "2999-01-01T00:00:00.1Z"},
        {"id": "3", "name": "odd", "exact": True, "x_opencti_score": 5, "valid_until": "not a date"},
    ]
    assert [r["name"] for r in sorted(records, key=ranking.indicator_rank)] == ["new", "odd", "old"]


@pytest.mark.parametrize(("text", "epoch"), [
    ("1970-01-01T00:00:00Z", 0), ("2024-02-29T12:30:15.5Z", 1709209815.5), ("2024-02-29T14:30:15+02:00", 1709209815),
    ("2024-02-29 12:30", 1709209800), ("2024-02-29", 1709164800),
    ("2024-02-29T12:30:15.123456789-0130", 1709215215.123),
    ("2024-13-01", None), ("24-01-01", None), ("2024-01-01T25:00:00Z", None), ("", None), (None, None), ("now", None),
])
def test_timestamps(text, epoch):
    found = ranking.timestamp(text)
    assert found == epoch if epoch is None else found == pytest.approx(epoch, abs=0.001)


def test_observables_are_ranked_direct_before_related(emu):
    for ip, score in ((IP_A, 50), (IP_B, 90), (IP_C, 99)):
        ind = emu.add_indicator(f"Malicious {ip}", ip_pattern(ip), x_opencti_score=score)
        obs = emu.add_observable("IPv4-Addr", ip, x_opencti_score=score)
        emu.add_relationship("based-on", ind["id"], obs["id"])
        if ip == IP_C:
            domain = emu.add_observable("Domain-Name", DOMAIN)
            emu.add_relationship("resolves-to", domain["id"], obs["id"])
    observed = [Observable("ipv4", IP_A), Observable("ipv4", IP_B), Observable("domain", DOMAIN)]
    results = list(answer_for(emu, observed).items())
    events = ranking.build_events(results, {}, "x", {"max_ind_alerts": 0, "max_obs_alerts": 2})
    assert [(e["event_type"], e["observable_value"]) for e in events] == [
        ("observable_with_indicator", IP_B), ("observable_with_indicator", IP_A)]
    events = ranking.build_events(results, {}, "x", {"max_ind_alerts": 0, "max_obs_alerts": 3})
    assert [e["observable_value"] for e in events] == [IP_B, IP_A, DOMAIN]


def partial_document(*nodes):
    return json.dumps({"data": {"indicators": {"edges": [{"node": n} for n in nodes]},
                                "stixCyberObservables": {"edges": []}}}).encode()


def test_partial_pattern_match_is_reported_as_such():
    pattern = f"[ipv4-addr:value = '{IP_A}'] OR [ipv4-addr:value = '{IP_B}']"
    raw = partial_document({"id": "p", "name": "Either", "pattern": pattern, "x_opencti_score": 99},
                           {"id": "x", "name": "Exact", "pattern": ip_pattern(IP_A)})
    observed = [Observable("ipv4", IP_A), Observable("ipv4", IP_C)]
    results = answer.read_answer(200, raw, observed)
    assert [r["id"] for r in results[observed[0]]["indicators"]] == ["p", "x"]
    assert results[observed[1]]["indicators"] == []
    events = ranking.build_events(list(results.items()), {}, "http://x", CAPS)
    assert [(e["event_type"], e["indicator"]["name"]) for e in events] == [
        ("indicator_pattern_match", "Exact"), ("indicator_partial_pattern_match", "Either")]


def test_nulls_anywhere_inside_the_data_are_unknown_values():
    raw = json.dumps({"data": {
        "indicators": {"edges": [None, {"node": None}, {"cursor": "x"}, {"node": {
            "id": "i1", "name": None, "pattern": None, "confidence": None, "x_opencti_score": 80.0, "revoked": None,
            "objectLabel": [None, {"value": None}], "killChainPhases": [None], "createdBy": None,
            "externalReferences": {"edges": [None, {"node": {"url": None}}]}, "indicator_types": None}}]},
        "stixCyberObservables": {"edges": [{"node": {
            "id": "o1", "observable_value": None, "hashes": [None, {"hash": None}], "objectLabel": None,
            "indicators": {"edges": None}, "relatedFrom": None,
            "relatedTo": {"edges": [{"node": {"from": None, "to": {"id": "o2", "indicators": None}}}]}}}]},
    }}).encode()
    observed = [Observable("ipv4", IP_A)]
    results = answer.read_answer(200, raw, observed)
    [record] = results[observed[0]]["indicators"]
    assert record["id"] == "i1" and record["x_opencti_score"] == 80 and record["revoked"] is False
    events = ranking.build_events(list(results.items()), {}, "http://x", CAPS)
    assert [e["event_type"] for e in events] == ["indicator_partial_pattern_match"]


def test_the_rules_read_only_fields_the_events_have(emu):
    """Each rule's event_type value and every field it reads (match or description) exist in the events."""
    emu.load_sample_data()
    observed = [Observable("ipv4", IP_A), Observable("domain", DOMAIN)]
    events = ranking.build_events(list(answer_for(emu, observed).items()), {"alert_id": "1"}, "http://x",
                                  {"max_ind_alerts": 3, "max_obs_alerts": 5})
    raw = partial_document({"id": "p1", "name": "Partial",
                            "pattern": f"[ipv4-addr:value = '{IP_A}'] AND [network-traffic:dst_port = 4444]"})
    partial = answer.read_answer(200, raw, [Observable("ipv4", IP_A)])
    events += ranking.build_events(list(partial.items()), {}, "http://x", CAPS)
    events.append(wazuh_queue.prune(ranking.error_event("OpenCTI API answered HTTP 500", {})))
    by_type = {e["event_type"]: e for e in events}

    def flat(obj, prefix=""):
        out = {}
        for key, value in obj.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    rules = ET.parse(RULES).getroot().findall("rule")
    assert [r.get("id") for r in rules] == [str(i) for i in range(110200, 110206)]
    assert [r.get("level") for r in rules] == ["10", "5", "12", "12", "10", "10"]
    for rule in rules[1:]:
        fields = {f.get("name"): f.text for f in rule.findall("field")}
        described = [part.split(")")[0] for part in rule.find("description").text.split("$(")[1:]]
        wanted = fields.get("opencti.event_type", "^error$").strip("^$")
        event = flat({"opencti": by_type[wanted]})
        for name in [*fields, *described]:
            assert name in event, f"rule {rule.get('id')} reads {name}, absent from {wanted} events"
    assert rules[0].find("field").get("name") == "integration"


# --------------------------------------------------------------------------- answers the program refuses
def test_graphql_errors_carry_the_servers_message():
    raw = json.dumps({"errors": [{"message": "Schema definition named [hashes] is missing mapping",
                                  "extensions": {"code": "FUNCTIONAL_ERROR"}}], "data": None}).encode()
    with pytest.raises(settings.LookupFailed) as caught:
        answer.read_answer(200, raw, [Observable("ipv4", IP_A)])
    assert str(caught.value) == ("OpenCTI API returned an error: Schema definition named [hashes] is missing "
                                 "mapping (FUNCTIONAL_ERROR)")


@pytest.mark.parametrize(("status", "raw", "message"), [
    (502, b"<html>Bad gateway</html>", "OpenCTI API answered HTTP 502"),
    (400, b'{"errors": [{"message": "bad", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}',
     "OpenCTI API answered HTTP 400: bad (GRAPHQL_VALIDATION_FAILED)"),
    (200, b"\xff\xfe", "OpenCTI API response is not JSON"),
    (200, b"[" * 100000, "OpenCTI API response is not JSON"),
    (200, b'{"data": null}', "OpenCTI API response has no data"),
    (200, b'{"data": {"indicators": null}}', "OpenCTI API response is incomplete: indicators is null"),
    (200, b'{"errors": [{"message": 7}]}', "OpenCTI API returned an error: unknown error"),
])
def test_unusable_documents(status, raw, message):
    with pytest.raises(settings.LookupFailed) as caught:
        answer.read_answer(status, raw, [Observable("ipv4", IP_A)])
    assert str(caught.value) == message


# --------------------------------------------------------------------------- queue messages
@pytest.mark.parametrize(("agent", "location"), [
    ({"id": "000", "name": "wazuh-manager"}, "opencti"),
    (None, "opencti"),
    ({"id": "012", "name": "db|01:eu", "ip": "fd00::12"}, "[012] (db||01|:eu) fd00|:|:12->opencti"),
    ({"id": "013", "name": "web02"}, "[013] (web02) any->opencti"),
], ids=["manager", "no-agent", "escaped", "no-ip"])
def test_queue_location_follows_wazuh_format(agent, location):
    alert = make_alert(["ids"])
    if agent is None:
        del alert["agent"]
    else:
        alert["agent"] = agent
    assert wazuh_queue.queue_location(alert) == location


def test_message_format_and_pruning():
    event = {"event_type": "error", "error": "x\ud800", "source": {"a": "", "b": [], "c": {}, "d": None, "e": 0,
                                                                   "f": False}}
    message = wazuh_queue.encode_message(event, "opencti")
    assert message.startswith(b'1:opencti:{"integration":"opencti","opencti":{')
    payload = json.loads(message.decode("ascii")[len("1:opencti:"):])
    assert payload["opencti"] == {"event_type": "error", "error": "x\ud800", "source": {"e": 0, "f": False}}


def test_oversized_events_are_trimmed_below_the_queue_limit():
    event = {
        "event_type": "indicator_pattern_match",
        "indicator": {"name": "big", "references": ["https://x/" + "r" * 1000] * 40, "labels": ["l" * 1000] * 20},
        "source": {f"field{i}": "v" * 1000 for i in range(80)},
    }
    message = wazuh_queue.encode_message(event, "opencti")
    assert len(message) <= wazuh_queue.MAX_MESSAGE_BYTES < 65536
    payload = json.loads(message.decode()[len("1:opencti:"):])
    assert payload["opencti"]["event_type"] == "indicator_pattern_match"
    assert payload["opencti"]["indicator"]["name"] == "big"


# --------------------------------------------------------------------------- cache (files only)
class Log:
    def __init__(self):
        self.lines = []

    def warning(self, message):
        self.lines.append(message)


def test_cache_round_trip_expiry_and_size(tmp_path):
    log = Log()
    store = cache.ResultCache(str(tmp_path / "state"), 60, 2, log)
    result = {"indicators": [{"id": "i", "name": "x"}], "observables": []}
    for ip in (IP_A, IP_B, IP_C):
        store.put(Observable("ipv4", ip), result)
    store.save()
    assert sorted(os.listdir(tmp_path / "state")) == ["opencti-cache.json"]  # no temp file left behind
    again = cache.ResultCache(str(tmp_path / "state"), 60, 2, log)
    assert again.get(Observable("ipv4", IP_A)) is None  # the oldest was dropped (cache_max_entries)
    assert again.get(Observable("ipv4", IP_C)) == result
    again.entries[f"ipv4:{IP_C}"]["stored"] -= 61
    assert again.get(Observable("ipv4", IP_C)) is None
    assert log.lines == []


@pytest.mark.parametrize("content", [
    '{"entries": {"ipv4:', "[1, 2]", '{"entries": {"ipv4:194.165.16.11": {"stored": "x"}}}',
    '{"entries": {"ipv4:194.165.16.11": {"stored": 9999999999, "result": {"indicators": [1]}}}}',
    '{"entries": {"ipv4:194.165.16.11": {"stored": 9999999999, "result": {"indicators": [{"id": ["x"]}], '
    '"observables": []}}}}',
    '{"entries": {"ipv4:194.165.16.11": {"stored": 9999999999, "result": {"indicators": [], '
    '"observables": [{"id": "o", "related": [{"indicators": "x"}]}]}}}}',
    "\x00\xff",
], ids=["truncated", "list", "bad-stamp", "bad-result", "bad-id", "bad-related", "binary"])
def test_corrupt_cache_file_is_no_hit(tmp_path, content):
    (tmp_path / "opencti-cache.json").write_text(content, encoding="latin-1")
    assert cache.ResultCache(str(tmp_path), 3600, 10, Log()).get(Observable("ipv4", IP_C)) is None


def test_unwritable_state_dir_is_a_warning(tmp_path):
    (tmp_path / "file").write_text("")
    log = Log()
    store = cache.ResultCache(str(tmp_path / "file" / "state"), 60, 10, log)
    store.put(Observable("ipv4", IP_A), {"indicators": [], "observables": []})
    store.save()
    assert [line for line in log.lines if line.startswith("cannot write cache file")]


# --------------------------------------------------------------------------- options and argv
def test_options_are_read_and_checked(tmp_path):
    path = tmp_path / "opts"
    path.write_text(json.dumps({
        "max_ind_alerts": 5, "max_obs_alerts": "2", "cache_ttl": True, "verify_tls": False, "ca_file": None,
        "state_dir": 7, "max_observables": 0, "max_ind_alert": 1,
    }))
    options, problems = settings.load_options(str(path))
    assert options["max_ind_alerts"] == 5 and options["verify_tls"] is False and options["ca_file"] is None
    assert options["max_obs_alerts"] == 2 and options["cache_ttl"] == 3600
    assert options["state_dir"] == "/var/ossec/var/opencti" and options["max_observables"] == 20
    assert problems == [
        "option 'max_obs_alerts' must be an integer; using the default 2",
        "option 'cache_ttl' must be an integer; using the default 3600",
        "option 'state_dir' must be a string; using the default '/var/ossec/var/opencti'",
        "option 'max_observables' must be >= 1; using the default 20",
        "unknown option 'max_ind_alert' ignored",
    ]


@pytest.mark.parametrize(("content", "problem"), [
    ("{oops", "is not JSON"), ("[1]", "must hold a JSON object"), ("", None),
])
def test_unusable_options_file_means_defaults(tmp_path, content, problem):
    path = tmp_path / "opts"
    path.write_text(content)
    options, problems = settings.load_options(str(path))
    assert options == {name: default for name, (_check, default) in settings.OPTIONS.items()}
    assert (problems == []) if problem is None else (len(problems) == 1 and problem in problems[0])
    assert settings.load_options("")[1] == []
    assert settings.load_options(str(tmp_path / "missing"))[1][0].startswith("cannot read options file")


@pytest.mark.parametrize(("tail", "debug", "options_file", "timeout"), [
    ([], False, "", 10), (["debug"], True, "", 10), (["", "o", "20", "3", "> /dev/null 2>&1"], False, "o", 20),
    (["debug", "o", "0", "3"], True, "o", 1), (["", "", "900", "3", ">", "/dev/null", "2>&1"], False, "", 300),
    (["", "", "", "", "> /dev/null 2>&1"], False, "", 10),
], ids=["3-args", "seed-debug", "4.8", "4.8-debug-low", "split-redirect-high", "empty-timeout"])
def test_every_wazuh_argv_layout(tail, debug, options_file, timeout):
    args = settings.parse_argv(["integrations", "/tmp/a.alert", "TOKEN-123", "http://oc/graphql", *tail])
    assert (args.alert_file, args.api_key, args.hook_url) == ("/tmp/a.alert", "TOKEN-123", "http://oc/graphql")
    assert (args.debug, args.options_file, args.timeout) == (debug, options_file, timeout)


@pytest.mark.parametrize("argv", [
    ["p"], ["p", "/tmp/a.alert", "TOKEN"], ["p", "/tmp/a.alert", "TOKEN", "", "", "", "10", "3"],
    # a space in the token shifts every later argument (integratord cuts at most 8 times): refused, not misread
    ["p", "/tmp/a.alert", "TOK", "EN", "http://oc/graphql", "debug", "o", "10", "3"],
    ["p", "/tmp/a.alert", "TOK", "EN", "http://oc/graphql", "", "o", "10", "3 > /dev/null 2>&1"],
    ["p", "/tmp/a.alert", "TOKEN", "http://oc/graphql", "", "", "ten", "3"],
    ["p", "/tmp/a.alert", "TOKEN", "http://oc/graphql", "verbose"],
], ids=["nothing", "no-url", "empty-url", "shifted-debug", "shifted-redirect", "bad-timeout", "bad-debug"])
def test_bad_command_line(argv):
    with pytest.raises(settings.UsageError):
        settings.parse_argv(argv)


@pytest.mark.parametrize(("hook_url", "graphql_url", "safe"), [
    ("https://oc.example/", "https://oc.example/graphql", "https://oc.example/"),
    ("https://u:p@oc.example:8443/graphql?x=1#y", "https://u:p@oc.example:8443/graphql?x=1#y/graphql",
     "https://oc.example:8443/graphql"),
    ("http://oc/base/graphql", "http://oc/base/graphql", "http://oc/base/graphql"),
])
def test_urls(hook_url, graphql_url, safe):
    assert settings.graphql_url(hook_url) == graphql_url
    assert settings.safe_url(hook_url) == safe


def test_no_import_a_run_does_not_need():
    """The modules an alert without observables loads stay free of the slow standard-library modules."""
    for name in ("opencti_enrich.addresses", "opencti_enrich.observables", "opencti_enrich.settings",
                 "opencti_enrich.ranking", "opencti_enrich.cache", "opencti_enrich.wazuh_queue",
                 "opencti_enrich.answer", "opencti_enrich.graphql"):
        source = Path(sys.modules[name].__file__).read_text(encoding="utf-8")
        for slow in ("ipaddress", "re", "json", "datetime", "logging", "socket", "ssl", "http.client", "urllib",
                     "tempfile", "typing", "collections"):
            assert f"\nimport {slow}\n" not in source and f"\nfrom {slow} import" not in source, (name, slow)
