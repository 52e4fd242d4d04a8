"""Delivery: the state machine that gets every alert into IRIS exactly once. docs/forwarder.md, "Delivery".

An item's file is in the spool, locked by the process working on it, before any network I/O:

    unsent  --(mark: state unknown, sent_at, written before the POST)-->  unknown
    unknown --POST answered success-->                                   removed (delivered)
    unknown --definite failure (nothing sent, 401/403/4xx...)-->         unsent, or rejected/
    unknown --unknown outcome (timeout/reset after sending, 2xx without
              IRIS's envelope, 500/502/504), or the process died-->      stays unknown
    unknown --ambiguity_window passed, GET /alerts/filter finds it-->    removed (duplicate avoided)
    unknown --ambiguity_window passed, IRIS says it does not have it-->  unsent (and sent again)

A drain never touches a file another live process holds (flock), never re-POSTs an unknown item
before the window and the lookup, skips items whose per-item backoff (not_before) has not passed,
and counts only the items it actually tried against replay_max_per_run, so items IRIS keeps failing
never starve newer ones. An item that failed with 5xx poison_max_attempts times, or that is older
than poison_max_age, goes to rejected/ with one ERROR line.
"""
import time

from socstack_core import faults

from . import iris
from .iris import AUTH, CONFIG, ITEM_ERROR, REJECTED, UNAVAILABLE, Failure
from .settings import EXIT_CONFIG, EXIT_REJECTED, EXIT_SPOOLED

MAX_BACKOFF = 3600


class StorageError(Exception):
    """The spool could not be written; the item is kept as it was on disk (or not at all)."""


class Run:
    """What one run needs: options, log, the IRIS client and the spool."""

    def __init__(self, options, log, client, spool):
        self.options = options
        self.log = log
        self.client = client
        self.spool = spool
        self.cache_file = f"{options['state_dir']}/lookups.json"
        self.customers_file = f"{options['state_dir']}/customers.json"

    def send(self, item):
        return iris.send(self.client, item, self.cache_file, self.options["cache_ttl"], self.log,
                         customers=self.options["customers"], customers_file=self.customers_file)

    def outage(self, failure):
        if failure.kind == UNAVAILABLE and self.options["outage_backoff"]:
            self.spool.set_outage(failure.reason)


def marked(item, now=None):
    """The item as written right before a send: its outcome is unknown until IRIS answers."""
    return dict(item, state="unknown", sent_at=time.time() if now is None else now,
                attempts=item.get("attempts", 0) + 1)


def in_window(item, options, now):
    """True while a send of unknown outcome may still be committed by IRIS (not to be looked up yet)."""
    sent_at = item.get("sent_at")
    if not isinstance(sent_at, (int, float)) or isinstance(sent_at, bool):
        return False
    window = options["ambiguity_window"]
    return -window < now - sent_at < window  # a clock set back by more than the window ends it too


def _backoff(options, failures):
    base = options["retry_backoff"]
    return 0 if base == 0 else min(MAX_BACKOFF, base * 2 ** min(failures - 1, 16))


def attempt(run, held, item, already_marked=False):
    """Send one held item; returns (alert id or None, Failure or None). Raises StorageError.

    Writes the unknown mark before any network I/O (unless already_marked), then POSTs, then settles
    the file: removed on success, otherwise rewritten with what the failure tells (see settle).
    """
    spool, ref = run.spool, item["source_ref"]
    if not already_marked:
        item = marked(item)
        try:
            spool.update(held, item)
        except OSError as exc:
            raise StorageError(f"cannot mark spooled alert {ref} before sending it: {exc.strerror or exc}; "
                               "it stays in the spool unsent") from None
    faults.point("deliver:marked")
    try:
        alert_id = run.send(item)
    except Failure as failure:
        faults.point("deliver:failed")
        settle(run, held, item, failure)
        return None, failure
    faults.point("deliver:delivered")
    spool.done(held)
    faults.point("deliver:removed")
    return alert_id, None


