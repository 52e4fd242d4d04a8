"""The forwarder's side of the IRIS REST API: what each answer means for an alert, and the lookups.

The client itself (request, envelope, masking, failure kinds) is socstack_core.iris_client, shared by
the host programs; this module adds what only the forwarder needs. Failure kinds:

- unavailable: no connection, timeout, 429/502/503/504, a 2xx without IRIS's envelope. The alert
  is spooled and a drain stops.
- item-error: 500 and other 5xx for this alert. It counts against the alert only while IRIS accepts
  other alerts (delivery: a server-wide write failure is an outage); rejected/ once poison.
- auth: 401/403. config: 3xx/404/405 (wrong URL), unknown names, TLS, CA file. Both keep the alert in
  the spool and stop a drain.
- tenant: the account is not linked to the alert's customer: the alert waits, the others go on.
- rejected: any other 4xx on the POST. The alert goes to rejected/.

``ambiguous`` says IRIS may have created the alert although no success came back: a timeout or a
reset after the request was sent, a 2xx without a success envelope, a 429, a 5xx or a 404 to the POST
(a proxy answers those after forwarding too). See docs/forwarder.md, "Delivery".
"""
import os
import time

from socstack_core import http
from socstack_core import iris_client as core
from socstack_core.files import write_json
from socstack_core.iris_client import AUTH, CONFIG
from socstack_core.iris_client import OUTAGE as UNAVAILABLE
from socstack_core.iris_client import REFUSED as REJECTED
from socstack_core.iris_client import SERVER_ERROR as ITEM_ERROR
from socstack_core.iris_client import IrisError as Failure
from socstack_core.jsonio import dumps, loads

from .settings import PROG

FILTER_PAGE_SIZE = 50
FILTER_MAX_PAGES = 20

TENANT = "tenant"  # the account is not linked to this alert's customer: its alerts wait, the others go on
STALE_IDS = "stale-ids"  # IRIS does not know the severity/status id we sent: refresh the cache

__all__ = ["AUTH", "CONFIG", "ITEM_ERROR", "REJECTED", "STALE_IDS", "TENANT", "UNAVAILABLE", "Failure", "Iris",
           "failure_for", "fetch_lookups", "find_existing", "get_data", "resolve_customer", "resolve_ids", "send"]


class Iris(core.IrisClient):
    """The shared client with the forwarder's options, log and the verify_tls: false warning."""

    def __init__(self, url, api_key, *, timeout, retries, deadline, options, log):
        super().__init__(url, api_key, timeout=timeout, retries=retries, deadline=deadline,
                         ca_file=options["ca_file"], verify_tls=options["verify_tls"], masker=log.masker,
                         user_agent=PROG, strip_suffix="/alerts/add", log=log)
        self.warned_tls = False  # the verify_tls: false warning was given (or is not wanted)

    def _exchange(self, method, target, body, timeout=None, max_bytes=None):
        if self.endpoint.scheme == "https" and not self.endpoint.verify_tls and not self.warned_tls:
            self.warned_tls = True
            self.log.warning("TLS certificate verification is OFF (verify_tls: false)")
        return super()._exchange(method, target, body, timeout, max_bytes)

    def call(self, method, target, payload=None, *, timeout=None, max_bytes=None):
        """The envelope's data of a successful call, else the forwarder's Failure (failure_for below)."""
        answer = self.request(method, target, payload, timeout=timeout, max_bytes=max_bytes)
        if answer.succeeded:
            return answer.envelope.get("data")
        raise failure_for(answer.status, answer.envelope, answer.text, method, target)


def failure_for(status, envelope, text, method, target):
    """Map an answer that is not IRIS's success to a Failure (the core's kinds, with the forwarder's own)."""
    failure = core.failure_for(status, envelope, text, method, target)
    post = method == "POST"
    if post and "not entitled" in text:
        failure.kind = TENANT
        failure.reason += " (the IRIS account is not linked to this alert's customer; link it, or fix customer_id / " \
                          "the routing)"
    elif failure.kind == AUTH:
        failure.reason += " (check the API key, its groups and customers)"
    elif failure.kind == CONFIG and (300 <= status < 400 or status in (404, 405) or "not entitled" in text):
        failure.reason = failure.reason.removesuffix(" (unexpected answer)") + " (check hook_url and customer_id)"
    elif post and status == 400 and "ForeignKeyViolation" in text and ("severity" in text or "status" in text):
        failure.kind = STALE_IDS
    return failure


def _clip(text, limit=200):
    """An agent-controlled value (a customer name from a label) bounded for a log line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def get_data(client, target):
    """GET an API route and return its envelope's data, or raise Failure."""
    return client.call("GET", target)


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
        answer = client.request("POST", "/alerts/add", body)
        if answer.succeeded:
            data = answer.envelope.get("data")
            return data.get("alert_id") if isinstance(data, dict) else None
        failure = failure_for(answer.status, answer.envelope, answer.text, "POST", "/alerts/add")
        if routed and failure.kind == TENANT:  # one tenant's link is missing: its alerts wait, the others go on
            failure.reason = (f"{failure.reason.split(' (the IRIS', 1)[0]} (the IRIS account is not linked to "
                              f"customer {_clip(routed)!r}, id {extra['alert_customer_id']}; link it)")
        if failure.kind == STALE_IDS and not refresh:
            log.warning(f"IRIS refused the cached severity/status ids; refreshing them ({answer.text[:120]})")
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
