"""The claim protocol (docs/ai-worker.md, "The claim protocol"): a lease in the alert's tags, written
so that two workers cannot both win, every write started inside the lease, and healing of the one
case no lease without compare-and-swap can exclude (a pause between the last check and a write).

Fault points (socstack_core.faults), in the order a claimed alert meets them: ``ai_worker:claim:send``
before the claim write; before the comment, ``ai_worker:comment:read`` (the alert was re-read, the
claim and lease not yet checked again) and ``ai_worker:comment:send`` (all checked, the POST is next);
``ai_worker:comment:posted`` after it, before healing; before each tag update, ``ai_worker:update:read``
and ``ai_worker:update:send`` likewise.
"""
import math
import secrets
import time

from socstack_core import faults

from .heal import Suspects, heal
from .iris import ServiceError
from .tags import (
    ATTEMPTS_PREFIX,
    ERROR_PREFIX,
    OUTCOMES,
    ROUND_PREFIX,
    TAG_FAILED,
    TAG_PENDING,
    TAKEOVERS_PREFIX,
    ClaimToken,
    claim_tags,
    comment_round,
    counter,
    error_kind,
    join_tags,
    split_tags,
    tag_value,
    with_claim,
    with_tag_value,
    without_claims,
)


def unservable_reason(exc):
    """Why IRIS cannot serve this one alert (an HTTP 5xx answer, or an answer over the size the worker reads),
    or None for a failure that says nothing about the alert (timeout, refused, 4xx)."""
    if exc.status is not None and exc.status >= 500:
        return f"IRIS answers HTTP {exc.status} for it"
    if exc.transport is not None and "larger than" in str(exc.transport.reason):
        return "too large to read"
    return None


class LeaseExpired(Exception):
    """Our claim may be stale by now: another worker may take the alert over, so we must not write."""


class ClaimLost(Exception):
    """Our claim is no longer on the alert (taken over, or removed by hand): we must not write."""


class Claim:
    """A claim this worker wrote; ``sent`` and ``acked`` are monotonic times of the claim write."""

    def __init__(self, alert, token, sent, acked, takeover, *, unservable=None):
        self.alert = alert
        self.token = token
        self.sent = sent
        self.acked = acked
        self.takeover = takeover
        self.unservable = unservable  # why IRIS could not serve the whole alert (then ``alert`` is its state)
        self.new_round = False  # this claim wrote the round's id: no comment of the round can exist yet
        self.state = None  # the alert's state from the batch read-back (confirm_all)

    @property
    def alert_id(self):
        return int(self.alert["alert_id"])


