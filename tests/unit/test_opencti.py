"""custom-opencti.py: observables per alert family, one request per alert, events on the queue
socket, ranking and caps, cache, options, argv layouts and every error path.

OpenCTI is tests/emulators/opencti.py on 127.0.0.1. The sample alerts use documentation ranges,
which the program must skip, so alerts that should match are built here with real public
addresses (never contacted: every request goes to the emulator).
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.emulators.opencti import OpenCTIEmulator

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "files/integrations/custom-opencti.py"
LAUNCHER = ROOT / "files/integrations/custom-opencti"
RULES = ROOT / "files/rules/opencti_rules.xml"
TOKEN = "oc-token-7f3a9c1e2b4d6f8a0c2e4a6b8d0f1e3c5a7b"

spec = importlib.util.spec_from_file_location("custom_opencti", PROGRAM)
oc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oc)

IP_A = "45.155.205.233"
IP_B = "185.220.101.4"
IP_C = "194.165.16.11"
IP_E = "91.240.118.172"
IP6 = "2a03:2880:f12f:83:face:b00c:0:25de"
DOMAIN = "update-check.example.net"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def ip_pattern(ip):
    kind = "ipv6-addr" if ":" in ip else "ipv4-addr"
    return f"[{kind}:value = '{ip}']"


def make_alert(groups, data=None, *, agent=None, **top):
    alert = {
        "timestamp": "2025-06-03T09:14:22.518+0000",
        "id": "1748942062.8845211",
        "rule": {"id": "100100", "level": 5, "description": "test alert", "groups": groups},
        "agent": agent or {"id": "000", "name": "wazuh-manager"},
        "data": data or {},
        "location": "test",
    }
    alert.update(top)
    return alert


def ids_alert(**data):
    return make_alert(["ids", "suricata"], data, agent={"id": "005", "name": "ids-sensor-01", "ip": "192.168.10.5"})


def load_sample(shared_reference, name):
    return json.loads((shared_reference / "sample-alerts" / name).read_text(encoding="utf-8"))


def kinds(observables):
    return [(o.kind, o.value) for o in observables]


class Harness:
    """A short /tmp directory (AF_UNIX paths are limited to 108 bytes) with a bound queue socket."""

    def __init__(self, emu):
        self.emu = emu
        self.dir = Path(tempfile.mkdtemp(prefix="oc", dir="/tmp"))
        self.socket_path = str(self.dir / "queue")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.socket_path)
        self.sock.setblocking(False)
        self.state_dir = self.dir / "state"
        self.log_file = self.dir / "integrations.log"
        self.options = {
            "state_dir": str(self.state_dir),
            "queue_socket": self.socket_path,
            "log_file": str(self.log_file),
        }

    def write_alert(self, alert):
        path = self.dir / "alert.json"
        path.write_text(alert if isinstance(alert, str) else json.dumps(alert), encoding="utf-8")
        return str(path)

    def write_options(self, extra=None, raw=None):
        path = self.dir / "options.json"
        path.write_text(raw if raw is not None else json.dumps({**self.options, **(extra or {})}) + "\n")
        return str(path)

    def argv(self, alert, *, options=None, token=TOKEN, url=None, timeout="5", debug=""):
        """The 4.8+ layout integratord uses when debug is off (literal redirect element included)."""
        return ["custom-opencti.py", self.write_alert(alert), token, url or self.emu.graphql_url, debug,
                self.write_options(options), timeout, "3", "> /dev/null 2>&1"]  # fmt: skip

    def run(self, alert, **kwargs):
        return oc.main(self.argv(alert, **kwargs))

    def messages(self):
        """(location, payload) for every datagram received so far."""
        found = []
        while True:
            try:
                raw = self.sock.recv(70000)
            except BlockingIOError:
                return found
            text = raw.decode("utf-8")
            assert text.startswith("1:"), text[:80]
            cut = text.index(':{"integration"')
            found.append((text[2:cut], json.loads(text[cut + 1 :])))

    def events(self):
        payloads = [payload for _unused, payload in self.messages()]
        for payload in payloads:
            assert payload["integration"] == "opencti"
        return [payload["opencti"] for payload in payloads]

    def log(self):
        return self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def emulator():
    emu = OpenCTIEmulator(token=TOKEN).start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator):
    emulator.reset()
    return emulator


@pytest.fixture
def harness(emu):
    h = Harness(emu)
    yield h
    h.close()


def add_ip_intel(emu, ip, name=None, **fields):
    """An indicator + observable pair tied by based-on, as OpenCTI builds them."""
    indicator = emu.add_indicator(name or f"Malicious {ip}", ip_pattern(ip), **fields)
    entity_type = "IPv6-Addr" if ":" in ip else "IPv4-Addr"
    observable = emu.add_observable(entity_type, ip, x_opencti_score=fields.get("x_opencti_score"))
    emu.add_relationship("based-on", indicator["id"], observable["id"])
    return indicator, observable


# --------------------------------------------------------------------------- observables per family


def test_syscheck_sample_gives_its_sha256(shared_reference):
    alert = load_sample(shared_reference, "syscheck_modified_550.json")
    assert kinds(oc.extract_observables(alert, 20)) == [
        ("sha256", "48f09f8c313b303ce2ca9365f70ae8d992c5589c56493ac055f0ab129d82c365")
    ]


def test_syscheck_skips_the_empty_file_hash_and_deleted_files(shared_reference):
    alert = load_sample(shared_reference, "syscheck_modified_550.json")
    alert["syscheck"]["sha256_after"] = oc.EMPTY_FILE_SHA256
    assert oc.extract_observables(alert, 20) == []
    alert["syscheck"]["sha256_after"] = SHA
    alert["rule"]["groups"] = ["ossec", "syscheck", "syscheck_entry_deleted", "syscheck_file"]
    assert oc.extract_observables(alert, 20) == []
    alert["rule"]["groups"] = ["ossec", "syscheck", "syscheck_entry_added", "syscheck_file"]
    assert kinds(oc.extract_observables(alert, 20)) == [("sha256", SHA)]


def test_sysmon_event_1_sample_gives_the_sha256_lower_case(shared_reference):
    alert = load_sample(shared_reference, "sysmon_eid1_cmd_92002.json")
    assert kinds(oc.extract_observables(alert, 20)) == [
        ("sha256", "b99d61d874728edc0918ca0eb10eab93d381e7367e377406e65963366c874450")
    ]


def test_sysmon_event_3_gives_public_destination_and_hostname():
    eventdata = {"destinationIp": IP_A, "destinationHostname": "CDN.Example.NET.", "sourceIp": "10.0.0.5"}
    alert = make_alert(["sysmon", "sysmon_eid3_detections"], {"win": {"eventdata": eventdata}})
    assert kinds(oc.extract_observables(alert, 20)) == [("ipv4", IP_A), ("domain", "cdn.example.net")]
    eventdata["destinationIp"] = "192.168.1.20"
    assert kinds(oc.extract_observables(alert, 20)) == [("domain", "cdn.example.net")]


def test_sysmon_event_22_gives_query_name_cnames_and_public_answers():
    results = f"type:  5 edge.example-cdn.com;::ffff:{IP_A};{IP6.upper()};10.1.2.3;"
    eventdata = {"queryName": "www.example.org", "queryResults": results}
    system = {"providerName": "Microsoft-Windows-Sysmon", "eventID": "22"}
    alert = make_alert(["sysmon", "windows"], {"win": {"system": system, "eventdata": eventdata}})
    assert kinds(oc.extract_observables(alert, 20)) == [
        ("domain", "www.example.org"),
        ("domain", "edge.example-cdn.com"),
        ("ipv4", IP_A),
        ("ipv6", IP6),
    ]


def test_suricata_sample_uses_documentation_ranges_so_nothing_is_looked_up(shared_reference, harness, emu):
    alert = load_sample(shared_reference, "suricata_alert_86601.json")
    assert oc.extract_observables(alert, 20) == []
    assert harness.run(alert) == 0
    assert emu.request_count == 0
    assert harness.messages() == []


def test_suricata_gives_public_ips_dns_queries_and_answers():
    dns = {
        "type": "answer",
        "rrname": DOMAIN,
        "answers": [{"rrtype": "CNAME", "rdata": "cdn.example.com"}, {"rrtype": "A", "rdata": IP_C}],
        "grouped": {"A": [IP_C, IP_E], "AAAA": ["2001:db8::1"]},
    }
    alert = ids_alert(src_ip="10.0.0.4", dest_ip=IP_A, dns=dns)
    assert kinds(oc.extract_observables(alert, 20)) == [
        ("ipv4", IP_A),
        ("domain", DOMAIN),
        ("domain", "cdn.example.com"),
        ("ipv4", IP_C),
        ("ipv4", IP_E),
    ]
    v3 = ids_alert(dns={"version": 3, "queries": [{"rrname": "a.example.org"}]})
    assert kinds(oc.extract_observables(v3, 20)) == [("domain", "a.example.org")]


def test_audit_sample_url_is_in_a_documentation_range(shared_reference):
    alert = load_sample(shared_reference, "audit_command_80792.json")
    assert oc.extract_observables(alert, 20) == []


def test_audit_command_gives_urls_their_hosts_and_bare_domains_and_ips():
    execve = {
        "a0": "curl",
        "a1": "-sO",
        "a2": f"http://{DOMAIN}/stage2.ps1",
        "a3": f"--proxy=https://{IP_A}:8443/p",
        "a4": "payload.sh",
        "a5": "malware-drop.example.org",
        "a6": f"root@{IP_B}:22",
        "a7": "/tmp/x.example.com",
        "a8": "http://10.0.0.1/internal",
    }
    alert = make_alert(["audit", "audit_command"], {"audit": {"execve": execve, "exe": "/usr/bin/curl"}})
    assert kinds(oc.extract_observables(alert, 20)) == [
        ("url", f"http://{DOMAIN}/stage2.ps1"),
        ("domain", DOMAIN),
        ("url", f"https://{IP_A}:8443/p"),
        ("ipv4", IP_A),
        ("domain", "malware-drop.example.org"),
        ("ipv4", IP_B),
    ]


def test_audit_arguments_are_read_in_numeric_order():
    execve = {f"a{i}": f"host{i}.example.com" for i in (10, 2, 1)}
    alert = make_alert(["audit_command"], {"audit": {"execve": execve}})
    assert [o.value for o in oc.extract_observables(alert, 20)] == [
        "host1.example.com", "host2.example.com", "host10.example.com",
    ]  # fmt: skip


def test_sonicwall_gives_public_source_and_destination():
    alert = make_alert(["sonicwall"], {"srcip": IP_A, "dstip": "192.168.1.10", "srcport": "443"})
    assert kinds(oc.extract_observables(alert, 20)) == [("ipv4", IP_A)]


def test_fortigate_traffic_gives_public_ips():
    data = {"type": "traffic", "subtype": "forward", "srcip": "10.0.0.8", "dstip": IP_B, "action": "accept"}
    assert kinds(oc.extract_observables(make_alert(["fortigate", "firewall"], data), 20)) == [("ipv4", IP_B)]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "event", "subtype": "system", "logdesc": "Admin login successful", "action": "login"},
        {"type": "event", "subtype": "system", "logdesc": "Admin logout successful", "action": "logout"},
        {"type": "event", "subtype": "system", "logdesc": "Object attribute configured", "action": "Edit",
         "cfgpath": "firewall.policy", "cfgattr": "status[enable->disable]"},
    ],
    ids=["login", "logout", "config"],
)  # fmt: skip
def test_fortigate_admin_events_are_skipped(data):
    data = dict(data, srcip=IP_A, dstip=IP_B, user="admin")
    assert oc.extract_observables(make_alert(["fortigate"], data), 20) == []


def test_osquery_gives_file_sha256_and_remote_address():
    columns = {"path": "/usr/bin/x", "sha256": SHA.upper(), "remote_address": IP_C}
    alert = make_alert(["osquery", "osquery_file"], {"osquery": {"name": "pack_files", "columns": columns}})
    assert kinds(oc.extract_observables(alert, 20)) == [("sha256", SHA), ("ipv4", IP_C)]


@pytest.mark.parametrize(
    "address",
    ["192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1", "3fff::1", "10.0.0.1", "172.16.0.1",
     "192.168.1.1", "127.0.0.1", "169.254.1.1", "100.64.0.1", "224.0.0.251", "0.0.0.0", "::1", "fe80::1",
     "fd00::1", "ff02::1", "not-an-ip", ""],
)  # fmt: skip
def test_non_public_addresses_are_skipped(address):
    assert oc.public_ip(address) is None


def test_ipv6_is_looked_up_in_compressed_form():
    assert oc.public_ip("2A03:2880:F12F:0083:FACE:B00C:0000:25DE") == oc.Observable("ipv6", IP6)
    assert oc.public_ip(f"::ffff:{IP_A}") == oc.Observable("ipv4", IP_A)


def test_alerts_of_other_families_give_nothing(shared_reference):
    for name in ("sshd_bruteforce_5712.json", "sshd_invalid_user_5710.json", "web_sqli_31103.json"):
        assert oc.extract_observables(load_sample(shared_reference, name), 20) == []


def test_observables_are_deduplicated_and_capped():
    alert = make_alert(["sonicwall", "ids"], {"srcip": IP_A, "src_ip": IP_A, "dstip": IP_B})
    assert kinds(oc.extract_observables(alert, 20)) == [("ipv4", IP_B), ("ipv4", IP_A)]  # ids: destination first
    assert kinds(oc.extract_observables(alert, 1)) == [("ipv4", IP_B)]


def test_malformed_alert_parts_give_nothing_instead_of_crashing():
    alert = {"rule": {"groups": "ids"}, "data": {"audit": "x", "win": []}}
    assert oc.extract_observables(alert, 20) == []
    alert = make_alert(["audit_command", "sysmon_eid1_detections"], {"audit": "x", "win": {"eventdata": "y"}})
    assert oc.extract_observables(alert, 20) == []


# --------------------------------------------------------------------------- one request, events


def test_one_request_covers_every_observable_of_the_alert(harness, emu):
    emu.load_sample_data()
    execve = {"a0": "curl", "a1": f"http://{DOMAIN}/stage2.ps1", "a2": IP_B}
    alert = make_alert(["audit_command"], {"audit": {"execve": execve}})
    assert harness.run(alert) == 0
    assert emu.request_count == 1
    request = emu.requests[0]
    assert request["authorized"] and request["path"] == "/graphql"
    variables = request["body"]["variables"]
    assert variables["observableFilters"]["filters"][0]["values"] == [f"http://{DOMAIN}/stage2.ps1", DOMAIN, IP_B]
    assert set(variables["indicatorFilters"]["filters"][1]["values"]) == {
        f"[url:value = 'http://{DOMAIN}/stage2.ps1']",
        f"[domain-name:value = '{DOMAIN}']",
        f"[hostname:value = '{DOMAIN}']",
        ip_pattern(IP_B),
    }
    types = [e["event_type"] for e in harness.events()]
    assert types == ["indicator_pattern_match", "observable_with_indicator", "observable_with_related_indicator"]


def test_syscheck_match_uses_the_sha256_filter_key_and_carries_the_file(shared_reference, harness, emu):
    alert = load_sample(shared_reference, "syscheck_modified_550.json")
    sha = alert["syscheck"]["sha256_after"]
    indicator = emu.add_indicator("Trojanised hosts file", f"[file:hashes.'SHA-256' = '{sha}']", x_opencti_score=70)
    stix_file = emu.add_observable("StixFile", hashes={"SHA-256": sha}, name="hosts")
    emu.add_relationship("based-on", indicator["id"], stix_file["id"])
    assert harness.run(alert) == 0
    assert emu.request_count == 1
    hash_filter = emu.requests[0]["body"]["variables"]["observableFilters"]["filters"][0]
    assert hash_filter["key"] == ["hashes.SHA-256"] and sha in hash_filter["values"]
    messages = harness.messages()
    assert [loc for loc, _unused in messages] == ["[006] (RHEL7) 10.0.1.214->opencti"] * 2
    first, second = (payload["opencti"] for _unused, payload in messages)
    assert first["event_type"] == "indicator_pattern_match"
    assert first["indicator"]["name"] == "Trojanised hosts file"
    assert first["matched_value"] == sha
    assert first["source"]["file"] == "/etc/hosts" and first["source"]["sha256"] == sha
    assert first["source"]["alert_id"] == "1594577277.1029" and first["source"]["rule_id"] == "550"
    assert second["event_type"] == "observable_with_indicator"
    assert second["observable_value"] == sha and second["indicator"]["name"] == "Trojanised hosts file"


def test_sysmon_upper_case_hash_matches_a_lower_case_indicator(shared_reference, harness, emu):
    emu.load_sample_data()
    alert = load_sample(shared_reference, "sysmon_eid1_cmd_92002.json")
    lower = "b99d61d874728edc0918ca0eb10eab93d381e7367e377406e65963366c874450"
    emu.add_indicator("Suspicious cmd", f"[file:hashes.'SHA-256' = '{lower}']", x_opencti_score=50)
    assert harness.run(alert) == 0
    events = harness.events()
    assert [e["event_type"] for e in events] == ["indicator_pattern_match"]
    assert events[0]["source"]["image"] == "C:\\\\Windows\\\\System32\\\\cmd.exe"


def test_ipv6_alert_matches_the_compressed_indicator(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip="2A03:2880:F12F:0083:FACE:B00C:0000:25DE", dest_ip="10.0.0.1")) == 0
    events = harness.events()
    assert events[0]["event_type"] == "indicator_pattern_match"
    assert events[0]["matched_value"] == IP6


def test_event_format_and_fields(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip=IP_A, dest_ip="10.0.0.1", src_port="4444", proto="TCP")) == 0
    messages = harness.messages()
    assert {loc for loc, _unused in messages} == {"[005] (ids-sensor-01) 192.168.10.5->opencti"}
    indicator_event = messages[0][1]["opencti"]
    assert indicator_event["event_type"] == "indicator_pattern_match"
    indicator = indicator_event["indicator"]
    assert indicator["name"] == f"Cobalt Strike C2 {IP_A}"
    assert indicator["pattern"] == ip_pattern(IP_A)
    assert (indicator["confidence"], indicator["x_opencti_score"], indicator["x_opencti_detection"]) == (85, 90, True)
    assert indicator["revoked"] is False
    assert indicator["labels"] == ["c2", "cobalt-strike"]
    assert indicator["kill_chain_phases"] == ["mitre-attack:command-and-control"]
    assert indicator["created_by"] == "CERT Example"
    assert indicator["references"] == ["https://threatfox.abuse.ch/ioc/1234/"]
    assert indicator["link"] == f"{emu.url}/dashboard/observations/indicators/{indicator['id']}"
    source = indicator_event["source"]
    assert source["src_ip"] == IP_A and source["src_port"] == "4444" and source["proto"] == "TCP"
    assert source["agent_name"] == "ids-sensor-01" and source["rule_level"] == 5
    assert "valid_until" not in indicator  # nulls and empties are dropped
    observable_event = messages[1][1]["opencti"]
    assert observable_event["event_type"] == "observable_with_indicator"
    assert observable_event["observable_type"] == "IPv4-Addr"
    assert observable_event["observable_value"] == IP_A
    assert observable_event["observable_link"].startswith(f"{emu.url}/dashboard/observations/observables/")
    assert observable_event["multiple_indicators"] is False


def test_related_indicator_event(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(dns={"rrname": DOMAIN})) == 0
    events = harness.events()
    assert [e["event_type"] for e in events] == ["observable_with_related_indicator"]
    related = events[0]["related"]
    assert events[0]["observable_value"] == DOMAIN
    assert related["value"] == IP_A and related["relationship"] == "resolves-to" and related["type"] == "IPv4-Addr"
    assert related["indicator"]["name"] == f"Cobalt Strike C2 {IP_A}"


@pytest.mark.parametrize(
    ("agent", "location"),
    [
        ({"id": "000", "name": "wazuh-manager"}, "opencti"),
        (None, "opencti"),
        ({"id": "012", "name": "db|01:eu", "ip": "fd00::12"}, "[012] (db||01|:eu) fd00|:|:12->opencti"),
        ({"id": "013", "name": "web02"}, "[013] (web02) any->opencti"),
    ],
    ids=["manager", "no-agent", "escaped", "no-ip"],
)
def test_queue_location_follows_wazuh_format(agent, location):
    alert = make_alert(["ids"])
    if agent is None:
        del alert["agent"]
    else:
        alert["agent"] = agent
    assert oc.queue_location(alert) == location


def test_fields_read_by_the_rules_are_written_by_the_program(harness, emu):
    """Each rule's event_type value and every field it reads (match or description) exist in the events."""
    emu.load_sample_data()
    alert = ids_alert(src_ip=IP_A, dns={"rrname": DOMAIN})
    assert harness.run(alert, options={"max_obs_alerts": 5}) == 0
    events = harness.events()
    partial = {"indicators": {"edges": [{"node": {"id": "p1", "name": "Partial", "pattern": "[ipv4-addr:value = '"
                                                  f"{IP_A}'] AND [network-traffic:dst_port = 4444]"}}]},
               "stixCyberObservables": {"edges": []}}  # fmt: skip
    results = list(oc.attribute_results(partial, [oc.Observable("ipv4", IP_A)]).items())
    events += oc.build_events(results, {}, "http://x", {"max_ind_alerts": 3, "max_obs_alerts": 2})
    events.append(oc.prune(oc.error_event("OpenCTI API answered HTTP 500", {})))
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


