"""custom-opencti run by the integratord emulator, configured with what the wazuh_opencti role writes.

A Wazuh home in a short /tmp directory holds etc/ossec.conf with the role's rendered ``<integration>``
block (roles/wazuh_opencti/templates/ossec_integration.xml.j2, role defaults plus test values), the
program in integrations/ as the role installs it (the launcher custom-opencti with the interpreter in
its shebang, the packages opencti_enrich and socstack_core with their bytecode; root:<daemon group>,
not writable by the daemon) and logs/alerts/alerts.json. The integratord emulator
(tests/emulators/integratord.py) runs as user nobody when the tests run as root, because root may
write every file and integratord refuses writable scripts. It tails alerts.json and runs the launcher
once per matching alert, as the real daemon does; the program asks the OpenCTI emulator (in this
process) and sends its events to the QueueRecorder's socket (option ``queue_socket``).

The rule file template is rendered here too, to check that every rule id moves with the base.
"""

import functools
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from opencti_enrich.settings import load_options

from tests.bench.bench_forwarder import install
from tests.emulators.integratord import read_config

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "wazuh_opencti"
TOKEN = "opencti-render-test-token-0123456789"  # only rendered, never sent
C2_IP = "45.155.205.233"  # public address of the emulator's sample intel; only looked up, never contacted


# --------------------------------------------------------------------------- rendering role templates


@functools.cache
def _ansible_plugins(collections_path):
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([collections_path])


@pytest.fixture(autouse=True, scope="module")
def ansible_plugins(collection_root):
    """Ansible's plugin loader, once per process. Its collection finder then answers every later import of
    ansible_collections.* in this process (whatever sys.path says), so it must know this working tree as
    socstack.wazuh_iris (tests/conftest.py's collection_root) also when ANSIBLE_COLLECTIONS_PATH does not:
    else the tests importing the collection's module_utils after these fail, depending on the order."""
    _ansible_plugins(str(collection_root))


def templar(role=ROLE, **overrides):
    """A Templar with a role's defaults and vars (and wazuh_common's defaults) plus overrides, as Ansible."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    loader = DataLoader()
    variables = {
        # the dependency wazuh_common gives the manager's defaults and the fact wazuh_common_result
        **loader.load_from_file(str(ROLE.parent / "wazuh_common" / "defaults" / "main.yml"), trusted_as_template=True),
        "wazuh_common_result": {"version": "4.13.1", "integration_timeout": True},
        **loader.load_from_file(str(role / "defaults" / "main.yml"), trusted_as_template=True),
        **loader.load_from_file(str(role / "vars" / "main.yml"), trusted_as_template=True),
        "role_path": str(role),
        **overrides,
    }
    return Templar(loader=loader, variables=variables)


def render(template_name, **overrides):
    """A role template rendered with the role's defaults and vars plus overrides, as Ansible would."""
    from ansible.template import trust_as_template

    text = (ROLE / "templates" / template_name).read_text(encoding="utf-8")
    # the template action and lookup render files without escaping backslashes
    return templar(**overrides).template(trust_as_template(text), escape_backslashes=False)


def role_value(role, expression, **overrides):
    """The value of a Jinja expression with a role's variables."""
    from ansible.template import trust_as_template

    return templar(ROLE.parent / role, **overrides).template(trust_as_template("{{ " + expression + " }}"))


# --------------------------------------------------------------------------- the Wazuh home


