"""--check-connection: check the forwarder's configuration against IRIS, and change nothing.

    custom-wazuh_iris.py --check-connection --options OPTIONS_FILE [--debug]

It reads OPTIONS_FILE as alert and replay mode read their options (hook_url, api_key_file, ca_file,
verify_tls, customer_id, customers, customer_routes, severity_by_level, status) and asks IRIS with the
read-only calls a run makes: GET /api/ping and /api/versions, the severity and alert-status lists,
/alerts/filter, /manage/customers/list. It prints one line per check on stdout,

    ok <check>: ...        warning <check>: ...        error <check>: ...

and exits 0 when no line says error, 2 when IRIS could not be reached or is not available (connection,
timeout, 429, 5xx), 5 for every other problem. Nothing is written: no spool, no lookup cache, no log
file; with --debug (or the option debug) the exchanges go to stderr, the key masked.
See docs/forwarder.md, "Checking the connection".
"""
import time

from socstack_core import preflight as core_preflight
from socstack_core.options import problems as option_problems

from .iris import ITEM_ERROR, UNAVAILABLE, Failure, Iris, fetch_lookups
from .settings import (
    DEFAULT_TIMEOUT,
    EXIT_CONFIG,
    EXIT_SPOOLED,
    OPTIONS,
    KeyFileError,
    load_options,
    read_api_key,
)

OVERALL_SECONDS = 60  # the whole check, however many customers it looks at
ALERTS_PROBE = "/alerts/filter?per_page=1&page=1&fields=alert_id"


class Report(core_preflight.Report):
    """The shared report (socstack_core.preflight: line format, exit codes 0 / 5 / 2) with the forwarder's
    reading of a failed exchange."""

    def __init__(self, log, out=None):
        super().__init__(log.masker, out, code_error=EXIT_CONFIG, code_unavailable=EXIT_SPOOLED)
        self.log = log

    def failure(self, check, failure):
        """An exchange that did not succeed; True when IRIS is not usable at all (stop checking)."""
        stop = failure.kind in (UNAVAILABLE, ITEM_ERROR)
        self.error(check, f"IRIS is not available: {failure.reason}" if stop else failure.reason, unavailable=stop)
        return stop


def get(client, target):
    """(HTTP status or None, data, Failure or None) of one GET: data when IRIS answered success."""
    try:
        return 200, client.call("GET", target), None
    except Failure as failure:
        return failure.status, None, failure


def iris_message(failure):
    """IRIS's own text of a failed answer ("GET /x -> HTTP 401: Authentication required (check...)")."""
    return failure.reason.split(": ", 1)[-1].split(" (check", 1)[0]


# ----------------------------------------------------------------------------------- configuration
def _configuration(path, report, log):
    """(options, hook_url, API key), or None when the check cannot go on."""
    found = option_problems(path, OPTIONS)
    for problem in found:
        report.error("options", problem)
    options, unusable = load_options(path)
    if any(problem.endswith("; using defaults") for problem in unusable):
        return None  # the file itself is unusable (missing, not JSON): reported above
    log.debug_enabled = log.debug_enabled or options["debug"]
    if not found:
        report.ok("options", f"{path} is valid")
    url, key = options["hook_url"], None
    if not url:
        report.error("hook_url", "the options have no hook_url (the IRIS URL, such as https://iris.example:9094); "
                                 "alert mode would fall back to <hook_url> of ossec.conf, this check does not")
    if not options["api_key_file"]:
        report.error("api_key_file", "the options have no api_key_file (the file holding the IRIS API key)")
    else:
        try:
            key = read_api_key(options["api_key_file"])
        except KeyFileError as exc:
            report.error("api_key_file", str(exc))
        else:
            log.masker.add(key)
            report.ok("api_key_file", f"{options['api_key_file']} holds a key")
    return (options, url, key) if url and key else None


def _trust(options, endpoint):
    if endpoint.scheme != "https":
        return "plain HTTP"
    if not options["verify_tls"]:
        return "TLS, certificate NOT verified"
    return f"TLS verified with ca_file {options['ca_file']}" if options["ca_file"] else "TLS verified, system CAs"