def settle(run, held, item, failure):
    """Record a failed attempt: rejected/, or back in the spool with its state. Raises StorageError."""
    spool, log, options, ref = run.spool, run.log, run.options, item["source_ref"]
    now = time.time()
    try:
        if failure.kind == REJECTED:
            log.error(f"IRIS rejected alert {ref}: {failure.reason}; kept in rejected/")
            spool.reject(item, failure.reason, held)
            return
        failures = item.get("failures", 0) + (failure.kind == ITEM_ERROR)
        if failure.kind == ITEM_ERROR and (failures >= options["poison_max_attempts"]
                                           or now - item.get("created", now) > options["poison_max_age"]):
            why = (f"IRIS failed on it {failures} time(s)" if failures >= options["poison_max_attempts"]
                   else f"it is older than poison_max_age ({options['poison_max_age']} s)")
            log.error(f"alert {ref} moved to rejected/: {why}; last answer: {failure.reason}")
            spool.reject(dict(item, state="unknown" if failure.ambiguous else "unsent"), failure.reason, held)
            return
        settled = dict(item, state="unknown" if failure.ambiguous else "unsent", last_error=failure.reason,
                       failures=failures,
                       not_before=now + _backoff(options, failures) if failure.kind == ITEM_ERROR else 0)
        if not failure.ambiguous:
            settled["sent_at"] = None
        if settled != item:
            spool.update(held, settled)
    except OSError as exc:
        raise StorageError(f"cannot record the outcome for spooled alert {ref} ({failure.reason}): "
                           f"{exc.strerror or exc}") from None


def drain(run, stop_at, own=None):
    """Send spooled items, oldest first, within the budget. Caller holds the drain lock.

    Returns the Failure that stopped the drain (UNAVAILABLE, AUTH or CONFIG), or None. Raises
    StorageError when the spool cannot be written.
    """
    spool, log, options = run.spool, run.log, run.options
    spool.cleanup_temp()
    spool.enforce_bound()
    counts = {"sent": 0, "already present": 0, "rejected": 0, "kept": 0, "waiting": 0}
    tried = 0
    stop = None
    for path in spool.pending():
        if tried >= options["replay_max_per_run"] or time.monotonic() >= stop_at:
            break
        if own is not None and path == own.path:
            continue
        held = spool.claim(path)
        if held is None:
            continue  # another live process is sending it, or it is gone
        try:
            stop = _drain_one(run, held, counts)
        finally:
            held.close()
        if stop is not False:
            tried += 1
        if stop:
            break
    stop = stop or None
    spool.enforce_bound()  # items added while this drain held the lock
    if any(counts[key] for key in ("sent", "already present", "rejected", "kept")):
        log.info(f"spool drain: {counts['sent']} sent, {counts['already present']} already present, "
                 f"{counts['rejected']} rejected, {counts['waiting']} waiting for their retry time, "
                 f"{len(spool.pending())} in the spool" + (f"; stopped: {stop.reason}" if stop else ""))
    return stop


def _drain_one(run, held, counts):
    """Handle one claimed item; returns False (not tried), None (tried, go on) or the stopping Failure."""
    spool, log, options = run.spool, run.log, run.options
    item = spool.load(held)
    if item is None:
        return False
    ref, now = item["source_ref"], time.time()
    if item["not_before"] > now or (item["state"] == "unknown" and in_window(item, options, now)):
        counts["waiting"] += 1
        return False
    try:
        if item["state"] == "unknown":
            faults.point("drain:lookup")
            existing = iris.find_existing(run.client, ref)
            if existing is not None:
                spool.done(held)
                counts["already present"] += 1
                log.info(f"spooled alert {ref} is already IRIS alert {existing}; not sent again")
                return None
    except Failure as failure:
        return failure if failure.kind in (UNAVAILABLE, AUTH, CONFIG) else None
    alert_id, failure = attempt(run, held, item)
    if failure is None:
        counts["sent"] += 1
        log.info(f"replayed alert {ref} -> IRIS alert {alert_id}")
        return None
    if failure.kind == REJECTED or held.fd is None:
        counts["rejected"] += 1
        return None
    counts["kept"] += 1
    if failure.kind == ITEM_ERROR:
        log.error(f"spooled alert {ref} failed again (attempt {item['attempts'] + 1}): {failure.reason}")
        return None
    return failure


def exit_code_for(run, item, failure):
    """Log why an alert stays in the spool and return the exit code."""
    ref = item["source_ref"]
    if failure.kind in (AUTH, CONFIG):
        run.log.error(f"alert {ref} kept in the spool: {failure.reason}")
        return EXIT_CONFIG
    if failure.kind == REJECTED:
        return EXIT_REJECTED
    run.outage(failure)
    what = "IRIS may have it; it is looked up before any resend" if failure.ambiguous else "IRIS did not take it"
    run.log.error(f"alert {ref} kept in the spool: {what}: {failure.reason}")
    return EXIT_SPOOLED
