"""The wazuh-integratord emulator (tests/emulators/integratord.py): config reader, filters, argv, and the
daemon run end to end with a tiny integration script.

The end-to-end tests start the emulator as a separate process. Run as root, they start it as user
``nobody``: the real daemon runs as ``wazuh``, and its write-permission check (``access(W_OK)``) means
nothing for root, who may write anything.
"""
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.emulators import integratord
from tests.emulators.integratord import ConfigError, Integration, alert_passes, build_argv, build_command

EMULATOR = Path(integratord.__file__)
KEY = "k3y-" + "x" * 28
URL = "https://iris.example:9094/alerts/add"
SSHD = {
    "timestamp": "2022-05-11T12:29:19.905+0000",
    "rule": {"level": 10, "description": "sshd: brute force", "id": "5712",
             "groups": ["syslog", "sshd", "authentication_failures"]},
    "agent": {"id": "000", "name": "manager"},
    "id": "1652272159.1549653",
    "full_log": "sshd[17584]: Invalid user paco from 172.17.1.1",
    "location": "/var/log/secure",
}


def conf(*blocks):
    """An ossec.conf text holding the given <integration> blocks."""
    body = "".join(f"  <integration>{block}</integration>\n" for block in blocks)
    return ("<!-- Wazuh - Manager -->\n<ossec_config>\n  <global><jsonout_output>yes</jsonout_output></global>\n"
            f"{body}</ossec_config>\n")


def read(tmp_path, text):
    path = tmp_path / "ossec.conf"
    path.write_text(text)
    return integratord.read_config(str(path))


def one(name="custom-x", **elements):
    xml = f"<name>{name}</name>" + "".join(f"<{tag}>{value}</{tag}>" for tag, value in elements.items())
    return xml


# ------------------------------------------------------------------------------------------ reader
def test_reader_takes_every_element_and_keeps_file_order(tmp_path):
    text = conf(one("custom-a", hook_url=URL, api_key=KEY, level="7", rule_id="5712, 5710", group="sshd,web",
                    event_location="^/var/log/secure$", alert_format="json", max_log="200",
                    options='{"customer_id": 2}', timeout="12", retries="0"))
    text += "<ossec_config>\n  <integration><name>custom-b</name></integration>\n</ossec_config>\n"
    first, second = read(tmp_path, text)
    assert (first.name, first.hook_url, first.api_key) == ("custom-a", URL, KEY)
    assert (first.level, first.max_log, first.timeout, first.retries) == (7, 200, 12, 0)
    assert first.rule_id == [5712, 5710]
    assert first.group == "sshd,web"
    assert first.options == '{"customer_id": 2}'
    assert first.json_format
    assert second.name == "custom-b"
    assert (second.level, second.max_log, second.timeout, second.retries) == (0, 165, 10, 3)
    assert second.hook_url is second.api_key is second.rule_id is second.options is None
    assert not second.json_format


def test_json_format_needs_only_the_first_four_characters(tmp_path):
    (integration,) = read(tmp_path, conf(one(alert_format="json_full")))
    assert integration.json_format
    (integration,) = read(tmp_path, conf(one(alert_format="JSON")))
    assert not integration.json_format


@pytest.mark.parametrize(("block", "message"), [
    (one(unknown="1"), "(1230): Invalid element in the configuration: 'unknown'."),
    (one(level=""), "(1234): Invalid NULL content for element: level."),
    (one(level="7a"), "(1235): Invalid value for element 'level': 7a."),
    (one(level=" 7"), "(1235): Invalid value for element 'level':  7."),
    (one(timeout="-1"), "(1235): Invalid value for element 'timeout': -1."),
    (one(retries="x"), "(1235): Invalid value for element 'retries': x."),
    (one(max_log="164"), "(1235): Invalid value for element 'max_log': 164."),
    (one(max_log="1025"), "(1235): Invalid value for element 'max_log': 1025."),
    ("<level>7</level>", "(5302): Invalid integratord configuration."),
])
def test_reader_failures(tmp_path, block, message):
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, conf(block))
    assert caught.value.args[0] == [message]