def _tls_problem(failure, options, client):
    host = client.endpoint.host
    if "mismatch" in failure.tls_verify.lower():
        return (f"the certificate of {host} is not issued for the name {host} ({failure.tls_verify}): use in hook_url "
                "a name the certificate carries, or reissue it")
    where = f"the CA in ca_file {options['ca_file']}" if options["ca_file"] else "a system CA (set ca_file)"
    return f"the certificate of {host} is not trusted ({failure.tls_verify}): it is not signed by {where}"


def _connection(client, options, report):
    """GET /api/ping (and /api/versions for the ok line); True when the other checks can go on."""
    status, _data, failure = get(client, "/api/ping")
    if failure is not None:
        if failure.tls_verify:
            report.error("tls", _tls_problem(failure, options, client))
        elif status is None and failure.kind != UNAVAILABLE:  # our own TLS set-up: the CA file
            report.error("ca_file", failure.reason)
        elif status is None:
            reason = failure.reason.removeprefix(f"{client.url}: ")
            report.error("connection", f"IRIS unreachable at {client.url}: {reason}", unavailable=True)
        elif status == 401:
            report.error("api_key", f"IRIS at {client.url} refused the key in api_key_file {options['api_key_file']}: "
                                    f"HTTP 401 {iris_message(failure)!r} (a wrong or renewed key, or a deactivated "
                                    "account)")
        elif 300 <= status < 400 or status in (404, 405):
            where = f", {iris_message(failure)}" if status < 400 else ""  # "redirected to ..."
            report.error("hook_url", f"{client.url}/api/ping answered HTTP {status}{where}: hook_url does not lead "
                                     "to IRIS's API (give IRIS's base URL or its /alerts/add)")
        else:
            report.failure("connection", failure)
        return False
    _status, versions, _failure = get(client, "/api/versions")
    version = versions.get("iris_current") if isinstance(versions, dict) else None
    report.ok("connection", f"IRIS {version or '(version unknown)'} at {client.url} accepts the key "
                            f"({_trust(options, client.endpoint)})")
    if client.endpoint.scheme == "https" and not options["verify_tls"]:
        report.warning("tls", "certificate verification is OFF (verify_tls: false): anyone in between can read the key")
    elif client.endpoint.scheme != "https":
        report.warning("tls", "hook_url is plain http: the key and the alerts cross the network unencrypted")
    return True


# ------------------------------------------------------------------------------------------ lookups
def _names(options):
    seen = []
    for _low, _high, name in options["severity_by_level"]:
        if name.casefold() not in (known.casefold() for known in seen):
            seen.append(name)
    return seen


def _find(mapping, name):
    return next((ident for known, ident in mapping.items() if known.casefold() == name.casefold()), None)


def _lookups(client, options, report):
    """Every severity name of severity_by_level and the status name exist in this IRIS."""
    try:
        maps = fetch_lookups(client)
    except Failure as failure:
        return not report.failure("lookups", failure)
    for check, kind, label, names in (("severity_by_level", "severities", "severity", _names(options)),
                                      ("status", "statuses", "alert status", [options["status"]])):
        missing = [name for name in names if _find(maps[kind], name) is None]
        for name in missing:
            report.error(check, f"IRIS has no {label} named {name!r}; IRIS knows: {', '.join(sorted(maps[kind]))}")
        if not missing:
            report.ok(check, ", ".join(f"{name}={_find(maps[kind], name)}" for name in names))
    return True


def _alerts_read(client, report):
    """The account may look alerts up (the forwarder does before resending an alert of unknown outcome)."""
    status, _data, failure = get(client, ALERTS_PROBE)
    if failure is None:
        report.ok("alerts_read", "the account may look up alerts")
        return True
    if status == 403:
        report.error("alerts_read", f"GET /alerts/filter answered HTTP 403 {iris_message(failure)!r}: the account's "
                                    "groups lack alerts_read (needed to look an alert up before resending it; "
                                    "an account in no such group cannot create alerts either)")
        return True
    return not report.failure("alerts_read", failure)


