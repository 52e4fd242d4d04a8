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


def permission_mask(names):
    """OR of the bit values of the permissions ``names``."""
    mask = 0
    for name in names:
        mask |= PERMISSIONS[name]
    return mask


def password_problems(password):
    """What the IRIS password policy would reject in ``password`` (empty when it is acceptable)."""
    problems = []
    if len(password) < 12:
        problems.append("at least 12 characters")
    for pattern, need in ((r"[A-Z]", "an upper-case letter"), (r"[a-z]", "a lower-case letter"), (r"[0-9]", "a digit")):
        if not re.search(pattern, password):
            problems.append(need)
    return problems


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

    def users_linked_to(self, customer_id):
        """login -> (user id, customer ids) of every user linked to the customer ``customer_id``."""
        links = {}
        for entry in self.list_users():
            user = self.get_user(entry["user_id"])
            ids = [customer["customer_id"] for customer in user.get("user_customers") or []]
            if customer_id in ids:
                links[user["user_login"]] = (user["user_id"], ids)
        return links

    def membership(self, kind, names, current, login):
        """(names as IRIS spells them, ids), both sorted, of the ``kind`` ("groups" or "customers") ``names``.

        Names are compared case-insensitively and ids differ between installs, so they are looked up;
        an unknown name fails. IRIS replaces a user's membership as a whole and refuses an empty one, so
        ``[]`` fails when the user ``login`` has a ``current`` (non-empty) membership.
        """
        if not names:
            if current:
                raise IrisError(
                    "%s=[] cannot be applied to user %r: IRIS refuses an empty %s list, so a user's last %s "
                    "cannot be removed (current: %s); give the set it should have, or remove the user"
                    % (kind, login, kind, kind[:-1], ", ".join(current))
                )
            return [], []
        rows = self.list_groups() if kind == "groups" else self.list_customers()
        found = _resolve(rows, kind[:-1], names)
        return sorted(found.values()), sorted(found)


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


def _changes(current, wanted):
    """{option: wanted value} of the options whose value in the view ``wanted`` differs from ``current``."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


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
    """AnsibleModule with the IRIS connection options, a client, and the shared present/absent logic.

    A module subclasses it, sets ``module_spec`` (its own options) and ``resource`` (the result key
    that returns the resource as it is after the run), and implements ``find``, ``present`` and
    ``absent`` (or ``manage`` itself). They read the current state, build the wanted one and hand
    both to :meth:`ensure` or :meth:`ensure_absent`, which decide whether to write, never write in
    check mode, and record the change and the diff. A resource is described by a "view": a dict
    keyed by option names, the same form for the current and the wanted state (None for "does not
    exist"). Ids differ between IRIS installs, so resources are always found by name.
    """

    module_spec = {}
    resource = None

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
        """Find the resource, then make it present or absent as the ``state`` option says.

        ``find()`` gives the id and the view of the resource (None, None when there is none); ``present``
        and ``absent`` get that view and call :meth:`ensure` or :meth:`ensure_absent`. A module without a
        ``state`` option overrides ``manage()`` itself.
        """
        self.result["id"], current = self.find()
        if self.params["state"] == "absent":
            self.absent(current)
        else:
            self.present(current)

    def find(self):
        """(id, view) of the resource the task names, or (None, None); implemented by each module."""
        raise NotImplementedError

    def present(self, current):
        """Create or update the resource whose view is ``current`` (None: absent); implemented by each module."""
        raise NotImplementedError

    def absent(self, current):
        """Delete the resource whose view is ``current`` (None: already absent); implemented by each module."""
        raise NotImplementedError

    def run(self):
        """Run ``manage()`` and exit with changed, the resource, the diff and the module's own results.

        A failure reports the server's message (and HTTP status) with what the result holds so far;
        ``changed`` is set only once all the writes of ``ensure``/``ensure_absent`` succeeded.
        ``fail_json`` is called outside the ``except`` block so that no traceback is ever attached.
        """
        problem = None
        try:
            self.manage()
        except IrisError as err:
            problem = err
        if problem:
            self.fail_json(msg=problem.message, http_status=problem.status, **self.result)
        if self.resource:
            self.result[self.resource] = self.after or {}
        if self._diff:
            self.result["diff"] = {"before": self.before or {}, "after": self.after or {}}
        self.exit_json(**self.result)

    def wanted(self, current, options):
        """A copy of the view ``current`` with each of ``options`` that the task gives set to its value.

        An option left out (None) keeps the current value: only what the task names is managed.
        """
        wanted = dict(current)
        for option in options:
            if self.params[option] is not None:
                wanted[option] = self.params[option]
        return wanted

    def ensure(self, current, wanted, create, update, *, force=False, created_with=None):
        """Create the resource or update what differs; True when something is (or would be) written.

        ``current`` is the view of the existing resource, None when there is none; ``wanted`` the view
        the task asks for. When they are equal nothing is called, unless ``force`` says that a part
        of the request cannot be compared (a password) and must be sent anyway.
        ``create(wanted)`` returns the id of the new resource, which becomes ``result["id"]``.
        ``update(changes, wanted)`` gets ``changes``, {option: wanted value} of the options that
        differ, and sends at least those (IRIS resets some fields an update leaves out, so a module
        may send more). ``created_with`` holds the values IRIS gives every resource it creates, whatever
        the request says (a user is created active, in no group): right after ``create``, ``update``
        gets the options whose wanted value differs from those.
        In check mode neither is called: the change is only predicted, and the id of a resource that
        would be created is None.
        """
        self.before, self.after = current, wanted
        if current == wanted and not force:
            return False
        if current is None:
            self.result["id"] = None
            if not self.check_mode:
                self.result["id"] = create(wanted)
                rest = _changes(dict(wanted, **(created_with or {})), wanted)
                if rest:
                    update(rest, wanted)
        elif not self.check_mode:
            update(_changes(current, wanted), wanted)
        self.result["changed"] = True
        return True

    def ensure_absent(self, current, delete):
        """Delete the resource when it exists; True when it is (or would be) deleted.

        ``current`` is the view of the existing resource or None. ``delete()`` is not called in
        check mode. Refusals (IRIS would reject the deletion) belong before this call, so that they
        fail in check mode too and before anything is written. ``result["id"]`` becomes None.
        """
        self.before, self.after = current, None
        if current is not None and not self.check_mode:
            delete()
        self.result.update(changed=self.result["changed"] or current is not None, id=None)
        return current is not None