# --------------------------------------------------------------------------- ranking and caps


def ranking_intel(emu):
    """Five indicators on five observables of one alert, with a known best-first order."""
    emu.add_indicator("a", ip_pattern(IP_A), x_opencti_score=90, confidence=50, x_opencti_detection=True)
    emu.add_indicator("b", ip_pattern(IP_B), x_opencti_score=90, confidence=80, x_opencti_detection=True)
    emu.add_indicator("c", ip_pattern(IP_C), x_opencti_score=95, confidence=90, x_opencti_detection=False)
    emu.add_indicator("d", f"[domain-name:value = '{DOMAIN}']", x_opencti_score=100, revoked=True)
    emu.add_indicator("e", ip_pattern(IP_E), x_opencti_score=None, confidence=None, x_opencti_detection=True)
    answers = [{"rrtype": "A", "rdata": IP_C}, {"rrtype": "A", "rdata": IP_E}]
    return ids_alert(src_ip=IP_A, dest_ip=IP_B, dns={"rrname": DOMAIN, "answers": answers})


def test_indicators_are_ranked_and_capped_at_three_by_default(harness, emu):
    alert = ranking_intel(emu)
    assert harness.run(alert) == 0
    assert [e["indicator"]["name"] for e in harness.events()] == ["b", "a", "e"]


