"""One client for the DFIR-IRIS REST API, for every host program: request, envelope, failure kinds, masking.

``IrisClient(url, api_key, ...)`` sends JSON requests with ``Authorization: Bearer <key>`` over
socstack_core.http (one hard deadline per request, capped by the run's deadline; no cookies; connection
retries only when nothing was sent) and reads IRIS's envelope ``{"status", "message", "data"}``:

- ``request(method, target, payload)`` -> ``Answer(status, envelope or None, text)``; raises IrisError
  when there is no answer at all;
- ``call(method, target, payload)`` -> the envelope's ``data`` when IRIS answered success, else raises
  the IrisError ``failure_for`` gives; ``get(target)`` and ``post(target, payload)`` are shorthands.

Failure kinds (``IrisError.kind``), what the caller should do:

- OUTAGE: IRIS cannot be used now: no connection, timeout, 429/502/503/504, a 2xx that is not IRIS's
  success envelope (a proxy's page). Try again later.
- SERVER_ERROR: 500 (and other 5xx): IRIS failed on this request; alone it does not tell whether IRIS fails
  on every request (an outage) or on this one (the caller decides, see the forwarder's delivery).
- AUTH: 401/403: the key, its groups or its customers.
- CONFIG: our own set-up: TLS verification, the CA file, a URL that does not lead to IRIS (3xx/404/405).
- REFUSED: IRIS answered and refused this request (another 4xx to a write).

``IrisError.ambiguous`` says IRIS may have acted on a write although no success came back: the request was
sent and the answer was lost, or was an error a proxy gives after forwarding (429, 5xx, 404, a 2xx page).
Such a write must be looked up before it is made again. ``contacted`` is False when IRIS was not asked.

Masking: the server's text is masked (the key, in every form) BEFORE it is cut to fit a message, so a key
that crosses the cut never survives without its tail; every ``reason`` is masked the same way.
"""
import time

from . import faults, http
from .jsonio import dumps, loads
from .log import Masker

OUTAGE = "unavailable"
SERVER_ERROR = "item-error"
AUTH = "auth"
CONFIG = "config"
REFUSED = "rejected"

RETRY_PAUSE = 0.2  # seconds between connection attempts that failed before anything was sent
MESSAGE_CHARS = 500  # an envelope's message, once masked
PAGE_CHARS = 300  # the start of an answer that is not IRIS's JSON, once masked


class IrisError(Exception):
    """An exchange with IRIS that did not succeed (see the module docstring for kind and the flags)."""

    def __init__(self, kind, reason, ambiguous=False, retryable=False, *, tls_verify=None, contacted=True,
                 status=None, transport=None, text=""):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.ambiguous = ambiguous
        self.retryable = retryable
        self.tls_verify = tls_verify  # OpenSSL's reason when IRIS's certificate was refused
        self.contacted = contacted
        self.status = status
        self.transport = transport  # the socstack_core.http.TransportError when no answer came at all
        self.text = text  # IRIS's own message of the answer (masked, then cut), "" when there was none


class Answer:
    """status (int), envelope (dict, or None when the body is not IRIS's envelope), text (masked, cut), headers."""

    __slots__ = ("envelope", "headers", "status", "text")

    def __init__(self, status, envelope, text, headers=None):
        self.status = status
        self.envelope = envelope
        self.text = text
        self.headers = headers or {}

    @property
    def succeeded(self):
        return 200 <= self.status < 300 and self.envelope is not None and self.envelope.get("status") == "success"


