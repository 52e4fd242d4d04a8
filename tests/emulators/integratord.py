"""Emulator of wazuh-integratord (Wazuh 4.13), for tests.

Why it stays beside the real daemon: tests/integration/opencti/test_opencti_integratord.py runs the
role's rendered block and the installed program through it without root and without a Wazuh build (a
clone without ../shared/wazuh has none), in a fraction of a second. Everything the lab and the
end-to-end checks need runs the real integratord built from Wazuh's sources (molecule scenarios with a
manager; tests/integration/wazuh/ checks its argv on 4.14.7 and 4.8.2).

What it copies, from ../shared/reference/wazuh-4.13.md §1 (section numbers below are that page's):

- §1.1 the ``<integration>`` reader: the twelve elements, their defaults and checks (digits only for
  level/timeout/retries/max_log, max_log 165-1024, ``name`` required); an unknown or empty element,
  or a bad value, makes the reader fail, so ``-t`` exits 1 and the daemon does not start.
- §1.2 start-up: ``integrations/<name>`` must exist; built-in names need their hook_url/api_key,
  ``custom-*`` names are accepted, anything else is disabled; the same log lines.
- §1.3 ``logs/alerts/alerts.json`` is read from its end (tail=1); an alert without ``rule`` is skipped.
- §1.4 the filters, in order: event_location, level, group (exact element match), rule_id (atoi).
- §1.5 one temp alert file per alert and integration, ``<tmp>/<name>-<time>-<random>.alert``: the
  alert as one line of unformatted JSON plus a newline with alert_format json, otherwise the
  ``key='value'`` lines; the ``.options`` file holds ``<options>`` plus a newline; both are removed
  once the script has exited. ``<tmp>`` is /tmp unless ``--tmp-dir`` says otherwise (tests only).
- §1.6 the command string ``integrations ALERT KEY URL DEBUG OPTIONS TIMEOUT RETRIES`` plus the
  literal `` > /dev/null 2>&1`` when debug is off, split like ``OS_StrBreak(' ', cmd, 9)``; argv[0]
  is ``integrations``, no shell is involved.
- §1.7 the script runs with cwd = the Wazuh home, stdin /dev/null, stdout+stderr on one pipe read to
  EOF, as the emulator's own user (the real daemon drops to ``wazuh``; run this emulator as that
  user, as the test service does), one at a time, waited for without a time limit. If the script
  is writable by that user it is not run (exit 127) and the real error lines are logged; exit
  codes are reported with the real messages. Like the real daemon, the 127 and "exited abnormally"
  messages quote the whole command, api_key included.

Log lines go to ``logs/ossec.log`` as ``YYYY/MM/DD HH:MM:SS wazuh-integratord: LEVEL: message``. The
messages of §1.2/§1.7 are quoted from the reference; the numbered reader messages ((1202), (1230),
(1234), (1235), (5302)) are the texts of the Wazuh macros the reference names (XML_INVELEM,
XML_VALUENULL, XML_VALUEERR, XML_INV_INTEGRATOR) as Wazuh's error_messages.h defines them; the
built-ins' "Missing hook URL." / "Missing API Key." endings, the debug lines "JSON file queue
connected." and "integratord: <output line>" are those of the integrator.c lines the reference cites.
``-t`` prints its messages on stderr and does not touch ossec.log.

Emulated OSMatch subset for ``<event_location>``: alternatives separated by ``|``; each is a literal
substring, or anchored with a leading ``^`` (prefix) and/or a trailing ``$`` (suffix); comparison is
case-insensitive (the reader compiles without OS_CASE_SENSITIVE). A pattern with an empty
alternative or a leading ``!`` is outside the subset: the emulator refuses the configuration
rather than guess.

Not emulated: log rotation of alerts.json, internal_options.conf, ``-u``/``-g`` (run the emulator
as the user you want), the debug "Running:" line, analysisd. Standard library only.

CLI::

    python3 integratord.py --home /var/ossec [-t] [-d [-d]] [-f] [--tmp-dir DIR]
"""
import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