def test_max_ind_alerts_option(harness, emu):
    alert = ranking_intel(emu)
    assert harness.run(alert, options={"max_ind_alerts": 5}) == 0
    assert [e["indicator"]["name"] for e in harness.events()] == ["b", "a", "e", "c", "d"]
    assert harness.run(alert, options={"max_ind_alerts": 0, "cache_ttl": 0}) == 0
    assert harness.events() == []


def test_expired_indicator_ranks_after_a_valid_one():
    records = [
        {"id": "1", "name": "old", "exact": True, "x_opencti_score": 100, "valid_until": "2001-01-01T00:00:00Z"},
        {"id": "2", "name": "new", "exact": True, "x_opencti_score": 10, "valid_until": "2999-01-01T00:00:00.1Z"},
        {"id": "3", "name": "odd", "exact": True, "x_opencti_score": 5, "valid_until": "not a date"},
    ]
    assert [r["name"] for r in sorted(records, key=oc.indicator_rank)] == ["new", "odd", "old"]


def test_observables_are_ranked_direct_before_related_and_capped_at_two(harness, emu):
    add_ip_intel(emu, IP_A, x_opencti_score=50)
    add_ip_intel(emu, IP_B, x_opencti_score=90)
    domain = emu.add_observable("Domain-Name", DOMAIN)
    ip_c = add_ip_intel(emu, IP_C, x_opencti_score=99)[1]
    emu.add_relationship("resolves-to", domain["id"], ip_c["id"])
    alert = ids_alert(src_ip=IP_A, dest_ip=IP_B, dns={"rrname": DOMAIN})
    assert harness.run(alert, options={"max_ind_alerts": 0}) == 0
    assert [(e["event_type"], e["observable_value"]) for e in harness.events()] == [
        ("observable_with_indicator", IP_B),
        ("observable_with_indicator", IP_A),
    ]
    assert harness.run(alert, options={"max_ind_alerts": 0, "max_obs_alerts": 3}) == 0
    assert [e["observable_value"] for e in harness.events()] == [IP_B, IP_A, DOMAIN]


