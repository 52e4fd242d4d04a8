"""Checks of the wazuh_iris role on a real Wazuh manager (lab image, stock ruleset): files, owners and
modes, the ossec.conf block, the replay units, and alerts that go through the real integratord and the
forwarder to a real DFIR-IRIS 2.4.20 (molecule/_shared/iris-real.yml) - sshd log lines that analysisd
turns into the stock brute-force alert,
alerts appended to alerts.json, and an IRIS outage of 50 alerts that the replay delivers once each.
Every alert carries the level its stock rule has.
"""

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_shared"))
import lab_checks
from lab_checks import alerts_count, alerts_since, append_alerts, send_log_line, wait_for

OSSEC = "/var/ossec"
PROGRAM = f"{OSSEC}/integrations/custom-wazuh_iris.py"
OPTIONS = f"{OSSEC}/etc/iris-forwarder.json"
KEY_FILE = f"{OSSEC}/etc/iris-forwarder.key"
CA_FILE = f"{OSSEC}/etc/iris-ca.pem"
STATE_DIR = f"{OSSEC}/var/iris-forwarder"
ALERTS_JSON = f"{OSSEC}/logs/alerts/alerts.json"
OSSEC_LOG = f"{OSSEC}/logs/ossec.log"
FILES = Path(__file__).resolve().parents[3] / "files"
SOURCES = FILES / "integrations"
PACKAGES = {"iris_forwarder": FILES / "integrations" / "iris_forwarder", "socstack_core": FILES / "socstack_core"}
BEGIN = "<!-- BEGIN socstack.wazuh_iris.wazuh_iris - DFIR-IRIS forwarder -->"
END = "<!-- END socstack.wazuh_iris.wazuh_iris - DFIR-IRIS forwarder -->"
OUTAGE_ALERTS = 50
NODE = "wazuh-iris-manager"  # manager.name: IRIS keeps the alerts as <node>:<Wazuh id>


@pytest.fixture(scope="module")
def settings(host):
    return host.ansible.get_variables()


def iris_get(host, settings, path):
    """`data` of a GET on IRIS, asked from inside the container."""
    return lab_checks.iris_get(host, f"https://127.0.0.1:{settings['molecule_iris_port']}{path}",
                               f"{settings['molecule_iris_dir']}/ca.pem", settings["molecule_iris_admin_key"])


def iris_alerts(host, settings, ref_part):
    """Every IRIS alert whose alert_source_ref contains ref_part (all pages)."""
    return lab_checks.iris_alerts(host, f"https://127.0.0.1:{settings['molecule_iris_port']}",
                                  f"{settings['molecule_iris_dir']}/ca.pem", settings["molecule_iris_admin_key"],
                                  ref_part)


def customer_id(host, settings):
    customers = iris_get(host, settings, "/manage/customers/list")
    return next(c["customer_id"] for c in customers if c["customer_name"] == settings["molecule_iris_customer"])


STOCK_5715 = {"level": 3, "description": "sshd: authentication success.", "id": "5715",
              "groups": ["syslog", "sshd", "authentication_success"]}


