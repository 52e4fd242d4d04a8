"""Forward Wazuh alerts to DFIR-IRIS, with an on-disk spool for the times IRIS cannot take them.

This module is the whole program. wazuh-integratord runs the launcher custom-wazuh_iris.py beside it,
which imports it so that its bytecode comes precompiled from __pycache__ (a script run directly is
compiled again on every run).

Alert mode (run by wazuh-integratord, cwd = the Wazuh home, e.g. /var/ossec):
    custom-wazuh_iris.py ALERT_FILE API_KEY HOOK_URL
    custom-wazuh_iris.py ALERT_FILE API_KEY HOOK_URL DEBUG OPTIONS_FILE TIMEOUT RETRIES ['> /dev/null 2>&1']
Replay mode (run by a systemd timer: drains the spool when no alert comes):
    custom-wazuh_iris.py --replay --options OPTIONS_FILE [--debug]

Exit codes: 0 delivered (or nothing to do), 1 internal error, 2 IRIS unavailable (alert kept in the
spool), 3 bad alert input, 4 rejected by IRIS (kept in rejected/), 5 configuration or
authorisation error (alert kept in the spool), 6 alert lost (the spool could not be written).
Standard library only; modules that only rare paths need are imported where they are used.
See docs/forwarder.md.
"""
import json
import os
import socket
import ssl
import sys
import time

PROG = "custom-wazuh_iris"
REDIRECT_ARG = "> /dev/null 2>&1"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_SPOOLED = 2
EXIT_BAD_INPUT = 3
EXIT_REJECTED = 4
EXIT_CONFIG = 5
EXIT_LOST = 6

DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 3
RETRY_PAUSE = 0.2  # seconds between connection attempts that failed before anything was sent
MAX_ALERT_BYTES = 64 * 1024 * 1024  # larger alert files are refused as bad input
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
FULL_LOG_PREVIEW = 4096  # characters of full_log shown in the description
CONTENT_MAX_CHARS = 256 * 1024  # budget for alert_source_content once serialised
STRING_LIMITS = (65536, 4096, 256)  # successive per-string cuts tried to fit that budget
REJECTED_KEEP_BYTES = 1024 * 1024  # how much of an unparseable alert file is kept for inspection
FILTER_PAGE_SIZE = 50
FILTER_MAX_PAGES = 20

DEFAULT_SEVERITY_BY_LEVEL = {"0-3": "Informational", "4-6": "Low", "7-9": "Medium", "10-12": "High",
                             "13-15": "Critical"}

# What the forwarder should do with an alert that IRIS did not take.
UNAVAILABLE = "unavailable"  # IRIS down or overloaded: keep the alert, stop talking to IRIS
ITEM_ERROR = "item-error"  # IRIS failed on this alert (HTTP 500): keep it, go on with the others
AUTH = "auth"  # 401/403: the API key or its permissions are wrong; keep the alert
CONFIG = "config"  # our configuration is wrong (URL, names, customer, CA file); keep the alert
REJECTED = "rejected"  # IRIS refused this alert for good (4xx): move it to rejected/
STALE_IDS = "stale-ids"  # IRIS does not know the severity/status id we sent: refresh the cache


class UsageError(Exception):
    """The command line matches none of the supported layouts."""


class BadInput(Exception):
    """The alert file cannot be turned into an IRIS alert."""


class Failure(Exception):
    """An exchange with IRIS that did not succeed; kind says what to do with the alert."""

    def __init__(self, kind, reason, ambiguous=False, retryable=False):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.ambiguous = ambiguous  # the request may have been processed although no answer came back
        self.retryable = retryable  # refused/reset before anything was sent: worth another quick try


# --------------------------------------------------------------------------------------------- log
class Log:
    """One line per event, appended to the integrations log; secrets are masked in every line."""

    def __init__(self, path, debug=False):
        self.path = path
        self.debug_enabled = debug
        self.secrets = []
        self.last_error = ""
        self._stream = None

    def set_path(self, path):
        self.close()
        self.path = path

    def _clean(self, message):
        for secret in self.secrets:
            if len(secret) >= 6:  # shorter strings are no real key, and masking them would garble the log
                message = message.replace(secret, "***")
        return message.replace("\r", "\\r").replace("\n", "\\n")

    def write(self, level, message):
        """Append one line; fall back to stderr when the log file cannot be opened."""
        message = self._clean(message)
        line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {PROG}: {level}: {message}\n"
        if self._stream is None:
            try:
                self._stream = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError as exc:
                self._stream = sys.stderr
                self._stream.write(f"{PROG}: WARNING: cannot open log file {self.path}: {exc.strerror}\n")
        self._stream.write(line)
        self._stream.flush()

    def debug(self, message):
        if self.debug_enabled:
            self.write("DEBUG", message)

    def info(self, message):
        self.write("INFO", message)

    def warning(self, message):
        self.write("WARNING", message)

    def error(self, message):
        self.last_error = self._clean(message)
        self.write("ERROR", message)

    def close(self):
        if self._stream not in (None, sys.stderr):
            self._stream.close()
        self._stream = None


# ------------------------------------------------------------------------------------ command line
class Args:
    """What the command line asked for."""

    def __init__(self, *, alert_file="", api_key="", hook_url="", debug=False, options_file="",
                 timeout=DEFAULT_TIMEOUT, retries=DEFAULT_RETRIES, replay=False):
        self.alert_file = alert_file
        self.api_key = api_key
        self.hook_url = hook_url
        self.debug = debug
        self.options_file = options_file
        self.timeout = timeout
        self.retries = retries
        self.replay = replay


SHIFT_HINT = " (an api_key or hook_url containing a space shifts every later argument)"


def _count_arg(value, name, default):
    """Parse integratord's numeric slot; an empty slot gives the default."""
    if value == "":
        return default
    if not value.isdigit():
        raise UsageError(f"the {name} argument is not a number{SHIFT_HINT}")
    return int(value)