class Claims:
    """Claiming, confirming and writing under the lease, for one worker."""

    def __init__(self, config, iris, log, clock, monotonic=time.monotonic, *, suspects=None, sleep=time.sleep):
        self.config = config
        self.iris = iris
        self.log = log
        self.clock = clock  # ClockCheck: IRIS's clock as known here
        self.monotonic = monotonic
        self.sleep = sleep
        self.suspects = suspects if suspects is not None else Suspects(None, config.instance)
        self.future_seen = {}  # claim tag stamped in the future -> IRIS time it was first seen

    # -- reading claims

    def is_stale(self, claim_tag):
        """A claim is stale once it is older than the TTL. One stamped further in the future than the
        allowed skew came from a wrong clock: it is stale once it has been seen for the TTL (IRIS's clock)."""
        now = self.clock.wall()
        epoch = ClaimToken.parse(claim_tag).epoch
        if now - epoch > self.config.claim_ttl:
            return True
        if epoch - now <= self.config.clock_skew:
            return False
        iris_now = self.clock.iris_now()
        first = self.future_seen.get(claim_tag)
        if first is None:
            self.future_seen = {t: s for t, s in self.future_seen.items() if iris_now - s <= 2 * self.config.claim_ttl}
            self.future_seen[claim_tag] = first = iris_now
            self.log.warning(f"claim {claim_tag} is stamped {epoch - now:.0f}s in the future (a worker with a wrong "
                             f"clock?): it is taken for stale {self.config.claim_ttl:g}s after it was first seen")
        return iris_now - first > self.config.claim_ttl

    # -- claiming

    def read_still_fresh(self, read_sent):
        """A claim may only be written within claim_timeout of sending the read it is based on."""
        return self.monotonic() - read_sent <= self.config.claim_timeout

    def claim(self, alert_id):
        """Read the alert and write our claim tag if it is free (or its claim is stale); the Claim or None."""
        timeout = self.config.claim_timeout
        read_sent = self.monotonic()
        unservable = None
        try:
            alert = self.iris.alert(alert_id, timeout=timeout)
        except ServiceError as exc:
            unservable = unservable_reason(exc)
            if unservable is None:
                self.log.info(f"alert {alert_id}: not claimed, read failed: {exc}")
                return None
            # IRIS cannot serve this alert whole (HTTP 5xx, or larger than the worker reads): claim it on
            # its bounded state (tags, owner, customer) so that it is counted and never holds the queue.
            read_sent = self.monotonic()
            try:
                alert = self.iris.alert_state(alert_id, timeout=timeout)
            except ServiceError as again:
                self.log.info(f"alert {alert_id}: not claimed, read failed: {exc}; state read: {again}")
                return None
        tags = split_tags(alert.get("alert_tags"))
        if TAG_PENDING not in tags:
            return None
        if self._healed(alert, "a late write"):
            return None  # a stale write had put it back (or lost an analyst's change): put right, not claimed
        held = claim_tags(tags)
        if any(not self.is_stale(tag) for tag in held):
            return None
        if held:
            tags = with_tag_value(tags, TAKEOVERS_PREFIX, counter(tags, TAKEOVERS_PREFIX) + 1)
        new_round = not tag_value(tags, ROUND_PREFIX)
        if new_round:
            tags = with_tag_value(tags, ROUND_PREFIX, secrets.token_hex(4))
        # Rounded up: a stamp can only make the claim look younger to others, never older than it is.
        token = ClaimToken(self.config.instance, math.ceil(self.clock.wall()), secrets.token_hex(4))
        tags = with_claim(tags, token)
        if not self.read_still_fresh(read_sent):
            self.log.info(f"alert {alert_id}: not claimed, more than {timeout:g}s since the read")
            return None
        faults.point("ai_worker:claim:send")
        self.suspects.sending(alert_id, token=token.tag())  # given up unless acknowledged in time
        sent = self.monotonic()
        try:
            answer = self.iris.set_tags(alert, tags, timeout=timeout)
        except ServiceError as exc:
            self.log.info(f"alert {alert_id}: claim write failed: {exc} (if it lands later, it is undone)")
            return None
        acked = self.monotonic()
        if acked - read_sent > 2 * timeout:
            # Outside the bound the settle time is built on (a stall after the freshness check, a server
            # that answered late): another worker may have finished in between, so do not go on with it, and
            # undo the claim at once (replaying the history without it) instead of parking the alert for the TTL.
            self.log.error(f"alert {alert_id}: claim landed {acked - read_sent:.1f}s after its read (bound "
                           f"{2 * timeout:g}s); abandoning it - check host load and IRIS latency")
            if isinstance(answer, dict):
                self._healed(answer, "our abandoned claim", disowned={token.tag()})
            return None
        self.suspects.answered(alert_id, token=token.tag())
        alert["alert_tags"] = join_tags(tags)
        if held:
            self.log.info(f"alert {alert_id}: taking over stale claim {held[0]}")
        claim = Claim(alert=alert, token=token, sent=sent, acked=acked, takeover=bool(held), unservable=unservable)
        claim.new_round = new_round and not held
        return claim

    def lease_left(self, claim):
        return claim.sent + self.config.lease_seconds - self.monotonic()

    def _check_lease(self, claim):
        if self.lease_left(claim) <= 0:
            raise LeaseExpired

    def confirm_all(self, claims):
        """Wait out the settle time of the last claim of a batch and read all of them back in ONE bounded
        request (``/alerts/filter?alert_ids=…``); each claim's ``state`` is then what confirm() decides on.
        A failed read leaves them unread: confirm() reads each on its own."""
        if not claims:
            return
        delay = max(c.acked for c in claims) + self.config.settle_seconds - self.monotonic()
        if delay > 0:
            self.sleep(delay)
        try:
            states = self.iris.alert_states([c.alert_id for c in claims])
        except ServiceError as exc:
            self.log.info(f"batch read-back failed: {exc}; reading each alert back on its own")
            return
        for claim in claims:
            claim.state = states.get(claim.alert_id, {"alert_id": claim.alert_id, "alert_tags": ""})

    def confirm(self, claim, wait=None):
        """Wait out the settle time, read the alert back; return it when our claim is the only one."""
        current, claim.state = claim.state, None
        if current is None:
            delay = claim.acked + self.config.settle_seconds - self.monotonic()
            if delay > 0:
                (wait or self.sleep)(delay)
            current = self.iris.alert_state(claim.alert_id)
        tags = split_tags(current.get("alert_tags"))
        if claim_tags(tags) != [claim.token.tag()]:
            self.log.info(f"alert {claim.alert_id}: claim lost to another worker")
            return None
        if TAG_PENDING not in tags:
            self.log.info(f"alert {claim.alert_id}: no longer ai-pending (changed by hand?); giving it back")
            self.release(claim, "no longer pending")
            return None
        if self._healed(current, "a late write under our claim"):
            return None  # our claim was written on a stale read: the replay removed it
        return current

    # -- writing under the lease

    def _reread(self, claim, what):
        """The alert as it is now, checked to still carry our claim, with the lease checked right before
        the write that follows (fault points ``ai_worker:<what>:read`` and ``ai_worker:<what>:send``)."""
        self._check_lease(claim)
        current = self.iris.alert_state(claim.alert_id)
        faults.point(f"ai_worker:{what}:read")
        if claim.token.tag() not in split_tags(current.get("alert_tags")):
            self.log.warning(f"alert {claim.alert_id}: our claim disappeared; not writing")
            raise ClaimLost
        self._check_lease(claim)  # the read may have taken long, or the process stopped: check again
        faults.point(f"ai_worker:{what}:send")
        return current

    def post(self, claim, text, round_id):
        """Post this round's comment while the lease holds; then heal duplicates of the round when one can
        exist: a takeover or retry (the round is older than this claim), or a post acknowledged after the
        lease (a pause before the send). The comment is guarded by the lease, not a re-read: a claim
        removed by hand stops the next tag write, not a comment already on its way."""
        self._check_lease(claim)
        faults.point("ai_worker:comment:read")
        self._check_lease(claim)  # the process may have stopped in between: check again
        faults.point("ai_worker:comment:send")
        self.suspects.sending(claim.alert_id, round_id=round_id)  # a comment that lands late is a duplicate
        self.iris.add_comment(claim.alert_id, text)
        self.suspects.answered(claim.alert_id, round_id=round_id)
        faults.point("ai_worker:comment:posted")
        if not claim.new_round or self.lease_left(claim) <= 0:
            self.heal(claim.alert_id, round_id)

    def defer_writes(self):
        """From now on, the tag writes that end a round (finish) wait for flush(): one batch re-read right before
        them all. A failed attempt and a release are written at once (a kill must not lose a count)."""
        self.deferred = []

    def flush(self):
        """The deferred final writes: re-read their alerts in one bounded request, then write each one (lease,
        claim and fault points checked per alert as in rewrite). Errors are logged per alert."""
        pending, self.deferred = self.deferred or [], None
        states = {}
        if pending:
            try:
                states = self.iris.alert_states([c.alert_id for c, _change in pending])
            except ServiceError as exc:
                self.log.info(f"batch re-read failed: {exc}; re-reading each alert on its own")
        for claim, change in pending:
            try:
                self._write(claim, change, states.get(claim.alert_id))
            except ServiceError as exc:
                self.log.warning(f"alert {claim.alert_id}: {exc} (its claim expires after the TTL)")
            except LeaseExpired:
                self.log.warning(f"alert {claim.alert_id}: lease ran out; not writing, a takeover will finish it")
            except ClaimLost:
                pass

    deferred = None

    def rewrite(self, claim, change, now=False):
        """Re-read the alert and replace its tags with change(tags minus claims and ai-processing), while our
        claim holds: every write after the claim ends it, so ai-processing goes with it. IRIS's answer holds
        the history up to our write: an analyst's change that crossed it is put back at once. In a batch
        (defer_writes) the write waits for flush()."""
        if self.deferred is not None and not now:
            self.deferred.append((claim, change))
            return
        self._write(claim, change, None)

    def _write(self, claim, change, state):
        if state is not None and claim.token.tag() in split_tags(state.get("alert_tags")):
            self._check_lease(claim)
            faults.point("ai_worker:update:read")
            self._check_lease(claim)
            faults.point("ai_worker:update:send")
            current = state
        else:
            current = self._reread(claim, "update")
        self.suspects.sending(claim.alert_id)
        answer = self.iris.set_tags(current, change(without_claims(split_tags(current.get("alert_tags")))))
        self.suspects.answered(claim.alert_id)
        if isinstance(answer, dict) and answer.get("modification_history"):
            self._healed(answer, "an edit that crossed our write")

    def _healed(self, alert, why, disowned=frozenset()):
        """heal.heal on an alert state that carries its history; True when it wrote. Never raises for IRIS."""
        if not isinstance(alert.get("modification_history"), dict) or "alert_id" not in alert:
            return False
        try:
            return heal(self.iris, alert, self.log, disowned=disowned, why=why)
        except ServiceError as exc:
            self.log.warning(f"alert {alert.get('alert_id')}: could not heal after {why}: {exc}")
            return False

    def sweep(self, limit=10):
        """Re-check the alerts of writes whose outcome is unknown (heal.Suspects): replay their history
        without our given-up claims, and delete duplicate analyses of the rounds we commented on."""
        for alert_id, tokens, rounds in self.suspects.due(limit):
            try:
                state = self.iris.alert_state(alert_id)
            except ServiceError as exc:
                self.log.info(f"alert {alert_id}: re-check after an unanswered write failed: {exc}")
                continue
            self._healed(state, "a write whose answer never came", disowned=tokens)
            for round_id in rounds:
                self.heal(alert_id, round_id)

    def finish(self, claim, outcome, reason=None):
        """End the round with ``outcome``; ai-failed keeps the reason as ``ai-error:<kind>``, any other
        outcome drops an earlier attempt's error."""
        def change(tags):
            kept = [t for t in tags if t not in OUTCOMES]
            kept = with_tag_value(kept, ERROR_PREFIX, error_kind(reason) if reason else None)
            return [*with_tag_value(kept, ROUND_PREFIX, None), outcome]

        self.rewrite(claim, change)
        self.log.info(f"alert {claim.alert_id}: tagged {outcome}")

    def fail(self, claim, reason, final=False, kind=None):
        """Count a failed attempt: back to the queue, or ai-failed once max_attempts is reached (or at once
        when ``final``: a failure that cannot change, such as an alert too large to read). The reason goes
        to the log and, as ``ai-error:<kind>``, onto the alert."""
        attempts = counter(split_tags(claim.alert.get("alert_tags")), ATTEMPTS_PREFIX) + 1
        final = final or attempts >= self.config.max_attempts

        def change(tags):
            tags = with_tag_value(with_tag_value(tags, ATTEMPTS_PREFIX, attempts), ERROR_PREFIX,
                                  error_kind(kind or reason))
            if not final:
                return tags
            return [t for t in with_tag_value(tags, ROUND_PREFIX, None) if t != TAG_PENDING] + [TAG_FAILED]

        self.log.warning(f"alert {claim.alert_id}: attempt {attempts} failed ({reason}); now "
                         f"{TAG_FAILED if final else TAG_PENDING}")
        self.rewrite(claim, change, now=True)  # a counted attempt is never left to a batch a kill can lose

    def release(self, claim, why):
        """Give the alert back: our claim removed, ai-pending kept, no attempt counted."""
        self.rewrite(claim, lambda tags: tags, now=True)
        self.log.info(f"alert {claim.alert_id}: released ({why})")

    def release_if_mine(self, claim, why):
        """Release a claimed alert that was not started, once the claim proves to be ours."""
        if self.confirm(claim) is not None:
            self.release(claim, why)

    # -- the round's commit record

    def round_comments(self, alert_id, round_id):
        """This round's analysis comments on the alert, healed: at most one remains (the lowest id)."""
        mine = [c for c in self.iris.comments(alert_id) if comment_round(c) == round_id]
        if len(mine) <= 1:
            return mine
        mine.sort(key=lambda c: int(c.get("comment_id") or 0))
        for extra in mine[1:]:
            deleted = self.iris.delete_comment(alert_id, extra["comment_id"])
            self.log.warning(f"alert {alert_id}: round {round_id} had {len(mine)} analyses; comment "
                             f"{extra['comment_id']} {'deleted' if deleted else 'was already deleted'}, "
                             f"comment {mine[0]['comment_id']} kept")
        return mine[:1]

    def heal(self, alert_id, round_id):
        """round_comments after our own post; a failure is logged (the next takeover or retry heals)."""
        try:
            self.round_comments(alert_id, round_id)
        except ServiceError as exc:
            self.log.warning(f"alert {alert_id}: could not check round {round_id} for duplicates: {exc}")