def wazuh_alert(alert_id, rule=None):
    """An alert as analysisd writes it; by default of the stock rule 5712 (level 10)."""
    return {
        "timestamp": "2026-11-25T10:00:00.000+0000",
        "rule": rule or {"level": 10, "description": "sshd: brute force trying to get access to the system.",
                         "id": "5712", "groups": ["syslog", "sshd", "authentication_failures"],
                         "mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]}},
        "agent": {"id": "000", "name": NODE},
        "manager": {"name": NODE},
        "id": alert_id,
        "full_log": "sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
        "location": "/var/log/secure",
    }


def spooled(host):
    result = host.run(f"find {STATE_DIR}/spool -maxdepth 1 -name '*.json' 2>/dev/null | wc -l")
    return int(result.stdout.strip() or 0)


# --------------------------------------------------------------------------------------------- files
def test_launcher_installed_with_wazuh_python(host):
    program = host.file(PROGRAM)
    assert (program.user, program.group, program.mode) == ("root", "wazuh", 0o750)
    source_first, source_rest = (SOURCES / "custom-wazuh_iris.py").read_text(encoding="utf-8").split("\n", 1)
    flags = re.sub(r"^#!\s*(\S*/env\s+(-S\s+)?)?\S+", "", source_first)  # interpreter flags are kept
    first, rest = program.content_string.split("\n", 1)
    assert first == f"#!{OSSEC}/framework/python/bin/python3{flags}"
    assert rest == source_rest


def test_packages_installed_and_precompiled(host):
    for package, source in PACKAGES.items():
        folder = host.file(f"{OSSEC}/integrations/{package}")
        assert (folder.user, folder.group, folder.mode) == ("root", "wazuh", 0o750)
        sources = sorted(path.name for path in source.glob("*.py"))
        assert sorted(name for name in folder.listdir() if name.endswith(".py")) == sources
        for name in sources:
            module = host.file(f"{OSSEC}/integrations/{package}/{name}")
            assert (module.user, module.group, module.mode) == ("root", "wazuh", 0o640)
            assert module.content_string == (source / name).read_text(encoding="utf-8")
        cache = host.file(f"{OSSEC}/integrations/{package}/__pycache__")
        assert (cache.user, cache.group, cache.mode) == ("root", "wazuh", 0o750)
    # wazuh loads every module from hash-checked bytecode that matches its source: no compile per alert
    check = host.run(f"sudo -u wazuh {OSSEC}/framework/python/bin/python3 -ISv "
                     f"{OSSEC}/integrations/custom-wazuh_iris.py --check-options /dev/null")
    assert check.rc == 0, check.stderr
    loaded = [line for line in check.stderr.splitlines() if "code object from" in line and "/integrations/" in line]
    assert loaded and all("/__pycache__/" in line for line in loaded), check.stderr
    # every module but the preflight ones (the program's and the core's report, imported only by
    # --check-connection) and the core's tls (loaded, with libssl, once an https endpoint connects) is loaded by a run
    expected = {f"{package}/{path.stem}" for package, source in PACKAGES.items() for path in source.glob("*.py")
                if path.name not in ("preflight.py", "tls.py")}
    assert {re.search(r"/integrations/(\w+)/__pycache__/(\w+)\.", line).expand(r"\1/\2") for line in loaded} \
        == expected, check.stderr


def test_the_old_single_file_module_is_gone(host):
    assert not host.file(f"{OSSEC}/integrations/iris_forwarder.py").exists


def test_wazuh_may_run_but_not_change_the_program(host):
    assert host.run(f"sudo -u wazuh test -x {PROGRAM}").rc == 0
    assert host.run(f"sudo -u wazuh test -w {PROGRAM}").rc == 1


def test_state_dir(host):
    state = host.file(STATE_DIR)
    assert state.is_directory
    assert (state.user, state.group, state.mode) == ("wazuh", "wazuh", 0o750)


@pytest.mark.parametrize("path", [OPTIONS, KEY_FILE, CA_FILE])
def test_settings_files_readable_by_wazuh_only(host, path):
    settings_file = host.file(path)
    assert (settings_file.user, settings_file.group, settings_file.mode) == ("root", "wazuh", 0o640)


def test_options_file(host, settings):
    options = json.loads(host.file(OPTIONS).content_string)
    assert options["customer_id"] == customer_id(host, settings)
    assert options["hook_url"] == f"https://127.0.0.1:{settings['molecule_iris_port']}/alerts/add"
    assert options["api_key_file"] == KEY_FILE
    assert options["ca_file"] == CA_FILE
    assert options["state_dir"] == STATE_DIR
    assert options["tags"] == ["lab", "molecule"]
    assert options["ai_pending"] is True
    assert options["verify_tls"] is True
    # program options the inventory does not set are left out: the program's defaults apply
    assert "severity_by_level" not in options and "spool_max_files" not in options
    assert options["debug"] is False
    assert host.file(KEY_FILE).content_string.strip() == settings["molecule_iris_admin_key"]
    assert "BEGIN CERTIFICATE" in host.file(CA_FILE).content_string


def test_ossec_conf_block_inside_ossec_config(host, settings):
    conf = host.file(f"{OSSEC}/etc/ossec.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "wazuh", 0o660)
    text = conf.content_string
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index("<ossec_config>") < text.index(BEGIN) < text.index(END) < text.rindex("</ossec_config>")
    block = ET.fromstring(text[text.index(BEGIN) + len(BEGIN):text.index(END)])  # noqa: S314 -- our own file
    values = {child.tag: child.text for child in block}
    assert values["name"] == "custom-wazuh_iris.py"
    assert values["hook_url"] == f"https://127.0.0.1:{settings['molecule_iris_port']}/alerts/add"
    assert "api_key" not in values  # the key is in one file only, KEY_FILE
    assert settings["molecule_iris_admin_key"] not in text
    assert (values["level"], values["alert_format"]) == ("7", "json")
    assert (values["timeout"], values["retries"]) == ("10", "3")  # Wazuh 4.14.7 (>= 4.8: timeout and retries)
    assert "&" not in values["options"] and "\\u0026" in values["options"]
    assert json.loads(values["options"]) == json.loads(host.file(OPTIONS).content_string)


def test_integratord_accepts_the_configuration(host):
    result = host.run(f"{OSSEC}/bin/wazuh-integratord -t")
    assert result.rc == 0, result.stderr


def test_test_rule(host):
    rule = host.file(f"{OSSEC}/etc/rules/wazuh_iris_test_rules.xml")
    assert (rule.user, rule.group, rule.mode) == ("wazuh", "wazuh", 0o660)
    parsed = ET.fromstring(rule.content_string.split("-->", 1)[1])  # noqa: S314 -- our own file
    assert parsed.find("rule").get("id") == "100100"


def test_manager_runs_the_integration(host):
    assert host.service("wazuh-manager").is_running
    assert "Enabling integration for: 'custom-wazuh_iris.py'." in host.file(OSSEC_LOG).content_string


def test_replay_timer_enabled_and_service_hardened(host):
    timer = host.service("wazuh-iris-replay.timer")
    assert timer.is_enabled and timer.is_running
    unit = host.run("systemctl show wazuh-iris-replay.service -p User -p ProtectSystem -p NoNewPrivileges")
    assert {"User=wazuh", "ProtectSystem=strict", "NoNewPrivileges=yes"} <= set(unit.stdout.split())
    analysis = host.run("systemd-analyze security --no-pager wazuh-iris-replay.service").stdout
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", analysis).group(1))
    assert exposure <= 2.0, analysis


# --------------------------------------------------------------------------------- alerts end to end
def test_alert_reaches_iris_with_customer_severity_and_tags(host, settings):
    ref = f"molecule-{uuid.uuid4().hex}"
    append_alerts(host, [wazuh_alert(f"{ref}-low", rule=STOCK_5715), wazuh_alert(ref)])
    (alert,) = wait_for("the alert in IRIS", lambda: [a for a in iris_alerts(host, settings, ref)
                                                      if a["alert_source_ref"] == f"{NODE}:{ref}"])
    assert alert["alert_customer_id"] == customer_id(host, settings)
    severities = {s["severity_id"]: s["severity_name"] for s in iris_get(host, settings, "/manage/severities/list")}
    assert severities[alert["alert_severity_id"]] == "High"  # level 10, resolved by name
    statuses = {s["status_id"]: s["status_name"] for s in iris_get(host, settings, "/manage/alert-status/list")}
    assert statuses[alert["alert_status_id"]] == "New"
    tags = alert["alert_tags"].split(",")
    assert {"wazuh", "rule:5712", "agent:wazuh-iris-manager", "T1110", "lab", "molecule", "ai-pending"} <= set(tags)
    assert alert["alert_source_link"] == f"https://wazuh.lab/app/threat-hunting?tab=events&alert={ref}"
    # the level-3 alert (stock 5715) came first and was filtered out by <level>7</level>
    assert [a["alert_source_ref"] for a in iris_alerts(host, settings, ref)] == [f"{NODE}:{ref}"]


def test_sshd_log_lines_become_the_stock_brute_force_alert_and_reach_iris_once(host, settings):
    """Eight `Invalid user` lines from one address: analysisd raises 5710 (level 5) eight times, then
    5712 (level 10, frequency 8); integratord forwards only the level-10 alert, exactly once."""
    before = alerts_count(host)
    source = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    user = f"molecule{uuid.uuid4().hex[:8]}"
    for n in range(8):
        send_log_line(host, "/var/log/auth.log", time.strftime("%b %e %H:%M:%S")
                      + f" {NODE} sshd[{4100 + n}]: Invalid user {user} from {source} port {50000 + n}")

    def brute_force():
        found = [a for a in alerts_since(host, before) if source in json.dumps(a)]
        return found if any(a["rule"]["id"] == "5712" for a in found) else None

    found = wait_for("the stock 5712 alert in alerts.json", brute_force)
    (alert,) = [a for a in found if a["rule"]["id"] == "5712"]
    assert alert["rule"]["level"] == 10 and alert["rule"]["frequency"] == 8
    assert {a["rule"]["id"] for a in found} == {"5710", "5712"}
    assert {a["rule"]["level"] for a in found if a["rule"]["id"] == "5710"} == {5}
    ref = f"{alert['manager']['name']}:{alert['id']}"
    (in_iris,) = wait_for("the 5712 alert in IRIS", lambda: iris_alerts(host, settings, alert["id"]))
    assert in_iris["alert_source_ref"] == ref
    assert "rule:5712" in in_iris["alert_tags"].split(",")
    for low in (a for a in found if a["rule"]["id"] == "5710"):  # level 5 < <level>7</level>: not forwarded
        assert iris_alerts(host, settings, low["id"]) == []


def docker(*args):
    """The docker CLI on the controller (the lab's engine), fixed arguments."""
    subprocess.run([shutil.which("docker"), *args], check=True, capture_output=True, timeout=120)  # noqa: S603


def test_outage_spools_and_replay_delivers_each_alert_once(host, settings):
    ref = f"outage-{uuid.uuid4().hex}"
    log_before = len(host.file(OSSEC_LOG).content_string)
    # IRIS's nginx stops: nothing listens on 8443 (tests/support/real_iris.py names it <prefix>-nginx)
    nginx = f"socstack-molecule-{host.backend.get_hostname()}-nginx"
    docker("stop", "-t", "5", nginx)
    try:
        append_alerts(host, [wazuh_alert(f"{ref}-{n:03d}") for n in range(OUTAGE_ALERTS)])
        wait_for(f"{OUTAGE_ALERTS} alerts in the spool", lambda: spooled(host) == OUTAGE_ALERTS, timeout=180)
        log = wait_for("integratord's report of the last run",
                       lambda: host.file(OSSEC_LOG).content_string[log_before:].count("Exit status was: 2")
                       >= OUTAGE_ALERTS and host.file(OSSEC_LOG).content_string[log_before:])
        assert "Unable to run integration for custom-wazuh_iris.py -> integrations" in log
        assert re.search(r"While running custom-wazuh_iris.py -> integrations\. Output: .*kept in the spool", log)
        assert settings["molecule_iris_admin_key"] not in host.file(f"{OSSEC}/logs/integrations.log").content_string
    finally:
        docker("start", nginx)
    # nginx listens on every address (testinfra's is_listening misses 0.0.0.0 when asked for 127.0.0.1)
    wait_for("IRIS to listen again", lambda: host.socket(f"tcp://0.0.0.0:{settings['molecule_iris_port']}")
             .is_listening, timeout=30)
    replay = host.run("systemctl start wazuh-iris-replay.service")
    assert replay.rc == 0, replay.stderr
    assert spooled(host) == 0
    refs = [a["alert_source_ref"] for a in iris_alerts(host, settings, ref)]
    assert len(refs) == OUTAGE_ALERTS
    assert sorted(refs) == [f"{NODE}:{ref}-{n:03d}" for n in range(OUTAGE_ALERTS)]
