"""Emulator of the DFIR-IRIS 2.4.20 REST API, for tests.

What it copies: the behaviour of a real IRIS 2.4.20 server as recorded in
../shared/reference/iris-2.4.20.md and ../shared/reference/iris-transcripts/ (the transcripts win where
the two disagree). That covers the ``{status, message, data}`` envelope and its status codes (400 for most
"not found", 401 "Authentication required", 403 "Permission denied", HTML pages for 404/405/500), API-key
auth (``Authorization: Bearer``, bare ``Authorization``, ``X-IRIS-AUTH``), first-boot state and ids, the
group permission bit mask, customers/groups/users management with IRIS's duplicate and password rules,
membership replacement, API-key renewal, ``/user/whoami``, the lookup lists in their real ids and order, and
alerts (add, filter, get, update, delete, comments and their delete) with IRIS's validation messages and filter
semantics.
Every answer carries an HTTP ``Date`` header (http.server adds it), as the real server's do (measured
2026-12-04, iris-2.4.20.md): the AI worker measures its clock skew from it. A few
routes the transcripts do not exercise (customer and user delete, user activate) follow the v2.4.20
source the reference page names.

Like the real server, every response sets a ``session`` cookie, and a request that sends one back is
served as that session's user with the permission mask cached when the session was made: a client
that keeps cookies is caught. ``Secure`` is added to the cookie only in TLS mode, so that plain-HTTP
test clients with a cookie jar really do send it back.

Test-only extras: ``add_hook`` (delay and fault injection), ``request_log``, setup helpers
(``add_user``, ``add_customer``, ``add_group``, ``create_alert``), ``stop()``/``start()`` on the same
port (outage), and ``--state-file`` persistence. Standard library only.

CLI (same environment contract as the real app: IRIS_ADM_API_KEY, IRIS_ADM_PASSWORD,
IRIS_ADM_USERNAME, IRIS_ADM_EMAIL, read only when the state is new)::

    python3 tests/emulators/iris.py --host 0.0.0.0 --port 8000 [--tls-cert F --tls-key F] [--state-file F]
"""

import argparse
import copy
import hashlib
import json
import math
import os
import re
import secrets
import signal
import ssl
import sys
import tempfile
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

# --- Facts from the reference -------------------------------------------------------------------------

PERMISSIONS = [  # (name, bit) in the order IRIS lists them
    ("standard_user", 1),
    ("server_administrator", 2),
    ("alerts_read", 4),
    ("alerts_write", 8),
    ("alerts_delete", 16),
    ("search_across_cases", 32),
    ("customers_read", 64),
    ("customers_write", 128),
    ("case_templates_read", 256),
    ("case_templates_write", 512),
    ("activities_read", 1024),
    ("all_activities_read", 2048),
]
PERM = dict(PERMISSIONS)
ALL_PERMISSIONS = 4095
ANY_USER = 0  # route needs authentication only

VERSIONS = {"iris_current": "v2.4.20", "api_min": "2.0.4", "api_current": "2.0.5"}

SEVERITIES = [  # list order as a fresh 2.4.20 returns it
    {"severity_id": 4, "severity_name": "Low", "severity_description": "Low"},
    {"severity_id": 3, "severity_name": "Informational", "severity_description": "Informational"},
    {"severity_id": 2, "severity_name": "Unspecified", "severity_description": "Unspecified"},
    {"severity_id": 5, "severity_name": "High", "severity_description": "High"},
    {"severity_id": 1, "severity_name": "Medium", "severity_description": "Medium"},
    {"severity_id": 6, "severity_name": "Critical", "severity_description": "Critical"},
]
ALERT_STATUSES = [
    {"status_id": 1, "status_name": "Unspecified", "status_description": "Unspecified"},
    {"status_id": 6, "status_name": "Closed", "status_description": "Alert closed, no action taken"},
    {"status_id": 8, "status_name": "Escalated", "status_description": "Alert converted to a new case"},
    {"status_id": 4, "status_name": "In progress", "status_description": "Alert is being investigated"},
    {"status_id": 5, "status_name": "Pending", "status_description": "Alert is in a pending state"},
    {"status_id": 2, "status_name": "New", "status_description": "Alert is new and unassigned"},
    {"status_id": 3, "status_name": "Assigned",
     "status_description": "Alert is assigned to a user and pending investigation"},
    {"status_id": 7, "status_name": "Merged", "status_description": "Alert merged into an existing case"},
]
RESOLUTION_STATUSES = [
    {"resolution_status_id": 2, "resolution_status_name": "True Positive With Impact",
     "resolution_status_description": "The alert was a true positive and had an impact"},
    {"resolution_status_id": 6, "resolution_status_name": "Legitimate",
     "resolution_status_description": "The alert is acceptable and expected"},
    {"resolution_status_id": 4, "resolution_status_name": "Not Applicable",
     "resolution_status_description": "The alert is not applicable"},
    {"resolution_status_id": 5, "resolution_status_name": "Unknown",
     "resolution_status_description": "Unknown resolution status"},
    {"resolution_status_id": 3, "resolution_status_name": "True Positive Without Impact",
     "resolution_status_description": "The alert was a true positive but had no impact"},
    {"resolution_status_id": 1, "resolution_status_name": "False Positive",
     "resolution_status_description": "The alert was a false positive"},
]
_CLASSIFICATION_NAMES = [  # ids 1-36 in order: (name, name_expanded)
    ("abusive-content:spam", "Abusive-Content: spam"),
    ("abusive-content:harmful-speech", "Abusive-Content: Harmful Speech"),
    ("abusive-content:violence", "Abusive-Content: Child/Sexual/Violence/..."),
    ("malicious-code:virus", "Malicious-Code: Virus"),
    ("malicious-code:worm", "Malicious-Code: Worm"),
    ("malicious-code:ransomware", "Malicious-Code: Ransomware"),
    ("malicious-code:trojan-malware", "Malicious-Code: Trojan/Malware"),
    ("malicious-code:spyware-rat", "Malicious-Code: Spyware/Rat"),
    ("malicious-code:dialer", "Malicious-Code: Dialer"),
    ("malicious-code:rootkit", "Malicious-Code: Rootkit"),
    ("information-gathering:scanner", "Information-Gathering: Scanning"),
    ("information-gathering:sniffing", "Information-Gathering: Sniffing"),
    ("information-gathering:social-engineering", "Information-Gathering: Social Engineering"),
    ("intrusion-attempts:exploit-known-vuln", "Intrusion-Attempts: Exploiting known vulnerabilities"),
    ("intrusion-attempts:login-attempts", "Intrusion-Attempts: Login attempts"),
    ("intrusion-attempts:new-attack-signature", "Intrusion-Attempts: New attack signature"),
    ("intrusion:privileged-account-compromise", "Intrusion: Privileged Account Compromise"),
    ("intrusion:unprivileged-account-compromise", "Intrusion: Unprivileged Account Compromise"),
    ("intrusion:botnet-member", "Intrusion: Botnet member"),
    ("intrusion:domain-compromise", "Intrusion: Domain Compromise"),
    ("intrusion:application-compromise", "Intrusion: Application Compromise"),
    ("availability:dos", "Availability: DoS"),
    ("availability:ddos", "Availability: DDoS"),
    ("availability:sabotage", "Availability: Sabotage"),
    ("availability:outage", "Availability: Outage (no malice)"),
    ("information-content-security:Unauthorised-information-access",
     "Information-Content-Security: Unauthorised access to information"),
    ("information-content-security:Unauthorised-information-modification",
     "Information-Content-Security: Unauthorised modification of information"),
    ("fraud:copyright", "Fraud: Copyright"),
    ("fraud:masquerade", "Fraud: Masquerade"),
    ("fraud:phishing", "Fraud: Phishing"),
    ("vulnerable:vulnerable-service", "Vulnerable: Open for abuse"),
    ("conformity:regulator", "Conformity: Regulator"),
    ("conformity:standard", "Conformity: Standard"),
    ("conformity:security-policy", "Conformity: Security policy"),
    ("conformity:other-conformity", "Conformity: Other"),
    ("other:other", "Other: other"),
]
# The real descriptions are long taxonomy texts (elided in the transcripts); the emulator reuses the
# expanded name. creation_date is the first boot's time in the real server.
CLASSIFICATIONS = [
    {"id": number, "name": name, "name_expanded": expanded, "description": expanded,
     "creation_date": "2026-01-01T00:00:00.000000"}
    for number, (name, expanded) in enumerate(_CLASSIFICATION_NAMES, start=1)
]
CASE_STATES = [
    {"state_name": name, "state_description": description, "state_id": number, "protected": protected}
    for number, (name, description, protected) in enumerate([
        ("Unspecified", "Unspecified", True),
        ("In progress", "Case is being investigated", False),
        ("Open", "Case is open", True),
        ("Containment", "Containment is in progress", False),
        ("Eradication", "Eradication is in progress", False),
        ("Recovery", "Recovery is in progress", False),
        ("Post-Incident", "Post-incident phase", False),
        ("Reporting", "Reporting is in progress", False),
        ("Closed", "Case is closed", True),
    ], start=1)
]
TLPS = [
    {"registry": None, "tlp_bscolor": "danger", "tlp_id": 1, "tlp_name": "red"},
    {"registry": None, "tlp_bscolor": "warning", "tlp_id": 2, "tlp_name": "amber"},
    {"registry": None, "tlp_bscolor": "success", "tlp_id": 3, "tlp_name": "green"},
    {"registry": None, "tlp_bscolor": "black", "tlp_id": 4, "tlp_name": "clear"},
    {"registry": None, "tlp_bscolor": "warning", "tlp_id": 5, "tlp_name": "amber+strict"},
]
LOOKUPS = {
    "severities": SEVERITIES,
    "alert-status": ALERT_STATUSES,
    "alert-resolutions": RESOLUTION_STATUSES,
    "case-classifications": CLASSIFICATIONS,
    "case-states": CASE_STATES,
    "tlp": TLPS,
}
# IOC and asset types the transcripts show; other type ids are accepted with a null nested type.
IOC_TYPES = {79: {"type_name": "ip-src", "type_description": "A source IP address of the attacker",
                  "type_taxonomy": None, "type_validation_regex": None, "type_validation_expect": None,
                  "type_id": 79}}