def parse_args(argv):
    """Return Args for every layout Wazuh 4.x uses, or raise UsageError (argv values never logged)."""
    rest = list(argv[1:])
    if rest and rest[0] == "--replay":
        return _parse_replay_args(rest[1:])
    if rest and rest[-1] == REDIRECT_ARG:
        rest.pop()
    if len(rest) == 3:
        rest += ["", "", "", ""]
    elif len(rest) == 4:
        rest += ["", "", ""]
    elif len(rest) != 7:
        raise UsageError(f"got {len(argv) - 1} arguments; expected ALERT_FILE API_KEY HOOK_URL, optionally "
                         "followed by DEBUG OPTIONS_FILE TIMEOUT RETRIES and '> /dev/null 2>&1', "
                         f"or --replay --options FILE{SHIFT_HINT}")
    alert_file, api_key, hook_url, debug, options_file, timeout, retries = rest
    if debug not in ("", "debug"):
        raise UsageError(f"the debug argument must be 'debug' or empty{SHIFT_HINT}")
    timeout = _count_arg(timeout, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
    retries = _count_arg(retries, "retries", DEFAULT_RETRIES)
    return Args(alert_file=alert_file, api_key=api_key, hook_url=hook_url, debug=debug == "debug",
                options_file=options_file, timeout=timeout, retries=retries)


def _parse_replay_args(rest):
    """Parse the arguments that follow --replay."""
    args = Args(replay=True)
    while rest:
        word = rest.pop(0)
        if word == "--debug":
            args.debug = True
        elif word == "--options" and rest:
            args.options_file = rest.pop(0)
        elif word.startswith("--options="):
            args.options_file = word.split("=", 1)[1]
        else:
            raise UsageError("replay mode takes --options FILE and optionally --debug")
    if not args.options_file:
        raise UsageError("replay mode needs --options FILE")
    return args


# ------------------------------------------------------------------------------------------ options
def _int_at_least(minimum):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value
    return check


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _optional_text(value):
    return None if value is None or value == "" else _text(value)


def _tag_list(value):
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValueError("must be a list of strings")
    return [tag.strip() for tag in value if tag.strip()]


def _level_ranges(value):
    """Turn {"0-3": "Informational", "13": "Critical", ...} into sorted (low, high, name) tuples."""
    if not isinstance(value, dict) or not value:
        raise ValueError('must be an object such as {"0-3": "Informational", "4-6": "Low"}')
    ranges = []
    for key, name in value.items():
        low, _dash, high = str(key).partition("-")
        high = high or low
        if not (low.strip().isdigit() and high.strip().isdigit()) or int(low) > int(high):
            raise ValueError(f'key "{key}" is not a level or a range like "4-6"')
        ranges.append((int(low), int(high), _text(name)))
    return sorted(ranges)


OPTION_CHECKS = {
    "customer_id": (_int_at_least(1), 1),
    "severity_by_level": (_level_ranges, DEFAULT_SEVERITY_BY_LEVEL),
    "status": (_text, "New"),
    "tags": (_tag_list, []),
    "ai_pending": (_boolean, False),
    "dashboard_url": (_optional_text, None),
    "ca_file": (_optional_text, None),
    "verify_tls": (_boolean, True),
    "state_dir": (_text, "var/iris-forwarder"),
    "log_file": (_text, "logs/integrations.log"),
    "hook_url": (_optional_text, None),
    "api_key_file": (_optional_text, None),
    "cache_ttl": (_int_at_least(0), 3600),
    "outage_backoff": (_int_at_least(0), 30),
    "spool_max_files": (_int_at_least(1), 2000),
    "rejected_max_files": (_int_at_least(1), 500),
    "replay_max_per_run": (_int_at_least(1), 100),
    "replay_max_seconds": (_int_at_least(1), 15),
}


def default_options():
    """Every option at its default value (already validated)."""
    return {name: check(default) for name, (check, default) in OPTION_CHECKS.items()}


def load_options(path):
    """Read Wazuh's <options> JSON file; return (options, problems). Bad parts fall back to defaults."""
    options = default_options()
    problems = []
    if not path:
        return options, problems
    try:
        with open(path, "rb") as handle:
            text = handle.read(1024 * 1024).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return options, [f"cannot read options file {path} ({type(exc).__name__}); using defaults"]
    if not text:
        return options, problems
    try:
        given = json.loads(text)
    except ValueError as exc:
        return options, [f"options file {path} is not JSON ({exc}); using defaults"]
    if not isinstance(given, dict):
        return options, [f"options file {path} must hold a JSON object; using defaults"]
    for name, value in given.items():
        if name not in OPTION_CHECKS:
            problems.append(f"unknown option {name!r} ignored")
            continue
        try:
            options[name] = OPTION_CHECKS[name][0](value)
        except ValueError as exc:
            problems.append(f"option {name!r} {exc}; using the default {OPTION_CHECKS[name][1]!r}")
    return options, problems


# --------------------------------------------------------------------------------- building alerts
def _get(mapping, *keys):
    """mapping[k1][k2]... or None when any level is missing or not an object."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _as_list(value):
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(item) for item in value if item not in (None, "")]
    return [str(value)]


def _level(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def severity_for_level(level, ranges):
    """Severity name for a Wazuh level: the range holding it, else the nearest range."""
    if level is None:
        level = 0
    return min(ranges, key=lambda r: 0 if r[0] <= level <= r[1] else min(abs(level - r[0]), abs(level - r[1])))[2]


def _md(text):
    """Plain text made safe for IRIS' markdown renderer (no formatting, no HTML)."""
    text = " ".join(str(text).split())
    for char in "\\`*_[]<>|#":
        text = text.replace(char, "\\" + char)
    return text


def _code_block(text):
    """A fenced code block whose fence is longer than any backtick run inside the text."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _tag(value):
    return " ".join(str(value).replace(",", " ").split())


def _days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (avoids importing datetime at start-up)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468


def _has_shape(text, shape):
    """True when text looks like shape, where each 9 in shape stands for one ASCII digit."""
    return len(text) == len(shape) and all(
        "0" <= char <= "9" if want == "9" else char == want for char, want in zip(text, shape))


def _zone_offset(zone):
    """Seconds east of UTC for '', 'Z', '+0200' or '-07:00'; None for anything else."""
    if zone in ("", "Z"):
        return 0
    if zone[:1] not in ("+", "-") or not (_has_shape(zone[1:], "9999") or _has_shape(zone[1:], "99:99")):
        return None
    offset = int(zone[1:3]) * 3600 + int(zone[-2:]) * 60
    return offset if zone[0] == "+" else -offset


def iris_event_time(timestamp):
    """Wazuh '2022-05-11T12:29:19.905+0000' -> IRIS '2022-05-11T12:29:19' (UTC), or None.

    Parsed by hand: compiling a regular expression would cost start-up time on every run.
    """
    text = str(timestamp).strip()
    stamp, rest = text[:19], text[19:]
    if not _has_shape(stamp[:10] + "T" + stamp[11:], "9999-99-99T99:99:99") or stamp[10] not in "T ":
        return None
    if rest[:1] in (".", ","):  # a fraction of a second, dropped
        fraction = rest[1:]
        rest = fraction.lstrip("0123456789")
        if len(rest) == len(fraction):
            return None
    offset = _zone_offset(rest)
    if offset is None:
        return None
    parts = tuple(int(part) for part in (stamp[0:4], stamp[5:7], stamp[8:10], stamp[11:13], stamp[14:16],
                                         stamp[17:19]))
    seconds = _days_from_civil(*parts[:3]) * 86400 + parts[3] * 3600 + parts[4] * 60 + parts[5]
    if tuple(time.gmtime(seconds))[:6] != parts:  # 2023-02-30, 25:00 and the like
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds - offset))


def _cut_strings(value, limit, counter):
    """Copy of value with strings longer than limit cut and marked; counter[0] counts the cuts."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        counter[0] += 1
        return f"{value[:limit]}... [truncated by {PROG}: {len(value)} characters, first {limit} kept]"
    if isinstance(value, dict):
        return {key: _cut_strings(item, limit, counter) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_strings(item, limit, counter) for item in value]
    return value


def bound_content(alert):
    """The alert to store as alert_source_content, at most CONTENT_MAX_CHARS once serialised.

    Returns (content, note); note is empty when nothing had to be cut.
    """
    if len(json.dumps(alert, ensure_ascii=False)) <= CONTENT_MAX_CHARS:
        return alert, ""
    for limit in STRING_LIMITS:
        counter = [0]
        content = _cut_strings(alert, limit, counter)
        if len(json.dumps(content, ensure_ascii=False)) <= CONTENT_MAX_CHARS:
            return content, f"{counter[0]} string(s) longer than {limit} characters were truncated"
    summary = {key: alert.get(key) for key in ("id", "timestamp", "rule", "agent", "manager", "location")}
    content = _cut_strings(summary, STRING_LIMITS[-1], [0])
    content["truncated"] = f"the alert exceeded {CONTENT_MAX_CHARS} characters; only its main fields are kept"
    return content, "the alert was too large; only its main fields are kept"


def source_ref_for(alert):
    """The Wazuh alert id, or a stable digest of the alert when it has none."""
    ref = alert.get("id")
    if isinstance(ref, (str, int)) and not isinstance(ref, bool) and str(ref).strip():
        return str(ref).strip()
    import hashlib  # noqa: PLC0415 -- rarely needed; kept off the start-up path

    digest = hashlib.sha256(json.dumps(alert, sort_keys=True).encode("utf-8", "replace")).hexdigest()
    return f"wazuh-noid-{digest[:20]}"


def build_alert(alert, options, log=None):
    """Build the IRIS /alerts/add body (without severity/status ids) from a Wazuh alert."""
    rule = alert.get("rule") if isinstance(alert.get("rule"), dict) else {}
    agent = alert.get("agent") if isinstance(alert.get("agent"), dict) else {}
    missing = [name for name, value in (("rule", alert.get("rule")), ("agent", alert.get("agent")),
                                        ("rule.description", rule.get("description")), ("id", alert.get("id")))
               if not value]
    if missing and log:
        log.warning(f"alert {alert.get('id', '?')} lacks {', '.join(missing)}; placeholders used")
    ref = source_ref_for(alert)
    rule_id = str(rule.get("id") or "unknown")
    level = _level(rule.get("level"))
    agent_name = str(agent.get("name") or "unknown")
    description = str(rule.get("description") or f"Wazuh rule {rule_id}")
    mitre_ids = _as_list(_get(rule, "mitre", "id"))

    tags = ["wazuh", f"agent:{agent_name}", f"rule:{rule_id}", *mitre_ids, *options["tags"]]
    if options["ai_pending"]:
        tags.append("ai-pending")
    tags = list(dict.fromkeys(_tag(tag) for tag in tags if _tag(tag)))

    content, note = bound_content(alert)
    lines = [
        f"**Wazuh alert** {_md(ref)}",
        "",
        f"- **Rule:** {_md(rule_id)} (level {level if level is not None else 'unknown'}): {_md(description)}",
        f"- **Groups:** {_md(', '.join(_as_list(rule.get('groups'))) or 'none')}",
        f"- **Agent:** {_md(agent_name)} (id {_md(agent.get('id') or 'unknown')}, "
        f"ip {_md(agent.get('ip') or 'n/a')})",
        f"- **MITRE ids:** {_md(', '.join(mitre_ids) or 'none')}",
        f"- **MITRE tactics:** {_md(', '.join(_as_list(_get(rule, 'mitre', 'tactic'))) or 'none')}",
        f"- **MITRE techniques:** {_md(', '.join(_as_list(_get(rule, 'mitre', 'technique'))) or 'none')}",
        f"- **Location:** {_md(alert.get('location') or 'unknown')}",
        f"- **Time:** {_md(alert.get('timestamp') or 'unknown')}",
    ]
    full_log = alert.get("full_log")
    if full_log:
        full_log = str(full_log)
        shown = ""
        if len(full_log) > FULL_LOG_PREVIEW:
            shown = f" (first {FULL_LOG_PREVIEW} of {len(full_log)} characters)"
        lines += ["", f"**Full log**{shown}:", "", _code_block(full_log[:FULL_LOG_PREVIEW])]
    if note:
        lines += ["", f"_Source content truncated: {note}._"]
        if log:
            log.warning(f"alert {ref}: source content truncated: {note}")

    payload = {
        "alert_title": f"{description} ({agent_name})"[:250],
        "alert_description": "\n".join(lines),
        "alert_source": "Wazuh",
        "alert_source_ref": ref,
        "alert_tags": ",".join(tags),
        "alert_source_content": content,
        "alert_customer_id": options["customer_id"],
    }
    if options["dashboard_url"]:
        payload["alert_source_link"] = options["dashboard_url"].replace("{id}", _quote(ref))
    event_time = iris_event_time(alert.get("timestamp", ""))
    if event_time:
        payload["alert_source_event_time"] = event_time
    elif log:
        log.warning(f"alert {ref}: timestamp {str(alert.get('timestamp'))[:40]!r} not understood; IRIS will "
                    "use the time it receives the alert")
    return payload


def new_item(payload, severity, status):
    """A spool item: the IRIS body plus the names its ids are resolved from when it is sent."""
    return {"v": 1, "source_ref": payload["alert_source_ref"], "severity": severity, "status": status,
            "payload": payload, "created": time.time(), "attempts": 0, "ambiguous": False, "last_error": ""}


def read_alert(path):
    """Read and parse the alert file; returns (alert dict, warning or ''). Raises BadInput."""
    if not path:
        raise BadInput("no alert file was passed (integratord could not create its temp file)")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_ALERT_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read alert file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_ALERT_BYTES:
        raise BadInput(f"alert file {path} is larger than {MAX_ALERT_BYTES} bytes", raw)
    if not raw.strip():
        raise BadInput(f"alert file {path} is empty")
    warning = ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "replace")
        warning = f"alert file is not valid UTF-8 (first bad byte at offset {exc.start}); bad bytes replaced"
    try:
        alert = json.loads(text)
    except ValueError as exc:
        hint = " (set <alert_format>json</alert_format> in ossec.conf)" if text.lstrip().startswith("alert") else ""
        raise BadInput(f"alert file {path} is not JSON: {exc}{hint}", raw) from None
    if not isinstance(alert, dict):
        raise BadInput(f"alert file {path} holds a JSON {type(alert).__name__}, not an object", raw)
    return alert, warning