def test_partial_pattern_match_is_reported_as_such():
    pattern = f"[ipv4-addr:value = '{IP_A}'] OR [ipv4-addr:value = '{IP_B}']"
    data = {
        "indicators": {"edges": [{"node": {"id": "p", "name": "Either", "pattern": pattern, "x_opencti_score": 99}},
                                 {"node": {"id": "x", "name": "Exact", "pattern": ip_pattern(IP_A)}}]},
        "stixCyberObservables": {"edges": []},
    }  # fmt: skip
    observables = [oc.Observable("ipv4", IP_A), oc.Observable("ipv4", IP_C)]
    results = oc.attribute_results(data, observables)
    assert [r["id"] for r in results[observables[0]]["indicators"]] == ["p", "x"]
    assert results[observables[1]]["indicators"] == []
    events = oc.build_events(list(results.items()), {}, "http://x", {"max_ind_alerts": 3, "max_obs_alerts": 2})
    assert [(e["event_type"], e["indicator"]["name"]) for e in events] == [
        ("indicator_pattern_match", "Exact"),
        ("indicator_partial_pattern_match", "Either"),
    ]


def test_nulls_anywhere_inside_the_data_do_not_crash():
    data = {
        "indicators": {"edges": [None, {"node": None}, {"cursor": "x"}, {"node": {
            "id": "i1", "name": None, "pattern": None, "confidence": None, "x_opencti_score": None, "revoked": None,
            "objectLabel": [None, {"value": None}], "killChainPhases": [None], "createdBy": None,
            "externalReferences": {"edges": [None, {"node": {"url": None}}]}, "indicator_types": None}}]},
        "stixCyberObservables": {"edges": [{"node": {
            "id": "o1", "observable_value": None, "hashes": [None, {"hash": None}], "objectLabel": None,
            "indicators": {"edges": None}, "relatedFrom": None,
            "relatedTo": {"edges": [{"node": {"from": None, "to": {"id": "o2", "indicators": None}}}]}}}]},
    }  # fmt: skip
    observables = [oc.Observable("ipv4", IP_A)]
    results = oc.attribute_results(data, observables)
    assert [r["id"] for r in results[observables[0]]["indicators"]] == ["i1"]
    events = oc.build_events(list(results.items()), {}, "http://x", {"max_ind_alerts": 3, "max_obs_alerts": 2})
    assert [e["event_type"] for e in events] == ["indicator_partial_pattern_match"]