# ---------------------------------------------------------------------------------------- customers
def _wanted(options):
    """{customer id: name the customers option gives it, or None} and the routed names not in customers."""
    wanted = {options["customer_id"]: None}
    for name, ident in options["customers"].items():
        if wanted.get(ident) is None:
            wanted[ident] = name
    routed = []
    for rule in options["customer_routes"]:
        name = rule["customer"]
        if _find(options["customers"], name) is None and name.casefold() not in (n.casefold() for n in routed):
            routed.append(name)
    return wanted, routed


def _linked_by_list(rows, wanted, routed, report):
    visible = {row.get("customer_id"): str(row.get("customer_name")) for row in rows if isinstance(row, dict)}
    for ident, name in wanted.items():
        option = "customer_id" if name is None else f"customers ({name!r})"
        if ident not in visible:
            report.error("customer", f"the account is not linked to customer {ident} (or IRIS has no such customer), "
                                     "so IRIS refuses its alerts with 'User not entitled to create alerts for the "
                                     f"client': link the account to it, or fix {option}")
        elif name is not None and visible[ident].casefold() != name.casefold():
            report.error("customers", f"the option maps {name!r} to customer {ident}, but IRIS calls customer {ident} "
                                      f"{visible[ident]!r}")
        else:
            report.ok("customer", f"the account is linked to customer {ident} ({visible[ident]})")
    for name in routed:
        ident = _find({known: ident for ident, known in visible.items()}, name)
        if ident is None:
            report.error("customer_routes", f"IRIS has no customer named {name!r} that the account can see; alerts "
                                            "routed to it would go to rejected/")
        else:
            report.ok("customer_routes", f"customer {name!r} is IRIS customer {ident}, linked to the account")


def _linked_by_alerts(client, wanted, routed, report):
    """Without customers_read: a customer whose alerts the account sees is linked; no alert proves nothing."""
    for ident in wanted:
        _status, data, failure = get(client, f"/alerts/filter?alert_customer_id={ident}&per_page=1&page=1"
                                             "&fields=alert_id")
        if failure is not None:
            if report.failure("customer", failure):
                return
        elif isinstance(data, dict) and isinstance(data.get("total"), int) and data["total"] > 0:
            report.ok("customer", f"the account sees alerts of customer {ident}, so it is linked to it")
        else:
            report.warning("customer", f"cannot tell whether the account is linked to customer {ident}: it may not "
                                       "list customers (its groups lack customers_read) and sees no alert of that "
                                       "customer yet; the first alert will tell (or give the account customers_read)")
    for name in routed:
        report.error("customer_routes", f"customer {name!r} is not in the customers option and the account may not "
                                        "list customers (HTTP 403), so alerts routed to it would go to rejected/: "
                                        "add it to customers")


def _customers(client, options, report):
    wanted, routed = _wanted(options)
    status, rows, failure = get(client, "/manage/customers/list")
    if failure is None and isinstance(rows, list):
        _linked_by_list(rows, wanted, routed, report)
    elif status == 403:
        _linked_by_alerts(client, wanted, routed, report)
    elif failure is not None:
        report.failure("customer", failure)
    else:
        report.error("customer", "GET /manage/customers/list answered without a list")


# ---------------------------------------------------------------------------------------------- run
def check_connection(path, *, debug, log, out=None):
    """Run every check of the options file at path; returns the exit code (see the module docstring)."""
    report = Report(log, out)
    log.debug_enabled = debug
    configured = _configuration(path, report, log)
    if configured is None:
        return report.exit_code()
    options, url, key = configured
    try:
        client = Iris(url, key, timeout=DEFAULT_TIMEOUT, retries=0, deadline=time.monotonic() + OVERALL_SECONDS,
                      options=options, log=log)
    except ValueError as exc:
        report.error("hook_url", f"{url!r} is not usable: {exc}")
        return report.exit_code()
    client.warned_tls = True  # this check reports verify_tls: false itself, as one of its lines
    for step in (_connection, _lookups):
        if not step(client, options, report):
            return report.exit_code()
    if _alerts_read(client, report):
        _customers(client, options, report)
    return report.exit_code()
