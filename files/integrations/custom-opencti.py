#!/usr/bin/env python3
"""Wazuh integratord integration: enrich one alert with OpenCTI threat intelligence.

wazuh-integratord runs this program once per alert (through the `custom-opencti` launcher). It
pulls the observables out of the alert (hashes, public IP addresses, domains, URLs), asks OpenCTI
about all of them in ONE GraphQL request, and sends the matches back to wazuh-analysisd as JSON
events through the queue socket, where the `opencti_rules.xml` rules turn them into alerts.
Results (hits and misses) are cached on disk for `cache_ttl` seconds.

Standard library only; runs on Python 3.9 to 3.12 (Wazuh 4.13 embeds 3.10). See docs/opencti.md.

Exit codes:
    0  done: events sent, nothing to look up, or an OpenCTI failure reported as an error event
    2  bad command line (alert file, API token or URL missing)
    3  the alert file cannot be read or is not one JSON alert (alert_format must be json)
    4  an event could not be written to the Wazuh queue socket
    5  unexpected internal error (traceback in the log)
"""

import http.client
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

INTEGRATION = "opencti"
PROGRAM = "custom-opencti"
USER_AGENT = "socstack-wazuh-opencti/1.0"

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_ALERT = 3
EXIT_QUEUE = 4
EXIT_INTERNAL = 5

DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 300
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_MESSAGE_BYTES = 63 * 1024  # analysisd drops queue messages of 64 KiB (OS_MAXSTR) and more
MAX_TEXT = 1024  # longest string copied into an event
MAX_URL = 2048
NESTED_FIRST = 5  # indicators / relationships fetched per observable

EMPTY_FILE_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Option name -> (default, accepted types, smallest accepted value for numbers).
OPTIONS = {
    "max_ind_alerts": (3, (int,), 0),
    "max_obs_alerts": (2, (int,), 0),
    "max_observables": (20, (int,), 1),
    "cache_ttl": (3600, (int,), 0),
    "cache_max_entries": (10000, (int,), 1),
    "state_dir": ("/var/ossec/var/opencti", (str,), None),
    "ca_file": (None, (str, type(None)), None),
    "verify_tls": (True, (bool,), None),
    "queue_socket": ("/var/ossec/queue/sockets/queue", (str,), None),
    "log_file": ("logs/integrations.log", (str,), None),
}

EVENT_INDICATOR_MATCH = "indicator_pattern_match"
EVENT_INDICATOR_PARTIAL = "indicator_partial_pattern_match"
EVENT_OBSERVABLE = "observable_with_indicator"
EVENT_OBSERVABLE_RELATED = "observable_with_related_indicator"
EVENT_ERROR = "error"

# The one GraphQL document this program sends. Filter keys follow OpenCTI >= 5.12 (FilterGroup,
# `hashes.SHA-256` with the hyphen); tests validate it against the 6.4 and 6.9 schemas.
LOOKUP_QUERY = """
query WazuhOpenctiLookup($indicatorFilters: FilterGroup, $observableFilters: FilterGroup, $first: Int, $nested: Int) {
  indicators(filters: $indicatorFilters, first: $first, orderBy: x_opencti_score, orderMode: desc) {
    edges { node { ...IndicatorDetails } }
  }
  stixCyberObservables(filters: $observableFilters, first: $first) {
    edges {
      node {
        id
        entity_type
        observable_value
        x_opencti_score
        x_opencti_description
        objectLabel { value }
        ... on StixFile { hashes { algorithm hash } }
        indicators(first: $nested) { edges { node { ...IndicatorDetails } } }
        relatedTo: stixCoreRelationships(
          first: $nested, toTypes: ["IPv4-Addr", "IPv6-Addr", "Domain-Name", "Hostname", "Url"]
        ) {
          edges { node { ...RelatedObservables } }
        }
        relatedFrom: stixCoreRelationships(
          first: $nested, fromTypes: ["IPv4-Addr", "IPv6-Addr", "Domain-Name", "Hostname", "Url"]
        ) {
          edges { node { ...RelatedObservables } }
        }
      }
    }
  }
}

fragment IndicatorDetails on Indicator {
  id
  name
  pattern
  pattern_type
  valid_from
  valid_until
  revoked
  confidence
  x_opencti_score
  x_opencti_detection
  indicator_types
  x_mitre_platforms
  created_at
  updated_at
  objectLabel { value }
  killChainPhases { kill_chain_name phase_name }
  createdBy { name }
  externalReferences(first: 5) { edges { node { source_name url external_id } } }
}

fragment RelatedObservables on StixCoreRelationship {
  relationship_type
  from { ...RelatedEnd }
  to { ...RelatedEnd }
}

fragment RelatedEnd on StixCyberObservable {
  id
  entity_type
  observable_value
  indicators(first: $nested) { edges { node { ...IndicatorDetails } } }
}
"""
GRAPHQL_DOCUMENTS = (LOOKUP_QUERY,)

log = logging.getLogger(PROGRAM)


class UsageError(Exception):
    """The command line does not carry what integratord always passes."""


class AlertError(Exception):
    """The alert file is missing or is not one JSON alert."""


class LookupFailed(Exception):
    """OpenCTI could not answer: the message becomes an `opencti.error` event."""