def test_max_log_bounds_are_inclusive(tmp_path):
    assert read(tmp_path, conf(one(max_log="165"), one(max_log="1024")))[1].max_log == 1024


@pytest.mark.parametrize(("text", "ids"), [
    ("5712", [5712]),
    ("5712,5710", [5712, 5710]),
    (" 5712 , ,, 5710,", [5712, 5710]),
    ("5712x,5710", [5712, 5710]),  # the rest of an item up to the next comma is ignored
    ("5712,x,5710", [5712]),  # a non-digit where a number should start ends the list
    ("abc", []),
])
def test_rule_id_list(text, ids):
    assert integratord.parse_rule_ids(text) == ids


def test_integration_outside_ossec_config_is_not_read(tmp_path):
    text = "<ossec_config><global/></ossec_config>\n<integration><name>custom-x</name></integration>\n"
    assert read(tmp_path, text) == []


def test_malformed_xml_fails(tmp_path):
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, "<ossec_config><integration><name>custom-x</name></ossec_config>")
    assert caught.value.args[0][0].startswith("(1226): Error reading XML file")


# ------------------------------------------------------------------------------------ event_location
@pytest.mark.parametrize(("pattern", "location", "hit"), [
    ("secure", "/var/log/secure", True),
    ("SECURE", "/var/log/secure", True),  # OSMatch without OS_CASE_SENSITIVE
    ("^/var/log", "/var/log/secure", True),
    ("^/log", "/var/log/secure", False),
    ("secure$", "/var/log/secure", True),
    ("var$", "/var/log/secure", False),
    ("^/var/log/secure$", "/var/log/secure", True),
    ("^/var/log/secure$", "/var/log/secure.1", False),
    ("syscheck|^/var/log/secure$", "/var/log/secure", True),
    ("syscheck|EventChannel", "/var/log/secure", False),
])
def test_event_location_subset(pattern, location, hit):
    assert integratord.EventLocation(pattern).matches(location) is hit


@pytest.mark.parametrize("pattern", ["!secure", "a||b", "^$", "a|"])
def test_event_location_outside_the_subset_is_refused(pattern):
    with pytest.raises(ConfigError):
        integratord.EventLocation(pattern)


# ----------------------------------------------------------------------------------------- filters
def make(**settings):
    integration = Integration()
    integration.name = "custom-x"
    for name, value in settings.items():
        setattr(integration, name, value)
    return integration


def alert(**changes):
    result = json.loads(json.dumps(SSHD))
    for key, value in changes.items():
        if key.startswith("rule_"):
            result["rule"][key[5:]] = value
        else:
            result[key] = value
    return result


@pytest.mark.parametrize(("settings", "changes", "passes"), [
    ({}, {}, True),
    ({"level": 10}, {}, True),
    ({"level": 11}, {}, False),
    ({"level": 7}, {"rule_level": 6}, False),
    ({"group": "sshd"}, {}, True),
    ({"group": "web,sshd"}, {}, True),
    ({"group": "ssh"}, {}, False),  # exact element match, no substring
    ({"group": "authentication"}, {}, False),
    ({"group": "web,,sshd"}, {}, False),  # the list ends at an empty entry
    ({"group": "sshd"}, {"rule_groups": None}, False),
    ({"rule_id": [5710, 5712]}, {}, True),
    ({"rule_id": [5710]}, {}, False),
    ({"rule_id": [0, 5712]}, {}, False),  # 0 terminates the daemon's list
    ({"group": "sshd", "rule_id": [5712]}, {}, True),
    ({"group": "sshd", "rule_id": [5710]}, {}, False),  # group and rule_id are both required
    ({"group": "web", "rule_id": [5712]}, {}, False),
    ({"event_location": integratord.EventLocation("secure")}, {}, True),
    ({"event_location": integratord.EventLocation("secure")}, {"location": "syscheck"}, False),
    ({"event_location": integratord.EventLocation("secure")}, {"location": None}, False),
])
def test_filters(settings, changes, passes):
    assert alert_passes(make(**settings), alert(**changes)) is passes


