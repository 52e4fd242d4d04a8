"""Forward Wazuh alerts to DFIR-IRIS exactly once, with an on-disk spool for the times IRIS cannot take them.

wazuh-integratord runs the launcher custom-wazuh_iris.py, which imports this package (its bytecode
comes precompiled from __pycache__) and calls run(). Modules, one concern each:

- settings: the command line integratord builds, the options and their defaults, exit codes;
- alert: the Wazuh alert file -> the IRIS alert and its spool item;
- iris: the IRIS API client, what each answer means (Failure kinds), severity/status lookups;
- spool: the files under state_dir (spool/, rejected/, locks, outage marker);
- delivery: the state machine that sends, settles and drains (docs/forwarder.md, "Delivery");
- preflight: --check-connection, which checks the configuration against IRIS and changes nothing;
- this file: alert and replay mode, where the URL and key come from, and the entry point.

Exit codes: 0 delivered (or nothing to do), 1 internal error, 2 IRIS unavailable or outcome unknown
(alert kept in the spool), 3 bad alert input, 4 rejected by IRIS (kept in rejected/), 5 configuration
or authorisation error (alert kept in the spool), 6 alert lost (IRIS did not take it and the spool
could not be written), 7 the spool could not be written (the log line says whether the alert was
delivered or is waiting). Standard library only.
"""
import os
import sys
import time

from socstack_core import faults
from socstack_core.log import Log, Masker, end_process
from socstack_core.options import problems as option_problems

from .alert import (
    BadInput,
    bound_content,
    build_alert,
    iris_event_time,
    level_of,
    new_item,
    read_alert,
    severity_for_level,
    source_ref_for,
)
from .delivery import Run, StorageError, attempt, confirm_suspects, drain, exit_code_for, marked
from .iris import CONFIG, UNAVAILABLE, Failure, Iris
from .routing import route
from .settings import (
    DEFAULT_TIMEOUT,
    EXIT_BAD_INPUT,
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_LOST,
    EXIT_OK,
    EXIT_SPOOLED,
    EXIT_STORAGE,
    OPTIONS,
    PROG,
    KeyFileError,
    UsageError,
    default_options,
    load_options,
    parse_args,
    read_api_key,
)
from .spool import Spool

__all__ = ["BadInput", "Failure", "Iris", "Spool", "UsageError", "bound_content", "build_alert", "default_options",
           "iris_event_time", "load_options", "main", "new_item", "parse_args", "read_alert", "run",
           "severity_for_level", "source_ref_for"]


def _bad_input(spool, log, exc):
    kept = ""
    if len(exc.args) > 1 and exc.args[1]:
        try:
            kept = f"; its first bytes are kept in {spool.keep_unparsed(exc.args[1])}"
        except OSError as error:
            kept = f"; it could not be kept: {error.strerror or error}"
    log.error(f"bad alert input: {exc.args[0]}{kept}")
    return EXIT_BAD_INPUT


def _without_spool(run, item, error, blocked):
    """The spool cannot take the alert: send it without write-ahead when possible, and say so loudly."""
    ref, log = item["source_ref"], run.log
    why = f"the spool in {run.spool.dir} cannot be written ({error.strerror or error})"
    if blocked is None:
        try:
            alert_id = run.send(item)
        except Failure as failure:
            blocked = failure
        else:
            log.error(f"alert {ref} -> IRIS alert {alert_id}, delivered WITHOUT write-ahead: {why}")
            return EXIT_STORAGE
    log.error(f"alert {ref} LOST: {blocked.reason}; and {why}")
    return EXIT_LOST


def _credentials(args, options, log):
    """(hook_url, API key) of this run: the options first, integratord's argv only when they are unset.

    Raises KeyFileError when api_key_file is set but gives no key (the argv key is then NOT used: a
    broken key file must be noticed, not papered over by an old <api_key>).
    """
    url = options["hook_url"] or args.hook_url
    if options["api_key_file"]:
        key = read_api_key(options["api_key_file"])
        log.masker.add(key)
        source = f"api_key_file {options['api_key_file']}"
        if args.api_key:
            source += " (the API_KEY argument is ignored)"
    else:
        key, source = args.api_key, "the API_KEY argument (no api_key_file option)"
    log.debug(f"hook_url from {'the options' if options['hook_url'] else 'the HOOK_URL argument'}; "
              f"API key from {source}")
    return url, key


def _client(args, options, log, deadline):
    """(Iris client, None) or (None, Failure saying why there is none)."""
    try:
        url, key = _credentials(args, options, log)
    except KeyFileError as exc:
        return None, Failure(CONFIG, str(exc))
    if not key or not url:
        return None, Failure(CONFIG, "no API key or hook_url was given (set the options api_key_file and hook_url)")
    try:
        return Iris(url, key, timeout=args.timeout, retries=args.retries, deadline=deadline,
                    options=options, log=log), None
    except ValueError as exc:
        return None, Failure(CONFIG, f"bad configuration: {exc}")