ASSET_TYPES = {9: {"asset_name": "Windows - Computer", "asset_description": "Standard Windows Computer",
                   "asset_icon_compromised": "ioc_windows_desktop.png",
                   "asset_icon_not_compromised": "windows_desktop.png", "asset_id": 9}}
# Both default groups have full access to the demo case created on first boot.
DEMO_CASE_ACCESS = [{"access_level": 4, "access_level_list": [{"name": "full_access", "value": 4}],
                     "case_id": 1, "case_name": "#1 - Initial Demo"}]

PASSWORD_MIN_LENGTH = 12
MISSING = "Missing data for required field."
TOO_SHORT = "Shorter than minimum length 2."

# Alert columns as IRIS dumps them, and the foreign keys an add/update can violate, in column order.
ALERT_FOREIGN_KEYS = [  # (column, referenced table)
    ("alert_severity_id", "severities"),
    ("alert_status_id", "alert_status"),
    ("alert_owner_id", "user"),
    ("alert_customer_id", "client"),
    ("alert_classification_id", "case_classification"),
    ("alert_resolution_status_id", "alert_resolution_status"),
]
ALERT_INT_FIELDS = [column for column, _unused in ALERT_FOREIGN_KEYS]
ALERT_STR_FIELDS = ["alert_title", "alert_description", "alert_source", "alert_source_ref", "alert_source_link",
                    "alert_note", "alert_tags"]
ALERT_ANY_FIELDS = ["alert_source_content", "alert_context"]
ALERT_REQUIRED = ["alert_title", "alert_severity_id", "alert_status_id", "alert_customer_id"]
ALERT_INSERT_COLUMNS = ["alert_uuid", "alert_title", "alert_description", "alert_source", "alert_source_ref",
                        "alert_source_link", "alert_severity_id", "alert_status_id", "alert_creation_time",
                        "alert_note", "alert_tags", "alert_owner_id", "alert_customer_id",
                        "alert_classification_id", "alert_resolution_status_id"]
ALERT_UPDATE_COLUMNS = [*ALERT_STR_FIELDS[:5], "alert_source_content", "alert_severity_id", "alert_status_id",
                        "alert_context", "alert_source_event_time", "alert_note", "alert_tags", "alert_owner_id",
                        "alert_customer_id", "alert_classification_id", "alert_resolution_status_id"]
SQLALCHEMY_FK_HELP = "(Background on this error at: https://sqlalche.me/e/20/gkpj)"

_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6})\d*)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


class ServerError(Exception):
    """Raised by a handler where the real server crashes with an HTML 500 page."""


def _now():
    """Naive UTC now, as IRIS stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _now_iso():
    return _now().isoformat()


def _new_uuid():
    return str(uuid.uuid4())


def _new_api_key():
    return secrets.token_urlsafe(64)


def _hash_password(password):
    """Opaque salted hash; IRIS returns a bcrypt hash in the same place."""
    salt = secrets.token_hex(8)
    return "$emu$" + salt + "$" + hashlib.sha256((salt + password).encode()).hexdigest()


def _parse_datetime(value):
    """Parse an ISO 8601 date-time like the server does; the offset is dropped (timestamp column)."""
    match = _ISO_DATETIME.match(value) if isinstance(value, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, _offset = match.groups()
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                          int((fraction or "0").ljust(6, "0")))
    except ValueError:
        return None
    return parsed.isoformat()


def _to_int(value):
    """IRIS's int parsing of form values: an int, or None when the value does not parse."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value):
    """IRIS's str_to_bool."""
    return str(value).lower() in ("true", "1", "yes", "y", "on")


def _like(pattern, value, ignore_case):
    """SQL LIKE/ILIKE: % and _ are wildcards, a backslash escapes the next character."""
    if value is None:
        return False
    regex, chars = "", iter(pattern)
    for char in chars:
        if char == "\\":
            regex += re.escape(next(chars, ""))
        elif char == "%":
            regex += ".*"
        elif char == "_":
            regex += "."
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _ok(message="", data=None):
    return 200, {"status": "success", "message": message, "data": [] if data is None else data}


def _err(message, data=None, status=400):
    return status, {"status": "error", "message": message, "data": [] if data is None else data}


def _html_page(title):
    return f"<!doctype html>\n<html lang=en>\n<title>{title}</title>\n<h1>{title}</h1>\n".encode()


class _Request(NamedTuple):
    """What the hooks and the router need to know about one incoming request."""

    method: str
    path: str
    query: dict
    body: Any
    bad_json: bool
    login: Optional[str]