def test_rule_id_filter_uses_atoi_of_the_string_id():
    assert alert_passes(make(rule_id=[5712]), alert(rule_id="5712abc"))
    no_id = alert()
    del no_id["rule"]["id"]
    assert not alert_passes(make(rule_id=[5712]), no_id)


def test_alert_without_location_passes_when_no_location_filter():
    no_location = alert()
    del no_location["location"]
    assert alert_passes(make(level=3), no_location)


# -------------------------------------------------------------------------------------------- argv
def test_argv_debug_off_ends_with_the_literal_redirect():
    integration = make(api_key=KEY, hook_url=URL, options="{}")
    command = build_command(integration, "/tmp/custom-x-1-2.alert", "/tmp/custom-x-1-2.options", debug=0)
    assert build_argv(command) == ["integrations", "/tmp/custom-x-1-2.alert", KEY, URL, "",
                                   "/tmp/custom-x-1-2.options", "10", "3", "> /dev/null 2>&1"]


def test_argv_debug_on_has_eight_elements():
    integration = make(api_key=KEY, hook_url=URL, timeout=5, retries=0)
    argv = build_argv(build_command(integration, "/tmp/a.alert", "", debug=1))
    assert argv == ["integrations", "/tmp/a.alert", KEY, URL, "debug", "", "5", "0"]


def test_argv_missing_values_are_empty_slots():
    argv = build_argv(build_command(make(), "/tmp/a.alert", "", debug=0))
    assert argv == ["integrations", "/tmp/a.alert", "", "", "", "", "10", "3", "> /dev/null 2>&1"]


def test_a_space_in_the_api_key_shifts_every_later_argument():
    argv = build_argv(build_command(make(api_key="two words", hook_url=URL), "/tmp/a.alert", "", debug=0))
    assert argv[2:5] == ["two", "words", URL]
    assert argv[8] == "3 > /dev/null 2>&1"


def test_str_break_escaped_space_and_rest_kept():
    assert integratord.os_str_break(r"a\ b c d", 9) == ["a b", "c", "d"]
    assert integratord.os_str_break("a b c d", 3) == ["a", "b", r"c d"]
    assert integratord.os_str_break(r"a b c\ d", 3) == ["a", "b", r"c\ d"]


# -------------------------------------------------------------------------------- alert file format
def test_alert_file_json_is_one_line_plus_newline():
    content = integratord.alert_file_content(make(alert_format="json"), SSHD)
    assert content.endswith("\n")
    assert content.count("\n") == 1
    assert json.loads(content) == SSHD


def test_alert_file_key_value_format_sanitises_and_cuts_full_log():
    sample = alert(full_log="a'b\\c;d$e!f\"g`h\x01{" + "z" * 300, data={"srcip": "10.0.0.1'"})
    content = integratord.alert_file_content(make(), sample)
    lines = dict(line.split("=", 1) for line in content.split("\n"))
    assert lines["ruleid"] == "'5712'"
    assert lines["alertlevel"] == "'10'"
    assert lines["alertlocation"] == "'/var/log/secure'"
    log = lines["alertlog"][1:-1]
    assert log.startswith("a b/c,d e f g h  zz")
    assert len(log) == 165
    assert log.endswith("...")
    assert lines["srcip"] == "'10.0.0.1 '"


# --------------------------------------------------------------------------- the daemon, end to end
RECORDER = r'''#!@PYTHON@
"""Integration script used by the tests: records what it was given, then behaves as the alert asks."""
import json, os, sys, time

started = time.time()
alert_text = open(sys.argv[1]).read() if sys.argv[1] else ""
options_text = open(sys.argv[5]).read() if len(sys.argv) > 5 and sys.argv[5] else None
plan = json.loads(alert_text).get("plan", {}) if alert_text.startswith("{") else {}
time.sleep(plan.get("sleep", 0))
record = {"argv": sys.argv, "cwd": os.getcwd(), "uid": os.getuid(), "alert": alert_text,
          "options": options_text, "started": started, "ended": time.time()}
with open(os.path.join("@OUT@", "%d.json" % time.time_ns()), "w") as handle:
    json.dump(record, handle)
print("first line")
print(plan.get("say", "done"))
sys.stdout.flush()
if plan.get("signal"):
    os.kill(os.getpid(), 9)
sys.exit(plan.get("exit", 0))
'''