# --------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_request_and_gives_the_same_events(harness, emu):
    emu.load_sample_data()
    alert = ids_alert(src_ip=IP_A)
    assert harness.run(alert) == 0
    first = harness.events()
    assert harness.run(alert) == 0
    assert emu.request_count == 1
    assert harness.events() == first and first


def test_misses_are_cached_too(harness, emu):
    alert = ids_alert(src_ip=IP_C)
    for _unused in range(3):
        assert harness.run(alert) == 0
    assert emu.request_count == 1
    assert harness.messages() == []


def test_only_uncached_observables_are_requested(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip=IP_A)) == 0
    assert harness.run(ids_alert(src_ip=IP_A, dest_ip=IP_B)) == 0
    assert emu.request_count == 2
    assert emu.requests[1]["body"]["variables"]["observableFilters"]["filters"][0]["values"] == [IP_B]
    types = [e["event_type"] for e in harness.events()]
    assert types == ["indicator_pattern_match", "observable_with_indicator"] * 2


def test_expired_cache_entries_are_looked_up_again(harness, emu):
    alert = ids_alert(src_ip=IP_C)
    assert harness.run(alert, options={"cache_ttl": 60}) == 0
    cache_file = harness.state_dir / "opencti-cache.json"
    document = json.loads(cache_file.read_text())
    for entry in document["entries"].values():
        entry["stored"] -= 61
    cache_file.write_text(json.dumps(document))
    assert harness.run(alert, options={"cache_ttl": 60}) == 0
    assert emu.request_count == 2


