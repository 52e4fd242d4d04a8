# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client for the DFIR-IRIS 2.4 REST API and the base class of the socstack.wazuh_iris.iris_* modules.

The client sends the API key as ``Authorization: Bearer``, never keeps or sends a cookie (IRIS lets
a session cookie it hands out override the key's permissions), unpacks the ``{status, message,
data}`` envelope and turns every failure into an :class:`IrisError` whose message is safe to show.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import socket
import ssl
from http import cookiejar
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import SSLValidationError, open_url

DEFAULT_TIMEOUT = 10

# Bit values of the IRIS ``Permissions`` enum; a group stores the OR of them.
PERMISSIONS = {
    "standard_user": 1,
    "server_administrator": 2,
    "alerts_read": 4,
    "alerts_write": 8,
    "alerts_delete": 16,
    "search_across_cases": 32,
    "customers_read": 64,
    "customers_write": 128,
    "case_templates_read": 256,
    "case_templates_write": 512,
    "activities_read": 1024,
    "all_activities_read": 2048,
}

_MAX_DETAIL = 200
_TAG = re.compile(r"<[^>]*>")


class IrisError(Exception):
    """A failed IRIS request. ``message`` never holds a secret; ``status`` is the HTTP status or None."""

    def __init__(self, message, status=None, data=None):
        super(IrisError, self).__init__(message)
        self.message = message
        self.status = status
        self.data = data


class _NoCookies(cookiejar.CookieJar):
    """A cookie jar that neither stores nor sends cookies.

    ``open_url`` creates a working jar of its own when it is given none, so this inert one is
    passed instead: no IRIS session cookie can ever ride along with the API key.
    """

    def add_cookie_header(self, request):
        """Send no Cookie header."""

    def extract_cookies(self, response, request):
        """Keep nothing from Set-Cookie."""


def permission_names(mask):
    """Names of the permission bits set in ``mask``, in bit order."""
    return [name for name, bit in PERMISSIONS.items() if mask & bit]