PROG = "wazuh-integratord"
INTEGRATORDIR = "integrations"
OSSEC_CONF = "etc/ossec.conf"
ALERTS_JSON = "logs/alerts/alerts.json"
OSSEC_LOG = "logs/ossec.log"
REDIRECT = " > /dev/null 2>&1"
POLL_SECONDS = 0.2
QUEUE_OPEN_TRIES = 100

ELEMENTS = ("name", "hook_url", "api_key", "level", "rule_id", "group", "event_location", "alert_format",
            "max_log", "options", "timeout", "retries")
NUMERIC = ("level", "max_log", "timeout", "retries")
DEFAULTS = {"level": 0, "max_log": 165, "timeout": 10, "retries": 3}
BUILTIN_NEEDS = {  # built-in name -> the settings it cannot run without, and the message's wording
    "slack": (("hook_url", "hook URL"),),
    "shuffle": (("hook_url", "hook URL"),),
    "pagerduty": (("api_key", "API Key"),),
    "virustotal": (("api_key", "API Key"),),
    "maltiverse": (("hook_url", "hook URL"), ("api_key", "API Key")),
}


class ConfigError(Exception):
    """The ossec.conf reader failed; args[0] is the list of lines it logs."""


class Log:
    """Wazuh-style lines appended to logs/ossec.log (or written to stderr in test mode)."""

    def __init__(self, path, debug=0, stream=None):
        self.path = path
        self.debug_level = debug
        self.stream = stream

    def write(self, level, message):
        line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {PROG}: {level}: {message}\n"
        if self.stream is not None:
            self.stream.write(line)
            self.stream.flush()
            return
        with open(self.path, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(line)

    def debug(self, message, level=1):
        if self.debug_level >= level:
            self.write("DEBUG", message)

    def info(self, message):
        self.write("INFO", message)

    def error(self, message):
        self.write("ERROR", message)

    def critical(self, message):
        self.write("CRITICAL", message)


# ------------------------------------------------------------------------------------ OSMatch subset
class EventLocation:
    """A compiled ``<event_location>`` pattern (the subset described in the module docstring)."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.alternatives = []
        if pattern.startswith("!"):
            raise ConfigError([f"event_location '{pattern}': negation ('!') is not emulated"])
        for part in pattern.split("|"):
            start = part.startswith("^")
            end = part.endswith("$") and len(part) > int(start)
            text = part[int(start): len(part) - int(end)]
            if not text:
                raise ConfigError([f"event_location '{pattern}': empty alternative is outside the emulated "
                                   "OSMatch subset"])
            self.alternatives.append((start, end, text.casefold()))

    def matches(self, location):
        value = location.casefold()
        for start, end, text in self.alternatives:
            if start and end:
                hit = value == text
            elif start:
                hit = value.startswith(text)
            elif end:
                hit = value.endswith(text)
            else:
                hit = text in value
            if hit:
                return True
        return False


# ------------------------------------------------------------------------------------------ reader
class Integration:
    """One ``<integration>`` block, with the reader's defaults."""

    def __init__(self):
        self.name = None
        self.hook_url = None
        self.api_key = None
        self.level = DEFAULTS["level"]
        self.rule_id = None
        self.group = None
        self.event_location = None
        self.alert_format = None
        self.max_log = DEFAULTS["max_log"]
        self.options = None
        self.timeout = DEFAULTS["timeout"]
        self.retries = DEFAULTS["retries"]
        self.enabled = False

    @property
    def json_format(self):
        return bool(self.alert_format) and self.alert_format[:4] == "json"


def parse_rule_ids(text):
    """The reader's rule_id list: spaces and repeated commas skipped, each number read up to the next
    comma (atoi), parsing stops at any other character found where a number should start."""
    ids = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in " ,":
            pos += 1
        elif char.isdigit():
            ids.append(_atoi(text[pos:]))
            comma = text.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
        else:
            break
    return ids


def _atoi(text):
    """C atoi: optional blanks and sign, then digits; 0 when there are none."""
    text = text.lstrip(" \t\n\r\f\v")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    digits = ""
    for char in text:
        if not char.isdigit():
            break
        digits += char
    return sign * int(digits) if digits else 0


def _integration_from(element):
    """Read one ``<integration>`` element; raises ConfigError with the reader's messages."""
    integration = Integration()
    for child in element:
        if not isinstance(child.tag, str):  # comments and processing instructions
            continue
        tag = child.tag
        content = child.text
        if tag not in ELEMENTS:
            raise ConfigError([f"(1230): Invalid element in the configuration: '{tag}'."])
        if not content:
            raise ConfigError([f"(1234): Invalid NULL content for element: {tag}."])
        if tag in NUMERIC:
            if not content.isdigit() or not content.isascii():
                raise ConfigError([f"(1235): Invalid value for element '{tag}': {content}."])
            value = int(content)
            if tag == "max_log" and not 165 <= value <= 1024:
                raise ConfigError([f"(1235): Invalid value for element '{tag}': {content}."])
            setattr(integration, tag, value)
        elif tag == "rule_id":
            integration.rule_id = parse_rule_ids(content)
        elif tag == "event_location":
            integration.event_location = EventLocation(content)
        else:
            setattr(integration, tag, content)
    if not integration.name:
        raise ConfigError(["(5302): Invalid integratord configuration."])
    return integration


def read_config(path):
    """All ``<integration>`` blocks of the ``<ossec_config>`` sections of path, in file order."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([f"cannot read '{path}': {exc.strerror}"]) from None
    if text.lstrip().startswith("<?xml"):
        text = text.split("?>", 1)[1]
    try:
        root = ET.fromstring(f"<emulator_root>{text}</emulator_root>")
    except ET.ParseError as exc:
        raise ConfigError([f"(1226): Error reading XML file '{path}': {exc}."]) from None
    return [_integration_from(block) for section in root.iter("ossec_config") for block in section
            if block.tag == "integration"]


# ----------------------------------------------------------------------------------------- filters
def alert_passes(integration, alert):
    """True when the alert passes the integration's filters (§1.4, in the daemon's order)."""
    rule = alert.get("rule")
    if integration.event_location is not None:
        location = alert.get("location")
        if not isinstance(location, str) or not integration.event_location.matches(location):
            return False
    if integration.level:
        level = rule.get("level")
        if level is None or _c_int(level) < integration.level:
            return False
    if integration.group is not None:
        groups = rule.get("groups") if isinstance(rule.get("groups"), list) else []
        wanted = []
        for name in integration.group.split(","):
            if not name:  # the daemon's loop ends at an empty entry
                break
            wanted.append(name)
        if not any(name in groups for name in wanted):
            return False
    if integration.rule_id is not None:
        if "id" not in rule:
            return False
        listed = []
        for rule_id in integration.rule_id:
            if rule_id == 0:  # 0 ends the daemon's array
                break
            listed.append(rule_id)
        if _atoi(str(rule.get("id"))) not in listed:
            return False
    return True


def _c_int(value):
    """cJSON's valueint for the value types an alert can hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value)


