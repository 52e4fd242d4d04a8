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

from socstack_core import clock, faults

from . import iris
from .iris import AUTH, CONFIG, ITEM_ERROR, REJECTED, TENANT, UNAVAILABLE, Failure
from .settings import EXIT_CONFIG, EXIT_REJECTED, EXIT_SPOOLED

MAX_BACKOFF = 3600
OUTAGE_STREAK = 2  # POSTs in a row answered 5xx, none accepted in between: IRIS cannot write (an outage)


class StorageError(Exception):
    """The spool could not be written; the item is kept as it was on disk (or not at all)."""


class Run:
    """What one run needs: options, log, the IRIS client and the spool; and what the run saw of IRIS.

    accepted: alerts IRIS created in this run. streak: POSTs of fresh items in a row answered 5xx;
    failed_writes: all 5xx answers to POSTs. suspects: spool paths of items whose 5xx came while IRIS had
    accepted nothing yet (counted as their own failure only once IRIS accepted another alert in the run;
    see confirm_suspects); probed: a suspect was already tried in this run while nothing was accepted.
    blocked_tenants: customers whose alerts IRIS refused in this run because the account is not linked to
    them (their other alerts wait, the others go on).
    """

    def __init__(self, options, log, client, spool):
        self.options = options
        self.log = log
        self.client = client
        self.spool = spool
        self.cache_file = f"{options['state_dir']}/lookups.json"
        self.customers_file = f"{options['state_dir']}/customers.json"
        self.accepted = 0
        self.streak = 0
        self.failed_writes = 0
        self.probed = False
        self.suspects = []
        self.blocked_tenants = set()

    def send(self, item):
        alert_id = iris.send(self.client, item, self.cache_file, self.options["cache_ttl"], self.log,
                             customers=self.options["customers"], customers_file=self.customers_file)
        self.accepted += 1
        self.streak = 0
        return alert_id

    def outage(self, failure):
        """Write the outage marker, only for a failure this run got from IRIS (not from the marker itself)."""
        if failure.kind == UNAVAILABLE and failure.contacted and self.options["outage_backoff"]:
            self.spool.set_outage(failure.reason)


def tenant_of(item):
    """The customer an item goes to: its routed name, else the payload's customer id."""
    return item.get("customer") or f"#{item['payload'].get('alert_customer_id')}"


def marked(item, now=None):
    """The item as written right before a send: its outcome is unknown until IRIS answers."""
    return dict(item, state="unknown", sent_at=time.time() if now is None else now, sent_clock=clock.stamp(),
                attempts=item.get("attempts", 0) + 1)


def in_window(item, options, now=None):
    """True while a send of unknown outcome may still be committed by IRIS (not to be looked up yet).

    Timed on the boot clock (socstack_core.clock) when the send was made during this boot: a wall clock
    stepped forward does not end the window early. Otherwise on the wall clock; a send dated in the future
    (the clock was set back across a reboot) counts as out of the window.
    """
    window = options["ambiguity_window"]
    if not window or not clock.is_time(item.get("sent_at")):
        return False
    age = clock.elapsed(item.get("sent_clock"), item["sent_at"], now)
    return age is not None and age < window


def waiting(item, log, now=None):
    """Seconds before a failed item may be tried again (0: now). Never more than its own backoff: a
    retry time further away than that (a clock set back, a corrupt value) is logged and ignored."""
    backoff, not_before = item.get("backoff") or 0, item.get("not_before") or 0
    if not_before <= 0:
        return 0
    cap = min(backoff, MAX_BACKOFF) if backoff > 0 else MAX_BACKOFF
    if backoff > 0 and item.get("failed_clock"):
        age = clock.elapsed(item["failed_clock"], not_before - backoff, now)
        if age is not None:
            return max(0.0, backoff - age)
    remaining = not_before - (time.time() if now is None else now)
    if remaining > cap:
        log.warning(f"spooled alert {item['source_ref']}: its retry time is {remaining:.0f} s away, more than its "
                    f"backoff ({cap:.0f} s; the clock was set back, or the file was edited); trying it now")
        return 0
    return max(0.0, remaining)