def _daemon_identity():
    """(uid, gid) the emulator runs as: the current user, or nobody when the tests run as root."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _python_for(uid):
    """An interpreter the daemon's user can run (root's venv may sit in a private directory)."""
    if uid == os.getuid():
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no system python3 that user nobody can run")
    return None


class Home:
    """A Wazuh-like home: etc/ossec.conf, logs/alerts/alerts.json, integrations/, a private tmp."""

    def __init__(self, root):
        self.root = root
        self.uid, self.gid = _daemon_identity()
        self.python = _python_for(self.uid)
        for sub in ("etc", "logs/alerts", "integrations", "tmp", "out", "bin"):
            (root / sub).mkdir(parents=True)
        (root / "logs/alerts/alerts.json").write_text("")
        (root / "logs/ossec.log").write_text("")
        shutil.copy(EMULATOR, root / "bin" / "integratord.py")
        os.chmod(root, 0o755)
        for path in (root / "logs", root / "logs/alerts", root / "logs/ossec.log", root / "tmp", root / "out"):
            os.chown(path, self.uid, self.gid)
        self.process = None

    def script(self, name, *, writable=False):
        path = self.root / "integrations" / name
        path.write_text(RECORDER.replace("@PYTHON@", self.python).replace("@OUT@", str(self.root / "out")))
        if writable:
            os.chown(path, self.uid, self.gid)
            path.chmod(0o750)
        else:
            path.chmod(0o555)  # the daemon's user may run it but not write it
        return path

    def configure(self, *blocks):
        (self.root / "etc/ossec.conf").write_text(conf(*blocks))

    def start(self, *flags):
        identity = {} if self.uid == os.getuid() else {"user": self.uid, "group": self.gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [self.python, str(self.root / "bin/integratord.py"), "--home", str(self.root),
             "--tmp-dir", str(self.root / "tmp"), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **identity)
        self.wait_log("Enabling integration for|Unable to enable|Invalid integration")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        return (self.root / "logs/ossec.log").read_text()

    def wait_log(self, pattern, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.log()):
                return self.log()
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{pattern!r} not in ossec.log:\n{self.log()}\nstderr: {self.process.stderr.read()}")

    def append(self, *alerts):
        with open(self.root / "logs/alerts/alerts.json", "a") as handle:
            for item in alerts:
                handle.write(json.dumps(item) + "\n")

    def records(self, count, timeout=10.0):
        """The records of the first `count` script runs, once the daemon has removed their temp files."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            files = sorted((self.root / "out").glob("*.json"))
            if len(files) >= count and not any((self.root / "tmp").iterdir()):
                return [json.loads(f.read_text()) for f in files]
            time.sleep(0.05)
        raise AssertionError(f"expected {count} finished script runs; ossec.log:\n{self.log()}")


@pytest.fixture
def home():
    root = Path(tempfile.mkdtemp(prefix="integratord-"))  # under /tmp: reachable by user nobody
    wazuh_home = Home(root)
    yield wazuh_home
    wazuh_home.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_daemon_runs_matching_alerts_with_the_real_argv(home):
    home.script("custom-rec")
    home.configure(one("custom-rec", hook_url=URL, api_key=KEY, level="7", alert_format="json",
                       options='{"customer_id":2}', timeout="4", retries="1"))
    home.append(alert(id="written-before-start"))  # tail=1: never sent
    home.start()
    home.append(alert(id="low", rule_level=3), alert(id="high"))
    (record,) = home.records(1)
    argv = record["argv"]
    assert argv[0] == "integrations/custom-rec"  # the interpreter sees the path execvp used
    alert_path, options_path = Path(argv[1]), Path(argv[5])
    assert argv[2:] == [KEY, URL, "", str(options_path), "4", "1", "> /dev/null 2>&1"]
    assert alert_path.parent == home.root / "tmp"
    assert alert_path.name.startswith("custom-rec-") and alert_path.name.endswith(".alert")
    assert options_path.name == alert_path.name[:-6] + ".options"
    assert json.loads(record["alert"])["id"] == "high"
    assert record["alert"].count("\n") == 1 and record["alert"].endswith("\n")
    assert record["options"] == '{"customer_id":2}\n'
    assert record["cwd"] == str(home.root)
    assert record["uid"] == home.uid
    assert not alert_path.exists() and not options_path.exists()
    assert "Enabling integration for: 'custom-rec'." in home.log()
    assert "ERROR" not in home.log()