def test_cache_ttl_zero_disables_the_cache(harness, emu):
    alert = ids_alert(src_ip=IP_C)
    assert harness.run(alert, options={"cache_ttl": 0}) == 0
    assert harness.run(alert, options={"cache_ttl": 0}) == 0
    assert emu.request_count == 2
    assert not (harness.state_dir / "opencti-cache.json").exists()


@pytest.mark.parametrize(
    "content",
    ['{"entries": {"ipv4:', "[1, 2]", '{"entries": {"ipv4:194.165.16.11": {"stored": "x"}}}',
     '{"entries": {"ipv4:194.165.16.11": {"stored": 9999999999, "result": {"indicators": [1]}}}}', "\x00\xff"],
    ids=["truncated", "list", "bad-stamp", "bad-result", "binary"],
)  # fmt: skip
def test_corrupt_cache_file_is_tolerated_and_replaced(harness, emu, content):
    harness.state_dir.mkdir()
    cache_file = harness.state_dir / "opencti-cache.json"
    cache_file.write_text(content, encoding="latin-1")
    alert = ids_alert(src_ip=IP_C)
    assert harness.run(alert) == 0
    assert emu.request_count == 1
    assert "ipv4:194.165.16.11" in json.loads(cache_file.read_text())["entries"]
    assert sorted(os.listdir(harness.state_dir)) == ["opencti-cache.json"]  # no temp file left behind


def test_unwritable_state_dir_costs_requests_not_events(harness, emu):
    emu.load_sample_data()
    blocker = harness.dir / "file"
    blocker.write_text("")
    options = {"state_dir": str(blocker / "state")}
    assert harness.run(ids_alert(src_ip=IP_A), options=options) == 0
    assert harness.run(ids_alert(src_ip=IP_A), options=options) == 0
    assert emu.request_count == 2
    assert len(harness.events()) == 4
    assert "cannot write cache file" in harness.log()


def test_cache_keeps_the_newest_entries_only(harness, emu):
    for ip in (IP_A, IP_B, IP_C):
        assert harness.run(ids_alert(src_ip=ip), options={"cache_max_entries": 2}) == 0
    entries = json.loads((harness.state_dir / "opencti-cache.json").read_text())["entries"]
    assert sorted(entries) == [f"ipv4:{IP_B}", f"ipv4:{IP_C}"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("http_500", "OpenCTI API answered HTTP 500"),
        ("graphql_errors", "OpenCTI API returned an error: Something went wrong (FUNCTIONAL_ERROR)"),
        ("null_data", "OpenCTI API response has no data"),
        ("null_fields", "OpenCTI API response is incomplete: indicators is null"),
        ("not_json", "OpenCTI API response is not JSON"),
    ],
)
def test_api_faults_become_one_error_event(harness, emu, fault, message):
    emu.load_sample_data()
    emu.fault = fault
    alert = ids_alert(src_ip=IP_A)
    assert harness.run(alert) == 0
    messages = harness.messages()
    assert len(messages) == 1
    location, payload = messages[0]
    assert location == "[005] (ids-sensor-01) 192.168.10.5->opencti"
    assert payload["opencti"]["event_type"] == "error"
    assert payload["opencti"]["error"] == message
    assert payload["opencti"]["source"]["alert_id"] == alert["id"]
    assert message in harness.log()
    emu.fault = None  # errors are not cached: the next alert asks again and matches
    assert harness.run(alert) == 0
    assert emu.request_count == 2
    assert harness.events()[0]["event_type"] == "indicator_pattern_match"