def public_url(url):
    """``url`` without any user:password part, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def _first_text_line(raw):
    """First line of a response body that still has text once HTML tags are removed."""
    for line in to_text(raw, errors="replace").splitlines():
        text = " ".join(_TAG.sub(" ", line).split())
        if text:
            return text[:_MAX_DETAIL]
    return "(empty body)"


def _field_errors(data):
    """IRIS puts validation errors in ``data``: a dict field -> [messages], or a list of messages."""
    if isinstance(data, dict):
        parts = []
        for field in sorted(data):
            value = data[field]
            text = " ".join(to_text(v).strip() for v in value) if isinstance(value, list) else to_text(value)
            parts.append("%s: %s" % (field, text.strip()))
        return "; ".join(parts)
    if isinstance(data, list):
        return "; ".join(to_text(item).strip() for item in data if isinstance(item, str))
    return ""


class IrisClient:
    """Minimal DFIR-IRIS REST client built on ``ansible.module_utils.urls.open_url``."""

    def __init__(self, url, api_key, validate_certs=True, ca_path=None, timeout=DEFAULT_TIMEOUT):
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise IrisError("url must start with http:// or https://, got %r" % public_url(url or ""))
        self.base_url = url.rstrip("/")
        self.api_key = api_key
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout

    # -- transport -------------------------------------------------------------------------------

    def request(self, method, path, body=None, api_key=None):
        """Send one request and return the envelope's ``data``; raise IrisError on any failure.

        ``api_key`` authenticates this one request with another key than the client's.
        """
        key = self.api_key if api_key is None else api_key
        headers = {"Authorization": "Bearer %s" % key, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        where = "%s %s" % (method, path)
        try:
            response = open_url(
                self.base_url + path,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                cookies=_NoCookies(),
                follow_redirects="none",
                unredirected_headers=["Authorization"],
                use_netrc=False,
                http_agent="socstack.wazuh_iris",
            )
            status, raw = response.getcode(), response.read()
        except HTTPError as err:
            raise self._http_error(where, err) from None
        except (SSLValidationError, ssl.SSLError) as err:
            raise self._tls_error(err) from None
        except URLError as err:
            if isinstance(err.reason, ssl.SSLError):
                raise self._tls_error(err.reason) from None
            if isinstance(err.reason, socket.timeout):
                raise self._timeout_error(where) from None
            raise self._unreachable(err.reason) from None
        except socket.timeout:
            raise self._timeout_error(where) from None
        except (OSError, HTTPException) as err:
            raise self._unreachable(err) from None
        return self._unpack(where, status, raw)

    def get(self, path, api_key=None):
        """GET ``path`` and return the envelope's data."""
        return self.request("GET", path, api_key=api_key)

    def post(self, path, body=None):
        """POST ``body`` (JSON) to ``path`` and return the envelope's data."""
        return self.request("POST", path, body=body)

    def _unpack(self, where, status, raw):
        try:
            payload = json.loads(to_text(raw, errors="replace"))
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "status" not in payload:
            raise IrisError(
                "IRIS answered HTTP %s to %s with something that is not an IRIS JSON envelope: %s "
                "(is url pointing at IRIS?)" % (status, where, _first_text_line(raw)),
                status=status,
            )
        if payload.get("status") != "success":
            raise self._envelope_error(where, status, payload)
        return payload.get("data")

    def _envelope_error(self, where, status, payload):
        message = to_text(payload.get("message") or "").strip()
        details = _field_errors(payload.get("data"))
        text = "; ".join(part for part in (message, details) if part) or "no message"
        return IrisError("IRIS refused %s (%s): %s" % (where, status, text), status=status, data=payload.get("data"))

    def _http_error(self, where, err):
        status = err.code
        if status == 401:
            return IrisError(
                "IRIS rejected the API key (401) for %s: the key is wrong, was renewed, or its user is "
                "deactivated" % where,
                status=401,
            )
        if 300 <= status < 400:
            location = public_url(err.headers.get("Location", "") if err.headers else "")
            return IrisError(
                "IRIS answered %s with a redirect (%s) to %s; set url to the final address"
                % (where, status, location or "an unknown place"),
                status=status,
            )
        try:
            raw = err.read()
        except (OSError, HTTPException):
            raw = b""
        try:
            payload = json.loads(to_text(raw, errors="replace"))
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "status" in payload:
            return self._envelope_error(where, status, payload)
        return IrisError("IRIS answered HTTP %s to %s: %s" % (status, where, _first_text_line(raw)), status=status)

    def _tls_error(self, err):
        return IrisError(
            "TLS failure talking to %s: %s. Give the CA that signed the IRIS certificate in ca_path, "
            "or set validate_certs=false for a lab only" % (public_url(self.base_url), err)
        )

    def _timeout_error(self, where):
        return IrisError(
            "IRIS at %s did not answer %s within %s seconds (timeout)"
            % (public_url(self.base_url), where, self.timeout)
        )

    def _unreachable(self, reason):
        return IrisError("Cannot reach IRIS at %s: %s" % (public_url(self.base_url), reason))

    # -- server and identity ---------------------------------------------------------------------

    def ping(self, api_key=None):
        """Check that the server answers and that the key (default: the client's) is accepted."""
        self.get("/api/ping", api_key=api_key)

    # -- customers -------------------------------------------------------------------------------

    def list_customers(self):
        """All customers (unsorted, as IRIS returns them)."""
        return self.get("/manage/customers/list") or []

    def find_customer(self, name):
        """The customer named ``name`` (compared case-insensitively, as IRIS does) or None."""
        wanted = name.lower()
        for customer in self.list_customers():
            if (customer.get("customer_name") or "").lower() == wanted:
                return customer
        return None

    def resolve_customers(self, names):
        """{id: name as IRIS spells it} of the customers ``names`` (case-insensitive); fail on unknown ones."""
        return _resolve(self.list_customers(), "customer", names)

    # -- groups ----------------------------------------------------------------------------------

    def list_groups(self):
        """All groups."""
        return self.get("/manage/groups/list") or []

    def find_group(self, name):
        """The group named ``name`` (case-insensitive, as IRIS) or None."""
        wanted = name.lower()
        for group in self.list_groups():
            if (group.get("group_name") or "").lower() == wanted:
                return group
        return None

    def resolve_groups(self, names):
        """{id: name as IRIS spells it} of the groups ``names`` (case-insensitive); fail on unknown ones."""
        return _resolve(self.list_groups(), "group", names)

    # -- users -----------------------------------------------------------------------------------

    def list_users(self):
        """All users, in the short form of /manage/users/list."""
        return self.get("/manage/users/list") or []

    def find_user(self, login):
        """The full record of the user whose login is exactly ``login`` (case-sensitive), or None."""
        for user in self.list_users():
            if user.get("user_login") == login:
                return self.get_user(user["user_id"])
        return None

    def get_user(self, user_id):
        """The full record of one user (groups, customers, permissions)."""
        return self.get("/manage/users/%d" % user_id)

    # -- alert lookups ---------------------------------------------------------------------------

    def severity_id(self, name):
        """Id of the alert severity called ``name`` (ids differ between installs)."""
        return next(iter(_resolve(self.get("/manage/severities/list") or [], "severity", [name])))

    def status_id(self, name):
        """Id of the alert status called ``name``."""
        return next(iter(_resolve(self.get("/manage/alert-status/list") or [], "status", [name])))