def daemon_identity():
    """(uid, gid) integratord runs as: the current user, or nobody when the tests run as root (root may
    write every file, so integratord's write-permission check would refuse every script)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class WazuhHome:
    """The tmp Wazuh home laid out as the role does, beside the QueueRecorder, and a running integratord emulator."""

    def __init__(self, emu, queue, token):
        self.uid, self.gid = daemon_identity()
        self.python = os.path.realpath(sys.executable) if self.uid == os.getuid() else "/usr/bin/python3"
        if not os.access(self.python, os.X_OK):
            pytest.skip(f"{self.python} is needed to run integratord as user nobody")
        self.queue = queue
        self.token = token
        self.dir = queue.dir / "home"  # AF_UNIX paths: 108 bytes at most
        for sub in ("bin", "etc", "logs/alerts", "tmp", "var/opencti"):
            (self.dir / sub).mkdir(parents=True)
        self.dir.chmod(0o755)
        shutil.copy(ROOT / "tests" / "emulators" / "integratord.py", self.dir / "bin" / "integratord.py")
        install(self.dir / "integrations", self.python, "custom-opencti",
                ("integrations/opencti_enrich", "socstack_core"))
        if os.geteuid() == 0:  # as the role installs it: root:<daemon group>, 0750 directories, 0640 modules
            for path in [self.dir / "integrations", *(self.dir / "integrations").rglob("*")]:
                os.chown(path, 0, self.gid)
                path.chmod(0o750 if path.is_dir() or path.name == "custom-opencti" else 0o640)
        else:  # not writable by the daemon's user (here: its owner)
            (self.dir / "integrations" / "custom-opencti").chmod(0o550)
        (self.dir / "logs" / "alerts" / "alerts.json").write_text("")
        for path in ("logs", "logs/alerts", "logs/alerts/alerts.json", "tmp", "var/opencti"):
            os.chown(self.dir / path, self.uid, self.gid)
        os.chown(queue.path, self.uid, self.gid)
        block = render(
            "ossec_integration.xml.j2",
            wazuh_common_home=str(self.dir),
            wazuh_opencti_url=emu.graphql_url,
            wazuh_opencti_token=token,
            wazuh_opencti_extra_options={"queue_socket": queue.path},
        )
        (self.dir / "etc" / "ossec.conf").write_text(f"<ossec_config>\n{block}</ossec_config>\n")
        token_file = self.dir / "etc" / "opencti.token"  # as the role writes it: root:<daemon group> 0640
        token_file.write_text(token + "\n")
        token_file.chmod(0o640)
        os.chown(token_file, os.getuid(), self.gid)
        self.process = None

    def start(self):
        """Run the integratord emulator as the daemon's user; returns once it has enabled the integration."""
        identity = {} if self.uid == os.getuid() else {"user": self.uid, "group": self.gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [self.python, str(self.dir / "bin" / "integratord.py"), "--home", str(self.dir),
             "--tmp-dir", str(self.dir / "tmp")],
            env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **identity,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "Enabling integration for: 'custom-opencti'." not in self.text("logs/ossec.log"):
            assert time.monotonic() < deadline and self.process.poll() is None, self.text("logs/ossec.log")
            time.sleep(0.05)
        return self  # alerts.json is opened (at its end) before the integrations are enabled

    def alert(self, alert):
        """Append one alert to alerts.json (integratord only reads what is appended after it started)."""
        with open(self.dir / "logs" / "alerts" / "alerts.json", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(alert) + "\n")

    def messages(self, alert_id, timeout=30.0):
        """(location, payload) of the datagrams received until one for alert_id has come and the
        program that sent it has exited (integratord removed its temp files)."""
        found = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.queue.messages(wait=0.1)
            found += new
            seen = any(payload["opencti"]["source"]["alert_id"] == alert_id for _loc, payload in found)
            if not new and seen and not any((self.dir / "tmp").iterdir()):
                return found
        raise AssertionError(f"no event for alert {alert_id}; got {found}\n{self.text('logs/ossec.log')}")

    def text(self, relative):
        path = self.dir / relative
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def close(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def emu(opencti_emulator):
    opencti_emulator.load_sample_data()
    return opencti_emulator


@pytest.fixture
def home(emu, opencti_queue, opencti_token):
    wazuh = WazuhHome(emu, opencti_queue, opencti_token)
    yield wazuh.start()
    wazuh.close()


def suricata_alert(dest_ip, *, level=3, groups=("ids", "suricata"), alert_id="1764064800.1234", rule_id="86601"):
    """A Suricata alert; by default of the stock rule 86601 at its stock level 3."""
    return {
        "timestamp": "2026-11-25T10:00:00.000+0000",
        "id": alert_id,
        "rule": {"id": rule_id, "level": level, "description": "Suricata: Alert - ET MALWARE CnC beacon",
                 "groups": list(groups)},
        "agent": {"id": "004", "name": "app01", "ip": "192.168.20.14"},
        "location": "/var/log/suricata/eve.json",
        "data": {"src_ip": "192.168.20.14", "src_port": "51514", "dest_ip": dest_ip, "dest_port": "443",
                 "proto": "TCP", "alert": {"signature": "ET MALWARE CnC beacon", "signature_id": "2030001"}},
    }  # fmt: skip


# --------------------------------------------------------------------------- tests


def test_the_role_blocks_are_read_by_integratord_and_their_options_by_the_program(home):
    integration, main_rules = read_config(str(home.dir / "etc" / "ossec.conf"))
    assert integration.name == "custom-opencti"
    assert integration.group == "syscheck_file,ids,audit_command,sonicwall,fortigate"
    assert (integration.level, integration.timeout, integration.alert_format) == (5, 10, "json")
    # Issue 22: the token is no longer in ossec.conf (integratord passed it in argv, readable in /proc);
    # the program reads it from the role's token file.
    assert not integration.api_key and home.token not in home.text("etc/ossec.conf")
    # the main stock rules of ids and audit_command (level 3 in Wazuh's ruleset) in a block of their own
    assert (main_rules.name, main_rules.rule_id, main_rules.level) == ("custom-opencti", [86601, 80792], 3)
    assert not main_rules.group and not main_rules.api_key
    assert (main_rules.options, main_rules.timeout) == (integration.options, integration.timeout)
    options_file = home.dir / "role.options"
    options_file.write_text(integration.options + "\n")
    options, problems = load_options(str(options_file))
    assert problems == []
    assert options["max_ind_alerts"] == 3
    assert options["max_obs_alerts"] == 2
    assert options["cache_ttl"] == 3600
    assert options["state_dir"] == str(home.dir / "var" / "opencti")
    assert options["queue_socket"] == home.queue.path
    assert options["verify_tls"] is True
    assert options["api_key_file"] == str(home.dir / "etc" / "opencti.token")


def test_options_json_keeps_xml_special_characters_out_of_ossec_conf():
    block = render("ossec_integration.xml.j2", wazuh_opencti_url="https://opencti.example.org/graphql",
                   wazuh_opencti_token=TOKEN, wazuh_opencti_state_dir="/srv/a&b<c>")  # fmt: skip
    blocks = ET.fromstring(f"<root>{block}</root>").findall("integration")
    assert len(blocks) == 2
    options = blocks[0].find("options").text
    assert "&" not in options and "<" not in options and blocks[1].find("options").text == options
    assert json.loads(options)["state_dir"] == "/srv/a&b<c>"


def test_filters_accept_a_comma_separated_string_and_rule_ids(tmp_path):
    block = render("ossec_integration.xml.j2", wazuh_opencti_url="https://opencti.example.org/graphql",
                   wazuh_opencti_token=TOKEN, wazuh_opencti_groups="ids, syscheck_file,",
                   wazuh_opencti_rule_ids=[86601, 554], wazuh_opencti_level=0)  # fmt: skip
    conf = tmp_path / "ossec.conf"
    conf.write_text(f"<ossec_config>\n{block}</ossec_config>\n")
    (integration,) = read_config(str(conf))
    assert integration.group == "ids,syscheck_file"
    assert integration.rule_id == [86601, 554]
    assert integration.level == 0


@pytest.mark.parametrize(("settings", "main_rule_ids"), [
    ({}, "86601,80792"),
    ({"wazuh_opencti_groups": ["audit_command", "syscheck_file"]}, "80792"),  # only the listed groups' rules
    ({"wazuh_opencti_groups": ["syscheck_file"]}, None),
    ({"wazuh_opencti_level": 3}, None),  # the first block already takes level 3: no alert may run twice
    ({"wazuh_opencti_rule_ids": [86601]}, None),  # an explicit rule filter is the whole filter
    ({"wazuh_opencti_main_rules": {}}, None),
    ({"wazuh_opencti_main_rules_level": 0, "wazuh_opencti_main_rules": {"ids": [86600, 86601]}}, "86600,86601"),
])
def test_the_second_block_sends_the_main_stock_rules_below_the_level(settings, main_rule_ids):
    block = render("ossec_integration.xml.j2", wazuh_opencti_url="https://opencti.example.org/graphql",
                   wazuh_opencti_token=TOKEN, **settings)
    blocks = ET.fromstring(f"<root>{block}</root>").findall("integration")
    if main_rule_ids is None:
        assert len(blocks) == 1
        return
    _main, second = blocks
    assert second.find("rule_id").text == main_rule_ids and second.find("group") is None
    assert int(second.find("level").text) == settings.get("wazuh_opencti_main_rules_level", 3)


@pytest.mark.parametrize("home", ["/var/ossec", "/opt/wazuh/var/ossec"])
def test_the_queue_socket_follows_the_managers_home(home):
    """A manager elsewhere than /var/ossec: the program must send its events to that manager's queue."""
    block = render("ossec_integration.xml.j2", wazuh_opencti_url="https://opencti.example.org/graphql",
                   wazuh_opencti_token=TOKEN, wazuh_common_home=home)
    for integration in ET.fromstring(f"<root>{block}</root>").findall("integration"):
        assert json.loads(integration.find("options").text)["queue_socket"] == f"{home}/queue/sockets/queue"


@pytest.mark.parametrize(("settings", "groups", "rule_ids"), [
    ({}, [], []),
    ({"wazuh_iris_test_rule": True}, [], []),  # no filter: every alert at the level passes
    ({"wazuh_iris_groups": ["sshd"]}, ["sshd"], []),
    ({"wazuh_iris_groups": ["sshd"], "wazuh_iris_test_rule": True}, ["sshd", "socstack_wazuh_iris_test"], []),
    ({"wazuh_iris_rule_ids": [5712], "wazuh_iris_test_rule": True, "wazuh_iris_test_rule_id": 100200},
     [], ["5712", "100200"]),
])
def test_the_iris_test_rule_passes_the_forwarders_filters(settings, groups, rule_ids):
    """README: with the test rule on, its alert goes to DFIR-IRIS whatever the filters say."""
    assert role_value("wazuh_iris", "wazuh_iris_group_list", **settings) == groups
    assert role_value("wazuh_iris", "wazuh_iris_rule_id_list", **settings) == rule_ids


def test_ids_alert_gives_one_query_and_enrichment_events_then_the_cache_answers(home, emu):
    home.alert(suricata_alert(C2_IP, alert_id="1764064800.1"))
    messages = home.messages("1764064800.1")

    assert emu.request_count == 1
    assert emu.requests[0]["authorized"]
    assert {location for location, _payload in messages} == {"[004] (app01) 192.168.20.14->opencti"}
    assert {payload["integration"] for _location, payload in messages} == {"opencti"}
    events = [payload["opencti"] for _location, payload in messages]
    kinds = sorted((event["event_type"], event["matched_value"]) for event in events)
    assert kinds == [("indicator_pattern_match", C2_IP), ("observable_with_indicator", C2_IP)]
    assert "ERROR" not in home.text("logs/ossec.log")
    assert home.token not in home.text("logs/integrations.log")
    assert (home.dir / "var" / "opencti" / "opencti-cache.json").is_file()

    home.alert(suricata_alert(C2_IP, alert_id="1764064800.2"))
    events = [payload["opencti"] for _location, payload in home.messages("1764064800.2")]
    assert emu.request_count == 1
    assert sorted((event["event_type"], event["matched_value"]) for event in events) == kinds
    assert {event["source"]["alert_id"] for event in events} == {"1764064800.2"}


@pytest.mark.parametrize(
    "rejected",
    [
        pytest.param(suricata_alert(C2_IP, level=4, rule_id="86602", alert_id="1764064800.3"), id="below-level-5"),
        pytest.param(suricata_alert(C2_IP, level=2, alert_id="1764064800.3"), id="main-rule-below-level-3"),
        pytest.param(suricata_alert(C2_IP, groups=("syslog", "sshd"), alert_id="1764064800.3"), id="other-groups"),
    ],
)
def test_alerts_the_filters_reject_never_reach_the_program(home, emu, rejected):
    home.alert(rejected)
    home.alert(suricata_alert(C2_IP, alert_id="1764064800.4"))  # handled after the rejected one
    messages = home.messages("1764064800.4")
    assert {payload["opencti"]["source"]["alert_id"] for _location, payload in messages} == {"1764064800.4"}
    assert emu.request_count == 1


def test_an_opencti_failure_becomes_one_error_event_and_integratord_sees_success(home, emu):
    emu.fault = "http_500"
    home.alert(suricata_alert(C2_IP, alert_id="1764064800.5"))
    ((_location, payload),) = home.messages("1764064800.5")
    assert emu.request_count == 1
    assert payload["opencti"]["event_type"] == "error"
    assert "HTTP 500" in payload["opencti"]["error"]
    assert "ERROR" not in home.text("logs/ossec.log")


@pytest.mark.parametrize("base", [110200, 110201, 110300, 119994])
def test_rule_template_moves_every_id_and_if_sid_with_the_base(base):
    text = render("opencti_rules.xml.j2", wazuh_opencti_rule_id_base=base)
    group = ET.fromstring(text)  # one <group> root plus comments
    ids = [int(rule.get("id")) for rule in group.iter("rule")]
    assert ids == list(range(base, base + 6))
    assert {int(sid.text) for sid in group.iter("if_sid")} == {base}
    shipped = (ROOT / "files" / "rules" / "opencti_rules.xml").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1]  # after the role's one-line header comment
    assert re.sub(r"\b11\d{4}\b", "N", body).rstrip() == re.sub(r"\b11\d{4}\b", "N", shipped).rstrip()
