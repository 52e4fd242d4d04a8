"""Checks of the wazuh_opencti role on the Wazuh manager stand-in: files, owners and modes, the ossec.conf
block, and an IDS alert that goes from alerts.json through the integratord emulator and custom-opencti
to the OpenCTI emulator (exactly one query) and back to the queue socket as enrichment events.
"""

import hashlib
import json
import re
import shlex
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

OSSEC = "/var/ossec"
OSSEC_CONF = f"{OSSEC}/etc/ossec.conf"
RULES = f"{OSSEC}/etc/rules/opencti_rules.xml"
DECODER = f"{OSSEC}/etc/decoders/opencti_decoder.xml"
STATE_DIR = f"{OSSEC}/var/opencti"
CACHE = f"{STATE_DIR}/opencti-cache.json"
ALERTS_JSON = f"{OSSEC}/logs/alerts/alerts.json"
REPO_FILES = Path(__file__).resolve().parents[3] / "files"
BEGIN = "<!-- BEGIN socstack.wazuh_iris.wazuh_opencti - OpenCTI enrichment -->"
END = "<!-- END socstack.wazuh_iris.wazuh_opencti - OpenCTI enrichment -->"
C2_IP = "45.155.205.233"  # public address in the emulator's sample intel; only looked up, never contacted
WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def settings(host):
    return host.ansible.get_variables()


def read(host, path):
    result = host.run(f"cat {shlex.quote(path)}")
    assert result.rc == 0, result.stderr
    return result.stdout


def lines(host, path):
    result = host.run(f"cat {shlex.quote(path)}")
    return result.stdout.splitlines() if result.rc == 0 else []


def the_block(host):
    """The role's part of ossec.conf, markers included."""
    text = read(host, OSSEC_CONF)
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    return text, text[text.index(BEGIN) : text.index(END) + len(END)]


PACKAGES = {"opencti_enrich": REPO_FILES / "integrations" / "opencti_enrich",
            "socstack_core": REPO_FILES / "socstack_core"}


def test_launcher_installed_root_wazuh_0750_with_wazuh_python(host):
    program = host.file(f"{OSSEC}/integrations/custom-opencti")
    assert (program.user, program.group, program.mode) == ("root", "wazuh", 0o750)
    source_first, source_rest = (REPO_FILES / "integrations" / "custom-opencti").read_text(encoding="utf-8").split(
        "\n", 1)
    flags = re.sub(r"^#!\s*(\S*/env\s+(-S\s+)?)?\S+", "", source_first)  # interpreter flags are kept
    first, rest = program.content_string.split("\n", 1)
    assert first == f"#!{OSSEC}/framework/python/bin/python3{flags}"
    assert rest == source_rest
    assert host.run(f"sudo -u wazuh test -w {program.path}").rc == 1


def test_packages_installed_root_wazuh_and_loaded_from_bytecode(host):
    sources = {f"{package}/{path.name}": path for package, folder in PACKAGES.items() for path in folder.glob("*.py")}
    here = f"cd {OSSEC}/integrations &&"
    stat = host.run(f"{here} stat -c '%n %U:%G %a' {' '.join([*PACKAGES, *sources])}")
    assert stat.rc == 0, stat.stderr
    assert dict(line.split(" ", 1) for line in stat.stdout.splitlines()) == {
        **dict.fromkeys(PACKAGES, "root:wazuh 750"), **dict.fromkeys(sources, "root:wazuh 640")}
    sums = host.run(f"{here} sha256sum {' '.join(sources)}").stdout.split()
    assert dict(zip(sums[1::2], sums[0::2])) == {name: hashlib.sha256(path.read_bytes()).hexdigest()
                                                 for name, path in sources.items()}
    installed = host.run(f"{here} find {' '.join(PACKAGES)} -name '*.py'").stdout.split()
    assert sorted(installed) == sorted(sources)  # nothing stale left
    # wazuh loads the program from hash-checked bytecode: nothing is compiled per alert
    check = host.run(f"cd {OSSEC} && sudo -u wazuh {OSSEC}/framework/python/bin/python3 -ISv "
                     f"{OSSEC}/integrations/custom-opencti")
    assert check.rc == 2, check.stderr  # no arguments: a usage error, after the imports
    for package in PACKAGES:
        assert f"code object from '{OSSEC}/integrations/{package}/__pycache__/__init__." in check.stderr


def test_the_old_single_file_program_is_gone(host):
    assert not host.file(f"{OSSEC}/integrations/custom-opencti.py").exists


@pytest.mark.parametrize("path", [RULES, DECODER])
def test_rules_and_decoder_have_wazuh_ownership_and_mode(host, path):
    installed = host.file(path)
    assert (installed.user, installed.group, installed.mode) == ("wazuh", "wazuh", 0o660)


def test_decoder_is_the_collections_file(host):
    assert read(host, DECODER) == (REPO_FILES / "decoders" / "opencti_decoder.xml").read_text(encoding="utf-8")


def test_rule_ids_are_moved_to_the_configured_base(host, settings):
    base = settings["molecule_rule_id_base"]
    group = ET.fromstring(read(host, RULES))  # noqa: S314 -- the role's own file
    assert [int(rule.get("id")) for rule in group.iter("rule")] == list(range(base, base + 6))
    assert {int(sid.text) for sid in group.iter("if_sid")} == {base}
    assert not re.search(r"\b1102\d\d\b", read(host, RULES))