class _Call:
    """One authenticated request as a handler sees it."""

    def __init__(self, user, perms, body, query):
        self.user = user
        self.perms = perms
        self.body = body
        self.query = query

    @property
    def is_admin(self):
        return bool(self.perms & PERM["server_administrator"])


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server that does the TLS handshake in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts of concurrent clients must queue, not be reset

    def __init__(self, address, emulator, ssl_context):
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            tls_request = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError:  # failed handshake (ssl.SSLError is an OSError): drop the connection
            return
        try:
            super().finish_request(tls_request, client_address)
        finally:
            self.shutdown_request(tls_request)

    def handle_error(self, request, client_address):
        """Stay quiet when a client hangs up or times out; report anything else (a failing hook, say)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "IRIS-emulator"
    timeout = 30

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        length = _to_int(self.headers.get("Content-Length")) or 0
        raw_body = self.rfile.read(length) if length > 0 else b""
        status, content_type, payload, cookie = self.server.emulator.handle_request(
            method, self.path, self.headers, raw_body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        """Silent: request lines could carry user data, and tests read emu.request_log instead."""


class IrisEmulator:
    """In-process DFIR-IRIS 2.4.20 server. See the module docstring for what it reproduces.

    ``state`` (guard direct access with ``lock``) holds ``seq`` (next ids), ``org``, and the lists
    ``customers``, ``groups``, ``users``, ``alerts``, ``comments`` in the server's list order.
    """

    def __init__(self, admin_api_key=None, admin_password=None, *, tls_cert=None, tls_key=None, state_file=None,
                 host="127.0.0.1", port=0, admin_login="administrator", admin_email="admin@localhost"):
        self.host = host
        self.port = port
        self.state_file = state_file
        self.lock = threading.RLock()
        self.request_log = []
        self._hooks = []
        self._sessions = {}  # cookie token -> {"user_id", "perms"}
        self._server = None
        self._thread = None
        self._ssl_context = None
        if tls_cert or tls_key:
            self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl_context.load_cert_chain(tls_cert, tls_key)
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as handle:
                self.state = json.load(handle)
        else:
            self.state = self._first_boot_state(admin_login, admin_email, admin_password,
                                                admin_api_key or _new_api_key())
            self._save()
        self._routes = self._build_routes()

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def url(self):
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self):
        """Listen (on the same port as before after a stop()) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self, self._ssl_context)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="iris-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and free the port; the state is kept for a later start()."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    # --- test helpers --------------------------------------------------------------------------------

    def add_hook(self, fn):
        """Register fn(phase, method, path, query, body, login) -> None | (status, json_body).

        Called for every request: phase "before" once the caller is identified (login None when not
        authenticated) and before any state is read; phase "after" once the handler is done, before the
        response is sent. A hook may sleep, or return (status, json_body) to replace the response.
        """
        with self.lock:
            self._hooks.append(fn)

    def remove_hook(self, fn):
        with self.lock:
            self._hooks.remove(fn)

    def alerts(self):
        """Copies of all alerts, as GET /alerts/<id> dumps them, in id order."""
        with self.lock:
            return [self._dump_alert(alert) for alert in sorted(self.state["alerts"], key=lambda a: a["alert_id"])]

    def comments(self, alert_id):
        """Copies of an alert's comments in id order."""
        with self.lock:
            return [self._dump_comment(c) for c in self.state["comments"] if c["comment_alert_id"] == alert_id]

    def add_user(self, login, *, service_account=True, groups=(), customers=()):
        """Create a user linked to existing groups and customers (by name); returns (user_id, api_key)."""
        with self.lock:
            group_ids = [self._find_by_name("groups", "group_name", name)["group_id"] for name in groups]
            customer_ids = [self._find_by_name("customers", "customer_name", name)["customer_id"]
                            for name in customers]
            body = {"user_login": login, "user_name": login, "user_email": f"{login}@example.com",
                    "user_is_service_account": service_account,
                    "user_password": "" if service_account else "Emu" + secrets.token_hex(8) + "9"}
            status, envelope = self._users_add(_Call(self._user_by_id(1), ALL_PERMISSIONS, body, {}))
            if status != 200:
                raise ValueError(f"add_user({login!r}) failed: {envelope['data']}")
            user = self._user_by_id(envelope["data"]["id"])
            user["groups"] = group_ids
            user["customers"] = customer_ids
            self._save()
            return user["id"], user["api_key"]

    def add_customer(self, name):
        """Create a customer (linked to the administrator, like an API add by it); returns its id."""
        with self.lock:
            status, envelope = self._customers_add(_Call(self._user_by_id(1), ALL_PERMISSIONS,
                                                         {"customer_name": name}, {}))
            if status != 200:
                raise ValueError(f"add_customer({name!r}) failed: {envelope['data']}")
            return envelope["data"]["customer_id"]

    def add_group(self, name, permissions=()):
        """Create a group with a list of permission names or bits; returns its id."""
        bits = [PERM[p] if isinstance(p, str) else p for p in permissions]
        with self.lock:
            status, envelope = self._groups_add(_Call(self._user_by_id(1), ALL_PERMISSIONS, {
                "group_name": name, "group_description": name, "group_permissions": bits}, {}))
            if status != 200:
                raise ValueError(f"add_group({name!r}) failed: {envelope['data']}")
            return envelope["data"]["group_id"]

    def create_alert(self, **fields):
        """Add an alert as the administrator with POST /alerts/add's defaults and validation."""
        with self.lock:
            status, envelope = self._alerts_add(_Call(self._user_by_id(1), ALL_PERMISSIONS, dict(fields), {}))
            if status != 200:
                raise ValueError(f"create_alert failed: {envelope['message']}")
            return envelope["data"]

    # --- state ---------------------------------------------------------------------------------------

    @staticmethod
    def _first_boot_state(login, email, password, api_key):
        boot_time = _now_iso()
        return {
            "seq": {"user": 2, "customer": 2, "group": 4, "alert": 1, "comment": 1, "ioc": 1, "asset": 1},
            "org": {"org_name": "Default Org", "org_id": 1, "org_uuid": _new_uuid()},
            "customers": [{"customer_id": 1, "customer_name": "IrisInitialClient", "customer_uuid": _new_uuid(),
                           "customer_description": None, "customer_sla": None,
                           "creation_date": boot_time, "last_update_date": boot_time}],
            "groups": [
                {"group_id": 1, "group_uuid": _new_uuid(), "group_name": "Administrators",
                 "group_description": "Administrators", "group_permissions": ALL_PERMISSIONS,
                 "group_auto_follow": True, "group_auto_follow_access_level": 4,
                 "group_cases_access": copy.deepcopy(DEMO_CASE_ACCESS)},
                {"group_id": 2, "group_uuid": _new_uuid(), "group_name": "Analysts",
                 "group_description": "Standard Analysts", "group_permissions": 1133,
                 "group_auto_follow": False, "group_auto_follow_access_level": 4,
                 "group_cases_access": copy.deepcopy(DEMO_CASE_ACCESS)},
            ],
            "users": [{"id": 1, "uuid": _new_uuid(), "login": login, "name": login, "email": email,
                       "password_hash": _hash_password(password or secrets.token_urlsafe(16)),
                       "api_key": api_key, "active": True, "is_service_account": False,
                       "groups": [1], "customers": []}],
            "alerts": [],
            "comments": [],
        }

    def _save(self):
        """Write the state atomically when a state file is configured."""
        if not self.state_file:
            return
        directory = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp_path = tempfile.mkstemp(prefix=".iris-state-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle)
        os.replace(tmp_path, self.state_file)

    def _next_id(self, kind):
        value = self.state["seq"][kind]
        self.state["seq"][kind] = value + 1
        return value

    def _move_to_end(self, kind, row):
        """PostgreSQL writes an updated row anew, so list endpoints return it last."""
        rows = self.state[kind]
        rows.remove(row)
        rows.append(row)

    def _user_by_id(self, user_id):
        return next((u for u in self.state["users"] if u["id"] == user_id), None)

    def _customer_by_id(self, customer_id):
        return next((c for c in self.state["customers"] if c["customer_id"] == customer_id), None)

    def _group_by_id(self, group_id):
        return next((g for g in self.state["groups"] if g["group_id"] == group_id), None)

    def _alert_by_id(self, alert_id):
        return next((a for a in self.state["alerts"] if a["alert_id"] == alert_id), None)

    def _find_by_name(self, kind, key, name):
        for row in self.state[kind]:
            if row[key] == name:
                return row
        raise ValueError(f"no {kind[:-1]} named {name!r}")

    def _permissions_of(self, user):
        mask = 0
        for group in self.state["groups"]:
            if group["group_id"] in user["groups"]:
                mask |= group["group_permissions"]
        return mask

    # --- request processing --------------------------------------------------------------------------

    def handle_request(self, method, raw_path, headers, raw_body):
        """Serve one request; returns (status, content_type, payload_bytes, set_cookie_value)."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        body, bad_json = self._parse_body(headers, raw_body)
        with self.lock:
            token, user, perms = self._authenticate(headers)
        login = user["login"] if user else None
        request = _Request(method, path, query, body, bad_json, login)

        reply = self._run_hooks("before", request)
        if reply is None:
            reply = self._dispatch(request, user, perms)
            reply = self._run_hooks("after", request) or reply

        status, content = reply
        if isinstance(content, dict):
            content_type, payload = "application/json", json.dumps(content).encode()
        else:
            content_type, payload = "text/html; charset=utf-8", _html_page(content)
        with self.lock:
            cookie = self._session_cookie(token, user, perms)
            self.request_log.append((method, raw_path, login, status))
        return status, content_type, payload, cookie

    @staticmethod
    def _parse_body(headers, raw_body):
        """Return (json body or None, whether a JSON body failed to parse)."""
        if "json" not in (headers.get("Content-Type") or "") or not raw_body:
            return None, False
        try:
            return json.loads(raw_body), False
        except ValueError:
            return None, True

    def _authenticate(self, headers):
        """Return (session token, user, permission mask); a known session cookie beats any API key."""
        token = self._cookie_token(headers)
        session = self._sessions.get(token)
        if session is not None:
            user = self._user_by_id(session["user_id"])
            if user is not None:
                return token, user, session["perms"]
        for header in ("X-IRIS-AUTH", "Authorization"):
            key = headers.get(header)
            if not key:
                continue
            if key.startswith("Bearer "):
                key = key[len("Bearer "):]
            user = next((u for u in self.state["users"] if u["active"] and u["api_key"] == key), None)
            if user is not None:
                return None, user, self._permissions_of(user)
        return None, None, 0

    @staticmethod
    def _cookie_token(headers):
        for part in (headers.get("Cookie") or "").split(";"):
            name, _unused, value = part.strip().partition("=")
            if name == "session":
                return value
        return None

    def _session_cookie(self, token, user, perms):
        """Set-Cookie value: the caller's session, made on its first authenticated request."""
        if token is None:
            token = secrets.token_urlsafe(24)
            if user is not None:
                self._sessions[token] = {"user_id": user["id"], "perms": perms}
        secure = "; Secure" if self._ssl_context else ""
        return f"session={token}; HttpOnly; Path=/{secure}"

    def _run_hooks(self, phase, request):
        with self.lock:
            hooks = list(self._hooks)
        for hook in hooks:
            override = hook(phase, request.method, request.path, request.query, request.body, request.login)
            if override is not None:
                return override
        return None

    def _dispatch(self, request, user, perms):
        """Route like Flask (404, 405), then authenticate (401), authorise (403) and run the handler."""
        matches = [(route, match) for route in self._routes for match in [route[1].fullmatch(request.path)] if match]
        if not matches:
            return 404, "IRIS - 404 Error"
        allowed = [(route, match) for route, match in matches if route[0] == request.method]
        if not allowed:
            return 405, "405 Method Not Allowed"
        (_method, _pattern, handler, needed, converters), match = allowed[0]
        if user is None:
            return _err("Authentication required", status=401)
        if needed and not perms & needed:
            return _err("Permission denied", status=403)
        if request.bad_json:
            return 400, "400 Bad Request"
        args = [convert(value) for convert, value in zip(converters, match.groups())]
        with self.lock:
            try:
                return handler(_Call(user, perms, request.body, request.query), *args)
            except ServerError:
                return 500, "500 Internal Server Error"
            except Exception:  # an unforeseen input: the real server would crash the same way
                traceback.print_exc()
                return 500, "500 Internal Server Error"

    def _build_routes(self):
        """(method, pattern, handler, permission bits of which one is needed, arg converters) per route.

        Paths use Flask's converters: <int> is a run of digits, <str> one path segment.
        """
        num = "<int>"
        admin = PERM["server_administrator"]
        table = [
            ("GET", "/api/ping", lambda call: _ok("pong"), ANY_USER),
            ("GET", "/api/versions", lambda call: _ok("", dict(VERSIONS)), ANY_USER),
            ("GET", "/user/whoami", self._whoami, ANY_USER),
        ]
        table += [("GET", f"/manage/{kind}/list", lambda call, rows=rows: _ok("", copy.deepcopy(rows)), ANY_USER)
                  for kind, rows in LOOKUPS.items()]
        table += [
            ("GET", "/manage/customers/list", self._customers_list, PERM["customers_read"]),
            ("GET", f"/manage/customers/{num}", self._customers_get, PERM["customers_read"]),
            ("POST", "/manage/customers/add", self._customers_add, PERM["customers_write"]),
            ("POST", f"/manage/customers/update/{num}", self._customers_update, PERM["customers_write"]),
            ("POST", f"/manage/customers/delete/{num}", self._customers_delete, PERM["customers_write"]),
            ("GET", "/manage/groups/list", self._groups_list, admin),
            ("GET", f"/manage/groups/{num}", self._groups_get, admin),
            ("POST", "/manage/groups/add", self._groups_add, admin),
            ("POST", f"/manage/groups/update/{num}", self._groups_update, admin),
            ("POST", f"/manage/groups/delete/{num}", self._groups_delete, admin),
            ("GET", "/manage/users/list", self._users_list, admin),
            ("GET", f"/manage/users/{num}", self._users_get, admin),
            ("POST", "/manage/users/add", self._users_add, admin),
            ("POST", f"/manage/users/update/{num}", self._users_update, admin),
            ("GET", f"/manage/users/deactivate/{num}", self._users_deactivate, admin),
            ("GET", f"/manage/users/activate/{num}", self._users_activate, admin),
            ("POST", f"/manage/users/renew-api-key/{num}", self._users_renew_key, admin),
            ("POST", f"/manage/users/delete/{num}", self._users_delete, admin),
            ("POST", f"/manage/users/{num}/groups/update", self._users_set_groups, admin),
            ("POST", f"/manage/users/{num}/customers/update", self._users_set_customers, admin),
            ("GET", f"/manage/users/lookup/id/{num}", self._users_lookup_id, ANY_USER),
            ("GET", "/manage/users/lookup/login/<str>", self._users_lookup_login, ANY_USER),
            ("GET", "/alerts/filter", self._alerts_filter, PERM["alerts_read"]),
            ("POST", "/alerts/add", self._alerts_add, PERM["alerts_write"]),
            ("GET", f"/alerts/{num}", self._alerts_get, PERM["alerts_read"]),
            ("POST", f"/alerts/update/{num}", self._alerts_update, PERM["alerts_write"]),
            ("POST", f"/alerts/delete/{num}", self._alerts_delete, PERM["alerts_delete"]),
            ("POST", f"/alerts/{num}/comments/add", self._comments_add, PERM["alerts_write"]),
            ("GET", f"/alerts/{num}/comments/list", self._comments_list, PERM["alerts_read"]),
            ("POST", f"/alerts/{num}/comments/{num}/delete", self._comments_delete, PERM["alerts_write"]),
        ]
        routes = []
        for method, template, handler, needed in table:
            converters = [int if kind == "int" else str for kind in re.findall(r"<(int|str)>", template)]
            pattern = template.replace("<int>", r"(\d+)").replace("<str>", "([^/]+)")
            routes.append((method, re.compile(pattern), handler, needed, converters))
        return routes

    def _has_client_access(self, call, customer_id):
        return call.is_admin or customer_id in call.user["customers"]

    # --- customers -----------------------------------------------------------------------------------

    @staticmethod
    def _dump_customer_row(customer):
        return {"customer_name": customer["customer_name"], "customer_id": customer["customer_id"],
                "customer_uuid": customer["customer_uuid"], "customer_description": customer["customer_description"],
                "customer_sla": customer["customer_sla"], "custom_attributes": None}

    @staticmethod
    def _dump_customer(customer):
        return {"customer_name": customer["customer_name"], "customer_description": customer["customer_description"],
                "customer_sla": customer["customer_sla"], "customer_id": customer["customer_id"],
                "client_uuid": customer["customer_uuid"], "creation_date": customer["creation_date"],
                "last_update_date": customer["last_update_date"], "custom_attributes": None}

    def _customers_list(self, call):
        # A non-administrator sees only the customers it is linked to: no transcript shows a non-admin's list;
        # this follows the v2.4.20 source (get_client_list joins UserClient unless server_administrator).
        rows = [c for c in self.state["customers"] if self._has_client_access(call, c["customer_id"])]
        return _ok("", [self._dump_customer_row(c) for c in rows])

    def _customers_get(self, call, customer_id):
        if not self._has_client_access(call, customer_id):
            return _err("Permission denied", status=403)
        customer = self._customer_by_id(customer_id)
        if customer is None:
            raise ServerError("missing customer")
        return _ok("", dict(self._dump_customer_row(customer), contacts=[]))

    def _customer_name_taken(self, name, except_id=None):
        return any(c["customer_name"].lower() == name.lower() and c["customer_id"] != except_id
                   for c in self.state["customers"])

    def _customers_add(self, call):
        if call.body is None:
            return _err("Invalid request")
        name = call.body.get("customer_name")
        if name is None:
            problem = MISSING
        elif not isinstance(name, str):
            problem = "Not a valid string."
        elif len(name) < 2:
            problem = TOO_SHORT
        elif self._customer_name_taken(name):
            problem = "Customer already exists"
        else:
            problem = None
        if problem:
            return _err("Error adding customer", {"customer_name": [problem]})
        now = _now_iso()
        customer = {"customer_id": self._next_id("customer"), "customer_name": name, "customer_uuid": _new_uuid(),
                    "customer_description": call.body.get("customer_description"),
                    "customer_sla": call.body.get("customer_sla"), "creation_date": now, "last_update_date": now}
        self.state["customers"].append(customer)
        call.user["customers"].append(customer["customer_id"])
        self._save()
        return _ok("Added successfully", self._dump_customer(customer))

    def _customers_update(self, call, customer_id):
        if not self._has_client_access(call, customer_id):
            return _err("Permission denied", status=403)
        if call.body is None:
            return _err("Invalid request")
        customer = self._customer_by_id(customer_id)
        if customer is None:
            return _err("Invalid Customer ID")
        name = call.body.get("customer_name")
        if not isinstance(name, str):
            return _err(f"An error occurred during Customer update. '{type(name).__name__}' object has no "
                        "attribute 'lower'")
        if self._customer_name_taken(name, except_id=customer_id):
            return _err("", ["Customer already exists"])
        if len(name) < 2:
            return _err("", {"customer_name": [TOO_SHORT]})
        for key in ("customer_name", "customer_description", "customer_sla"):
            if key in call.body:
                customer[key] = call.body[key]
        self._move_to_end("customers", customer)
        self._save()
        return _ok("Customer updated", self._dump_customer(customer))

    def _customers_delete(self, call, customer_id):
        if not self._has_client_access(call, customer_id):
            return _err("Permission denied", status=403)
        customer = self._customer_by_id(customer_id)
        if customer is None:
            return _err("Invalid Customer ID")
        referenced = (any(a["alert_customer_id"] == customer_id for a in self.state["alerts"])
                      or any(customer_id in u["customers"] for u in self.state["users"]))
        if referenced:  # alerts and user links hold foreign keys to the customer
            return _err("Cannot delete a referenced customer")
        self.state["customers"].remove(customer)
        self._save()
        return _ok("Deleted successfully")

    # --- groups --------------------------------------------------------------------------------------

    @staticmethod
    def _permission_list(mask):
        return [{"name": name, "value": bit} for name, bit in PERMISSIONS if mask & bit]

    @staticmethod
    def _dump_group(group):
        return {"group_name": group["group_name"], "group_description": group["group_description"],
                "group_auto_follow_access_level": group["group_auto_follow_access_level"],
                "group_permissions": group["group_permissions"], "group_id": group["group_id"],
                "group_uuid": group["group_uuid"], "group_auto_follow": group["group_auto_follow"]}

    def _group_members(self, group):
        return [{"user": u["login"], "name": u["name"], "id": u["id"]}
                for u in self.state["users"] if group["group_id"] in u["groups"]]

    def _groups_list(self, call):
        return _ok("", [dict(self._dump_group(g), group_permissions_list=self._permission_list(g["group_permissions"]),
                             group_members=self._group_members(g)) for g in self.state["groups"]])

    def _groups_get(self, call, group_id):
        group = self._group_by_id(group_id)
        if group is None:
            return _err("Invalid group ID")
        data = self._dump_group(group)
        data["group_members"] = self._group_members(group)
        data["group_permissions_list"] = self._permission_list(group["group_permissions"])
        data["group_cases_access"] = copy.deepcopy(group["group_cases_access"])
        return _ok("", data)

    @staticmethod
    def _permission_mask(value):
        """OR of int()-able values (a scalar counts as a list of one); names crash the real server."""
        values = value if isinstance(value, list) else [value]
        mask = 0
        for item in values if value is not None else []:
            try:
                mask |= int(item)
            except (TypeError, ValueError) as exc:
                raise ServerError("permission is not an int") from exc
        return mask

    def _validate_group(self, body, group_id=None, partial=False):
        """Return (errors, permission mask) the way IRIS's group schema checks a body."""
        name = body.get("group_name")
        if name is None:
            return {"group_name": ["Invalid data - non null expected"]}, 0
        if not isinstance(name, str):
            raise ServerError("group name is not a string")
        if any(g["group_name"].upper() == name.upper() and g["group_id"] != group_id for g in self.state["groups"]):
            return {"group_name": ["Group already exists"]}, 0
        mask = self._permission_mask(body.get("group_permissions"))
        errors = {}
        if len(name) < 2:
            errors["group_name"] = [TOO_SHORT]
        description = body.get("group_description")
        if description is None and not partial:
            errors["group_description"] = [MISSING]
        elif description is not None and len(description) < 2:
            errors["group_description"] = [TOO_SHORT]
        return errors, mask

    def _groups_add(self, call):
        if not call.body:
            return _err("Invalid request, expecting JSON")
        errors, mask = self._validate_group(call.body)
        if errors:
            return _err("Data error", errors)
        group = {"group_id": self._next_id("group"), "group_uuid": _new_uuid(), "group_name": call.body["group_name"],
                 "group_description": call.body["group_description"], "group_permissions": mask,
                 "group_auto_follow": bool(call.body.get("group_auto_follow", False)),
                 "group_auto_follow_access_level": call.body.get("group_auto_follow_access_level", 0),
                 "group_cases_access": []}
        self.state["groups"].append(group)
        self._save()
        return _ok("", self._dump_group(group))

    def _groups_update(self, call, group_id):
        if not call.body:
            return _err("Invalid request, expecting JSON")
        group = self._group_by_id(group_id)
        if group is None:
            return _err("Invalid group ID")
        errors, mask = self._validate_group(call.body, group_id=group_id, partial=True)
        if errors:
            return _err("Data error", errors)
        group["group_name"] = call.body["group_name"]
        group["group_permissions"] = mask  # a body without group_permissions resets them to 0
        for key in ("group_description", "group_auto_follow", "group_auto_follow_access_level"):
            if key in call.body:
                group[key] = call.body[key]
        self._move_to_end("groups", group)
        self._save()
        return _ok("", self._dump_group(group))

    def _groups_delete(self, call, group_id):
        group = self._group_by_id(group_id)
        if group is None:
            return _err("Invalid group ID")
        self.state["groups"].remove(group)
        for user in self.state["users"]:
            if group_id in user["groups"]:
                user["groups"].remove(group_id)
        self._save()
        return _ok("Group deleted")

    # --- users ---------------------------------------------------------------------------------------

    @staticmethod
    def _dump_user_row(user):
        return {"user_id": user["id"], "user_uuid": user["uuid"], "user_name": user["name"],
                "user_login": user["login"], "user_email": user["email"], "user_active": user["active"],
                "user_is_service_account": user["is_service_account"]}

    @staticmethod
    def _dump_user_model(user):
        """The user as IRIS's user schema dumps it (add, update, (de)activate)."""
        return {"user_name": user["name"], "user_login": user["login"], "user_email": user["email"],
                "user_password": user["password_hash"], "user_is_service_account": user["is_service_account"],
                "id": user["id"], "uuid": user["uuid"], "active": user["active"], "external_id": None,
                "in_dark_mode": None, "has_mini_sidebar": False, "has_deletion_confirmation": False,
                "mfa_secrets": None, "webauthn_credentials": [], "mfa_setup_complete": False}

    def _user_details(self, user):
        groups = [g for g in self.state["groups"] if g["group_id"] in user["groups"]]
        permissions = {}
        for name, bit in PERMISSIONS:
            inherited = [g["group_name"] for g in groups if g["group_permissions"] & bit]
            if inherited:
                permissions[str(bit)] = {"name": name, "value": bit, "inherited_from": inherited}
        org = self.state["org"]
        return dict(self._dump_user_row(user),
                    user_groups=[{"group_name": g["group_name"], "group_id": g["group_id"],
                                  "group_uuid": g["group_uuid"]} for g in groups],
                    user_organisations=[dict(org, is_primary_org=True)],
                    user_permissions=permissions,
                    user_cases_access=[],
                    user_customers=[{"customer_id": c["customer_id"], "client_uuid": c["customer_uuid"],
                                     "customer_name": c["customer_name"]}
                                    for c in self.state["customers"] if c["customer_id"] in user["customers"]],
                    user_primary_organisation_id=org["org_id"])

    @staticmethod
    def _whoami(call):
        """The key's owner as 2.4.20 answers /user/whoami (measured 2026-12-04; the emulator lacked the route
        until test_iris_real.py compared it with the real server)."""
        user = call.user
        return _ok("", {"user_id": user["id"], "user_uuid": user["uuid"], "user_name": user["name"],
                        "user_login": user["login"], "user_email": user["email"],
                        "has_deletion_confirmation": False, "has_mini_sidebar": False,
                        "is_service_account": user["is_service_account"], "mfa_secrets": None,
                        "webauthn_credentials": [], "mfa_setup_complete": False})

    def _users_list(self, call):
        return _ok("", [self._dump_user_row(u) for u in self.state["users"]])

    def _users_get(self, call, user_id):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID")
        return _ok("", self._user_details(user))

    @staticmethod
    def _password_problems(password):
        problems = ""
        if len(password) < PASSWORD_MIN_LENGTH:
            problems += f"Password must be longer than {PASSWORD_MIN_LENGTH} characters. "
        if not any(char.isupper() for char in password):
            problems += "Password must contain uppercase char. "
        if not any(char.islower() for char in password):
            problems += "Password must contain lowercase char. "
        if not any(char.isdigit() for char in password):
            problems += "Password must contain digit. "
        return problems

    def _validate_user(self, body, user_id):
        """Return the 'Data error' dict for a user body (user_id 0 for a new user), or None."""
        login, email, password = body.get("user_login"), body.get("user_email"), body.get("user_password")
        if any(u["login"] == login and u["id"] != user_id for u in self.state["users"]):
            return {"user_login": ["User name already taken"]}
        if any(u["email"] == email and u["id"] != user_id for u in self.state["users"]):
            return {"user_email": ["User email already taken"]}
        if not (password in ("", None) and (_truthy(body.get("user_is_service_account")) or user_id != 0)):
            if password is None:  # the real policy check crashes on a missing password
                raise ServerError("no password")
            problems = self._password_problems(password)
            if problems:
                return {"user_password": [problems]}
        errors = {key: [TOO_SHORT] for key in ("user_name", "user_login", "user_email")
                  if body.get(key) is not None and len(body[key]) < 2}
        return errors or None

    def _users_add(self, call):
        if not isinstance(call.body, dict):
            raise ServerError("no JSON body")
        errors = self._validate_user(call.body, 0)
        if errors:
            return _err("Data error", errors)
        if any(call.body.get(key) is None for key in ("user_login", "user_name", "user_email")):
            raise ServerError("NOT NULL column left empty")
        password = call.body.get("user_password")
        user = {"id": self._next_id("user"), "uuid": _new_uuid(), "login": call.body["user_login"],
                "name": call.body["user_name"], "email": call.body["user_email"],
                "password_hash": _hash_password(password) if password else None, "api_key": _new_api_key(),
                "active": call.body.get("active", True),
                "is_service_account": _truthy(call.body.get("user_is_service_account", False)),
                "groups": [], "customers": []}
        self.state["users"].append(user)
        self._save()
        data = self._dump_user_model(user)
        del data["user_password"]
        data["user_api_key"] = user["api_key"]
        return _ok("user created", data)

    def _users_update(self, call, user_id):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID for this case")
        if not isinstance(call.body, dict):
            raise ServerError("no JSON body")
        errors = self._validate_user(call.body, user_id)
        if errors:
            return _err("Data error", errors)
        fields = {"user_name": "name", "user_login": "login", "user_email": "email",
                  "user_is_service_account": "is_service_account"}
        for key, attribute in fields.items():
            if key in call.body:
                user[attribute] = call.body[key]
        if call.body.get("user_password"):
            user["password_hash"] = _hash_password(call.body["user_password"])
        self._move_to_end("users", user)
        self._save()
        data = {}
        for key, value in self._dump_user_model(user).items():
            data[key] = value
            if key == "user_password":  # the update answer also carries user_id here
                data["user_id"] = user_id
        return _ok("User updated", data)

    def _set_active(self, call, user_id, active):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID for this case")
        if not active and call.user["id"] == user_id:
            return _err("We do not recommend deactivating yourself for obvious reasons")
        user["active"] = active
        self._move_to_end("users", user)
        self._save()
        return _ok("User activated" if active else "User deactivated", self._dump_user_model(user))

    def _users_deactivate(self, call, user_id):
        return self._set_active(call, user_id, False)

    def _users_activate(self, call, user_id):
        return self._set_active(call, user_id, True)

    def _users_renew_key(self, call, user_id):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID for this case")
        user["api_key"] = _new_api_key()
        self._move_to_end("users", user)
        self._save()
        data = {"id": user["id"], "user": user["login"], "name": user["name"], "email": user["email"],
                "uuid": user["uuid"], "active": user["active"], "api_key": user["api_key"], "external_id": None,
                "in_dark_mode": None, "has_mini_sidebar": False, "has_deletion_confirmation": False,
                "is_service_account": user["is_service_account"], "mfa_secrets": None,
                "webauthn_credentials": [], "mfa_setup_complete": False}
        return _ok(f"API key of user {user['login']} renewed", data)

    def _users_delete(self, call, user_id):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID")
        referenced = (user["customers"]
                      or any(a["alert_owner_id"] == user_id for a in self.state["alerts"])
                      or any(c["comment_user_id"] == user_id for c in self.state["comments"]))
        if user["active"] or referenced:  # the real server answers the same for a foreign-key failure
            return _err("Cannot delete active user")
        self.state["users"].remove(user)
        self._save()
        return _ok(f"Deleted user ID {user_id}")

    def _set_membership(self, call, user_id, key, kind, lookup):
        """Replace a user's groups or customers; data is the user as it was before (like IRIS)."""
        if call.body is None or not call.body.get(key):
            return _err("Invalid request")
        wanted = call.body[key]
        if not isinstance(wanted, list):
            return _err(f"Expected list of {kind} ID")
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID")
        before = self._user_details(user)
        ids = [_to_int(value) for value in wanted]
        if any(value is None or lookup(value) is None for value in ids):
            raise ServerError("foreign key violation")  # nothing is changed
        user[kind] = list(dict.fromkeys(ids))
        self._save()
        return _ok(f"User {kind} updated", before)

    def _users_set_groups(self, call, user_id):
        return self._set_membership(call, user_id, "groups_membership", "groups", self._group_by_id)

    def _users_set_customers(self, call, user_id):
        return self._set_membership(call, user_id, "customers_membership", "customers", self._customer_by_id)

    def _users_lookup_id(self, call, user_id):
        user = self._user_by_id(user_id)
        if user is None:
            return _err("Invalid user ID")
        return _ok("", {"user_login": user["login"], "user_id": user["id"], "user_name": user["name"]})

    def _users_lookup_login(self, call, login):
        user = next((u for u in self.state["users"] if u["login"] == login), None)
        if user is None:
            return _err("Invalid login")
        return _ok("", {"user_login": user["login"], "user_id": user["id"], "user_uuid": user["uuid"],
                        "user_name": user["name"], "user_email": user["email"], "user_active": user["active"]})

    # --- alerts --------------------------------------------------------------------------------------

    def _dump_alert(self, alert, with_assets=True):
        """The alert as IRIS's alert schema dumps it, nested objects resolved from the current state."""
        def lookup(rows, key, value):
            return copy.deepcopy(next((row for row in rows if row[key] == value), None))

        owner = self._user_by_id(alert["alert_owner_id"])
        customer = self._customer_by_id(alert["alert_customer_id"])
        data = {
            "severity": lookup(SEVERITIES, "severity_id", alert["alert_severity_id"]),
            "status": lookup(ALERT_STATUSES, "status_id", alert["alert_status_id"]),
            "customer": self._dump_customer(customer) if customer else None,
            "classification": lookup(CLASSIFICATIONS, "id", alert["alert_classification_id"]),
            "owner": {"id": owner["id"], "user_name": owner["name"], "user_login": owner["login"],
                      "user_email": owner["email"]} if owner else None,
            "iocs": [self._dump_ioc(ioc) for ioc in alert["iocs"]],
        }
        if with_assets:
            data["assets"] = [self._dump_asset(asset, alert) for asset in alert["assets"]]
        data["resolution_status"] = lookup(RESOLUTION_STATUSES, "resolution_status_id",
                                           alert["alert_resolution_status_id"])
        data["cases"] = []
        data["comments"] = [c["comment_id"] for c in self.state["comments"]
                            if c["comment_alert_id"] == alert["alert_id"]]
        for key in ("alert_id", "alert_uuid", "alert_title", "alert_description", "alert_source", "alert_source_ref",
                    "alert_source_link", "alert_source_content", "alert_severity_id", "alert_status_id",
                    "alert_context", "alert_source_event_time", "alert_creation_time", "alert_note", "alert_tags",
                    "alert_owner_id", "modification_history", "alert_customer_id", "alert_classification_id",
                    "alert_resolution_status_id"):
            data[key] = copy.deepcopy(alert[key])
        return data

    @staticmethod
    def _dump_ioc(ioc):
        return {"ioc_value": ioc["ioc_value"], "ioc_enrichment": None,
                "ioc_type": copy.deepcopy(IOC_TYPES.get(ioc["ioc_type_id"])), "ioc_id": ioc["ioc_id"],
                "ioc_uuid": ioc["ioc_uuid"], "ioc_type_id": ioc["ioc_type_id"],
                "ioc_description": ioc["ioc_description"], "ioc_tags": ioc["ioc_tags"], "user_id": None,
                "ioc_misp": None, "ioc_tlp_id": ioc["ioc_tlp_id"], "custom_attributes": None,
                "modification_history": None}

    def _dump_asset(self, asset, alert):
        data = {"asset_name": asset["asset_name"], "asset_enrichment": None,
                "asset_type": copy.deepcopy(ASSET_TYPES.get(asset["asset_type_id"])),
                "alerts": [self._dump_alert(alert, with_assets=False)], "analysis_status": None,
                "asset_id": asset["asset_id"], "asset_uuid": asset["asset_uuid"]}
        for key in ("asset_description", "asset_domain", "asset_ip", "asset_info", "asset_compromise_status_id",
                    "asset_type_id", "asset_tags"):
            data[key] = asset[key]
        data.update({"case_id": None, "date_added": None, "date_update": None, "user_id": None,
                     "analysis_status_id": asset["analysis_status_id"], "custom_attributes": None,
                     "modification_history": None})
        return data

    @staticmethod
    def _history(alert, user, action):
        """Add a modification_history entry keyed by the epoch time, as IRIS does."""
        history, stamp = alert["modification_history"], time.time()
        while repr(stamp) in history:
            stamp += 1e-6
        history[repr(stamp)] = {"user": user["login"], "user_id": user["id"], "action": action}

    @staticmethod
    def _field_errors(body, partial):
        """Field messages as IRIS's alert schema would give them, in the schema's field order."""
        errors = {}
        for key in ALERT_STR_FIELDS[:1] + ALERT_INT_FIELDS + ALERT_STR_FIELDS[1:] + ["alert_source_event_time"]:
            if key not in body:
                if key in ALERT_REQUIRED and not partial:
                    errors[key] = [MISSING]
                continue
            value = body[key]
            if value is None:
                if key in ALERT_REQUIRED:
                    errors[key] = ["Field may not be null."]
            elif key in ALERT_INT_FIELDS:
                if isinstance(value, bool) or _to_int(value) is None or (isinstance(value, float) and value % 1):
                    errors[key] = ["Not a valid integer."]
            elif key == "alert_source_event_time":
                if _parse_datetime(value) is None:
                    errors[key] = ["Not a valid datetime."]
            elif not isinstance(value, str):
                errors[key] = ["Not a valid string."]
        return errors

    def _foreign_key_violation(self, values):
        """The first (column, value, table) in values that references nothing, or None."""
        exists = {
            "alert_severity_id": lambda v: any(s["severity_id"] == v for s in SEVERITIES),
            "alert_status_id": lambda v: any(s["status_id"] == v for s in ALERT_STATUSES),
            "alert_owner_id": lambda v: self._user_by_id(v) is not None,
            "alert_customer_id": lambda v: self._customer_by_id(v) is not None,
            "alert_classification_id": lambda v: any(c["id"] == v for c in CLASSIFICATIONS),
            "alert_resolution_status_id": lambda v: any(r["resolution_status_id"] == v for r in RESOLUTION_STATUSES),
        }
        for column, table in ALERT_FOREIGN_KEYS:
            value = values.get(column)
            if value is not None and not exists[column](value):
                return column, value, table
        return None

    @staticmethod
    def _violation_message(violation, statement, parameters):
        column, value, table = violation
        return (f'(psycopg2.errors.ForeignKeyViolation) insert or update on table "alerts" violates foreign key '
                f'constraint "alerts_{column}_fkey"\nDETAIL:  Key ({column})=({value}) is not present in table '
                f'"{table}".\n\n[SQL: {statement}]\n[parameters: {parameters!r}]\n{SQLALCHEMY_FK_HELP}')

    @staticmethod
    def _body_error(body):
        """IRIS splits a truthy alert_tags on commas: anything but a string fails with Python's message. A text
        column's value with a NUL or a lone surrogate fails in psycopg2 / UTF-8 encoding with their messages;
        inside alert_source_content (a JSON column) both are stored (measured on 2.4.20 by
        test_iris_real.py::test_text_a_real_iris_refuses, 2026-12-07)."""
        tags = body.get("alert_tags")
        if tags and not isinstance(tags, str):
            return f"'{type(tags).__name__}' object has no attribute 'split'"
        for key, value in body.items():
            if key == "alert_source_content" or not isinstance(value, str):
                continue
            if "\x00" in value:
                return "A string literal cannot contain NUL (0x00) characters."
            lone = re.search("[\ud800-\udfff]", value)
            if lone:
                return (f"'utf-8' codec can't encode character {lone.group()!r} in position {lone.start()}: "
                        "surrogates not allowed")
        return None

    @staticmethod
    def _normalised(body, keys):
        values = {}
        for key in keys:
            if key not in body:
                continue
            value = body[key]
            if key in ALERT_INT_FIELDS and value is not None:
                value = int(value)
            elif key == "alert_source_event_time" and value is not None:
                value = _parse_datetime(value)
            values[key] = value
        return values

    def _alerts_add(self, call):
        body = call.body
        if not body:
            return _err("No JSON data provided")
        if not isinstance(body, dict):
            return _err(f"'{type(body).__name__}' object has no attribute 'pop'")
        body = dict(body)
        iocs, assets = body.pop("alert_iocs", []), body.pop("alert_assets", [])
        for items in (iocs, assets):
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                return _err(str({"_schema": ["Invalid input type."]}))
        problem = self._body_error(body)
        errors = self._field_errors(body, partial=False)
        if problem or errors:
            return _err(problem or str(errors))
        values = self._normalised(body, ALERT_STR_FIELDS + ALERT_INT_FIELDS + ALERT_ANY_FIELDS
                                  + ["alert_source_event_time"])
        if not self._has_client_access(call, values["alert_customer_id"]):
            return _err("User not entitled to create alerts for the client")
        alert_id = self._next_id("alert")  # a failed INSERT still uses up the id
        created = _now()
        violation = self._foreign_key_violation(values)
        if violation:
            parameters = {column: values.get(column) for column in ALERT_INSERT_COLUMNS}
            parameters.update(alert_uuid=uuid.uuid4(), alert_creation_time=created)
            placeholders = ", ".join(f"%({c})s::UUID" if c == "alert_uuid" else f"%({c})s"
                                     for c in ALERT_INSERT_COLUMNS)
            statement = (f"INSERT INTO alerts ({', '.join(ALERT_INSERT_COLUMNS)}) VALUES ({placeholders}) "
                         "RETURNING alerts.alert_id, alerts.alert_source_event_time")
            self._save()
            return _err(self._violation_message(violation, statement, parameters))
        alert = {key: None for key in ALERT_STR_FIELDS + ALERT_INT_FIELDS + ALERT_ANY_FIELDS}
        alert.update(values)
        alert.update({
            "alert_id": alert_id, "alert_uuid": _new_uuid(), "alert_creation_time": created.isoformat(),
            "alert_source_event_time": values.get("alert_source_event_time") or _now_iso(),
            "modification_history": {},
            "iocs": [self._new_ioc(item) for item in iocs],
            "assets": [self._new_asset(item) for item in assets],
        })
        self._history(alert, call.user, "Alert created")
        self.state["alerts"].append(alert)
        self._save()
        return _ok("", self._dump_alert(alert))

    def _new_ioc(self, item):
        return {"ioc_id": self._next_id("ioc"), "ioc_uuid": _new_uuid(), "ioc_value": item.get("ioc_value"),
                "ioc_type_id": item.get("ioc_type_id"), "ioc_description": item.get("ioc_description"),
                "ioc_tags": item.get("ioc_tags"), "ioc_tlp_id": item.get("ioc_tlp_id")}

    def _new_asset(self, item):
        asset = {"asset_id": self._next_id("asset"), "asset_uuid": _new_uuid()}
        for key in ("asset_name", "asset_type_id", "asset_description", "asset_domain", "asset_ip", "asset_info",
                    "asset_compromise_status_id", "asset_tags", "analysis_status_id"):
            asset[key] = item.get(key)
        return asset

    def _visible_alert(self, call, alert_id):
        alert = self._alert_by_id(alert_id)
        if alert is None or not self._has_client_access(call, alert["alert_customer_id"]):
            return None
        return alert

    def _alerts_get(self, call, alert_id):
        alert = self._visible_alert(call, alert_id)
        if alert is None:
            return _err("Alert not found")
        data = self._dump_alert(alert)
        names = {asset["asset_name"] for asset in alert["assets"]}
        values = {ioc["ioc_value"] for ioc in alert["iocs"]}
        same_customer = [a for a in self.state["alerts"] if a["alert_customer_id"] == alert["alert_customer_id"]]
        data["related_alerts"] = {
            "assets": [a["alert_id"] for a in same_customer for asset in a["assets"] if asset["asset_name"] in names],
            "iocs": [a["alert_id"] for a in same_customer for ioc in a["iocs"] if ioc["ioc_value"] in values],
        }
        return _ok("", data)

    def _alerts_filter(self, call):
        query = call.query
        conditions = []
        for param, column, ignore_case in (("alert_title", "alert_title", True),
                                           ("alert_description", "alert_description", True),
                                           ("alert_source", "alert_source", True),
                                           ("alert_tags", "alert_tags", True),
                                           ("source_reference", "alert_source_ref", False)):
            if param in query:  # ILIKE / LIKE '%value%', wildcards in the value included
                pattern = f"%{query[param]}%"
                conditions.append(lambda a, c=column, p=pattern, i=ignore_case: _like(p, a[c], i))
        for param, column in (("alert_status_id", "alert_status_id"), ("alert_severity_id", "alert_severity_id"),
                              ("alert_classification_id", "alert_classification_id"),
                              ("alert_resolution_id", "alert_resolution_status_id")):
            value = _to_int(query.get(param))  # a value that is not an int is ignored, like Flask's type=int
            if value is not None:
                conditions.append(lambda a, c=column, v=value: a[c] == v)
        owner = _to_int(query.get("alert_owner_id"))
        if owner is not None:
            conditions.append(lambda a, v=(None if owner == -1 else owner): a["alert_owner_id"] == v)
        if "alert_customer_id" in query:
            customer = _to_int(query["alert_customer_id"])
            if customer is None:  # the database rejects the comparison and IRIS reports this
                return _err("Filtering error")
            conditions.append(lambda a: a["alert_customer_id"] == customer)
        if query.get("alert_ids"):
            ids = [_to_int(part) for part in query["alert_ids"].split(",")]
            if None in ids:
                return _err("Invalid alert id")
            conditions.append(lambda a: a["alert_id"] in ids)
        if not call.is_admin:
            conditions.append(lambda a: a["alert_customer_id"] in call.user["customers"])

        matching = [a for a in self.state["alerts"] if all(condition(a) for condition in conditions)]
        matching.sort(key=lambda a: a["alert_source_event_time"], reverse=query.get("sort", "desc") == "desc")
        page = max(_to_int(query.get("page")) or 1, 1)
        per_page = max(_to_int(query.get("per_page")) or 10, 1)
        pages = math.ceil(len(matching) / per_page)
        dumps = [self._dump_alert(a) for a in matching[(page - 1) * per_page:page * per_page]]
        fields = [f.strip() for f in (query.get("fields") or "").split(",") if f.strip()]
        if fields and dumps and all(field in dumps[0] for field in fields):  # unknown field: full alerts
            dumps = [{key: value for key, value in dump.items() if key in fields} for dump in dumps]
        return _ok("", {"total": len(matching), "alerts": dumps, "last_page": pages, "current_page": page,
                        "next_page": page + 1 if page < pages else None})

    def _alerts_update(self, call, alert_id):
        body = call.body
        if not body:
            return _err("No JSON data provided")
        alert = self._alert_by_id(alert_id)
        if alert is None:
            return _err("Alert not found")
        if not self._has_client_access(call, alert["alert_customer_id"]):
            return _err("User not entitled to update alerts for the client", status=403)
        if not isinstance(body, dict):
            return _err(f"'{type(body).__name__}' object has no attribute 'items'")
        activity = []
        for key, value in body.items():
            old = alert.get(key)
            if key in ("alert_source_event_time", "alert_creation_time") and old:
                old = old.replace("T", " ")  # str() of the stored datetime
            old, value = (str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in (old, value))
            if old != value:
                activity.append(f'"{key}"' if key in ("alert_content", "alert_note")
                                else f'"{key}" from "{old}" to "{value}"')
        problem = self._body_error(body)
        errors = self._field_errors(body, partial=True)
        if problem or errors:
            return _err(problem or str(errors))
        values = self._normalised(body, ALERT_UPDATE_COLUMNS)
        if values.get("alert_owner_id") == -1:
            values["alert_owner_id"] = None
        violation = self._foreign_key_violation(values)
        if violation:
            columns = [c for c in ALERT_UPDATE_COLUMNS if c in values]
            assignments = ", ".join(f"{c}=%({c})s" for c in columns)
            statement = f"UPDATE alerts SET {assignments} WHERE alerts.alert_id = %(alerts_alert_id)s"
            parameters = dict({c: values[c] for c in columns}, alerts_alert_id=alert_id)
            return _err(self._violation_message(violation, statement, parameters))
        alert.update(values)
        if body.get("alert_owner_id") is None and alert["alert_owner_id"] is None:
            alert["alert_owner_id"] = call.user["id"]  # IRIS makes the caller the owner of an unowned alert
        self._history(alert, call.user, "updated alert: " + ",".join(activity) if activity else "updated alert")
        self._save()
        return _ok("", self._dump_alert(alert))

    def _alerts_delete(self, call, alert_id):
        alert = self._alert_by_id(alert_id)
        if alert is None:
            return _err("Alert not found")
        if not self._has_client_access(call, alert["alert_customer_id"]):
            return _err("User not entitled to delete alerts for the client", status=403)
        self.state["alerts"].remove(alert)
        self.state["comments"] = [c for c in self.state["comments"] if c["comment_alert_id"] != alert_id]
        self._save()
        return _ok("", {"alert_id": alert_id})

    # --- alert comments ------------------------------------------------------------------------------

    def _dump_comment(self, comment):
        author = self._user_by_id(comment["comment_user_id"])
        data = {"user": {"id": author["id"], "user_name": author["name"], "user_login": author["login"],
                         "user_email": author["email"]} if author else None}
        data.update(copy.deepcopy(comment))
        return data

    def _commentable_alert(self, call, alert_id):
        """(alert, None) or (None, error reply) for the comment routes."""
        alert = self._alert_by_id(alert_id)
        if alert is None:
            return None, _err("Invalid alert ID")
        if not self._has_client_access(call, alert["alert_customer_id"]):
            return None, _err("User not entitled to read alerts for the client", status=403)
        return alert, None

    def _comments_add(self, call, alert_id):
        alert, error = self._commentable_alert(call, alert_id)
        if error:
            return error
        text = (call.body or {}).get("comment_text")
        if text is not None and not isinstance(text, str):
            return _err("Data error", {"comment_text": ["Not a valid string."]})
        now = _now_iso()
        comment = {"comment_id": self._next_id("comment"), "comment_uuid": _new_uuid(), "comment_text": text,
                   "comment_date": now, "comment_update_date": now, "comment_user_id": call.user["id"],
                   "comment_case_id": None, "comment_alert_id": alert_id}
        self.state["comments"].append(comment)
        self._history(alert, call.user, "commented")
        self._save()
        return _ok("Alert commented", self._dump_comment(comment))

    def _comments_list(self, call, alert_id):
        _alert, error = self._commentable_alert(call, alert_id)
        if error:
            return error
        return _ok("", [self._dump_comment(c) for c in self.state["comments"] if c["comment_alert_id"] == alert_id])

    def _comments_delete(self, call, alert_id, comment_id):
        """Measured on a real 2.4.20 (reference iris-2.4.20.md, "Comments", and issue 14, 2026-12-04): 200
        "Comment deleted successfully"; the same call again 400 "You are not allowed to delete this comment".
        Who else may delete a comment was not measured: any caller with alerts_write may, here."""
        _alert, error = self._commentable_alert(call, alert_id)
        if error:
            return error
        comment = next((c for c in self.state["comments"]
                        if c["comment_id"] == comment_id and c["comment_alert_id"] == alert_id), None)
        if comment is None:
            return _err("You are not allowed to delete this comment")
        self.state["comments"].remove(comment)
        self._save()
        return _ok("Comment deleted successfully")


def main(argv=None):
    """Run the emulator until SIGTERM/SIGINT, configured like the real app's first boot."""
    parser = argparse.ArgumentParser(description="DFIR-IRIS 2.4.20 API emulator (tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--state-file")
    args = parser.parse_args(argv)
    emulator = IrisEmulator(
        admin_api_key=os.environ.get("IRIS_ADM_API_KEY") or None,
        admin_password=os.environ.get("IRIS_ADM_PASSWORD") or None,
        admin_login=os.environ.get("IRIS_ADM_USERNAME") or "administrator",
        admin_email=os.environ.get("IRIS_ADM_EMAIL") or "admin@localhost",
        tls_cert=args.tls_cert, tls_key=args.tls_key, state_file=args.state_file,
        host=args.host, port=args.port,
    ).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"IRIS emulator listening on {emulator.url}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