class QueueError(Exception):
    """An event could not be handed to wazuh-analysisd."""


class Observable(NamedTuple):
    """One value taken from an alert: kind is ipv4, ipv6, domain, url or sha256."""

    kind: str
    value: str


class Arguments(NamedTuple):
    """What integratord passed on the command line."""

    alert_file: str
    api_key: str
    hook_url: str
    debug: bool
    options_file: str
    timeout: int


# --------------------------------------------------------------------------- command line, options, logging


def _is_redirect(arg: str) -> bool:
    """True for the literal `> /dev/null 2>&1` integratord appends (whole or split)."""
    text = arg.strip()
    return text.startswith(">") or text in ("2>&1", "/dev/null")


def parse_argv(argv: List[str]) -> Arguments:
    """Read every Wazuh 4.x layout: `alert key url [debug [options timeout retries]] [> /dev/null 2>&1]`."""
    args = [a for a in argv[1:] if not _is_redirect(a)]
    if len(args) < 3:
        raise UsageError(f"expected at least 3 arguments (alert file, API token, OpenCTI URL), got {len(args)}")
    alert_file, api_key, hook_url = args[0], args[1], args[2]
    rest = args[3:]
    if not api_key or not hook_url:
        raise UsageError("the integration needs <api_key> and <hook_url> in its ossec.conf block")
    timeout = DEFAULT_TIMEOUT
    if len(rest) > 2 and rest[2].strip():
        try:
            timeout = min(max(int(rest[2]), 1), MAX_TIMEOUT)
        except ValueError:
            log.warning("timeout argument %r is not a number; using %d s", rest[2], DEFAULT_TIMEOUT)
    return Arguments(
        alert_file=alert_file,
        api_key=api_key,
        hook_url=hook_url,
        debug=bool(rest) and rest[0] == "debug",
        options_file=rest[1] if len(rest) > 1 else "",
        timeout=timeout,
    )


def load_options(path: str) -> Tuple[Dict[str, Any], List[str]]:
    """Options from integratord's `.options` file (the `<options>` JSON); returns (options, problems)."""
    options = {name: spec[0] for name, spec in OPTIONS.items()}
    if not path:
        return options, []
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError as exc:
        return options, [f"cannot read options file {path}: {exc.strerror}; using defaults"]
    if not text:
        return options, []
    try:
        given = json.loads(text)
    except ValueError:
        return options, ["<options> is not valid JSON; using defaults"]
    if not isinstance(given, dict):
        return options, ["<options> must be a JSON object; using defaults"]
    problems = []
    for name, value in given.items():
        if name not in OPTIONS:
            problems.append(f"unknown option {name!r} ignored")
            continue
        default, types, minimum = OPTIONS[name]
        wrong_type = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong_type or (minimum is not None and value < minimum):
            problems.append(f"option {name!r} has an invalid value {value!r}; using default {default!r}")
            continue
        options[name] = value
    return options, problems


class _RedactSecrets(logging.Filter):
    """Replace secrets in every log record, whatever code produced it."""

    def __init__(self, secrets: List[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True


def redact(text: str, secrets: List[str]) -> str:
    """`text` with each secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def configure_logging(log_file: str, debug: bool, secrets: List[str]) -> None:
    """Log to `log_file` (stderr when it cannot be opened); secrets are always redacted."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    for old in list(log.filters):
        log.removeFilter(old)
    try:
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s " + PROGRAM + "[%(process)d] %(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.addFilter(_RedactSecrets(secrets))
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment, for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------- observables from alerts

_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")
_SYSMON_GROUP = re.compile(r"^sysmon_(?:event_?|eid)(\d+)")
_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"<>`|\\]+")
_DOMAIN = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
_DNS_CNAME_RESULT = re.compile(r"^type:\s*\d+\s+(\S+)$")
SYSMON_HASH_EVENTS = {1, 6, 7, 15, 23, 24, 25}
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)
NON_PUBLIC_SUFFIXES = {"arpa", "local", "localhost", "localdomain", "internal", "lan", "home", "test", "invalid"}
# Last labels that make a command-line word a file name rather than a domain (payload.sh, run.py).
FILE_EXTENSIONS = {
    "bak", "bat", "bin", "c", "cfg", "conf", "csv", "deb", "dll", "exe", "gz", "h", "htm", "html", "ini", "jar",
    "js", "json", "ko", "log", "md", "out", "php", "pl", "ps1", "py", "rb", "rpm", "service", "sh", "so", "sql",
    "tar", "tgz", "tmp", "txt", "war", "xml", "xz", "yaml", "yml", "zip",
}  # fmt: skip


def as_dict(value: Any) -> dict:
    """`value` when it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def dig(obj: Any, path: str) -> Any:
    """Value at a dotted path of nested dicts, or None."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def public_ip(text: Any) -> Optional[Observable]:
    """An ipv4/ipv6 observable when `text` is a globally routable address (IPv6 compressed)."""
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or any(address in net for net in DOCUMENTATION_NETWORKS if net.version == address.version)
    ):
        return None
    return Observable("ipv4" if address.version == 4 else "ipv6", str(address))