def run_alert(args, options, log):
    """integratord mode: the alert goes to the spool first, then the backlog drains, then it is sent."""
    started = time.monotonic()
    spool = Spool(options, log)
    try:
        alert, notes = read_alert(args.alert_file)
    except BadInput as exc:
        return _bad_input(spool, log, exc)
    for note in notes:
        log.warning(f"alert {alert.get('id', '?')}: {note}")
    payload = build_alert(alert, options, log, notes)
    customer, why = route(alert, options)
    item = new_item(payload, severity_for_level(level_of(alert), options["severity_by_level"]), options["status"],
                    customer=customer)
    ref = item["source_ref"]
    log.debug(f"alert {ref} routed: {why}")

    client, blocked = _client(args, options, log, started + options["replay_max_seconds"] + 3 * args.timeout)
    run = Run(options, log, client, spool)
    if blocked is None:
        since = spool.recent_outage(options["outage_backoff"])
        if since is not None:
            blocked = Failure(UNAVAILABLE, f"IRIS was unavailable {since:.0f} s ago; not retried before "
                                           f"outage_backoff ({options['outage_backoff']} s)", contacted=False)
    backlog = bool(spool.pending())
    send_first = blocked is None and not backlog
    if send_first:
        item = marked(item)
    faults.point("alert:writing")
    try:
        held = spool.add(item)  # write-ahead: from here on a kill loses nothing
    except OSError as exc:
        return _without_spool(run, item, exc, blocked)
    faults.point("alert:spooled")
    try:
        if blocked is not None:
            if backlog:
                spool.trim()  # no drain follows to keep the spool within its bound
            return exit_code_for(run, item, blocked)
        if backlog:
            stop = _drain_first(run, started, held)
            if stop is not None:
                return exit_code_for(run, item, Failure(stop.kind, f"not tried: {stop.reason}",
                                                        contacted=stop.contacted))
        alert_id, failure = attempt(run, held, item, already_marked=send_first)
        if failure is not None:
            return exit_code_for(run, item, failure)
        spool.clear_outage()
        log.info(f"alert {ref} -> IRIS alert {alert_id} ({(time.monotonic() - started) * 1000:.0f} ms)")
        return EXIT_OK
    except StorageError as exc:
        log.error(f"alert {ref}: {exc}")
        return EXIT_STORAGE
    finally:
        held.close()
        if run.suspects:
            confirm_suspects(run)


def _drain_first(run, started, held):
    """Drain the backlog before the new alert, unless another process is at it; returns the stop Failure."""
    lock = run.spool.drain_lock()
    if lock is None:
        run.log.info("another process is draining the spool; sending this alert directly")
        return None
    try:
        return drain(run, started + run.options["replay_max_seconds"], own=held)
    finally:
        os.close(lock)


def run_replay(args, options, log):
    """Timer mode: drain the spool (the options file gives hook_url and api_key_file)."""
    started = time.monotonic()
    spool = Spool(options, log)
    if not spool.pending():
        log.debug("spool empty; nothing to replay")
        return EXIT_OK
    if not options["hook_url"] or not options["api_key_file"]:
        log.error("replay needs the options hook_url and api_key_file; spooled alerts left in place")
        return EXIT_CONFIG
    args.timeout, args.retries = DEFAULT_TIMEOUT, 0
    client, blocked = _client(args, options, log, started + options["replay_max_seconds"] + DEFAULT_TIMEOUT)
    if blocked is not None:
        log.error(blocked.reason)
        return EXIT_CONFIG
    lock = spool.drain_lock()
    if lock is None:
        log.info("another process is draining the spool; replay skipped")
        return EXIT_OK
    run = Run(options, log, client, spool)
    try:
        stop = drain(run, started + options["replay_max_seconds"])
        confirm_suspects(run)
    except StorageError as exc:
        log.error(f"replay stopped: {exc}")
        return EXIT_STORAGE
    finally:
        os.close(lock)
    if stop is None:
        spool.clear_outage()
        return EXIT_OK
    if stop.kind == UNAVAILABLE:
        run.outage(stop)
        log.error(f"replay stopped, IRIS unavailable: {stop.reason}")
        return EXIT_SPOOLED
    log.error(f"replay stopped: {stop.reason}")
    return EXIT_CONFIG


def check_options(path):
    """--check-options: one line per problem on stdout; exit 0 when there is none."""
    found = option_problems(path, OPTIONS)
    for problem in found:
        sys.stdout.write(f"{path}: {problem}\n")
    return EXIT_CONFIG if found else EXIT_OK


def main(argv=None):
    """Entry point; returns the exit code and never lets a traceback out."""
    argv = sys.argv if argv is None else argv
    masker = Masker()
    log = Log(PROG, OPTIONS["log_file"][1], masker=masker)
    try:
        try:
            args = parse_args(argv)
        except UsageError as exc:
            log.error(f"unknown argument layout: {exc}; nothing sent")
            return EXIT_CONFIG
        if args.check_options:
            return check_options(args.options_file)
        if args.check_connection:
            from .preflight import check_connection  # noqa: PLC0415 -- not loaded on the per-alert path

            log.set_path(None)  # a check writes no file: its own lines go to stdout, a crash's to stderr
            return check_connection(args.options_file, debug=args.debug, log=log)
        masker.add(args.api_key)
        options, problems = load_options(args.options_file)
        log.debug_enabled = args.debug or options["debug"]
        log.set_path(options["log_file"])
        for problem in problems:
            log.warning(problem)
        if args.replay:
            return run_replay(args, options, log)
        return run_alert(args, options, log)
    except Exception as exc:  # the last line of defence: one log line instead of a traceback
        log.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
    finally:
        if log.last_error:
            try:
                sys.stderr.write(f"{PROG}: {log.last_error[:300]}\n")
            except (OSError, ValueError):
                pass
        log.close()


def run():
    """Run main() and end the process with its exit code, skipping the interpreter's slow teardown."""
    end_process(main())  # the log is closed and nothing else is buffered