def _backoff(options, failures):
    base = options["retry_backoff"]
    return 0 if base == 0 else min(MAX_BACKOFF, base * 2 ** min(failures - 1, 16))


def attempt(run, held, item, already_marked=False):
    """Send one held item; returns (alert id or None, Failure or None). Raises StorageError.

    Writes the unknown mark before any network I/O (unless already_marked: in place, so it needs no free
    space), then POSTs, then settles the file: removed on success, otherwise rewritten (see settle).
    """
    spool, ref = run.spool, item["source_ref"]
    # Alert mode marks a new alert unknown before its first POST (already_marked): IRIS cannot have it yet.
    prior = "unsent" if already_marked and item.get("attempts", 0) <= 1 else item["state"]
    if not already_marked:
        item = marked(item)
        try:
            spool.mark(held, item)
        except OSError as exc:
            raise StorageError(f"cannot mark spooled alert {ref} before sending it: {exc.strerror or exc}; "
                               "it stays in the spool unsent") from None
    faults.point("deliver:marked")
    try:
        alert_id = run.send(item)
    except Failure as failure:
        faults.point("deliver:failed")
        settle(run, held, item, failure, prior)
        return None, failure
    faults.point("deliver:delivered")
    spool.done(held)
    faults.point("deliver:removed")
    return alert_id, None


def _record(run, held, settled):
    """Write a settled item back; on a full disk at least its state, in place. Raises OSError."""
    try:
        run.spool.update(held, settled)
    except OSError as exc:
        run.spool.mark(held, settled)  # needs no free space; last_error and counters are not kept
        run.log.warning(f"spooled alert {settled['source_ref']}: only its state could be recorded "
                        f"({exc.strerror or exc})")


def _reject(run, held, item, reason):
    try:
        run.spool.reject(item, reason, held)
    except OSError as exc:  # no room for the copy with its reason: move the file itself
        run.log.warning(f"rejected/ copy of alert {item['source_ref']} not written ({exc.strerror or exc}); "
                        "the spool file itself is moved there")
        run.spool.move_to_rejected(held)


def count_failure(run, held, item, reason, ambiguous):
    """An item IRIS failed on while accepting others: back off, or rejected/ once poison. Raises OSError."""
    options, ref = run.options, item["source_ref"]
    failures = item.get("failures", 0) + 1
    age = clock.elapsed(None, item.get("created")) or 0
    state = "unknown" if ambiguous else "unsent"
    if failures >= options["poison_max_attempts"] or age > options["poison_max_age"]:
        why = (f"IRIS failed on it {failures} time(s) while accepting other alerts"
               if failures >= options["poison_max_attempts"]
               else f"it is older than poison_max_age ({options['poison_max_age']} s)")
        run.log.error(f"alert {ref} moved to rejected/: {why}; last answer: {reason}")
        _reject(run, held, dict(item, state=state, failures=failures, suspect=False), reason)
        return
    backoff = _backoff(options, failures)
    _record(run, held, dict(item, state=state, last_error=reason, failures=failures, suspect=False,
                            backoff=backoff, not_before=time.time() + backoff if backoff else 0,
                            failed_clock=clock.stamp() if backoff else None))


def settle(run, held, item, failure, prior="unsent"):
    """Record a failed attempt: rejected/, or back in the spool with its state. Raises StorageError.

    prior: the item's state before this attempt. An item that was unknown and is refused because the account
    is not linked to its customer stays unknown: the lookup before this POST could not see that customer's
    alerts, so IRIS may still hold an earlier send; it is looked up again once the link is back.
    """
    log, ref = run.log, item["source_ref"]
    try:
        if failure.kind == REJECTED:
            log.error(f"IRIS rejected alert {ref}: {failure.reason}; kept in rejected/")
            _reject(run, held, item, failure.reason)
            return
        if failure.kind == ITEM_ERROR:
            run.failed_writes += 1
            run.streak += 0 if item.get("suspect") else 1
            if run.accepted:
                count_failure(run, held, item, failure.reason, failure.ambiguous)
                return
            # IRIS accepted nothing yet in this run: this may be IRIS failing on every write (an outage),
            # not this alert's fault. Not counted (see confirm_suspects); tried after the others next time.
            _record(run, held, dict(item, state="unknown" if failure.ambiguous else "unsent",
                                    last_error=failure.reason, suspect=True))
            run.spool.demote(held)
            run.suspects.append(held.path)
            return
        keep_unknown = failure.ambiguous or (failure.kind == TENANT and prior == "unknown")
        settled = dict(item, state="unknown" if keep_unknown else "unsent", last_error=failure.reason)
        if not keep_unknown:
            settled["sent_at"] = settled["sent_clock"] = None
        if settled != item:
            _record(run, held, settled)
    except OSError as exc:
        raise StorageError(f"cannot record the outcome for spooled alert {ref} ({failure.reason}): "
                           f"{exc.strerror or exc}") from None