def domain_name(text: Any) -> Optional[Observable]:
    """A domain observable for a public-looking DNS name (lower-case, no trailing dot)."""
    if not isinstance(text, str):
        return None
    name = text.strip().rstrip(".").lower()
    if not _DOMAIN.match(name) or name.rsplit(".", 1)[-1] in NON_PUBLIC_SUFFIXES:
        return None
    return Observable("domain", name)


def sha256(text: Any) -> Optional[Observable]:
    """A sha256 observable (lower-case), skipping the hash of the empty file."""
    if not isinstance(text, str) or not _SHA256.match(text.strip()):
        return None
    value = text.strip().lower()
    return None if value == EMPTY_FILE_SHA256 else Observable("sha256", value)


def host_observable(host: str) -> Optional[Observable]:
    """The IP or domain observable for a host name found in a URL or command."""
    return public_ip(host) or domain_name(host)


def url_observables(text: str) -> List[Observable]:
    """URLs in `text` whose host is public, each followed by its host."""
    found = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:)]}")[:MAX_URL]
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            continue
        host_obs = host_observable(host)
        if host_obs:
            found += [Observable("url", url), host_obs]
    return found


def command_word_observables(word: str) -> List[Observable]:
    """Domains and public IPs written bare in one command-line word (`evil.example`, `user@1.2.3.4:22`)."""
    found = []
    for raw in re.split(r"[=@,\s]+", word):
        token = raw.strip("'\"()[]")
        if not token or "/" in token:
            continue
        without_port = re.sub(r":\d+$", "", token)
        ip = public_ip(token) or public_ip(without_port)
        if ip:
            found.append(ip)
        elif without_port.rsplit(".", 1)[-1].lower() not in FILE_EXTENSIONS:
            domain = domain_name(without_port)
            if domain:
                found.append(domain)
    return found


def sysmon_event_id(alert: dict, groups: set) -> Optional[int]:
    """The Sysmon event id, from the event itself or from the rule groups."""
    system = as_dict(dig(alert, "data.win.system"))
    if "sysmon" in str(system.get("providerName", "")).lower():
        try:
            return int(system.get("eventID"))
        except (TypeError, ValueError):
            pass
    if "sysmon_process-anomalies" in groups:
        return 1
    for group in groups:
        match = _SYSMON_GROUP.match(group)
        if match:
            return int(match.group(1))
    return None


def sysmon_observables(event_id: int, eventdata: dict) -> List[Observable]:
    """Event 1/6/7/15/23-25: SHA256 from Hashes; 3: destination IP/host; 22: query name and results."""
    found: List[Optional[Observable]] = []
    if event_id in SYSMON_HASH_EVENTS:
        for field in ("hashes", "hash"):
            for item in str(eventdata.get(field) or "").split(","):
                name, _unused, value = item.partition("=")
                if name.strip().upper() == "SHA256":
                    found.append(sha256(value))
    elif event_id == 3:
        found += [public_ip(eventdata.get("destinationIp")), domain_name(eventdata.get("destinationHostname"))]
    elif event_id == 22:
        found.append(domain_name(eventdata.get("queryName")))
        for item in str(eventdata.get("queryResults") or "").split(";"):
            cname = _DNS_CNAME_RESULT.match(item.strip())
            found.append(domain_name(cname.group(1)) if cname else public_ip(item))
    return [o for o in found if o]


def dns_observables(dns: Any) -> List[Observable]:
    """Query names and answers from Suricata EVE (v1-v3) or Packetbeat `dns` objects."""
    if not isinstance(dns, dict):
        return []
    names = [dns.get("rrname"), dig(dns, "question.name")]
    answers = []
    for key in ("query", "queries"):
        names += [q.get("rrname") for q in dns.get(key) or [] if isinstance(q, dict)]
    if dns.get("rdata"):
        answers.append(dns.get("rdata"))
    for answer in dns.get("answers") or []:
        if isinstance(answer, dict):
            answers += [answer.get("rdata"), answer.get("data")]
    grouped = dns.get("grouped")
    if isinstance(grouped, dict):
        for records in grouped.values():
            answers += records if isinstance(records, list) else []
    found = [domain_name(n) for n in names]
    found += [public_ip(a) or domain_name(a) for a in answers]
    return [o for o in found if o]


def fortigate_admin_event(data: dict) -> bool:
    """FortiGate administrator login/logout and configuration changes: their IPs are admins, not traffic."""
    action = str(data.get("action", "")).lower()
    logdesc = str(data.get("logdesc", "")).lower()
    return (
        action in ("login", "logout")
        or any(key in data for key in ("cfgpath", "cfgobj", "cfgattr"))
        or "admin" in logdesc
        or "configured" in logdesc
    )


def execve_args(audit: Any) -> List[str]:
    """The audit execve arguments a0..aN in order."""
    execve = as_dict(audit).get("execve")
    if not isinstance(execve, dict):
        return []
    keyed = []
    for key, value in execve.items():
        if re.fullmatch(r"a\d+", key) and isinstance(value, str):
            keyed.append((int(key[1:]), value))
    return [value for _unused, value in sorted(keyed)]