class IrisClient:
    """A client for the IRIS REST API: Bearer key, no cookies, one connection per request."""

    def __init__(self, url, api_key, *, timeout=10, retries=0, deadline=None, ca_file=None, verify_tls=True,
                 masker=None, user_agent="socstack", strip_suffix="", log=None):
        if "\r" in api_key or "\n" in api_key:
            raise ValueError("the API key contains a line break")
        self.endpoint = http.Endpoint(url, ca_file=ca_file, verify_tls=verify_tls, strip_suffix=strip_suffix)
        self.url = self.endpoint.url
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.user_agent = user_agent
        self.log = log
        self.masker = masker if masker is not None else (log.masker if log is not None else Masker())
        self.masker.add(api_key)

    def _debug(self, text):
        if self.log is not None:
            self.log.debug(text)

    def _exchange(self, method, target, body, timeout=None, max_bytes=None):
        if self.deadline is not None and self.deadline - time.monotonic() <= 0:
            raise IrisError(OUTAGE, "the run's overall deadline was reached", contacted=False)
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                   "User-Agent": self.user_agent}
        if body is not None:
            headers["Content-Type"] = "application/json"
        on_sending = (lambda: faults.point("iris:post-sending")) if method == "POST" else None
        try:
            response = self._send(method, target, headers=headers, body=body, timeout=timeout or self.timeout,
                                  on_sending=on_sending, max_bytes=max_bytes or http.MAX_RESPONSE_BYTES)
        except http.TransportError as exc:
            reason = self.masker.mask(exc.reason)
            if exc.tls_verify:
                raise IrisError(CONFIG, f"{reason} (check ca_file)", tls_verify=exc.tls_verify,
                                transport=exc) from None
            if exc.config:
                raise IrisError(CONFIG, reason, transport=exc) from None
            raise IrisError(OUTAGE, reason, ambiguous=exc.sent, retryable=exc.refused, transport=exc) from None
        if method == "POST":
            faults.point("iris:post-answered")
        return response

    def _send(self, method, target, **request):
        """One HTTP exchange (socstack_core.http.request); raises http.TransportError. Simulations replace it."""
        return http.request(self.endpoint, method, target, deadline=self.deadline, **request)

    def request(self, method, target, payload=None, *, timeout=None, max_bytes=None):
        """One API call with connection retries; returns its Answer. Raises IrisError when nothing came back.

        timeout and max_bytes replace the client's for this call (a POST always carries a Content-Length).
        """
        body = (b"" if method == "POST" else None) if payload is None else dumps(payload).encode("utf-8")
        attempt = 0
        while True:
            try:
                response = self._exchange(method, target, body, timeout, max_bytes)
                break
            except IrisError as failure:
                if not failure.retryable or attempt >= self.retries:
                    raise
                attempt += 1
                self._debug(f"{failure.reason}; retry {attempt} of {self.retries}")
                left = RETRY_PAUSE if self.deadline is None else self.deadline - time.monotonic()
                time.sleep(min(RETRY_PAUSE, max(0.0, left)))
        self._debug(f"{method} {target} -> HTTP {response.status} ({len(response.body)} bytes)")
        return self.answer(response)

    def answer(self, response):
        """The Answer of an HTTP response: envelope when it is IRIS's, text masked THEN cut."""
        try:
            envelope = loads(response.body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            envelope = None
        if isinstance(envelope, dict) and envelope.get("status") in ("success", "error"):
            text, limit = str(envelope.get("message", "")), MESSAGE_CHARS
        else:
            envelope = None
            text, limit = response.body[:64 * 1024].decode("utf-8", "replace"), PAGE_CHARS
        if 300 <= response.status < 400:
            text = f"redirected to {response.headers.get('location', '?')}"
        return Answer(response.status, envelope, " ".join(self.masker.mask(text).split())[:limit], response.headers)

    def call(self, method, target, payload=None, *, timeout=None, max_bytes=None):
        """The envelope's data of a successful call; raises IrisError (failure_for) otherwise."""
        answer = self.request(method, target, payload, timeout=timeout, max_bytes=max_bytes)
        if answer.succeeded:
            return answer.envelope.get("data")
        raise failure_for(answer.status, answer.envelope, answer.text, method, target)

    def get(self, target):
        return self.call("GET", target)

    def post(self, target, payload):
        return self.call("POST", target, payload)


def failure_for(status, envelope, text, method, target):
    """The IrisError of an answer that is not IRIS's success (see the module docstring)."""
    where = f"{method} {target.split('?', 1)[0]} -> HTTP {status}: {text or 'no message'}"
    write = method != "GET"
    if 200 <= status < 300:
        kind, reason = OUTAGE, f"{where} (not IRIS's JSON success envelope)"
    elif status in (401, 403):
        kind, reason, write = AUTH, where, False
    elif status in (429, 502, 503, 504):
        # A proxy (Envoy, Istio, nginx) answers these also AFTER it forwarded the request: IRIS may have acted.
        kind, reason = OUTAGE, where
    elif status >= 500:
        kind, reason = SERVER_ERROR, where
    elif 300 <= status < 400 or status in (404, 405):
        kind, reason = CONFIG, where
    elif write and 400 <= status < 500:
        kind, reason, write = REFUSED, where, False
    else:
        kind, reason, write = CONFIG, f"{where} (unexpected answer)", False
    return IrisError(kind, reason, ambiguous=write, status=status, text=text)
