"""From a Wazuh alert file to the IRIS alert the forwarder sends (POST /alerts/add), and its spool item.

See docs/forwarder.md, "The IRIS alert". Any JSON document that parses becomes an alert: text that is
not valid Unicode (lone surrogates) and nesting too deep to encode are replaced, and the IRIS alert's
description says so; a document that cannot even be parsed is kept in rejected/ by the caller.
"""
import time

from socstack_core.http import quote
from socstack_core.jsonio import dumps, encodable, loads

from .routing import source_ref
from .settings import PROG, read_head

MAX_ALERT_BYTES = 64 * 1024 * 1024  # larger alert files are refused as bad input
# JSON values ('[', '{' and ',' counted before parsing) above which an alert is refused as bad input: parsing
# and bounding millions of tiny values would cost seconds and gigabytes before the first network call.
MAX_ALERT_VALUES = 200_000
FULL_LOG_PREVIEW = 4096  # characters of full_log shown in the description
CONTENT_MAX_CHARS = 256 * 1024  # budget for alert_source_content once serialised
STRING_LIMITS = (65536, 4096, 256)  # successive per-string cuts tried to fit that budget
ITEM_VERSION = 3


class BadInput(Exception):
    """The alert file cannot be turned into an IRIS alert (args: message, raw bytes to keep)."""


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


def level_of(alert):
    """The alert's rule.level as an int, or None."""
    rule = alert.get("rule")
    return _level(rule.get("level")) if isinstance(rule, dict) else None


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


def _longest_string(value):
    """Length of the longest string in value (iteratively: the alert may be nested deep)."""
    longest, stack = 0, [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            longest = max(longest, len(value))
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return longest


def bound_content(alert):
    """The alert to store as alert_source_content, at most CONTENT_MAX_CHARS once serialised.

    Returns (content, note); note is empty when nothing had to be cut.
    """
    if len(dumps(alert)) <= CONTENT_MAX_CHARS:
        return alert, ""
    longest = _longest_string(alert)
    for limit in STRING_LIMITS:
        if limit >= longest:
            continue  # nothing to cut at this limit: skip a copy of the whole alert
        counter = [0]
        content = _cut_strings(alert, limit, counter)
        if len(dumps(content)) <= CONTENT_MAX_CHARS:
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
    import json  # noqa: PLC0415 -- the digest's exact form is json.dumps's (stable across versions)

    digest = hashlib.sha256(json.dumps(alert, sort_keys=True).encode("utf-8", "replace")).hexdigest()
    return f"wazuh-noid-{digest[:20]}"


def build_alert(alert, options, log=None, notes=()):
    """Build the IRIS /alerts/add body (without severity/status ids) from a Wazuh alert.

    notes: what read_alert had to replace in the alert; the description lists them.
    """
    rule = alert.get("rule") if isinstance(alert.get("rule"), dict) else {}
    agent = alert.get("agent") if isinstance(alert.get("agent"), dict) else {}
    missing = [name for name, value in (("rule", alert.get("rule")), ("agent", alert.get("agent")),
                                        ("rule.description", rule.get("description")), ("id", alert.get("id")))
               if not value]
    if missing and log:
        log.warning(f"alert {alert.get('id', '?')} lacks {', '.join(missing)}; placeholders used")
    wazuh_ref = source_ref_for(alert)
    ref = source_ref(alert, wazuh_ref)
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
        f"**Wazuh alert** {_md(wazuh_ref)}" + (f" from {_md(ref[: -len(wazuh_ref) - 1])}" if ref != wazuh_ref else ""),
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
    for text in notes:
        lines += ["", f"_Changed by {PROG}: {_md(text)}._"]

    payload = {
        "alert_title": f"{description} ({agent_name})"[:250],
        "alert_description": "\n".join(lines),
        "alert_source": "Wazuh",
        "alert_source_ref": ref,
        "alert_tags": ",".join(tags),
        "alert_source_content": content,
        "alert_customer_id": options["customer_id"],
    }
    nul_fields = [key for key, value in payload.items() if isinstance(value, str) and "\x00" in value]
    if nul_fields:
        # IRIS 2.4.20 refuses a NUL in any text column with 400 "A string literal cannot contain NUL (0x00)
        # characters." (psycopg2); alert_source_content, a JSON column, keeps them.
        payload["alert_description"] += (f"\n\n_Changed by {PROG}: NUL characters in {', '.join(nul_fields)} "
                                         "replaced by U+FFFD (IRIS refuses them in text fields)._")
        for key in nul_fields:
            payload[key] = payload[key].replace("\x00", "\ufffd")
    if options["dashboard_url"]:
        payload["alert_source_link"] = options["dashboard_url"].replace("{id}", quote(wazuh_ref))
    event_time = iris_event_time(alert.get("timestamp", ""))
    if event_time:
        payload["alert_source_event_time"] = event_time
    elif log:
        log.warning(f"alert {ref}: timestamp {str(alert.get('timestamp'))[:40]!r} not understood; IRIS will "
                    "use the time it receives the alert")
    return payload


def new_item(payload, severity, status, now=None, customer=None):
    """A spool item: the IRIS body, the names its ids are resolved from when it is sent, its delivery state.

    state "unsent": IRIS cannot have it; "unknown": a send may have reached IRIS (sent_at says when).
    customer: the IRIS customer name routing chose (None: the payload's customer_id). See docs/forwarder.md.
    """
    now = time.time() if now is None else now
    return {"v": ITEM_VERSION, "source_ref": payload["alert_source_ref"], "severity": severity, "status": status,
            "payload": payload, "created": now, "state": "unsent", "sent_at": None, "sent_clock": None,
            "attempts": 0, "failures": 0, "not_before": 0, "backoff": 0, "failed_clock": None, "suspect": False,
            "last_error": "", "customer": customer}


def read_alert(path):
    """Read and parse the alert file; returns (alert dict, notes on what was replaced). Raises BadInput.

    BadInput carries the raw bytes (to keep in rejected/) when there were any.
    """
    if not path:
        raise BadInput("no alert file was passed (integratord could not create its temp file)")
    raw = read_head(path, MAX_ALERT_BYTES, BadInput, f"alert file {path}")
    if len(raw) > MAX_ALERT_BYTES:
        raise BadInput(f"alert file {path} is larger than {MAX_ALERT_BYTES} bytes", raw)
    if not raw.strip():
        raise BadInput(f"alert file {path} is empty")
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_ALERT_VALUES:
        raise BadInput(f"alert file {path} holds about {values} JSON values, more than {MAX_ALERT_VALUES} (no Wazuh "
                       "alert does; reading it would cost more time and memory than a run may take)", raw)
    notes = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "replace")
        notes.append(f"the alert file is not valid UTF-8 (first bad byte at offset {exc.start}); bad bytes "
                     "replaced by U+FFFD")
    try:
        alert = loads(text)
    except ValueError as exc:
        hint = " (set <alert_format>json</alert_format> in ossec.conf)" if text.lstrip().startswith("alert") else ""
        raise BadInput(f"alert file {path} is not JSON: {exc}{hint}", raw) from None
    except RecursionError:
        raise BadInput(f"alert file {path} is JSON nested too deeply to be read", raw) from None
    if not isinstance(alert, dict):
        raise BadInput(f"alert file {path} holds a JSON {type(alert).__name__}, not an object", raw)
    alert, replaced = encodable(alert)
    return alert, notes + replaced
