"""Checks of the wazuh_opencti role on a real Wazuh manager (lab image, stock ruleset): files, owners and
modes, the ossec.conf blocks, and a Suricata alert at its stock level (86601, level 3) that goes from a
log line through analysisd, integratord and custom-opencti to the OpenCTI emulator (exactly one query)
and back through the queue socket to analysisd, which fires the enrichment rules.
"""

import hashlib
import json
import re
import shlex
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
import lab_checks

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


def test_integration_blocks_sit_inside_ossec_config(host, settings):
    text, block = the_block(host)
    before, after = text.split(block)
    assert before.rfind("<ossec_config>") > before.rfind("</ossec_config>")
    assert after.lstrip().startswith("</ossec_config>")
    main, main_rules = ET.fromstring(f"<root>{block}</root>").iter("integration")  # noqa: S314 -- the role's own
    values = {child.tag: child.text for child in main}
    options = json.loads(values.pop("options"))
    common = {
        "name": "custom-opencti",
        "hook_url": f"http://127.0.0.1:{settings['molecule_opencti_port']}/graphql",
        "alert_format": "json",
        "timeout": "10",
    }
    assert values == {**common, "group": "syscheck_file,ids,audit_command,sonicwall,fortigate", "level": "5"}
    # the main stock rules of ids and audit_command are level 3: a second block sends exactly those
    second = {child.tag: child.text for child in main_rules}
    assert json.loads(second.pop("options")) == options
    assert second == {**common, "rule_id": "86601,80792", "level": "3"}
    # settings the inventory leaves empty are not written: the program's own defaults apply
    assert options == {"api_key_file": f"{OSSEC}/etc/opencti.token", "debug": False, "state_dir": STATE_DIR,
                       "verify_tls": True, "queue_socket": f"{OSSEC}/queue/sockets/queue"}
    assert settings["molecule_opencti_token"] not in text  # no <api_key>: the token is in no command line
    token = host.file(f"{OSSEC}/etc/opencti.token")
    assert (token.user, token.group, token.mode) == ("root", "wazuh", 0o640)
    assert token.content_string.strip() == settings["molecule_opencti_token"]
    assert json.loads(host.file(f"{OSSEC}/etc/opencti.json").content_string) == options


def test_integratord_accepts_the_configuration_and_enabled_the_integration(host):
    assert host.run(f"{OSSEC}/bin/wazuh-integratord -t").rc == 0
    assert host.service("wazuh-manager").is_running
    assert "Enabling integration for: 'custom-opencti'." in read(host, f"{OSSEC}/logs/ossec.log")


def eve_alert_line(signature):
    """A Suricata eve.json alert line towards an address the emulator's sample intel knows."""
    return json.dumps({
        "timestamp": "2026-11-25T10:00:00.000000+0000", "event_type": "alert", "src_ip": "192.168.20.14",
        "src_port": 51514, "dest_ip": C2_IP, "dest_port": 443, "proto": "TCP",
        "alert": {"action": "allowed", "signature": signature, "signature_id": 2030001, "severity": 1},
    })


def test_stock_suricata_alert_is_enriched_and_the_enrichment_rules_fire(host, settings):
    """86601 is level 3 in the stock ruleset, below wazuh_opencti_level 5: it reaches the program through the
    second block. One OpenCTI query; analysisd turns the two enrichment events into base+2 and base+3."""
    request_log = settings["molecule_opencti_request_log"]
    base = settings["molecule_rule_id_base"]
    host.run(f"rm -f {CACHE}")  # a repeated verify must ask OpenCTI again
    requests_before = len(lines(host, request_log))
    alerts_before = lab_checks.alerts_count(host)
    signature = f"ET MALWARE CnC beacon {uuid.uuid4().hex[:12]}"
    lab_checks.send_log_line(host, "/var/log/suricata/eve.json", eve_alert_line(signature))

    def enrichment():
        found = lab_checks.alerts_since(host, alerts_before)
        (stock,) = [a for a in found if a["rule"]["id"] == "86601"] or [None]
        if stock is None:
            return None
        ours = [a for a in found
                if a.get("data", {}).get("opencti", {}).get("source", {}).get("alert_id") == stock["id"]]
        return (stock, ours) if len(ours) >= 2 and host.run("ls /tmp/custom-opencti-*.alert").rc != 0 else None

    stock, ours = lab_checks.wait_for("the enrichment alerts", enrichment, timeout=WAIT_SECONDS * 2)
    assert stock["rule"]["level"] == 3 and signature in stock["rule"]["description"]
    assert sorted((int(a["rule"]["id"]), a["rule"]["level"], a["data"]["opencti"]["event_type"]) for a in ours) == [
        (base + 2, 12, "indicator_pattern_match"), (base + 3, 12, "observable_with_indicator")]
    assert {a["data"]["opencti"]["matched_value"] for a in ours} == {C2_IP}

    new_requests = [json.loads(line) for line in lines(host, request_log)[requests_before:]]
    assert len(new_requests) == 1
    assert new_requests[0]["authorized"]
    assert C2_IP in json.dumps(new_requests[0]["body"]["variables"])
    assert "Unable to run integration" not in read(host, f"{OSSEC}/logs/ossec.log")
    assert settings["molecule_opencti_token"] not in read(host, f"{OSSEC}/logs/integrations.log")