def test_timeout_comes_from_argv_and_bounds_the_wait(harness, emu):
    emu.delay = 3
    started = time.monotonic()
    assert harness.run(ids_alert(src_ip=IP_A), timeout="1") == 0
    assert time.monotonic() - started < 2.5
    assert [e["error"] for e in harness.events()] == ["OpenCTI API did not answer within 1 s"]


def test_unreachable_api(harness):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert harness.run(ids_alert(src_ip=IP_A), url=f"http://127.0.0.1:{port}/graphql") == 0
    [event] = harness.events()
    assert event["error"].startswith("cannot reach the OpenCTI API")


def test_wrong_token_is_an_error_event_and_never_logged(harness, emu):
    wrong = "wrong-token-0123456789abcdef"
    assert harness.run(ids_alert(src_ip=IP_A), token=wrong, debug="debug") == 0
    [event] = harness.events()
    assert event["error"] == "OpenCTI API returned an error: You must be logged in to do this. (AUTH_REQUIRED)"
    assert emu.requests[0]["authorized"] is False
    assert wrong not in harness.log()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://opencti.example/graphql", {}, "unsupported OpenCTI URL ftp://opencti.example/graphql"),
        ("https://127.0.0.1:9/graphql", {"ca_file": "/nonexistent/ca.pem"}, "cannot load ca_file /nonexistent/ca.pem"),
    ],
    ids=["scheme", "ca_file"],
)
def test_configuration_errors_become_error_events(harness, url, options, message):
    assert harness.run(ids_alert(src_ip=IP_A), url=url, options=options) == 0
    [event] = harness.events()
    assert event["error"].startswith(message)


def test_tls_failure_against_a_plain_http_server(harness, emu):
    assert harness.run(ids_alert(src_ip=IP_A), url=f"https://127.0.0.1:{emu.port}/graphql") == 0
    [event] = harness.events()
    assert "TLS" in event["error"] or "cannot reach" in event["error"]


def test_token_is_redacted_from_error_events_and_logs(harness, monkeypatch):
    def leaky(*_args):
        raise oc.LookupFailed(f"proxy said: bad header Bearer {TOKEN}")

    monkeypatch.setattr(oc, "post_graphql", leaky)
    assert harness.run(ids_alert(src_ip=IP_A), debug="debug") == 0
    [event] = harness.events()
    assert event["error"] == "proxy said: bad header Bearer ***"
    log = harness.log()
    assert "Bearer ***" in log and TOKEN not in log


def test_debug_log_shows_the_work_but_not_the_token(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip=IP_A), debug="debug") == 0
    log = harness.log()
    assert "DEBUG: alert 1748942062.8845211 (rule 100100): observables [('ipv4', '45.155.205.233')]" in log
    assert "OpenCTI request variables" in log
    assert TOKEN not in log


def test_hook_url_without_graphql_path_is_completed(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip=IP_A), url=emu.url + "/") == 0
    assert emu.requests[0]["path"] == "/graphql"
    assert harness.events()[0]["indicator"]["link"].startswith(f"{emu.url}/dashboard/")


def test_oversized_events_are_trimmed_below_the_queue_limit():
    event = {
        "event_type": "indicator_pattern_match",
        "indicator": {"name": "big", "references": ["https://x/" + "r" * 1000] * 40, "labels": ["l" * 1000] * 20},
        "source": {f"field{i}": "v" * 1000 for i in range(80)},
    }
    message = oc.encode_message(event, "opencti")
    assert len(message) <= oc.MAX_MESSAGE_BYTES < 65536
    payload = json.loads(message.decode()[len("1:opencti:") :])
    assert payload["opencti"]["event_type"] == "indicator_pattern_match"
    assert payload["opencti"]["indicator"]["name"] == "big"


def test_long_alert_fields_are_clipped(harness, emu):
    sha = "ab" * 32
    emu.add_indicator("Huge", f"[file:hashes.'SHA-256' = '{sha}']")
    eventdata = {"hashes": f"SHA256={sha}", "commandLine": "x" * 300000, "image": "C:\\a.exe"}
    alert = make_alert(["sysmon", "sysmon_eid1_detections"], {"win": {"eventdata": eventdata}})
    assert harness.run(alert) == 0
    [(_unused, payload)] = harness.messages()
    assert len(payload["opencti"]["source"]["command_line"]) == oc.MAX_TEXT


# --------------------------------------------------------------------------- options


