"""The forwarder's side of the IRIS REST API: one client, what each answer means, the lookups.

Every request goes through socstack_core.http with one hard deadline (TIMEOUT from integratord,
capped by the run's own deadline). What an answer means for the alert is a Failure kind:

- unavailable: no connection, timeout, 429/502/503/504, a 2xx without IRIS's envelope. The alert
  is spooled and a drain stops.
- item-error: 500 and other 5xx for this alert. Spooled with a per-item backoff; rejected/ once poison.
- auth: 401/403. config: 3xx/404/405 (wrong URL), customer not linked, unknown names, TLS, CA file.
  Both keep the alert in the spool and stop a drain.
- rejected: any other 4xx on the POST. The alert goes to rejected/.

``ambiguous`` says IRIS may have created the alert although no success came back: a timeout or a
reset after the request was sent, a 2xx without a success envelope, a 500/502/504 on the POST.
See docs/forwarder.md, "Delivery".
"""
import os
import time

from socstack_core import faults, http
from socstack_core.files import write_json
from socstack_core.jsonio import dumps, loads

from .settings import PROG

RETRY_PAUSE = 0.2  # seconds between connection attempts that failed before anything was sent
FILTER_PAGE_SIZE = 50
FILTER_MAX_PAGES = 20

UNAVAILABLE = "unavailable"
ITEM_ERROR = "item-error"
AUTH = "auth"
CONFIG = "config"
REJECTED = "rejected"
TENANT = "tenant"  # the account is not linked to this alert's customer: its alerts wait, the others go on
STALE_IDS = "stale-ids"  # IRIS does not know the severity/status id we sent: refresh the cache


class Failure(Exception):
    """An exchange with IRIS that did not succeed; kind says what to do with the alert."""

    def __init__(self, kind, reason, ambiguous=False, retryable=False, *, tls_verify=None, contacted=True):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.ambiguous = ambiguous
        self.retryable = retryable
        self.tls_verify = tls_verify  # OpenSSL's reason when IRIS's certificate was refused
        self.contacted = contacted  # False: this run did not ask IRIS (outage marker, deadline already past)