def extract_observables(alert: dict, limit: int) -> List[Observable]:
    """Every observable the alert's family carries, de-duplicated, at most `limit`."""
    groups_list = as_dict(alert.get("rule")).get("groups")
    groups = {g for g in groups_list if isinstance(g, str)} if isinstance(groups_list, list) else set()
    data = as_dict(alert.get("data"))
    found: List[Optional[Observable]] = []

    event_id = sysmon_event_id(alert, groups)
    if event_id is not None:
        found += sysmon_observables(event_id, as_dict(dig(data, "win.eventdata")))
    if "ids" in groups:
        for key in ("dest_ip", "dstip", "src_ip", "srcip"):
            found.append(public_ip(data.get(key)))
        found += dns_observables(data.get("dns"))
    if "syscheck_file" in groups and groups & {"syscheck_entry_added", "syscheck_entry_modified"}:
        found.append(sha256(dig(alert, "syscheck.sha256_after")))
    if groups & {"osquery", "osquery_file"}:
        found += [sha256(dig(data, "osquery.columns.sha256")), public_ip(dig(data, "osquery.columns.remote_address"))]
    if "audit_command" in groups:
        for arg in execve_args(data.get("audit")):
            urls = url_observables(arg)
            found += urls or command_word_observables(arg)
    if "sonicwall" in groups or ("fortigate" in groups and not fortigate_admin_event(data)):
        for key in ("srcip", "dstip", "src_ip", "dst_ip", "dest_ip"):
            found.append(public_ip(data.get(key)))

    unique = list(dict.fromkeys(o for o in found if o))
    if len(unique) > limit:
        log.warning("alert carries %d observables; looking up the first %d (max_observables)", len(unique), limit)
    return unique[:limit]


# Event field -> alert path, copied into `opencti.source` when present.
SOURCE_FIELDS = (
    ("alert_id", "id"), ("rule_id", "rule.id"), ("rule_level", "rule.level"),
    ("rule_description", "rule.description"), ("timestamp", "timestamp"), ("location", "location"),
    ("agent_id", "agent.id"), ("agent_name", "agent.name"), ("agent_ip", "agent.ip"),
    ("src_ip", "data.src_ip"), ("srcip", "data.srcip"), ("src_port", "data.src_port"), ("srcport", "data.srcport"),
    ("dest_ip", "data.dest_ip"), ("dstip", "data.dstip"), ("dest_port", "data.dest_port"),
    ("dstport", "data.dstport"), ("proto", "data.proto"), ("app_proto", "data.app_proto"),
    ("in_iface", "data.in_iface"), ("srcintf", "data.srcintf"), ("dstintf", "data.dstintf"),
    ("action", "data.action"), ("signature", "data.alert.signature"), ("signature_id", "data.alert.signature_id"),
    ("category", "data.alert.category"), ("dns_query", "data.dns.rrname"),
    ("file", "syscheck.path"), ("md5", "syscheck.md5_after"), ("sha1", "syscheck.sha1_after"),
    ("sha256", "syscheck.sha256_after"), ("syscheck_event", "syscheck.event"),
    ("image", "data.win.eventdata.image"), ("command_line", "data.win.eventdata.commandLine"),
    ("hashes", "data.win.eventdata.hashes"), ("user", "data.win.eventdata.user"),
    ("destination_ip", "data.win.eventdata.destinationIp"),
    ("destination_hostname", "data.win.eventdata.destinationHostname"),
    ("query_name", "data.win.eventdata.queryName"), ("query_results", "data.win.eventdata.queryResults"),
    ("osquery_name", "data.osquery.name"), ("osquery_path", "data.osquery.columns.path"),
    ("audit_exe", "data.audit.exe"), ("audit_command", "data.audit.command"), ("audit_key", "data.audit.key"),
    ("audit_success", "data.audit.success"), ("audit_uid", "data.audit.uid"), ("audit_euid", "data.audit.euid"),
    ("audit_pid", "data.audit.pid"), ("audit_cwd", "data.audit.cwd"),
)  # fmt: skip


def source_context(alert: dict) -> dict:
    """The source-alert fields an analyst needs next to a match."""
    source = {}
    for name, path in SOURCE_FIELDS:
        value = dig(alert, path)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            source[name] = clip(value)
    args = execve_args(dig(alert, "data.audit"))
    if args:
        source["execve"] = clip(" ".join(args))
    return source


# --------------------------------------------------------------------------- the OpenCTI request


def stix_quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_patterns(obs: Observable) -> List[str]:
    """The indicator patterns OpenCTI would hold for this observable."""
    if obs.kind == "sha256":
        return [f"[file:hashes.'SHA-256' = {stix_quote(v)}]" for v in dict.fromkeys((obs.value, obs.value.upper()))]
    if obs.kind == "domain":
        return [f"[domain-name:value = {stix_quote(obs.value)}]", f"[hostname:value = {stix_quote(obs.value)}]"]
    stix_type = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "url": "url"}[obs.kind]
    return [f"[{stix_type}:value = {stix_quote(obs.value)}]"]


def _filter(key: str, values: List[str]) -> dict:
    return {"key": [key], "values": values, "operator": "eq", "mode": "or"}