# ---------------------------------------------------------------------------------- files and argv
def os_str_break(text, size, separator=" "):
    """Wazuh's OS_StrBreak: cut at every separator (an escaped one, ``\\ ``, loses its backslash and is
    kept), at most size-1 cuts; the last piece keeps the rest of the string as it is."""
    pieces = []
    current = ""
    for char in text:
        if char == separator and len(pieces) < size - 1:
            if current.endswith("\\"):
                current = current[:-1] + separator
                continue
            pieces.append(current)
            current = ""
            continue
        current += char
    pieces.append(current)
    return pieces


def build_command(integration, alert_file, options_file, debug):
    """The command string of §1.6, before it is split."""
    command = (f"{INTEGRATORDIR} {alert_file} {integration.api_key or ''} {integration.hook_url or ''} "
               f"{'debug' if debug > 0 else ''} {options_file or ''} {integration.timeout} {integration.retries}")
    if debug <= 0:
        command += REDIRECT
    return command


def build_argv(command):
    """The argv the script gets: the command cut with OS_StrBreak(' ', cmd, 9)."""
    return os_str_break(command, 9)


def _sanitise(text, limit=None):
    """full_log as the daemon writes it in the non-JSON format (characters replaced, cut at max_log)."""
    replaced = {"'": " ", "\\": "/", "`": " ", '"': " ", ";": ",", "!": " ", "$": " "}
    out = []
    for char in text.encode("utf-8").decode("latin-1"):  # the daemon works byte by byte
        char = replaced.get(char, char)
        if ord(char) < 32 or ord(char) > 122:
            char = " "
        out.append(char)
        if limit is not None and len(out) >= limit:
            out[-3:] = "..."
            break
    return "".join(out)