class Iris:
    """A client for the IRIS REST API: Bearer key, no cookies, one connection per request."""

    def __init__(self, url, api_key, *, timeout, retries, deadline, options, log):
        if "\r" in api_key or "\n" in api_key:
            raise ValueError("the API key contains a line break")
        self.endpoint = http.Endpoint(url, ca_file=options["ca_file"], verify_tls=options["verify_tls"],
                                      strip_suffix="/alerts/add")
        self.url = self.endpoint.url
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.log = log
        self.warned_tls = False  # the verify_tls: false warning was given (or is not wanted)

    def _exchange(self, method, target, body):
        if self.endpoint.scheme == "https" and not self.endpoint.verify_tls and not self.warned_tls:
            self.warned_tls = True
            self.log.warning("TLS certificate verification is OFF (verify_tls: false)")
        if self.deadline - time.monotonic() <= 0:
            raise Failure(UNAVAILABLE, "the run's overall deadline was reached", contacted=False)
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json", "User-Agent": PROG}
        if body is not None:
            headers["Content-Type"] = "application/json"
        on_sending = (lambda: faults.point("iris:post-sending")) if method == "POST" else None
        try:
            response = http.request(self.endpoint, method, target, headers=headers, body=body,
                                    timeout=self.timeout, deadline=self.deadline, on_sending=on_sending)
        except http.TransportError as exc:
            if exc.tls_verify:
                raise Failure(CONFIG, f"{exc.reason} (check ca_file)", tls_verify=exc.tls_verify) from None
            if exc.config:
                raise Failure(CONFIG, exc.reason) from None
            raise Failure(UNAVAILABLE, exc.reason, ambiguous=exc.sent, retryable=exc.refused) from None
        if method == "POST":
            faults.point("iris:post-answered")
        return response

    def request(self, method, target, payload=None):
        """One API call with connection retries; returns (status, envelope or None, short text)."""
        body = None if payload is None else dumps(payload).encode("utf-8")
        attempt = 0
        while True:
            try:
                response = self._exchange(method, target, body)
                break
            except Failure as failure:
                if not failure.retryable or attempt >= self.retries:
                    raise
                attempt += 1
                self.log.debug(f"{failure.reason}; retry {attempt} of {self.retries}")
                time.sleep(min(RETRY_PAUSE, max(0.0, self.deadline - time.monotonic())))
        self.log.debug(f"{method} {target} -> HTTP {response.status} ({len(response.body)} bytes)")
        try:
            envelope = loads(response.body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            envelope = None
        if isinstance(envelope, dict) and envelope.get("status") in ("success", "error"):
            text, limit = str(envelope.get("message", "")), 500
        else:
            envelope = None
            text, limit = response.body[:64 * 1024].decode("utf-8", "replace"), 300
        if 300 <= response.status < 400:
            text = f"redirected to {response.headers.get('location', '?')}"
        # Masked BEFORE it is cut: a key straddling the cut would otherwise survive without its tail.
        return response.status, envelope, " ".join(self.log.masker.mask(text).split())[:limit]


def failure_for(status, envelope, text, method, target):
    """Map an answer that is not IRIS's success to a Failure."""
    where = f"{method} {target.split('?', 1)[0]} -> HTTP {status}: {text or 'no message'}"
    post = method == "POST"
    if 200 <= status < 300:
        # A proxy's page, or an envelope that is not success: IRIS may or may not have acted.
        return Failure(UNAVAILABLE, f"{where} (not IRIS's JSON success envelope)", ambiguous=post)
    if status in (401, 403):
        return Failure(AUTH, f"{where} (check the API key, its groups and customers)")
    if status in (429, 502, 503, 504):
        # A proxy (Envoy, Istio, nginx) answers 503/502/504 when the upstream failed AFTER the request was
        # forwarded, and a rate limiter may sit behind IRIS: IRIS may have created the alert.
        return Failure(UNAVAILABLE, where, ambiguous=post)
    if status >= 500:
        return Failure(ITEM_ERROR, where, ambiguous=post)
    if post and "not entitled" in text:
        return Failure(TENANT, f"{where} (the IRIS account is not linked to this alert's customer; link it, or fix "
                               "customer_id / the routing)")
    if 300 <= status < 400 or status in (404, 405) or "not entitled" in text:
        # A 404 from a proxy after IRIS created the alert is not impossible either: look it up before resending.
        return Failure(CONFIG, f"{where} (check hook_url and customer_id)", ambiguous=post)
    if post and status == 400 and "ForeignKeyViolation" in text and ("severity" in text or "status" in text):
        return Failure(STALE_IDS, where)
    if post and 400 <= status < 500:
        return Failure(REJECTED, where)
    return Failure(CONFIG, f"{where} (unexpected answer)")


def _clip(text, limit=200):
    """An agent-controlled value (a customer name from a label) bounded for a log line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _succeeded(status, envelope):
    return 200 <= status < 300 and envelope is not None and envelope.get("status") == "success"


def get_data(client, target):
    """GET an API route and return its envelope's data, or raise Failure."""
    status, envelope, text = client.request("GET", target)
    if _succeeded(status, envelope):
        return envelope.get("data")
    raise failure_for(status, envelope, text, "GET", target)


# ------------------------------------------------------------------------------- severity / status
def fetch_lookups(client):
    """Name -> id maps of IRIS' severities and alert statuses."""
    maps = {}
    for kind, target, prefix in (("severities", "/manage/severities/list", "severity"),
                                 ("statuses", "/manage/alert-status/list", "status")):
        rows = get_data(client, target)
        if not isinstance(rows, list):
            raise Failure(CONFIG, f"GET {target} answered without a list")
        maps[kind] = {str(row.get(f"{prefix}_name")): row.get(f"{prefix}_id") for row in rows
                      if isinstance(row, dict) and isinstance(row.get(f"{prefix}_id"), int)
                      and not isinstance(row.get(f"{prefix}_id"), bool)}
    return maps


def _read_cache(path, url, ttl, kinds=("severities", "statuses")):
    try:
        with open(path, "rb") as handle:
            cache = loads(handle.read())
        age = time.time() - float(cache["fetched"])
        if cache["url"] == url and 0 <= age < ttl:
            return {kind: dict(cache[kind]) for kind in kinds}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass
    return None


def _write_cache(path, url, maps, log):
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
        write_json(path, {"url": url, "fetched": time.time(), **maps}, log.masker, durable=False)
    except OSError as exc:
        log.warning(f"cannot write the lookup cache {path}: {exc.strerror or exc}")


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
        maps = fetch_lookups(client)
        _write_cache(cache_file, client.url, maps, log)
    ids = (_find(maps["severities"], severity), _find(maps["statuses"], status))
    for ident, name, kind, label, option in ((ids[0], severity, "severities", "severity", "severity_by_level"),
                                             (ids[1], status, "statuses", "alert status", "status")):
        if ident is None:
            raise Failure(CONFIG, f"IRIS has no {label} named {name!r} (option {option}); "
                                  f"IRIS knows: {', '.join(sorted(maps[kind]))}")
    return ids


# ------------------------------------------------------------------------------------ customers
def resolve_customer(client, name, known, *, cache_file, ttl, log):
    """IRIS customer id of a routed customer name: from the customers option, else a cached lookup.

    A name IRIS does not have, or that the account may not look up (403: it lacks customers_read), is
    this alert's problem: Failure(REJECTED), so it waits in rejected/ and holds nothing else up.
    """
    ident = _find(known, name)
    if ident is not None:
        return ident
    cached = None if ttl == 0 else _read_cache(cache_file, client.url, ttl, ("customers",))
    if cached is None or _find(cached["customers"], name) is None:
        try:
            rows = get_data(client, "/manage/customers/list")
        except Failure as failure:
            if failure.kind == AUTH:
                raise Failure(REJECTED, f"customer {_clip(name)!r} is not in the customers option, and the IRIS "
                                        f"account may not list customers ({failure.reason}); add it to "
                                        "customers") from None
            raise
        if not isinstance(rows, list):
            raise Failure(UNAVAILABLE, "GET /manage/customers/list answered without a list")
        cached = {"customers": {str(row.get("customer_name")): row.get("customer_id") for row in rows
                                if isinstance(row, dict) and isinstance(row.get("customer_id"), int)}}
        _write_cache(cache_file, client.url, cached, log)
    ident = _find(cached["customers"], name)
    if ident is None:
        raise Failure(REJECTED, f"IRIS has no customer named {_clip(name)!r} that the account can see (it does not "
                                "exist, or the account is not linked to it); add or link it, or fix customer_field / "
                                "customer_routes")
    return ident


# ---------------------------------------------------------------------------------------- alerts
def send(client, item, cache_file, ttl, log, *, customers=None, customers_file=None):
    """Create the alert in IRIS; returns the new alert id or raises Failure."""
    refresh = False
    routed = item.get("customer")
    extra = {}
    if routed:
        extra["alert_customer_id"] = resolve_customer(client, routed, customers or {}, ttl=ttl, log=log,
                                                      cache_file=customers_file)
    while True:
        severity_id, status_id = resolve_ids(client, item["severity"], item["status"], cache_file=cache_file,
                                             ttl=ttl, log=log, refresh=refresh)
        body = dict(item["payload"], alert_severity_id=severity_id, alert_status_id=status_id, **extra)
        log.debug(f"POST /alerts/add body: {dumps(body)}")  # masked, then cut, by the log
        status, envelope, text = client.request("POST", "/alerts/add", body)
        if _succeeded(status, envelope):
            data = envelope.get("data")
            return data.get("alert_id") if isinstance(data, dict) else None
        failure = failure_for(status, envelope, text, "POST", "/alerts/add")
        if routed and failure.kind == TENANT:  # one tenant's link is missing: its alerts wait, the others go on
            failure.reason = (f"{failure.reason.split(' (the IRIS', 1)[0]} (the IRIS account is not linked to "
                              f"customer {_clip(routed)!r}, id {extra['alert_customer_id']}; link it)")
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
        data = get_data(client, f"/alerts/filter?source_reference={http.quote(ref)}&per_page={FILTER_PAGE_SIZE}"
                                f"&page={page}&fields=alert_id,alert_source_ref,alert_source")
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if not isinstance(alerts, list):  # never conclude "absent" from an answer we do not understand
            raise Failure(UNAVAILABLE, "GET /alerts/filter answered without a list of alerts")
        for alert in alerts:
            if isinstance(alert, dict) and alert.get("alert_source_ref") == ref:
                return alert.get("alert_id")
        if not alerts or not data.get("next_page"):
            return None
    raise Failure(UNAVAILABLE, f"too many IRIS alerts match source_reference {ref!r} to check for a duplicate")
