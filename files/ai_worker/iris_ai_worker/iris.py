"""The few DFIR-IRIS 2.4.20 alert routes the worker uses: thin functions over socstack_core.iris_client.

The shared client (the forwarder's too) makes the request, reads IRIS's envelope, classifies what went
wrong (``kind``: socstack_core.iris_client's OUTAGE, SERVER_ERROR, AUTH, CONFIG, REFUSED) and masks the
key in IRIS's text BEFORE it is cut. A failure reaches the worker as an ``IrisFailure``: a ServiceError
(what the worker handles, for IRIS and Ollama alike) that carries the shared client's kind, the HTTP status,
IRIS's own (masked) message and, when no answer came at all, the transport error.

Every answer's HTTP ``Date`` header is kept with the local wall-clock times around the request:
that is how the worker measures its clock against IRIS's (clock.py).
"""
import time

from socstack_core import http
from socstack_core import iris_client as core

from .tags import TAG_PENDING, join_tags

PAGE_SIZE = 50
USER_AGENT = "socstack-ai-worker"
# Fields of an alert's state (no content): what the claim protocol and every tag write read. Always a
# bounded answer, whatever the alert holds (IRIS's /alerts/filter trims each alert to ``fields``).
# modification_history is IRIS's log of updates (who changed which tags and owner): the worker replays it
# to make late writes harmless (heal.py).
STATE_FIELDS = "alert_id,alert_tags,alert_owner_id,alert_customer_id,modification_history"
POLL_FIELDS = "alert_id,alert_tags,alert_owner_id,alert_customer_id"
# The whole alert (its content, for the prompt) is read once per attempt and refused past this size: the
# prompt holds at most AI_WORKER_MAX_PROMPT_CHARS of it, so a larger alert is never fetched again.
ALERT_MAX_BYTES = 4 * 1024 * 1024
# IRIS 2.4.20 answers a repeated delete of a comment with this (measured 2026-12-04): already deleted.
ALREADY_DELETED = "You are not allowed to delete this comment"


class ServiceError(Exception):
    """An HTTP call to IRIS or Ollama failed; the message never holds a credential."""

    def __init__(self, message, status=None, server_message=None, transport=None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        self.transport = transport  # the socstack_core.http.TransportError when no answer came at all


class IrisFailure(ServiceError):
    """A call to IRIS that did not succeed, as socstack_core.iris_client classified it (``kind``, ``ambiguous``)."""

    def __init__(self, failure):
        super().__init__(f"IRIS {failure.reason}", status=failure.status, server_message=failure.text or None,
                         transport=failure.transport)
        self.kind = failure.kind
        self.ambiguous = failure.ambiguous
        self.tls_verify = failure.tls_verify


def server_time(date_header):
    """Epoch seconds of an HTTP Date header (resolution: one second), or None."""
    from email.utils import mktime_tz, parsedate_tz  # noqa: PLC0415 -- only once an answer has a Date

    parsed = parsedate_tz(date_header or "")
    return None if parsed is None else float(mktime_tz(parsed))


class IrisClient(core.IrisClient):
    """The shared IRIS client with the worker's settings; ``data`` of a success envelope, else IrisFailure."""

    def __init__(self, config, wall=time.time, masker=None):
        super().__init__(config.iris_url, config.iris_bearer, timeout=config.iris_timeout, ca_file=config.ca_file,
                         verify_tls=config.verify_tls, masker=masker, user_agent=USER_AGENT)
        self.wall = wall
        self.clock_sample = None  # (local time sent, local time answered, IRIS's Date) of the last answer

    def _exchange(self, method, target, body, timeout=None, max_bytes=None):
        sent = self.wall()
        response = super()._exchange(method, target, body, timeout, max_bytes)
        date = server_time(response.headers.get("date"))
        if date is not None:
            self.clock_sample = (sent, self.wall(), date)
        return response

    def _call(self, method, path, body=None, timeout=None, max_bytes=None):
        try:
            return self.call(method, path, body, timeout=timeout, max_bytes=max_bytes)
        except core.IrisError as failure:
            raise IrisFailure(failure) from None

    def ping(self):
        """GET /api/ping: any valid key may call it (the preflight's first check)."""
        return self._call("GET", "/api/ping")

    def customers(self):
        """GET /manage/customers/list: the customers the account is linked to (needs customers_read)."""
        return self._call("GET", "/manage/customers/list") or []

    def alerts_of_customer(self, customer_id):
        """One alert id of the customer, as the account sees them: ``{total, alerts, ...}``."""
        query = f"alert_customer_id={int(customer_id)}&page=1&per_page=1&fields=alert_id"
        return self._call("GET", f"/alerts/filter?{query}") or {}

    def pending_page(self, page):
        query = (f"alert_tags={http.quote(TAG_PENDING)}&page={int(page)}&per_page={PAGE_SIZE}&sort=asc"
                 f"&fields={http.quote(POLL_FIELDS)}")
        return self._call("GET", f"/alerts/filter?{query}") or {}

    def alert(self, alert_id, timeout=None):
        """The whole alert (content included), at most ALERT_MAX_BYTES; ServiceError otherwise."""
        return self._call("GET", f"/alerts/{int(alert_id)}", timeout=timeout, max_bytes=ALERT_MAX_BYTES)

    def alert_states(self, alert_ids, timeout=None):
        """{alert id: {alert_id, alert_tags, alert_owner_id, alert_customer_id}} of the alerts that exist
        and are visible, read in one bounded request (``/alerts/filter?alert_ids=…&fields=…``)."""
        ids = sorted({int(alert_id) for alert_id in alert_ids})
        if not ids:
            return {}
        query = (f"alert_ids={','.join(map(str, ids))}&page=1&per_page={len(ids)}"
                 f"&fields={http.quote(STATE_FIELDS)}")
        data = self._call("GET", f"/alerts/filter?{query}", timeout=timeout) or {}
        found = {}
        for item in data.get("alerts") or []:
            if isinstance(item, dict) and isinstance(item.get("alert_id"), int):
                found[item["alert_id"]] = item
        return found

    def alert_state(self, alert_id, timeout=None):
        """One alert's state (tags, owner, customer; no content); ServiceError when IRIS does not list it."""
        state = self.alert_states([alert_id], timeout=timeout).get(int(alert_id))
        if state is None:
            raise ServiceError(f"IRIS GET /alerts/filter: alert {int(alert_id)} not found")
        return state

    def set_tags(self, alert, tags, timeout=None):
        """Replace the tag string, repeating the current owner (or -1) so IRIS keeps it as it is."""
        owner = alert.get("alert_owner_id")
        body = {"alert_tags": join_tags(tags), "alert_owner_id": owner if isinstance(owner, int) else -1}
        return self._call("POST", f"/alerts/update/{int(alert['alert_id'])}", body, timeout=timeout)

    def comments(self, alert_id):
        return self._call("GET", f"/alerts/{int(alert_id)}/comments/list") or []

    def add_comment(self, alert_id, text):
        return self._call("POST", f"/alerts/{int(alert_id)}/comments/add", {"comment_text": text})

    def delete_comment(self, alert_id, comment_id):
        """Delete a comment; True when deleted now, False when it was already gone (IRIS's 400)."""
        try:
            self._call("POST", f"/alerts/{int(alert_id)}/comments/{int(comment_id)}/delete")
        except ServiceError as exc:
            if exc.status == 400 and exc.server_message == ALREADY_DELETED:
                return False
            raise
        return True