def test_daemon_runs_scripts_one_at_a_time_and_logs_failures(home):
    home.script("custom-rec")
    home.configure(one("custom-rec", alert_format="json"))
    home.start()
    home.append(alert(id="a", plan={"sleep": 0.3, "exit": 2, "say": "IRIS unavailable"}), alert(id="b"))
    first, second = home.records(2)
    assert second["started"] >= first["ended"]
    log = home.log()
    assert "ERROR: Unable to run integration for custom-rec -> integrations\n" in log
    assert "ERROR: While running custom-rec -> integrations. Output: IRIS unavailable \n" in log
    assert "ERROR: Exit status was: 2\n" in log
    assert log.count("Exit status was") == 1


def test_daemon_debug_mode_passes_debug_and_drops_the_redirect(home):
    home.script("custom-rec")
    home.configure(one("custom-rec", alert_format="json"))
    home.start("-d", "-d")
    home.wait_log("JSON file queue connected.")
    home.append(alert(plan={"say": "all good"}))
    (record,) = home.records(1)
    assert record["argv"][1:] == [record["argv"][1], "", "", "debug", "", "10", "3"]
    log = home.wait_log("Command ran successfully.")
    assert "DEBUG: integratord: all good" in log


def test_writable_script_is_not_run(home):
    home.script("custom-rec", writable=True)
    home.configure(one("custom-rec", api_key=KEY, alert_format="json"))
    home.start()
    home.append(alert())
    log = home.wait_log("Check file and permissions")
    assert "ERROR: At wpopenv(): file 'integrations/custom-rec' has write permissions.\n" in log
    assert "ERROR: Couldn't execute command (integrations " in log
    assert not list((home.root / "out").iterdir())
    assert not list((home.root / "tmp").iterdir())


def test_killed_script_is_reported_as_abnormal_exit(home):
    home.script("custom-rec")
    home.configure(one("custom-rec", alert_format="json"))
    home.start()
    home.append(alert(plan={"signal": True}))
    assert "execution exited abnormally." in home.wait_log("exited abnormally")


def test_startup_disables_missing_and_unsupported_integrations(home):
    home.script("custom-rec")
    home.script("notcustom")
    home.configure(one("custom-missing"), one("notcustom"), one("slack"), one("custom-rec"))
    (home.root / "integrations" / "slack").write_text("")
    home.start()
    log = home.wait_log("Enabling integration for: 'custom-rec'")
    assert "Unable to enable integration for: 'custom-missing'. File not found inside 'integrations'." in log
    assert "Invalid integration: 'notcustom'. Not currently supported." in log
    assert "Unable to enable integration for: 'slack'. Missing hook URL." in log


# ------------------------------------------------------------------------------------- test mode
def run_test_mode(tmp_path, text):
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc/ossec.conf").write_text(text)
    return subprocess.run([sys.executable, str(EMULATOR), "--home", str(tmp_path), "-t"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_test_mode_accepts_a_good_config(tmp_path):
    result = run_test_mode(tmp_path, conf(one("custom-wazuh_iris.py", level="7", alert_format="json")))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "logs").exists()  # -t writes nothing to ossec.log


def test_test_mode_rejects_an_unknown_element(tmp_path):
    result = run_test_mode(tmp_path, conf(one(level="7", colour="red")))
    assert result.returncode == 1
    assert "ERROR: (1230): Invalid element in the configuration: 'colour'." in result.stderr
    assert "CRITICAL: (1202): Configuration error at 'etc/ossec.conf'." in result.stderr


def test_no_integration_is_a_clean_exit(tmp_path):
    result = run_test_mode(tmp_path, conf())
    assert result.returncode == 0
    assert "Remote integrations not configured. Clean exit." in result.stderr