def _resolve(rows, kind, names):
    """{id: name} of the ``rows`` whose ``<kind>_name`` matches one of ``names`` case-insensitively.

    Fails naming every unknown name and the names IRIS has.
    """
    by_name = {(row.get("%s_name" % kind) or "").lower(): row for row in rows}
    missing = [name for name in names if name.lower() not in by_name]
    if missing:
        raise IrisError(
            "unknown %s name(s): %s; IRIS has: %s"
            % (kind, ", ".join(missing), ", ".join(sorted(row["%s_name" % kind] for row in rows)) or "none")
        )
    found = [by_name[name.lower()] for name in names]
    return {row["%s_id" % kind]: row["%s_name" % kind] for row in found}


def iris_argument_spec():
    """The connection options every iris_* module takes (documented in the ``iris`` doc fragment)."""
    return dict(
        url=dict(type="str", required=True, fallback=(env_fallback, ["IRIS_URL"])),
        api_key=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["IRIS_API_KEY"])),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="int", default=DEFAULT_TIMEOUT),
    )


class IrisModule(AnsibleModule):
    """AnsibleModule with the IRIS connection options, a client and the before/after bookkeeping.

    A module subclasses it, sets ``module_spec`` and implements ``manage()``, which fills
    ``self.before``/``self.after`` (None for "does not exist") and may add keys to ``self.result``.
    """

    module_spec = {}

    def __init__(self):
        spec = iris_argument_spec()
        spec.update(self.module_spec)
        super(IrisModule, self).__init__(argument_spec=spec, supports_check_mode=True)
        self.result = {"changed": False}
        self.before = None
        self.after = None
        params = self.params
        if params["timeout"] <= 0:
            self.fail_json(msg="timeout must be a positive number of seconds")
        problem = None
        try:
            self.client = IrisClient(
                params["url"], params["api_key"], params["validate_certs"], params["ca_path"], params["timeout"]
            )
        except IrisError as err:
            problem = err
        if problem:
            self.fail_json(msg=problem.message)

    def manage(self):
        """Bring IRIS to the wanted state; implemented by each module."""
        raise NotImplementedError

    def run(self):
        """Run ``manage()`` and exit with changed, diff and the module's own results.

        ``fail_json`` is called outside the ``except`` block so that no traceback is ever attached.
        """
        problem = None
        try:
            self.manage()
        except IrisError as err:
            problem = err
        if problem:
            self.fail_json(msg=problem.message, http_status=problem.status, **self.result)
        self.result["changed"] = self.before != self.after or self.result["changed"]
        if self._diff:
            self.result["diff"] = {"before": self.before or {}, "after": self.after or {}}
        self.exit_json(**self.result)

    def write(self, method, path, body=None):
        """Send a state-changing request, except in check mode; returns the envelope data (None in check mode)."""
        if self.check_mode:
            return None
        return self.client.request(method, path, body=body)
