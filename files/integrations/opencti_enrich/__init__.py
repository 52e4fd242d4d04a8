"""Wazuh integratord integration: enrich one alert with OpenCTI threat intelligence.

wazuh-integratord runs the launcher integrations/custom-opencti once per alert; it imports this
package (bytecode precompiled in __pycache__ by the installer) and calls run(). The program takes
the observables out of the alert (hashes, public IP addresses, domains, URLs), asks OpenCTI about
all of them in ONE GraphQL request, and sends the matches back to wazuh-analysisd as JSON events on
the queue socket, where the opencti_rules.xml rules turn them into alerts. Results (hits and misses)
are cached on disk for cache_ttl seconds. See docs/opencti.md.

Modules, one concern each, imported only when a run needs them:
- settings: command line, options, exit codes, time bounds;
- addresses, observables: what an alert carries, and the source fields copied into events;
- cache: results per observable on disk;
- graphql: the document, its variables, the request on socstack_core.http (one hard deadline);
- answer: the answer read with every field's type checked, shared out per observable;
- ranking: ranking, caps and the events;
- wazuh_queue: the events as datagrams on analysisd's queue socket;
- preflight: the role's checks, --check-options and --check-connection (imported only by them).

Time bound: the request ends by <timeout> seconds after the run started, and sending the events by
QUEUE_GRACE seconds after that.

Exit codes:
    0  done: events sent, nothing to look up, or an OpenCTI failure reported as an error event
    2  bad command line (alert file, API token or URL missing)
    3  the alert file cannot be read or is not one JSON alert (alert_format must be json)
    4  an event could not be written to the Wazuh queue socket
    5  unexpected internal error (traceback in the log, token masked)
    6  preflight (--check-options, --check-connection): our own set-up is not usable
    7  preflight (--check-connection): OpenCTI could not be reached, or refused the check query
The preflight checks (preflight.py) print one line per problem on stdout and write nothing else.
Standard library only; Python 3.9 to 3.12 (Wazuh 4.13 embeds 3.10).
"""
import sys
import time

from socstack_core import jsonio
from socstack_core.log import Log, Masker, end_process

from .observables import dig, extract_observables, source_context
from .settings import (
    EXIT_BAD_ALERT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_QUEUE,
    EXIT_USAGE,
    OPTIONS,
    PROG,
    QUEUE_GRACE,
    LookupFailed,
    UsageError,
    graphql_url,
    load_options,
    parse_argv,
    safe_url,
    token_for,
)

__all__ = ["AlertError", "load_alert", "lookup", "main", "run"]


class AlertError(Exception):
    """The alert file is missing or is not one JSON alert."""


def load_alert(path):
    """The alert integratord wrote for this run."""
    if not path:
        raise AlertError("integratord passed no alert file (it could not create one)")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise AlertError(f"cannot read alert file {path}: {exc.strerror or exc}") from None
    try:
        alert = jsonio.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise AlertError(f"alert file {path} is not JSON (set <alert_format>json</alert_format>)") from None
    if not isinstance(alert, dict):
        raise AlertError(f"alert file {path} does not hold one JSON object")
    return alert


def lookup(observables, args, options, log, deadline):
    """[(observable, result)]: from the cache, and for the rest ONE request to OpenCTI. Raises LookupFailed."""
    from .cache import ResultCache  # noqa: PLC0415 -- only runs that have something to look up

    cache = ResultCache(options["state_dir"], options["cache_ttl"], options["cache_max_entries"], log)
    results = {}
    missing = []
    for obs in observables:
        cached = cache.get(obs)
        if cached is None:
            missing.append(obs)
        else:
            results[obs] = cached
    log.debug(f"cache: {len(results)} hit(s), {len(missing)} to look up")
    if missing:
        from . import answer, graphql  # noqa: PLC0415 -- only runs that ask OpenCTI

        variables = graphql.build_variables(missing)
        log.debug(f"OpenCTI request variables: {jsonio.dumps(variables)}")
        endpoint = graphql.endpoint_for(args.hook_url, options)
        status, raw = graphql.post(endpoint, args.api_key, variables, args.timeout, deadline)
        raw = log.masker.mask_bytes(raw)  # before any text of it is cut into an error event
        for obs, result in answer.read_answer(status, raw, missing).items():
            results[obs] = result
            cache.put(obs, result)
        cache.save()
    return [(obs, results[obs]) for obs in observables]


def enrich(args, options, log, started):
    """Process the alert; returns the exit code."""
    try:
        alert = load_alert(args.alert_file)
    except AlertError as exc:
        log.error(str(exc))
        return EXIT_BAD_ALERT
    observables = extract_observables(alert, options["max_observables"], log)
    alert_id, rule_id = alert.get("id"), dig(alert, "rule.id")
    if not observables:
        log.debug(f"alert {alert_id} (rule {rule_id}): nothing to look up")
        return EXIT_OK
    log.debug(f"alert {alert_id} (rule {rule_id}): observables {[tuple(o) for o in observables]}")
    from . import ranking  # noqa: PLC0415

    source = source_context(alert)
    request_deadline = started + args.timeout
    try:
        results = lookup(observables, args, options, log, request_deadline)
        events = ranking.build_events(results, source, graphql_url(args.hook_url)[: -len("/graphql")], options)
    except LookupFailed as exc:
        message = log.masker.mask(str(exc))
        log.error(f"alert {alert_id}: {message} (OpenCTI at {safe_url(args.hook_url)})")
        events = [ranking.error_event(message, source)]
    log.debug(f"alert {alert_id}: {len(events)} event(s): {[e['event_type'] for e in events]}")
    if not events:
        return EXIT_OK
    from .wazuh_queue import QueueError, send_events  # noqa: PLC0415

    try:
        send_events(events, alert, options["queue_socket"], request_deadline + QUEUE_GRACE)
    except QueueError as exc:
        log.error(str(exc))
        return EXIT_QUEUE
    return EXIT_OK


def main(argv=None):
    """Entry point; returns the exit code and never lets a traceback out (it goes to the log, masked)."""
    started = time.monotonic()
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1].startswith("--check-"):
        from .preflight import main as preflight_main  # noqa: PLC0415 -- only the role's checks

        return preflight_main(argv)
    log = Log(PROG, OPTIONS["log_file"][1], masker=Masker())
    try:
        try:
            args = parse_argv(argv)
        except UsageError as exc:
            log.error(str(exc))
            return EXIT_USAGE
        log.masker.add(args.api_key)
        options, problems = load_options(args.options_file)
        log.debug_enabled = args.debug or options["debug"]
        log.set_path(options["log_file"])
        for problem in problems:
            log.warning(problem)
        token, problem = token_for(args, options)
        if problem:
            log.error(problem)
            return EXIT_USAGE
        log.masker.add(token)
        args.api_key = token
        return enrich(args, options, log, started)
    except Exception:  # the last line of defence: the traceback goes to the log, secrets masked
        import traceback  # noqa: PLC0415 -- only on this path

        log.error(f"unexpected error: {traceback.format_exc()}")
        return EXIT_INTERNAL
    finally:
        log.close()


def run():
    """Run main() and end the process with its exit code, skipping the interpreter's slow teardown."""
    end_process(main())