def test_cache_directory(host):
    state = host.file(STATE_DIR)
    assert state.is_directory
    assert (state.user, state.group, state.mode) == ("wazuh", "wazuh", 0o750)


def test_no_backup_copies_are_left(host):
    found = host.run(f"find {OSSEC}/etc -name '*~'")
    assert found.stdout.strip() == ""


def test_ossec_conf_keeps_wazuh_ownership_and_mode(host):
    conf = host.file(OSSEC_CONF)
    assert (conf.user, conf.group, conf.mode) == ("root", "wazuh", 0o660)


def test_integration_block_sits_inside_ossec_config(host, settings):
    text, block = the_block(host)
    before, after = text.split(block)
    assert before.rfind("<ossec_config>") > before.rfind("</ossec_config>")
    assert after.lstrip().startswith("</ossec_config>")
    (element,) = ET.fromstring(f"<root>{block}</root>").iter("integration")  # noqa: S314 -- the role's own block
    values = {child.tag: child.text for child in element}
    options = json.loads(values.pop("options"))
    assert values == {
        "name": "custom-opencti",
        "hook_url": f"http://127.0.0.1:{settings['molecule_opencti_port']}/graphql",
        "group": "syscheck_file,ids,audit_command,sonicwall,fortigate",
        "level": "5",
        "alert_format": "json",
        "timeout": "10",
    }
    # settings the inventory leaves empty are not written: the program's own defaults apply
    assert options == {"api_key_file": f"{OSSEC}/etc/opencti.token", "debug": False, "state_dir": STATE_DIR,
                       "verify_tls": True}
    assert settings["molecule_opencti_token"] not in text  # no <api_key>: the token is in no command line
    token = host.file(f"{OSSEC}/etc/opencti.token")
    assert (token.user, token.group, token.mode) == ("root", "wazuh", 0o640)
    assert token.content_string.strip() == settings["molecule_opencti_token"]
    assert json.loads(host.file(f"{OSSEC}/etc/opencti.json").content_string) == options


def test_integratord_accepts_the_configuration_and_enabled_the_integration(host):
    assert host.run(f"{OSSEC}/bin/wazuh-integratord -t").rc == 0
    assert host.service("wazuh-manager").is_running
    assert "Enabling integration for: 'custom-opencti'." in read(host, f"{OSSEC}/logs/ossec.log")


def test_ids_alert_gives_one_opencti_query_and_enrichment_events_on_the_queue(host, settings):
    request_log, queue_record = settings["molecule_opencti_request_log"], settings["molecule_queue_record"]
    host.run(f"rm -f {CACHE}")  # a repeated verify must ask OpenCTI again
    requests_before = len(lines(host, request_log))
    alert_id = f"{int(time.time())}.{uuid.uuid4().int % 100000}"
    alert = {
        "timestamp": "2026-11-25T10:00:00.000+0000",
        "id": alert_id,
        "rule": {"id": "86601", "level": 6, "description": "Suricata: Alert - ET MALWARE CnC beacon",
                 "groups": ["ids", "suricata"]},
        "agent": {"id": "004", "name": "app01", "ip": "192.168.20.14"},
        "manager": {"name": "wazuh-opencti-bookworm"},
        "location": "/var/log/suricata/eve.json",
        "data": {"src_ip": "192.168.20.14", "src_port": "51514", "dest_ip": C2_IP, "dest_port": "443",
                 "proto": "TCP", "alert": {"signature": "ET MALWARE CnC beacon", "signature_id": "2030001"}},
    }  # fmt: skip
    appended = host.run(f"printf '%s\\n' {shlex.quote(json.dumps(alert))} >> {ALERTS_JSON}")
    assert appended.rc == 0, appended.stderr

    # Wait until an event for the alert has arrived and the program has exited (integratord then
    # removes its temp files), so that every query and event it made is counted.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        received = [line for line in lines(host, queue_record) if alert_id in line]
        running = host.run("ls /tmp/custom-opencti-*.alert").rc == 0
        if received and not running:
            break
        assert time.monotonic() < deadline, read(host, f"{OSSEC}/logs/ossec.log")[-2000:]
        time.sleep(0.5)

    new_requests = [json.loads(line) for line in lines(host, request_log)[requests_before:]]
    assert len(new_requests) == 1
    assert new_requests[0]["authorized"]
    assert C2_IP in json.dumps(new_requests[0]["body"]["variables"])

    events = []
    for line in received:
        prefix = "1:[004] (app01) 192.168.20.14->opencti:"
        assert line.startswith(prefix), line[:120]
        payload = json.loads(line[len(prefix) :])
        assert payload["integration"] == "opencti"
        events.append(payload["opencti"])
    kinds = sorted((event["event_type"], event["matched_value"]) for event in events)
    assert kinds == [("indicator_pattern_match", C2_IP), ("observable_with_indicator", C2_IP)]
    assert "Unable to run integration" not in read(host, f"{OSSEC}/logs/ossec.log")
    assert settings["molecule_opencti_token"] not in read(host, f"{OSSEC}/logs/integrations.log")