def test_options_are_read_and_checked(tmp_path):
    path = tmp_path / "opts"
    path.write_text(json.dumps({
        "max_ind_alerts": 5, "max_obs_alerts": "2", "cache_ttl": True, "verify_tls": False, "ca_file": None,
        "state_dir": 7, "max_observables": 0, "max_ind_alert": 1,
    }))  # fmt: skip
    options, problems = oc.load_options(str(path))
    assert options["max_ind_alerts"] == 5 and options["verify_tls"] is False and options["ca_file"] is None
    assert options["max_obs_alerts"] == 2 and options["cache_ttl"] == 3600
    assert options["state_dir"] == "/var/ossec/var/opencti" and options["max_observables"] == 20
    assert problems == [
        "option 'max_obs_alerts' has an invalid value '2'; using default 2",
        "option 'cache_ttl' has an invalid value True; using default 3600",
        "option 'state_dir' has an invalid value 7; using default '/var/ossec/var/opencti'",
        "option 'max_observables' has an invalid value 0; using default 20",
        "unknown option 'max_ind_alert' ignored",
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{oops", "<options> is not valid JSON; using defaults"), ("[1]", "<options> must be a JSON object"), ("", None)],
)
def test_unusable_options_file_means_defaults(tmp_path, content, problem):
    path = tmp_path / "opts"
    path.write_text(content)
    options, problems = oc.load_options(str(path))
    assert options == {name: spec[0] for name, spec in oc.OPTIONS.items()}
    assert problems == ([] if problem is None else [p for p in problems if p.startswith(problem)])
    assert oc.load_options("")[1] == []
    assert oc.load_options(str(tmp_path / "missing"))[1][0].startswith("cannot read options file")


def test_option_problems_reach_the_log(harness, emu):
    assert harness.run(ids_alert(src_ip=IP_C), options={"max_obs_alert": 1, "verify_tls": "no"}) == 0
    log = harness.log()
    assert "WARNING: unknown option 'max_obs_alert' ignored" in log
    assert "WARNING: option 'verify_tls' has an invalid value 'no'; using default True" in log
    assert emu.request_count == 1


# --------------------------------------------------------------------------- argv layouts and exit codes


@pytest.fixture
def default_paths(harness, monkeypatch):
    """Old layouts carry no options file: point the defaults at the test socket, state and cwd."""
    monkeypatch.setitem(oc.OPTIONS, "queue_socket", (harness.socket_path, (str,), None))
    monkeypatch.setitem(oc.OPTIONS, "state_dir", (str(harness.state_dir), (str,), None))
    monkeypatch.chdir(harness.dir)
    (harness.dir / "logs").mkdir()
    return harness.dir / "logs" / "integrations.log"


@pytest.mark.parametrize(
    ("tail", "debug"),
    [([], False), (["debug"], True), (["", "", "10", "3", "> /dev/null 2>&1"], False),
     (["debug", "", "10", "3"], True), (["", "", "10", "3", ">", "/dev/null", "2>&1"], False)],
    ids=["3-args", "seed-debug", "4.8", "4.8-debug", "split-redirect"],
)  # fmt: skip
def test_every_wazuh_argv_layout(harness, emu, default_paths, tail, debug):
    emu.load_sample_data()
    argv = ["custom-opencti.py", harness.write_alert(ids_alert(src_ip=IP_A)), TOKEN, emu.graphql_url, *tail]
    assert oc.main(argv) == 0
    assert emu.request_count == 1
    assert len(harness.events()) == 2
    log = default_paths.read_text() if default_paths.exists() else ""
    assert ("DEBUG:" in log) is debug


@pytest.mark.parametrize(
    "argv",
    [["p"], ["p", "/tmp/a.alert", TOKEN], ["p", "/tmp/a.alert", "", "http://x/graphql", "", "", "10", "3"]],
    ids=["nothing", "no-url", "empty-key"],
)
def test_bad_command_line_exits_2(default_paths, argv):
    assert oc.main(argv) == oc.EXIT_USAGE == 2
    assert "ERROR:" in default_paths.read_text()


@pytest.mark.parametrize(
    "content",
    [None, "missing", "alertdate='2025'\nruleid='5710'\n", "[1, 2]"],
    ids=["no-file-argument", "missing-file", "not-json-format", "not-an-object"],
)
def test_unreadable_alert_exits_3(harness, emu, content):
    argv = harness.argv({})
    if content is None:
        argv[1] = ""
    elif content == "missing":
        argv[1] = str(harness.dir / "gone.alert")
    else:
        harness.write_alert(content)
    assert oc.main(argv) == oc.EXIT_BAD_ALERT == 3
    assert emu.request_count == 0
    assert "ERROR:" in harness.log()


def test_queue_socket_failure_exits_4(harness, emu):
    emu.load_sample_data()
    assert harness.run(ids_alert(src_ip=IP_A), options={"queue_socket": str(harness.dir / "absent")}) == 4
    assert "cannot send to the Wazuh queue socket" in harness.log()


def test_alert_without_observables_needs_no_socket(harness, emu):
    assert harness.run(ids_alert(src_ip="10.0.0.1"), options={"queue_socket": str(harness.dir / "absent")}) == 0
    assert emu.request_count == 0


def test_unexpected_failure_exits_5_with_a_redacted_traceback(harness, monkeypatch):
    def broken(*_args):
        raise RuntimeError(f"boom {TOKEN}")

    monkeypatch.setattr(oc, "extract_observables", broken)
    assert harness.run(ids_alert(src_ip=IP_A)) == oc.EXIT_INTERNAL == 5
    log = harness.log()
    assert "RuntimeError: boom ***" in log and TOKEN not in log


def test_launcher_runs_the_program_as_integratord_would(harness, emu):
    """`integrations/custom-opencti` (sh) hands the 9-element argv to the .py with python3."""
    assert PROGRAM.read_text().splitlines()[0] == "#!/usr/bin/env python3"
    assert os.access(LAUNCHER, os.X_OK) and os.access(PROGRAM, os.X_OK)
    emu.load_sample_data()
    argv = harness.argv(ids_alert(src_ip=IP_A))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run([str(LAUNCHER), *argv[1:]], cwd=harness.dir, env=env, capture_output=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert [e["event_type"] for e in harness.events()] == ["indicator_pattern_match", "observable_with_indicator"]
    done = subprocess.run([str(LAUNCHER), "only-one"], cwd=harness.dir, env=env, capture_output=True, timeout=30,
                          check=False)
    assert done.returncode == 2
