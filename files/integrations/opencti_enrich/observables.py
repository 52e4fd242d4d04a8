"""The observables an alert carries, per alert family, and the source fields copied into events.

docs/opencti.md, "What is looked up", is the specification. No regular expressions: see addresses.py.
"""
import math

from .addresses import Observable, domain_name, host_observable, public_ip, sha256

__all__ = ["Observable", "command_word_observables", "dns_observables", "execve_args", "extract_observables",
           "source_context", "sysmon_event_id", "sysmon_observables", "url_observables"]

MAX_TEXT = 1024  # longest string copied into an event
MAX_URL = 2048
SYSMON_HASH_EVENTS = frozenset((1, 6, 7, 15, 23, 24, 25))
# Last labels that make a command-line word a file name rather than a domain (payload.sh, run.py).
FILE_EXTENSIONS = frozenset((
    "bak", "bat", "bin", "c", "cfg", "conf", "csv", "deb", "dll", "exe", "gz", "h", "htm", "html", "ini", "jar",
    "js", "json", "ko", "log", "md", "out", "php", "pl", "ps1", "py", "rb", "rpm", "service", "sh", "so", "sql",
    "tar", "tgz", "tmp", "txt", "war", "xml", "xz", "yaml", "yml", "zip",
))  # fmt: skip
_URL_END = frozenset("'\"<>`|\\")
_WORD_SEPARATORS = frozenset("=@,")
_SCHEMES = (("https", 5), ("http", 4), ("ftp", 3))


def as_dict(value):
    """value when it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def dig(obj, path):
    """The value at a dotted path of nested dicts, or None."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def clip(value, limit=MAX_TEXT):
    """Strings cut to limit characters; other values unchanged."""
    return value[:limit] if isinstance(value, str) else value


def _leading_digits(text):
    """The decimal digits text starts with ('' when none)."""
    end = 0
    while end < len(text) and text[end].isdecimal():
        end += 1
    return text[:end]


# ------------------------------------------------------------------------------- URLs and words
def _is_word_char(char):
    return char.isalnum() or char == "_"


def find_urls(text):
    """URLs (http, https, ftp; any case) in text, each up to the first white space or ' \" < > ` | \\."""
    found = []
    pos = 0
    while True:
        sep = text.find("://", pos)
        if sep < 0:
            return found
        start = None
        for scheme, size in _SCHEMES:
            if sep >= size and text[sep - size:sep].lower() == scheme:
                start = sep - size
                break
        end = sep + 3
        if start is not None and (start == 0 or not _is_word_char(text[start - 1])):
            while end < len(text) and not text[end].isspace() and text[end] not in _URL_END:
                end += 1
            if end > sep + 3:
                found.append(text[start:end])
                pos = end
                continue
        pos = sep + 1


def url_host(url):
    """The lower-case host of a URL found by find_urls, or None when its brackets do not pair up."""
    netloc = url.split("://", 1)[1]
    for stop in "/?#":
        netloc = netloc.split(stop, 1)[0]
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        inside, bracket, _rest = host[1:].partition("]")
        return inside.lower() if bracket else None
    if "[" in host or "]" in host:
        return None
    return host.partition(":")[0].lower()


def url_observables(text):
    """URLs in text whose host is public, each followed by its host."""
    found = []
    for match in find_urls(text):
        url = match.rstrip(".,;:)]}")[:MAX_URL]
        host = url_host(url)
        host_obs = host_observable(host) if host else None
        if host_obs:
            found += [Observable("url", url), host_obs]
    return found


def _split_word(word):
    """word split at runs of '=', '@', ',' and white space."""
    tokens, current = [], []
    for char in word:
        if char in _WORD_SEPARATORS or char.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def _without_port(token):
    """token without a trailing ':<digits>'."""
    head, colon, port = token.rpartition(":")
    return head if colon and port and port.isdecimal() else token


def command_word_observables(word):
    """Domains and public IPs written bare in one command-line word (evil.example, user@1.2.3.4:22)."""
    found = []
    for raw in _split_word(word):
        token = raw.strip("'\"()[]")
        if not token or "/" in token:
            continue
        without_port = _without_port(token)
        ip = public_ip(token) or public_ip(without_port)
        if ip:
            found.append(ip)
        elif without_port.rsplit(".", 1)[-1].lower() not in FILE_EXTENSIONS:
            domain = domain_name(without_port)
            if domain:
                found.append(domain)
    return found