def _sanitise_srcip(text):
    return "".join(" " if char in "'\\`" or (char != " " and not 46 <= ord(char) <= 122) else char
                   for char in text.encode("utf-8").decode("latin-1"))


def alert_file_content(integration, alert):
    """What the daemon writes into the temp alert file."""
    if integration.json_format:
        return json.dumps(alert, ensure_ascii=False, separators=(",", ":")) + "\n"
    rule = alert.get("rule") or {}
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    srcip = data.get("srcip")
    return (f"alertdate='{alert.get('timestamp', '')}'\n"
            f"alertlocation='{alert.get('location', '')}'\n"
            f"ruleid='{rule.get('id', '')}'\n"
            f"alertlevel='{_c_int(rule.get('level', 0))}'\n"
            f"ruledescription='{rule.get('description', '')}'\n"
            f"alertlog='{_sanitise(str(alert.get('full_log', '')), integration.max_log)}'\n"
            f"srcip='{_sanitise_srcip(srcip) if isinstance(srcip, str) else ''}'")


# ------------------------------------------------------------------------------------------ daemon
class Integratord:
    """The daemon: enable integrations, tail alerts.json, run the matching scripts one at a time."""

    def __init__(self, home, debug=0, tmp_dir="/tmp", log=None):
        self.home = os.path.abspath(home)
        self.debug = debug
        self.tmp_dir = tmp_dir
        self.log = log or Log(os.path.join(self.home, OSSEC_LOG), debug)
        self.integrations = []
        self._queue = None
        self._pending = b""

    def load(self):
        """Read the configuration (raises ConfigError)."""
        self.integrations = read_config(os.path.join(self.home, OSSEC_CONF))
        return self.integrations

    def enable(self):
        """§1.2: check each integration's script and required settings; log the outcome."""
        for integration in self.integrations:
            integration.enabled = False
            if not os.path.exists(os.path.join(self.home, INTEGRATORDIR, integration.name)):
                self.log.error(f"Unable to enable integration for: '{integration.name}'. File not found inside "
                               f"'{INTEGRATORDIR}'.")
                continue
            missing = [label for setting, label in BUILTIN_NEEDS.get(integration.name, ())
                       if not getattr(integration, setting)]
            if missing:
                self.log.error(f"Unable to enable integration for: '{integration.name}'. Missing {missing[0]}.")
                continue
            if integration.name not in BUILTIN_NEEDS and not integration.name.startswith("custom-"):
                self.log.error(f"Invalid integration: '{integration.name}'. Not currently supported.")
                continue
            integration.enabled = True
            self.log.info(f"Enabling integration for: '{integration.name}'.")

    def open_queue(self, tries=QUEUE_OPEN_TRIES, pause=1.0):
        """Open alerts.json at its end (tail=1), retrying while it does not exist. Returns success."""
        path = os.path.join(self.home, ALERTS_JSON)
        for attempt in range(1, tries + 1):
            try:
                self._queue = open(path, "rb")  # noqa: SIM115 -- kept open while the daemon runs
            except OSError:
                if attempt < tries:
                    time.sleep(pause)
                continue
            self._queue.seek(0, os.SEEK_END)
            self.log.debug("JSON file queue connected.")
            return True
        self.log.error(f"Could not open JSON queue after {tries} tries.")
        return False

    def read_alerts(self):
        """Alerts appended since the last call (complete lines only; lines that are not JSON objects
        are skipped)."""
        if self._queue is None:
            return []
        self._pending += self._queue.read()
        *lines, self._pending = self._pending.split(b"\n")
        alerts = []
        for line in lines:
            try:
                alert = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(alert, dict):
                alerts.append(alert)
        return alerts

    def process(self, alert):
        """Send one alert to every enabled integration whose filters it passes."""
        if not isinstance(alert.get("rule"), dict):
            return
        for integration in self.integrations:
            if integration.enabled and alert_passes(integration, alert):
                self.run_integration(integration, alert)

    def _write_temp(self, path, content):
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(content)
        except OSError:
            self.log.debug(f"File {path} couldn't be created.", level=2)
            return ""
        return path

    def run_integration(self, integration, alert):
        """Write the temp files, run the script, wait for it, log the outcome, remove the files.
        Returns the script's exit status (127 when it could not be run, -signal when killed)."""
        base = os.path.join(self.tmp_dir, f"{integration.name}-{int(time.time())}-{secrets.randbelow(2**31)}")
        alert_file = self._write_temp(base + ".alert", alert_file_content(integration, alert))
        options_file = ""
        if integration.options is not None:
            options_file = self._write_temp(base + ".options", integration.options + "\n")
        command = build_command(integration, alert_file, options_file, self.debug)
        try:
            return self._execute(integration, command)
        finally:
            for path in (alert_file, options_file):
                if path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def _execute(self, integration, command):
        relative = f"{INTEGRATORDIR}/{integration.name}"
        script = os.path.join(self.home, relative)
        if os.access(script, os.W_OK):
            self.log.error(f"At wpopenv(): file '{relative}' has write permissions.")
            status = 127
        else:
            status = self._spawn(relative, build_argv(command), integration)
        if status == 127:
            self.log.error(f"Couldn't execute command ({command}). Check file and permissions.")
        elif status < 0:
            self.log.error(f"Command ({command}) execution exited abnormally.")
        return status

    def _spawn(self, relative, argv, integration):
        """Run integrations/<name> (relative to the home, as execvp does) and read its output to EOF;
        returns its exit status (127 if it could not be executed)."""
        try:
            child = subprocess.Popen(argv, executable=relative, cwd=self.home, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError:  # what execvp's failure looks like from the daemon: the child exits 127
            return 127
        last_line = ""
        with child.stdout:
            for raw in child.stdout:
                last_line = raw.decode("utf-8", "replace").rstrip("\n")[:4095]
                self.log.debug(f"integratord: {last_line}", level=2)
        status = child.wait()
        if status == 0:
            self.log.debug("Command ran successfully.")
        elif status > 0 and status != 127:
            self.log.error(f"Unable to run integration for {integration.name} -> {INTEGRATORDIR}")
            self.log.error(f"While running {integration.name} -> {INTEGRATORDIR}. Output: {last_line} ")
            self.log.error(f"Exit status was: {status}")
        return status

    def poll_once(self):
        """Handle every alert appended since the last poll; returns how many were read."""
        alerts = self.read_alerts()
        for alert in alerts:
            self.process(alert)
        return len(alerts)

    def serve_forever(self):
        while True:
            if not self.poll_once():
                time.sleep(POLL_SECONDS)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description="wazuh-integratord emulator (tests only)")
    parser.add_argument("--home", default="/var/ossec", help="the Wazuh installation directory")
    parser.add_argument("-t", dest="test", action="store_true", help="test the configuration and exit")
    parser.add_argument("-d", dest="debug", action="count", default=0, help="debug (twice for more)")
    parser.add_argument("-f", dest="foreground", action="store_true", help="accepted; always foreground")
    parser.add_argument("--tmp-dir", default="/tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    log = Log(os.path.join(args.home, OSSEC_LOG), args.debug, stream=sys.stderr if args.test else None)
    daemon = Integratord(args.home, debug=args.debug, tmp_dir=args.tmp_dir, log=log)
    try:
        daemon.load()
    except ConfigError as exc:
        for line in exc.args[0]:
            log.error(line)
        log.critical(f"(1202): Configuration error at '{OSSEC_CONF}'.")
        return 1
    if not daemon.integrations:
        log.info("Remote integrations not configured. Clean exit.")
        return 0
    if args.test:
        return 0
    daemon.open_queue()
    daemon.enable()
    try:
        daemon.serve_forever()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