# -------------------------------------------------------------------------------------------- HTTP
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _quote(text):
    """Percent-encode text for a URL query value or path segment."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in str(text).encode("utf-8"))


def split_url(url):
    """'https://iris:9094/alerts/add' -> ('https', 'iris', 9094, ''); raises ValueError."""
    url = url.strip()
    if any(char.isspace() for char in url):
        raise ValueError("the IRIS URL contains white space")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("the IRIS URL must start with http:// or https://")
    netloc, slash, path = rest.partition("/")
    path = (slash + path).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if path.endswith("/alerts/add"):
        path = path[: -len("/alerts/add")]
    if "@" in netloc or not netloc:
        raise ValueError("the IRIS URL must name a host (and no user:password@)")
    port = 443 if scheme == "https" else 80
    host = netloc
    if netloc.startswith("["):
        host, _bracket, tail = netloc[1:].partition("]")
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise ValueError("bad port in the IRIS URL")
            port = int(tail[1:])
    elif ":" in netloc:
        host, _colon, port_text = netloc.rpartition(":")
        if not port_text.isdigit():
            raise ValueError("bad port in the IRIS URL")
        port = int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError("bad host or port in the IRIS URL")
    return scheme, host, port, path


class _Reader:
    """Buffered reads from a socket that respect one deadline."""

    def __init__(self, sock, end):
        self.sock = sock
        self.end = end
        self.buffer = b""
        self.total = 0

    def _fill(self):
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the response")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        self.total += len(chunk)
        if self.total > MAX_RESPONSE_BYTES:
            raise OSError("response larger than the forwarder accepts")
        self.buffer += chunk
        return bool(chunk)

    def line(self):
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of the response")
        line, _crlf, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def exact(self, size):
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of the response")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self):
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def _read_response(reader):
    """Status code and body of one HTTP/1.1 response (Content-Length, chunked or read-to-close)."""
    while True:
        status_line = reader.line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP response: {status_line[:60]!r}")
        headers = {}
        while True:
            line = reader.line().decode("latin-1")
            if not line:
                break
            name, _colon, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status >= 200:
            break  # 1xx answers are followed by the real one
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int(reader.line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            body += reader.exact(size)
            reader.line()
    elif "content-length" in headers:
        body = reader.exact(int(headers["content-length"]))
    else:
        body = reader.rest()
    return status, headers, body


def _system_trust_context():
    """A verifying SSL context that trusts the system CAs.

    Parsing the whole CA bundle costs tens of milliseconds per run, while OpenSSL's hashed CA
    directory (Debian and Ubuntu keep one) is read lazily, one CA at a time. Without such a
    directory, or when SSL_CERT_FILE names a bundle, Python's default loading is used.
    """
    capath = ssl.get_default_verify_paths().capath
    try:
        hashed = bool(capath) and "SSL_CERT_FILE" not in os.environ and any(
            name.endswith(".0") for name in os.listdir(capath))
    except OSError:
        hashed = False
    return ssl.create_default_context(capath=capath) if hashed else ssl.create_default_context()


class Iris:
    """A minimal HTTP/1.1 client for the IRIS REST API (one connection per request, no cookies)."""

    def __init__(self, url, api_key, *, timeout, retries, deadline, options, log):
        if "\r" in api_key or "\n" in api_key:
            raise ValueError("the API key contains a line break")
        self.scheme, self.host, self.port, self.base_path = split_url(url)
        self.url = f"{self.scheme}://{self.host}:{self.port}{self.base_path}"
        # socket and ssl take the host as bytes too; given a str, they import the idna codec (with
        # unicodedata and stringprep), which costs start-up time. A non-ASCII name is converted here.
        self.host_ascii = self.host.encode("ascii") if self.host.isascii() else self.host.encode("idna")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.options = options
        self.log = log
        self._context = None

    def _ssl_context(self):
        if self._context is None:
            if not self.options["verify_tls"]:
                self.log.warning("TLS certificate verification is OFF (verify_tls: false)")
                self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
            elif self.options["ca_file"]:
                try:
                    self._context = ssl.create_default_context(cafile=self.options["ca_file"])
                except (OSError, ValueError) as exc:
                    raise Failure(CONFIG, f"cannot load ca_file {self.options['ca_file']}: {exc}") from None
            else:
                self._context = _system_trust_context()
        return self._context

    def _exchange(self, method, target, body):
        """Send one request; returns (status, headers, body). Raises Failure(UNAVAILABLE) on transport errors."""
        budget = min(self.timeout, self.deadline - time.monotonic())
        if budget <= 0:
            raise Failure(UNAVAILABLE, "the run's overall deadline was reached")
        end = time.monotonic() + budget
        host = self.host_ascii.decode("ascii")
        host_header = f"[{host}]" if ":" in host else host
        head = (f"{method} {self.base_path}{target} HTTP/1.1\r\nHost: {host_header}:{self.port}\r\n"
                f"Authorization: Bearer {self.api_key}\r\nAccept: application/json\r\n"
                f"User-Agent: {PROG}\r\nConnection: close\r\n")
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1", "replace") + (body or b"")
        sent = False
        try:
            sock = socket.create_connection((self.host_ascii, self.port), timeout=budget)
            try:
                if self.scheme == "https":
                    sock = self._ssl_context().wrap_socket(sock, server_hostname=self.host_ascii)
                sock.settimeout(max(0.001, end - time.monotonic()))
                sent = True  # from here on, IRIS may act on the request even if we see no answer
                sock.sendall(request)
                return _read_response(_Reader(sock, end))
            finally:
                sock.close()
        except Failure:
            raise
        except (OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            if getattr(exc, "verify_message", None):
                raise Failure(CONFIG, f"{self.url}: TLS certificate verification failed: {exc.verify_message} "
                                      "(check ca_file)") from None
            if isinstance(exc, TimeoutError) or "timed out" in reason:
                reason = f"no answer within {budget:.1f} s"
            quick = isinstance(exc, (ConnectionRefusedError, ConnectionResetError)) and not sent
            raise Failure(UNAVAILABLE, f"{self.url}: {reason}", ambiguous=sent, retryable=quick) from None

    def request(self, method, target, payload=None):
        """One API call with connection retries; returns (status, envelope or None, short text)."""
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            try:
                status, headers, raw = self._exchange(method, target, body)
                break
            except Failure as failure:
                if not failure.retryable or attempt >= self.retries:
                    raise
                attempt += 1
                self.log.debug(f"{failure.reason}; retry {attempt} of {self.retries}")
                time.sleep(min(RETRY_PAUSE, max(0.0, self.deadline - time.monotonic())))
        try:
            envelope = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            envelope = None
        if isinstance(envelope, dict):
            text = str(envelope.get("message", ""))
        else:
            envelope = None
            text = " ".join(raw[:300].decode("utf-8", "replace").split())
        if 300 <= status < 400:
            text = f"redirected to {headers.get('location', '?')}"
        return status, envelope, text[:500]


def _failure_for(status, text, method, target):
    """Map a non-success HTTP answer to a Failure."""
    where = f"{method} {target.split('?', 1)[0]} -> HTTP {status}: {text or 'no message'}"
    if status in (401, 403):
        return Failure(AUTH, f"{where} (check the API key, its groups and customers)")
    if status in (429, 503):
        return Failure(UNAVAILABLE, where)
    if status in (502, 504):
        return Failure(UNAVAILABLE, where, ambiguous=method == "POST")
    if status >= 500:
        return Failure(ITEM_ERROR, where, ambiguous=method == "POST")
    if 300 <= status < 400 or status in (404, 405) or "not entitled" in text:
        return Failure(CONFIG, f"{where} (check hook_url and customer_id)")
    if method == "POST" and status == 400 and "ForeignKeyViolation" in text and (
            "severity" in text or "status" in text):
        return Failure(STALE_IDS, where)
    if method == "POST" and 400 <= status < 500:
        return Failure(REJECTED, where)
    return Failure(CONFIG, f"{where} (unexpected answer)")


def _get_data(client, target):
    """GET an API route and return its envelope's data, or raise Failure."""
    status, envelope, text = client.request("GET", target)
    if status == 200 and envelope and envelope.get("status") == "success":
        return envelope.get("data")
    raise _failure_for(status, text, "GET", target)