# ------------------------------------------------------------------------------- alert families
def sysmon_event_id(alert, groups):
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
        if not group.startswith("sysmon_"):
            continue
        rest = group[7:]
        if rest.startswith("eid"):
            rest = rest[3:]
        elif rest.startswith("event"):
            rest = rest[5:]
            if rest.startswith("_") and rest[1:2].isdecimal():
                rest = rest[1:]
        else:
            continue
        digits = _leading_digits(rest)
        if digits:
            return int(digits)
    return None


def _cname_target(item):
    """The name of a Sysmon DNS result 'type: 5 name', else None."""
    if not item.startswith("type:"):
        return None
    rest = item[5:].lstrip()
    digits = _leading_digits(rest)
    rest = rest[len(digits):]
    if not digits or not rest[:1].isspace():
        return None
    words = rest.split()
    return words[0] if len(words) == 1 else None


def sysmon_observables(event_id, eventdata):
    """Event 1/6/7/15/23-25: SHA256 from Hashes; 3: destination IP/host; 22: query name and results."""
    found = []
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
            cname = _cname_target(item.strip())
            found.append(domain_name(cname) if cname else public_ip(item))
    return [o for o in found if o]


def dns_observables(dns):
    """Query names and answers from Suricata EVE (v1-v3) or Packetbeat dns objects."""
    if not isinstance(dns, dict):
        return []
    names = [dns.get("rrname"), dig(dns, "question.name")]
    answers = []
    for key in ("query", "queries"):
        queries = dns.get(key)
        if isinstance(queries, list):
            names += [q.get("rrname") for q in queries if isinstance(q, dict)]
    if dns.get("rdata"):
        answers.append(dns.get("rdata"))
    records = dns.get("answers")
    for answer in records if isinstance(records, list) else []:
        if isinstance(answer, dict):
            answers += [answer.get("rdata"), answer.get("data")]
    grouped = dns.get("grouped")
    if isinstance(grouped, dict):
        for group in grouped.values():
            answers += group if isinstance(group, list) else []
    found = [domain_name(n) for n in names]
    found += [public_ip(a) or domain_name(a) for a in answers]
    return [o for o in found if o]


def fortigate_admin_event(data):
    """FortiGate administrator login/logout and configuration changes: their IPs are admins, not traffic."""
    action = str(data.get("action", "")).lower()
    logdesc = str(data.get("logdesc", "")).lower()
    return (action in ("login", "logout") or any(key in data for key in ("cfgpath", "cfgobj", "cfgattr"))
            or "admin" in logdesc or "configured" in logdesc)


def execve_args(audit):
    """The audit execve arguments a0..aN in order."""
    execve = as_dict(audit).get("execve")
    if not isinstance(execve, dict):
        return []
    keyed = [(int(key[1:]), value) for key, value in execve.items()
             if isinstance(key, str) and key[:1] == "a" and key[1:].isdecimal() and isinstance(value, str)]
    return [value for _unused, value in sorted(keyed)]


def extract_observables(alert, limit, log=None):
    """Every observable the alert's family carries, de-duplicated, at most limit."""
    groups_list = as_dict(alert.get("rule")).get("groups")
    groups = {g for g in groups_list if isinstance(g, str)} if isinstance(groups_list, list) else set()
    data = as_dict(alert.get("data"))
    found = []

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
    if len(unique) > limit and log is not None:
        log.warning(f"alert carries {len(unique)} observables; looking up the first {limit} (max_observables)")
    return unique[:limit]


# Event field -> alert path, copied into opencti.source when present.
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


def source_context(alert):
    """The source-alert fields an analyst needs next to a match."""
    source = {}
    for name, path in SOURCE_FIELDS:
        value = dig(alert, path)
        if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value)):
            source[name] = clip(value)
    args = execve_args(dig(alert, "data.audit"))
    if args:
        source["execve"] = clip(" ".join(args))
    return source