def build_variables(observables: List[Observable]) -> dict:
    """GraphQL variables looking up all observables: indicators by pattern, observables by value/hash."""
    patterns = [p for o in observables for p in stix_patterns(o)]
    values = [o.value for o in observables if o.kind != "sha256"]
    hashes = [h for o in observables if o.kind == "sha256" for h in dict.fromkeys((o.value, o.value.upper()))]
    observable_filters = []
    if values:
        observable_filters.append(_filter("value", values))
    if hashes:
        observable_filters.append(_filter("hashes.SHA-256", hashes))
    return {
        "indicatorFilters": {
            "mode": "and",
            "filters": [_filter("pattern_type", ["stix"]), _filter("pattern", patterns)],
            "filterGroups": [],
        },
        "observableFilters": {"mode": "or", "filters": observable_filters, "filterGroups": []},
        "first": min(50, max(10, 2 * len(observables))),
        "nested": NESTED_FIRST,
    }


def graphql_url(hook_url: str) -> str:
    """The GraphQL endpoint: hook_url as given, with `/graphql` appended when missing."""
    url = hook_url.strip().rstrip("/")
    return url if url.endswith("/graphql") else url + "/graphql"


def tls_context(verify: bool, ca_file: Optional[str]) -> ssl.SSLContext:
    """Client TLS settings from the options."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except OSError as exc:
        raise LookupFailed(f"cannot load ca_file {ca_file}: {exc.strerror or exc}") from None


def post_graphql(url: str, token: str, payload: dict, timeout: int, options: dict) -> dict:
    """POST one GraphQL request; the whole exchange must finish within `timeout` seconds."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LookupFailed(f"unsupported OpenCTI URL {safe_url(url)}")
    deadline = time.monotonic() + timeout
    if parts.scheme == "https":
        context = tls_context(options["verify_tls"], options["ca_file"])
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    body = json.dumps(payload).encode("utf-8")
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    try:
        conn.connect()
        sock = conn.sock
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.request("POST", parts.path or "/graphql", body, headers)
        response = conn.getresponse()
        chunks, size = [], 0
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = response.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise LookupFailed("OpenCTI API response is too large")
            if time.monotonic() > deadline:
                raise socket.timeout()
            chunks.append(chunk)
    except socket.timeout:
        raise LookupFailed(f"OpenCTI API did not answer within {timeout} s") from None
    except ssl.SSLError as exc:
        raise LookupFailed(f"TLS error talking to the OpenCTI API: {exc.reason or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise LookupFailed(f"cannot reach the OpenCTI API: {reason}") from None
    finally:
        conn.close()
    return parse_response(response.status, b"".join(chunks))


def parse_response(status: int, raw: bytes) -> dict:
    """The `data` object of a GraphQL answer; anything else raises LookupFailed."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    errors = document.get("errors") if isinstance(document, dict) else None
    first_error = ""
    if isinstance(errors, list) and errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = dig(first, "extensions.code")
        first_error = clip(str(first.get("message") or "unknown error"), 300) + (f" ({code})" if code else "")
    if status != 200:
        raise LookupFailed(f"OpenCTI API answered HTTP {status}" + (f": {first_error}" if first_error else ""))
    if document is None:
        raise LookupFailed("OpenCTI API response is not JSON")
    if errors:
        raise LookupFailed(f"OpenCTI API returned an error: {first_error or 'unknown error'}")
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise LookupFailed("OpenCTI API response has no data")
    for field in ("indicators", "stixCyberObservables"):
        if not isinstance(data.get(field), dict):
            raise LookupFailed(f"OpenCTI API response is incomplete: {field} is null")
    return data


# --------------------------------------------------------------------------- response -> records


def clip(value: Any, limit: int = MAX_TEXT) -> Any:
    """Strings cut to `limit` characters; other values unchanged."""
    return value[:limit] if isinstance(value, str) else value


def nodes(connection: Any) -> List[dict]:
    """The node dicts of a connection, skipping null edges and nodes."""
    edges = connection.get("edges") if isinstance(connection, dict) else None
    return [e["node"] for e in edges or [] if isinstance(e, dict) and isinstance(e.get("node"), dict)]


def labels(node: dict) -> List[str]:
    """Label values of an object."""
    found = node.get("objectLabel")
    return [clip(item["value"]) for item in found or [] if isinstance(item, dict) and item.get("value")][:20]


def number(value: Any) -> Optional[int]:
    """An int, or None for null or anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def scalar(value: Any) -> Any:
    """Strings clipped; lists, objects and other odd types dropped."""
    if isinstance(value, (str, int, float, bool)):
        return clip(value)
    return None


def indicator_record(node: dict) -> Optional[dict]:
    """The indicator fields kept in events and in the cache."""
    if not node.get("id"):
        return None
    record = {
        key: scalar(node.get(key))
        for key in ("id", "name", "pattern", "pattern_type", "valid_from", "valid_until", "created_at", "updated_at")
    }
    record.update(
        revoked=node.get("revoked") is True,
        x_opencti_detection=node.get("x_opencti_detection") is True,
        confidence=number(node.get("confidence")),
        x_opencti_score=number(node.get("x_opencti_score")),
        indicator_types=[clip(t) for t in node.get("indicator_types") or [] if isinstance(t, str)][:10],
        x_mitre_platforms=[clip(p) for p in node.get("x_mitre_platforms") or [] if isinstance(p, str)][:10],
        labels=labels(node),
        kill_chain_phases=[
            clip(f"{k.get('kill_chain_name')}:{k.get('phase_name')}")
            for k in node.get("killChainPhases") or []
            if isinstance(k, dict)
        ][:10],
        created_by=scalar(dig(node, "createdBy.name")),
        references=[clip(r["url"]) for r in nodes(node.get("externalReferences")) if r.get("url")][:5],
    )
    return record


def indicator_records(connection: Any) -> List[dict]:
    """Indicator records of a connection."""
    return [r for r in (indicator_record(n) for n in nodes(connection)) if r]


def related_records(node: dict) -> List[dict]:
    """Observables linked to `node` by a relationship, with the indicators they carry."""
    related = []
    for field in ("relatedTo", "relatedFrom"):
        for rel in nodes(node.get(field)):
            ends = [end for end in (rel.get("from"), rel.get("to")) if isinstance(end, dict)]
            other = next((e for e in ends if e.get("id") and e.get("id") != node.get("id")), None)
            if other is None:
                continue
            inds = indicator_records(other.get("indicators"))
            if inds:
                related.append(
                    {
                        "id": scalar(other.get("id")),
                        "entity_type": scalar(other.get("entity_type")),
                        "observable_value": scalar(other.get("observable_value")),
                        "relationship_type": scalar(rel.get("relationship_type")),
                        "indicators": inds,
                    }
                )
    return related


def observable_record(node: dict) -> Optional[dict]:
    """The observable fields kept in events and in the cache."""
    if not node.get("id"):
        return None
    return {
        "id": scalar(node.get("id")),
        "entity_type": scalar(node.get("entity_type")),
        "observable_value": scalar(node.get("observable_value")),
        "x_opencti_score": number(node.get("x_opencti_score")),
        "x_opencti_description": scalar(node.get("x_opencti_description")),
        "labels": labels(node),
        "hashes": [h["hash"].lower() for h in node.get("hashes") or [] if isinstance(dig(h, "hash"), str)],
        "indicators": indicator_records(node.get("indicators")),
        "related": related_records(node),
    }


def _quoted_in(value: str, pattern: str) -> bool:
    return stix_quote(value).lower() in pattern.lower()


def attribute_results(data: dict, observables: List[Observable]) -> Dict[Observable, dict]:
    """Share the answer out per observable, so each one can be cached on its own."""
    results: Dict[Observable, dict] = {o: {"indicators": [], "observables": []} for o in observables}
    patterns = {o: set(stix_patterns(o)) for o in observables}
    for record in indicator_records(data.get("indicators")):
        pattern = record.get("pattern") or ""
        exact = [o for o in observables if pattern in patterns[o]]
        owners = exact or [o for o in observables if _quoted_in(o.value, pattern)] or observables
        for obs in owners:
            results[obs]["indicators"].append(dict(record, exact=bool(exact)))
    for node in nodes(data.get("stixCyberObservables")):
        record = observable_record(node)
        if record is None:
            continue
        value = str(record.get("observable_value") or "").lower()
        owners = [o for o in observables if o.value.lower() == value or o.value in record["hashes"]]
        for obs in owners or observables:
            results[obs]["observables"].append(record)
    return results


# --------------------------------------------------------------------------- cache


def _valid_result(result: Any) -> bool:
    """True for a result of the shape `attribute_results` produces (guards against an edited cache)."""
    if not isinstance(result, dict):
        return False
    return all(
        isinstance(result.get(key), list) and all(isinstance(r, dict) and r.get("id") for r in result[key])
        for key in ("indicators", "observables")
    )


class ResultCache:
    """Per-observable lookup results (hits and misses) in one JSON file, valid for `ttl` seconds."""

    def __init__(self, state_dir: str, ttl: int, max_entries: int):
        self.path = os.path.join(state_dir, "opencti-cache.json")
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: Dict[str, dict] = {}
        self.dirty = False
        if ttl > 0:
            self._load()

    @staticmethod
    def key(obs: Observable) -> str:
        return f"{obs.kind}:{obs.value}"

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cache file %s is unreadable or corrupt (%s); starting empty", self.path, type(exc).__name__)
            return
        entries = document.get("entries") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            log.warning("cache file %s has an unexpected layout; starting empty", self.path)
            return
        self.entries = {k: v for k, v in entries.items() if isinstance(v, dict) and number(v.get("stored"))}

    def get(self, obs: Observable) -> Optional[dict]:
        """The cached result, or None when absent or older than the TTL."""
        entry = self.entries.get(self.key(obs))
        if not entry or time.time() - entry["stored"] >= self.ttl:
            return None
        result = entry.get("result")
        return result if _valid_result(result) else None

    def put(self, obs: Observable, result: dict) -> None:
        if self.ttl > 0:
            self.entries[self.key(obs)] = {"stored": time.time(), "result": result}
            self.dirty = True

    def save(self) -> None:
        """Write the live entries atomically (temp file + rename); failures only cost future requests."""
        if not self.dirty:
            return
        now = time.time()
        live = sorted(
            ((k, v) for k, v in self.entries.items() if now - v["stored"] < self.ttl),
            key=lambda item: item[1]["stored"],
        )[-self.max_entries :]
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            fd, tmp_path = tempfile.mkstemp(prefix=".opencti-cache-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps({"version": 1, "entries": dict(live)}, separators=(",", ":")))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_path, self.path)
            except BaseException:
                os.unlink(tmp_path)
                raise
        except OSError as exc:
            log.warning("cannot write cache file %s: %s", self.path, exc.strerror or exc)


# --------------------------------------------------------------------------- ranking and events


def _timestamp(text: Any) -> Optional[datetime]:
    """An aware datetime from an ISO-8601 string, or None."""
    if not isinstance(text, str) or not text:
        return None
    # Python 3.9/3.10 only parse 3 or 6 fraction digits: pad or cut to 6.
    cleaned = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "00000")[:6], text.strip().replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def indicator_rank(record: dict) -> tuple:
    """Sort key, best first: live before revoked/expired, exact before partial, detection, score, confidence."""
    valid_until = _timestamp(record.get("valid_until"))
    expired = valid_until is not None and valid_until < datetime.now(timezone.utc)
    score = record.get("x_opencti_score")
    confidence = record.get("confidence")
    return (
        record.get("revoked") is True,
        expired,
        record.get("exact") is False,
        record.get("x_opencti_detection") is not True,
        -(score if isinstance(score, int) else -1),
        -(confidence if isinstance(confidence, int) else -1),
        str(record.get("name") or ""),
    )


def indicator_summary(record: dict, base_url: str) -> dict:
    """The indicator as it appears in events."""
    summary = {k: v for k, v in record.items() if k != "exact"}
    summary["link"] = f"{base_url}/dashboard/observations/indicators/{record.get('id')}"
    return summary


def build_events(results: List[Tuple[Observable, dict]], source: dict, base_url: str, options: dict) -> List[dict]:
    """Ranked, capped events: indicator matches first (max_ind_alerts), then observables (max_obs_alerts)."""
    indicators: Dict[str, Tuple[dict, Observable]] = {}
    observables: Dict[str, Tuple[dict, Observable]] = {}
    for obs, result in results:
        for record in result.get("indicators") or []:
            known = indicators.get(record["id"])
            if known is None or (record.get("exact") and not known[0].get("exact")):
                indicators[record["id"]] = (record, obs)
        for record in result.get("observables") or []:
            observables.setdefault(record["id"], (record, obs))

    events = []
    ranked = sorted(indicators.values(), key=lambda item: indicator_rank(item[0]))
    for record, obs in ranked[: options["max_ind_alerts"]]:
        event_type = EVENT_INDICATOR_MATCH if record.get("exact") else EVENT_INDICATOR_PARTIAL
        events.append(
            {
                "event_type": event_type,
                "indicator": indicator_summary(record, base_url),
                "matched_type": obs.kind,
                "matched_value": obs.value,
                "source": source,
            }
        )

    candidates = []
    for record, obs in observables.values():
        event = observable_event(record, obs, source, base_url)
        if event:
            candidates.append(event)
    candidates.sort(key=lambda item: item[0])
    events += [event for _unused, event in candidates[: options["max_obs_alerts"]]]
    return events


def observable_event(record: dict, obs: Observable, source: dict, base_url: str) -> Optional[Tuple[tuple, dict]]:
    """(rank, event) for an observable with its own or a related indicator; None when it has neither."""
    event = {
        "event_type": None,  # set below
        "observable_id": record.get("id"),
        "observable_type": record.get("entity_type"),
        "observable_value": record.get("observable_value"),
        "observable_score": record.get("x_opencti_score"),
        "observable_description": record.get("x_opencti_description"),
        "observable_labels": record.get("labels"),
        "observable_link": f"{base_url}/dashboard/observations/observables/{record.get('id')}",
        "matched_type": obs.kind,
        "matched_value": obs.value,
        "source": source,
    }
    own_score = -(record.get("x_opencti_score") or -1)
    direct = sorted(record.get("indicators") or [], key=indicator_rank)
    if direct:
        event.update(
            event_type=EVENT_OBSERVABLE,
            indicator=indicator_summary(direct[0], base_url),
            multiple_indicators=len(direct) > 1,
        )
        return (0, indicator_rank(direct[0]), own_score), event
    related = []
    for rel in record.get("related") or []:
        inds = sorted(rel.get("indicators") or [], key=indicator_rank)
        if inds:
            related.append((indicator_rank(inds[0]), rel, inds))
    if not related:
        return None
    related.sort(key=lambda item: item[0])
    best_rank, rel, inds = related[0]
    event.update(
        event_type=EVENT_OBSERVABLE_RELATED,
        related={
            "id": rel.get("id"),
            "type": rel.get("entity_type"),
            "value": rel.get("observable_value"),
            "relationship": rel.get("relationship_type"),
            "link": f"{base_url}/dashboard/observations/observables/{rel.get('id')}",
            "indicator": indicator_summary(inds[0], base_url),
            "multiple_indicators": len(inds) > 1,
        },
    )
    return (1, best_rank, own_score), event


def error_event(message: str, source: dict) -> dict:
    """The event reporting a failed lookup."""
    return {"event_type": EVENT_ERROR, "error": message, "source": source}


# --------------------------------------------------------------------------- sending to analysisd


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and dicts (booleans and zeros stay)."""
    if isinstance(value, dict):
        cleaned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (prune(v) for v in value) if v not in (None, "", [], {})]
    return value


# Parts dropped, in this order, from an event that does not fit in one queue message.
TRIM_ORDER = (
    ("source", "command_line"), ("source", "execve"), ("source", "query_results"), ("source", "hashes"),
    ("indicator", "references"), ("indicator", "labels"), ("indicator", "pattern"),
    ("related", "indicator"), ("source",), ("indicator",),
)  # fmt: skip


def queue_location(alert: dict) -> str:
    """`opencti` for the manager, else `[id] (name) ip->opencti` escaped as analysisd expects."""
    agent = as_dict(alert.get("agent"))
    agent_id = str(agent.get("id") or "000")
    if agent_id == "000":
        return INTEGRATION
    location = f"[{agent_id}] ({agent.get('name') or 'unknown'}) {agent.get('ip') or 'any'}"
    return location.replace("|", "||").replace(":", "|:") + "->" + INTEGRATION


def encode_message(event: dict, location: str) -> bytes:
    """`1:<location>:<json>` below the queue size limit, trimming the event when needed."""
    body = prune(event)
    for path in (*TRIM_ORDER, None):
        message = f"1:{location}:{json.dumps({'integration': INTEGRATION, INTEGRATION: body})}".encode()
        if len(message) <= MAX_MESSAGE_BYTES:
            return message
        if path is None:
            break
        parent = body
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    minimal = {"event_type": body.get("event_type"), "error": clip(str(body.get("error") or ""), 200)}
    return f"1:{location}:{json.dumps({'integration': INTEGRATION, INTEGRATION: prune(minimal)})}".encode()


def send_events(events: List[dict], alert: dict, socket_path: str) -> None:
    """One datagram per event to the analysisd queue socket."""
    location = queue_location(alert)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(socket_path)
            for event in events:
                sock.send(encode_message(event, location))
    except OSError as exc:
        raise QueueError(f"cannot send to the Wazuh queue socket {socket_path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- main


def load_alert(path: str) -> dict:
    """The alert integratord wrote for this run."""
    if not path:
        raise AlertError("integratord passed no alert file (it could not create one)")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            alert = json.load(handle)
    except OSError as exc:
        raise AlertError(f"cannot read alert file {path}: {exc.strerror}") from None
    except ValueError:
        raise AlertError(f"alert file {path} is not JSON (set <alert_format>json</alert_format>)") from None
    if not isinstance(alert, dict):
        raise AlertError(f"alert file {path} does not hold one JSON object")
    return alert


def lookup(observables: List[Observable], args: Arguments, options: dict) -> List[Tuple[Observable, dict]]:
    """Results per observable: from the cache, and for the rest ONE request to OpenCTI."""
    cache = ResultCache(options["state_dir"], options["cache_ttl"], options["cache_max_entries"])
    results = {}
    missing = []
    for obs in observables:
        cached = cache.get(obs)
        if cached is None:
            missing.append(obs)
        else:
            results[obs] = cached
    log.debug("cache: %d hit(s), %d to look up", len(results), len(missing))
    if missing:
        payload = {"query": LOOKUP_QUERY, "variables": build_variables(missing)}
        log.debug("OpenCTI request variables: %s", json.dumps(payload["variables"]))
        data = post_graphql(graphql_url(args.hook_url), args.api_key, payload, args.timeout, options)
        for obs, result in attribute_results(data, missing).items():
            results[obs] = result
            cache.put(obs, result)
        cache.save()
    return [(obs, results[obs]) for obs in observables]


def run(argv: List[str]) -> int:
    """Process one alert; returns the exit code."""
    configure_logging(OPTIONS["log_file"][0], debug=False, secrets=[])
    try:
        args = parse_argv(argv)
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    options, problems = load_options(args.options_file)
    configure_logging(options["log_file"], args.debug, secrets=[args.api_key])
    for problem in problems:
        log.warning("%s", problem)
    try:
        alert = load_alert(args.alert_file)
    except AlertError as exc:
        log.error("%s", exc)
        return EXIT_BAD_ALERT

    observables = extract_observables(alert, options["max_observables"])
    rule_id = dig(alert, "rule.id")
    if not observables:
        log.debug("alert %s (rule %s): nothing to look up", alert.get("id"), rule_id)
        return EXIT_OK
    log.debug("alert %s (rule %s): observables %s", alert.get("id"), rule_id, [tuple(o) for o in observables])
    source = source_context(alert)
    try:
        results = lookup(observables, args, options)
        base_url = graphql_url(args.hook_url)[: -len("/graphql")]
        events = build_events(results, source, base_url, options)
    except LookupFailed as exc:
        message = redact(str(exc), [args.api_key])
        log.error("alert %s: %s (OpenCTI at %s)", alert.get("id"), message, safe_url(args.hook_url))
        events = [error_event(message, source)]
    log.debug("alert %s: %d event(s): %s", alert.get("id"), len(events), [e["event_type"] for e in events])
    try:
        send_events(events, alert, options["queue_socket"])
    except QueueError as exc:
        log.error("%s", exc)
        return EXIT_QUEUE
    return EXIT_OK


def main(argv: List[str]) -> int:
    """Entry point: `run`, with a last-resort handler that logs instead of crashing."""
    try:
        return run(argv)
    except Exception:
        secrets = [a for a in argv[2:3] if a]
        log.error("unexpected error: %s", redact(traceback.format_exc(), secrets))
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main(sys.argv))