# ------------------------------------------------------------------------------- severity / status
def _fetch_lookups(client):
    """Name -> id maps of IRIS' severities and alert statuses."""
    maps = {}
    for kind, target, prefix in (("severities", "/manage/severities/list", "severity"),
                                 ("statuses", "/manage/alert-status/list", "status")):
        rows = _get_data(client, target)
        if not isinstance(rows, list):
            raise Failure(CONFIG, f"GET {target} answered without a list")
        maps[kind] = {str(row.get(f"{prefix}_name")): row.get(f"{prefix}_id") for row in rows
                      if isinstance(row, dict) and isinstance(row.get(f"{prefix}_id"), int)}
    return maps


def _read_cache(path, url, ttl):
    try:
        with open(path, encoding="utf-8") as handle:
            cache = json.load(handle)
        age = time.time() - float(cache["fetched"])
        if cache["url"] == url and 0 <= age < ttl:
            return {"severities": dict(cache["severities"]), "statuses": dict(cache["statuses"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _find(mapping, name):
    folded = name.casefold()
    for known, ident in mapping.items():
        if known.casefold() == folded:
            return ident
    return None


def resolve_ids(client, severity, status, *, cache_file, ttl, log, refresh=False):
    """(severity_id, status_id) for the names, from the on-disk cache or IRIS. Raises Failure."""
    maps = None if refresh or ttl == 0 else _read_cache(cache_file, client.url, ttl)
    if maps is None or _find(maps["severities"], severity) is None or _find(maps["statuses"], status) is None:
        maps = _fetch_lookups(client)
        try:
            _write_atomic(cache_file, json.dumps({"url": client.url, "fetched": time.time(), **maps}).encode())
        except OSError as exc:
            log.warning(f"cannot write the lookup cache {cache_file}: {exc.strerror or exc}")
    ids = (_find(maps["severities"], severity), _find(maps["statuses"], status))
    for ident, name, kind, label, option in ((ids[0], severity, "severities", "severity", "severity_by_level"),
                                             (ids[1], status, "statuses", "alert status", "status")):
        if ident is None:
            raise Failure(CONFIG, f"IRIS has no {label} named {name!r} (option {option}); "
                                  f"IRIS knows: {', '.join(sorted(maps[kind]))}")
    return ids


# ------------------------------------------------------------------------------------------ sending
def send(client, item, cache_file, ttl, log):
    """Create the alert in IRIS; returns the new alert id or raises Failure."""
    refresh = False
    while True:
        severity_id, status_id = resolve_ids(client, item["severity"], item["status"], cache_file=cache_file,
                                             ttl=ttl, log=log, refresh=refresh)
        body = dict(item["payload"], alert_severity_id=severity_id, alert_status_id=status_id)
        log.debug(f"POST /alerts/add body: {json.dumps(body, ensure_ascii=False)[:65536]}")
        status, envelope, text = client.request("POST", "/alerts/add", body)
        if status == 200 and envelope and envelope.get("status") == "success":
            return _get(envelope, "data", "alert_id")
        failure = _failure_for(status, text, "POST", "/alerts/add")
        if failure.kind == STALE_IDS and not refresh:
            log.warning(f"IRIS refused the cached severity/status ids; refreshing them ({text[:120]})")
            refresh = True
            continue
        if failure.kind == STALE_IDS:
            failure.kind = CONFIG
        raise failure


def find_existing(client, ref):
    """Id of an IRIS alert whose alert_source_ref is exactly ref (the filter matches substrings)."""
    for page in range(1, FILTER_MAX_PAGES + 1):
        data = _get_data(client, f"/alerts/filter?source_reference={_quote(ref)}&per_page={FILTER_PAGE_SIZE}"
                                 f"&page={page}&fields=alert_id,alert_source_ref,alert_source")
        alerts = data.get("alerts", []) if isinstance(data, dict) else []
        for alert in alerts:
            if isinstance(alert, dict) and alert.get("alert_source_ref") == ref:
                return alert.get("alert_id")
        if not alerts or not data.get("next_page"):
            return None
    raise Failure(UNAVAILABLE, f"too many IRIS alerts match source_reference {ref!r} to check for a duplicate")


# -------------------------------------------------------------------------------------------- spool
def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path, data):
    """Write data to path so that readers see either the old or the complete new file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _safe_name(text):
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:64]


class Spool:
    """Alerts waiting for IRIS (spool/) and alerts IRIS refused (rejected/), one JSON file each."""

    def __init__(self, options, log):
        self.state_dir = options["state_dir"]
        self.dir = os.path.join(self.state_dir, "spool")
        self.rejected_dir = os.path.join(self.state_dir, "rejected")
        self.max_files = options["spool_max_files"]
        self.rejected_max = options["rejected_max_files"]
        self.log = log

    @staticmethod
    def _listing(directory):
        try:
            names = [entry.name for entry in os.scandir(directory) if entry.name.endswith(".json")
                     and not entry.name.startswith(".")]
        except OSError:  # missing or unusable: nothing to drain (writing to it will report the problem)
            return []
        return [os.path.join(directory, name) for name in sorted(names)]

    def pending(self):
        """Spooled item paths, oldest first (file names start with a nanosecond time stamp)."""
        return self._listing(self.dir)

    def _new_path(self, directory, ref):
        return os.path.join(directory, f"{time.time_ns():020d}-{os.urandom(3).hex()}-{_safe_name(ref)}.json")

    def add(self, item, have_lock=False):
        """Store an item atomically and keep the spool bounded; returns its path. Raises OSError.

        Only the holder of the drain lock drops old items; when a drain holds it, that drain does.
        """
        path = self._new_path(self.dir, item["source_ref"])
        _write_atomic(path, json.dumps(item, ensure_ascii=False).encode("utf-8"))
        lock = None if have_lock else self.try_lock()
        if have_lock or lock is not None:
            try:
                self.enforce_bound()
            finally:
                if lock is not None:
                    os.close(lock)
        return path

    def update(self, path, item):
        _write_atomic(path, json.dumps(item, ensure_ascii=False).encode("utf-8"))

    def load(self, path):
        """The item at path, or None (a corrupt file is moved to rejected/)."""
        try:
            with open(path, encoding="utf-8") as handle:
                item = json.load(handle)
            if isinstance(item, dict) and isinstance(item.get("payload"), dict) and item.get("source_ref"):
                return item
            problem = "not a spool item"
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        self.log.error(f"spool file {os.path.basename(path)} is {problem}; moved to rejected/")
        self._move_to_rejected(path)
        return None

    def remove(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        _fsync_dir(self.dir)

    def _drop_oldest(self, paths, why):
        refs = []
        for path in paths:
            try:
                with open(path, encoding="utf-8") as handle:
                    refs.append(str(json.load(handle).get("source_ref")))
            except (OSError, ValueError, AttributeError):
                refs.append(os.path.basename(path))
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        shown = ", ".join(refs[:20]) + (f" and {len(refs) - 20} more" if len(refs) > 20 else "")
        self.log.error(f"{why}: dropped the {len(refs)} oldest alert(s): {shown}")

    def enforce_bound(self):
        """Keep at most spool_max_files items, dropping (and naming) the oldest."""
        paths = self.pending()
        if len(paths) > self.max_files:
            self._drop_oldest(paths[: len(paths) - self.max_files], f"spool full ({self.max_files} files)")

    def _bound_rejected(self):
        names = sorted(name for name in os.listdir(self.rejected_dir) if not name.startswith("."))
        paths = [os.path.join(self.rejected_dir, name) for name in names]
        if len(paths) > self.rejected_max:
            for path in paths[: len(paths) - self.rejected_max]:
                os.unlink(path)
            self.log.warning(f"rejected/ keeps at most {self.rejected_max} files; removed the oldest")

    def _move_to_rejected(self, path):
        os.makedirs(self.rejected_dir, mode=0o750, exist_ok=True)
        os.replace(path, os.path.join(self.rejected_dir, os.path.basename(path)))
        self._bound_rejected()

    def reject(self, item, reason, path=None):
        """Keep a refused item in rejected/ (with the reason), removing it from the spool."""
        item = dict(item, rejected_reason=reason, rejected_at=time.time())
        target = os.path.join(self.rejected_dir, os.path.basename(path)) if path else \
            self._new_path(self.rejected_dir, item["source_ref"])
        _write_atomic(target, json.dumps(item, ensure_ascii=False).encode("utf-8"))
        if path:
            self.remove(path)
        self._bound_rejected()

    def keep_unparsed(self, raw):
        """Keep the start of an alert file that could not be parsed, for inspection."""
        path = os.path.join(self.rejected_dir, f"{time.time_ns():020d}-{os.urandom(3).hex()}-unparsed.alert")
        _write_atomic(path, raw[:REJECTED_KEEP_BYTES])
        self._bound_rejected()
        return path

    def try_lock(self):
        """An fd holding the drain lock, or None when another process holds it."""
        import fcntl  # noqa: PLC0415 -- only draining or spooling takes the lock; kept off the start-up path

        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "drain.lock"), os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def remove_stale_temp_files(self, older_than=3600):
        """Remove temp files a crashed writer left behind."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > older_than:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue


# --------------------------------------------------------------------------------------- outage mark
def _outage_path(options):
    return os.path.join(options["state_dir"], "unavailable")


def recent_outage(options):
    """Seconds since IRIS was last found unavailable, when that is within outage_backoff."""
    try:
        age = time.time() - os.stat(_outage_path(options)).st_mtime
    except OSError:
        return None
    return age if 0 <= age < options["outage_backoff"] else None


def set_outage(options, reason):
    if options["outage_backoff"]:
        try:
            _write_atomic(_outage_path(options), reason.encode("utf-8", "replace")[:1000])
        except OSError:
            return


def clear_outage(options):
    try:
        os.unlink(_outage_path(options))
    except OSError:
        return


# -------------------------------------------------------------------------------------------- drain
class Context:
    """What a run needs to talk to IRIS and to the spool."""

    def __init__(self, options, log, client, spool):
        self.options = options
        self.log = log
        self.client = client
        self.spool = spool
        self.cache_file = os.path.join(options["state_dir"], "lookups.json")

    def send(self, item):
        return send(self.client, item, self.cache_file, self.options["cache_ttl"], self.log)


def drain(ctx, stop_at):
    """Send spooled items, oldest first, until done, out of budget or IRIS fails. Caller holds the lock.

    Returns the Failure that stopped the drain (UNAVAILABLE, AUTH or CONFIG), or None.
    """
    spool, log = ctx.spool, ctx.log
    spool.remove_stale_temp_files()
    spool.enforce_bound()
    sent = duplicates = rejected = kept = 0
    stop = None
    for path in spool.pending()[: ctx.options["replay_max_per_run"]]:
        if time.monotonic() >= stop_at:
            break
        item = spool.load(path)
        if item is None:
            continue
        ref = item["source_ref"]
        was_ambiguous = bool(item.get("ambiguous"))
        try:
            if was_ambiguous:
                existing = find_existing(ctx.client, ref)
                if existing is not None:
                    spool.remove(path)
                    duplicates += 1
                    log.info(f"spooled alert {ref} is already IRIS alert {existing}; not sent again")
                    continue
                was_ambiguous = False
            # Write-ahead: should we die after IRIS created the alert, the next drain checks first.
            spool.update(path, dict(item, ambiguous=True, attempts=item.get("attempts", 0) + 1))
            alert_id = ctx.send(item)
        except Failure as failure:
            if failure.kind == REJECTED:
                log.error(f"IRIS rejected spooled alert {ref}: {failure.reason}; kept in rejected/")
                spool.reject(item, failure.reason, path)
                rejected += 1
                continue
            spool.update(path, dict(item, ambiguous=was_ambiguous or failure.ambiguous,
                                    attempts=item.get("attempts", 0) + 1, last_error=failure.reason))
            kept += 1
            if failure.kind == ITEM_ERROR:
                log.error(f"spooled alert {ref} failed again (attempt {item.get('attempts', 0) + 1}): "
                          f"{failure.reason}")
                continue
            stop = failure
            break
        spool.remove(path)
        sent += 1
        log.info(f"replayed alert {ref} -> IRIS alert {alert_id}")
    spool.enforce_bound()  # items added while this drain held the lock
    if sent or duplicates or rejected or kept:
        left = len(spool.pending())
        log.info(f"spool drain: {sent} sent, {duplicates} already present, {rejected} rejected, {left} waiting"
                 + (f"; stopped: {stop.reason}" if stop else ""))
    return stop


# ------------------------------------------------------------------------------------------- modes
def _keep(ctx, item, failure, have_lock):
    """Spool an alert IRIS did not take; returns the exit code."""
    item = dict(item, ambiguous=failure.ambiguous, last_error=failure.reason)
    try:
        ctx.spool.add(item, have_lock)
    except OSError as exc:
        ctx.log.error(f"alert {item['source_ref']} LOST: {failure.reason}; and the spool in "
                      f"{ctx.spool.dir} cannot be written: {exc.strerror or exc}")
        return EXIT_LOST
    if failure.kind in (AUTH, CONFIG):
        ctx.log.error(f"alert {item['source_ref']} kept in the spool: {failure.reason}")
        return EXIT_CONFIG
    if failure.kind == UNAVAILABLE:
        set_outage(ctx.options, failure.reason)
    ctx.log.error(f"alert {item['source_ref']} kept in the spool: IRIS did not take it: {failure.reason}")
    return EXIT_SPOOLED


def run_alert(args, options, log):
    """integratord mode: drain the spool first, then deliver (or keep) this alert."""
    started = time.monotonic()
    spool = Spool(options, log)
    try:
        alert, warning = read_alert(args.alert_file)
    except BadInput as exc:
        kept = ""
        if len(exc.args) > 1 and exc.args[1]:
            try:
                kept = f"; its first bytes are kept in {spool.keep_unparsed(exc.args[1])}"
            except OSError as error:
                kept = f"; it could not be kept: {error.strerror or error}"
        log.error(f"bad alert input: {exc.args[0]}{kept}")
        return EXIT_BAD_INPUT
    if warning:
        log.warning(f"alert {alert.get('id', '?')}: {warning}")
    payload = build_alert(alert, options, log)
    level = _level(_get(alert, "rule", "level"))
    item = new_item(payload, severity_for_level(level, options["severity_by_level"]), options["status"])

    ctx = Context(options, log, None, spool)
    if not args.api_key or not (args.hook_url or options["hook_url"]):
        return _keep(ctx, item, Failure(CONFIG, "no API key or hook_url was given"), False)
    deadline = started + options["replay_max_seconds"] + 3 * args.timeout
    try:
        ctx.client = Iris(args.hook_url or options["hook_url"], args.api_key, timeout=args.timeout,
                          retries=args.retries, deadline=deadline, options=options, log=log)
    except ValueError as exc:
        return _keep(ctx, item, Failure(CONFIG, f"bad configuration: {exc}"), False)

    since = recent_outage(options)
    if since is not None:
        return _keep(ctx, item, Failure(UNAVAILABLE, f"IRIS was unavailable {since:.0f} s ago; not retried "
                                                     f"before outage_backoff ({options['outage_backoff']} s)"),
                     False)
    lock = None
    try:
        if spool.pending():
            lock = spool.try_lock()
            if lock is None:
                log.info("another process is draining the spool; sending this alert directly")
            else:
                try:
                    stop = drain(ctx, started + options["replay_max_seconds"])
                except OSError as exc:
                    stop = None
                    log.error(f"spool drain failed: {exc}; sending this alert directly")
                if stop is not None:
                    return _keep(ctx, item, Failure(stop.kind, f"not tried: {stop.reason}"), True)
        try:
            alert_id = ctx.send(item)
        except Failure as failure:
            if failure.kind == REJECTED:
                log.error(f"IRIS rejected alert {item['source_ref']}: {failure.reason}; kept in rejected/")
                try:
                    spool.reject(item, failure.reason)
                except OSError as exc:
                    log.error(f"cannot write to {spool.rejected_dir}: {exc.strerror or exc}")
                return EXIT_REJECTED
            return _keep(ctx, item, failure, lock is not None)
        clear_outage(options)
        log.info(f"alert {item['source_ref']} -> IRIS alert {alert_id} "
                 f"({(time.monotonic() - started) * 1000:.0f} ms)")
        return EXIT_OK
    finally:
        if lock is not None:
            os.close(lock)


def run_replay(args, options, log):
    """Timer mode: drain the spool (options file gives hook_url and api_key_file)."""
    started = time.monotonic()
    spool = Spool(options, log)
    if not spool.pending():
        log.debug("spool empty; nothing to replay")
        return EXIT_OK
    if not options["hook_url"] or not options["api_key_file"]:
        log.error("replay needs the options hook_url and api_key_file; spooled alerts left in place")
        return EXIT_CONFIG
    try:
        with open(options["api_key_file"], encoding="utf-8") as handle:
            api_key = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.error(f"cannot read api_key_file {options['api_key_file']}: {type(exc).__name__}")
        return EXIT_CONFIG
    log.secrets.append(api_key)
    try:
        client = Iris(options["hook_url"], api_key, timeout=DEFAULT_TIMEOUT, retries=0,
                      deadline=started + options["replay_max_seconds"] + DEFAULT_TIMEOUT, options=options, log=log)
    except ValueError as exc:
        log.error(f"bad configuration: {exc}")
        return EXIT_CONFIG
    lock = spool.try_lock()
    if lock is None:
        log.info("another process is draining the spool; replay skipped")
        return EXIT_OK
    try:
        stop = drain(Context(options, log, client, spool), started + options["replay_max_seconds"])
    finally:
        os.close(lock)
    if stop is None:
        clear_outage(options)
        return EXIT_OK
    if stop.kind == UNAVAILABLE:
        set_outage(options, stop.reason)
        log.error(f"replay stopped, IRIS unavailable: {stop.reason}")
        return EXIT_SPOOLED
    log.error(f"replay stopped: {stop.reason}")
    return EXIT_CONFIG


def main(argv=None):
    """Entry point; returns the exit code and never lets a traceback out."""
    argv = sys.argv if argv is None else argv
    log = Log(OPTION_CHECKS["log_file"][1])
    try:
        try:
            args = parse_args(argv)
        except UsageError as exc:
            log.error(f"unknown argument layout: {exc}; nothing sent")
            return EXIT_CONFIG
        log.secrets.append(args.api_key)
        log.debug_enabled = args.debug
        options, problems = load_options(args.options_file)
        log.set_path(options["log_file"])
        for problem in problems:
            log.warning(problem)
        if args.replay:
            return run_replay(args, options, log)
        return run_alert(args, options, log)
    except Exception as exc:  # the last line of defence: one log line instead of a traceback
        log.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
    finally:
        if log.last_error:
            sys.stderr.write(f"{PROG}: {log.last_error[:300]}\n")
        log.close()


def run():
    """Run main() and end the process with its exit code, skipping the interpreter's slow teardown."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the log is closed and nothing else is buffered