def confirm_suspects(run):
    """Once IRIS accepted an alert in this run, the 5xx of the run's suspects were their own: count them.

    Called at the end of a run (alert or replay). Without any accepted alert nothing is counted: a
    server-wide write failure never pushes alerts towards rejected/.
    """
    if not run.accepted:
        if run.failed_writes >= OUTAGE_STREAK:
            run.outage(Failure(UNAVAILABLE, f"IRIS answered 5xx to {run.failed_writes} alerts and accepted none"))
        return
    for path in run.suspects:
        held = run.spool.claim(path)
        if held is None:
            continue
        try:
            item = run.spool.load(held)
            if item is not None and item["suspect"]:
                count_failure(run, held, item, item["last_error"], item["state"] == "unknown")
        except OSError as exc:
            run.log.warning(f"cannot record the failure of spooled alert {path}: {exc.strerror or exc}")
        finally:
            held.close()
    run.suspects = []


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
    ref = item["source_ref"]
    if tenant_of(item) in run.blocked_tenants or waiting(item, log) > 0 or (
            item["state"] == "unknown" and in_window(item, options)):
        counts["waiting"] += 1
        return False
    if item["suspect"] and not run.accepted:
        # IRIS failed on it before and has accepted nothing in this run yet: one such probe per run, so
        # that items IRIS always fails on never hold up the others (nor the run's own alert).
        if run.probed:
            counts["waiting"] += 1
            return False
        run.probed = True
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
    if item["suspect"] and (failure is None or failure.kind != ITEM_ERROR):
        run.probed = False  # only a 5xx uses up the probe (a customer not linked says nothing about IRIS)
    if failure is None:
        counts["sent"] += 1
        log.info(f"replayed alert {ref} -> IRIS alert {alert_id}")
        return None
    if failure.kind == REJECTED or held.fd is None:
        counts["rejected"] += 1
        return None
    counts["kept"] += 1
    if failure.kind == TENANT:
        run.blocked_tenants.add(tenant_of(item))
        log.error(f"spooled alert {ref} kept in the spool: {failure.reason}; the alerts of other customers go on")
        return None
    if failure.kind == ITEM_ERROR:
        log.error(f"spooled alert {ref} failed again (attempt {item['attempts'] + 1}): {failure.reason}")
        if run.streak >= OUTAGE_STREAK:
            return Failure(UNAVAILABLE, f"IRIS failed on {run.streak} alerts in a row"
                                        f"{'' if run.accepted else ' and accepted none'}: it cannot write alerts "
                                        f"now (an outage, not these alerts' fault); last answer: {failure.reason}")
        return None
    return failure


def exit_code_for(run, item, failure):
    """Log why an alert stays in the spool and return the exit code."""
    ref = item["source_ref"]
    if failure.kind in (AUTH, CONFIG, TENANT):
        run.log.error(f"alert {ref} kept in the spool: {failure.reason}")
        return EXIT_CONFIG
    if failure.kind == REJECTED:
        return EXIT_REJECTED
    run.outage(failure)
    what = "IRIS may have it; it is looked up before any resend" if failure.ambiguous else "IRIS did not take it"
    run.log.error(f"alert {ref} kept in the spool: {what}: {failure.reason}")
    return EXIT_SPOOLED
