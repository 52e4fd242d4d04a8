"""The worker's loop: poll, claim, analyse, comment, tag (docs/ai-worker.md, "What it does to an alert")."""
import threading
import time

from socstack_core.jsonio import encodable
from socstack_core.log import Log, Masker

from .claims import ClaimLost, Claims, LeaseExpired
from .clock import ClockCheck
from .dedup import DedupStore, RateLimiter, dedup_key
from .heal import Suspects
from .iris import IrisClient, ServiceError
from .ollama import OllamaClient, OllamaOutage, OllamaUnavailable
from .prompt import AnalysisError, allowlist_reason, build_prompt, parse_analysis, render_comment
from .redaction import Redactor
from .settings import PROG, WRITES_AFTER_CLAIM
from .tags import (
    ATTEMPTS_PREFIX,
    ROUND_PREFIX,
    TAG_FAILED,
    TAG_PENDING,
    TAG_REVIEWED,
    TAG_SKIPPED,
    TAKEOVERS_PREFIX,
    claim_tags,
    counter,
    split_tags,
    tag_value,
)

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
# Batches a running worker claims ahead of the one it handles: their settle times pass while the model
# works, so that a fast model is not held up by the settle time (issue 23, the benchmark).
LOOKAHEAD = 3


def internal_error(exc):
    """A bug's description for the log: its type and where it was raised, never its message (which may hold
    alert content)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f" at {frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else ""
    return f"internal error {type(exc).__name__}{where}"


def service_error_kind(exc):
    """ai-error kind of a ServiceError: ``iris-http-500``, ``model-http-400``, ``iris-no-answer`` ..."""
    side = "model" if str(exc).startswith("Ollama") else "iris"
    return f"{side}-http-{exc.status}" if exc.status else f"{side}-no-answer"


class LevelLog(Log):
    """socstack_core's Log (masked, one line per event, never raises) that drops lines below a level."""

    def __init__(self, level="INFO", **kwargs):
        super().__init__(PROG, None, debug=level == "DEBUG", **kwargs)
        self.threshold = _LEVELS.get(level, 20)

    def write(self, level, message):
        if _LEVELS.get(level, 40) >= self.threshold:
            super().write(level, message)


class Background:
    """Run one call in a daemon thread so the main loop can stop waiting for it (SIGTERM)."""

    def __init__(self, function):
        self.result = None
        self.error = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(function,), daemon=True).start()

    def _run(self, function):
        try:
            self.result = function()
        except Exception as exc:  # reported to the main loop, which decides
            self.error = exc
        finally:
            self.done.set()


class Worker:
    """Poll, claim, analyse, comment, tag. One instance per process (or per thread in tests)."""

    def __init__(self, config, iris, ollama, dedup, log, *, wall=time.time, monotonic=time.monotonic,
                 sleep=time.sleep):
        self.config = config
        self.iris = iris
        self.ollama = ollama
        self.dedup = dedup
        self.log = log
        self.redactor = Redactor(config.redact_patterns, config.redact_emails, config.redact_ips,
                                 max_chars=config.max_prompt_chars)
        self.rate = RateLimiter(config.max_per_minute)
        self.outage = OllamaOutage(config.backoff_min, config.backoff_max, log)
        self.clock = ClockCheck(config.clock_skew / 2, log, wall=wall)
        suspects = Suspects(config.state_dir, config.instance, wall=wall)
        self.claims = Claims(config, iris, log, self.clock, monotonic=monotonic, suspects=suspects, sleep=sleep)
        self.stop_event = threading.Event()
        self.stop_requested_at = None
        self.first_seen = {}  # alert id -> monotonic time this worker first saw it waiting
        self.helping = set()  # other instances whose share this one has been helping (logged once)
        self.deferred = set()  # alerts whose own model call met an outage: tried after the others
        # run_forever pipelines: the next batch is claimed before the current one is processed, so its
        # settle time passes while the model works on the current batch (run_cycle alone does not).
        self.pipelined = False
        self.carry = []  # batches claimed ahead (at most LOOKAHEAD + 1), waiting out their settle time

    @classmethod
    def from_config(cls, config, log=None, **clocks):
        if log is None:
            log = LevelLog(config.log_level, masker=Masker([config.iris_bearer]))
        iris = IrisClient(config, wall=clocks.get("wall", time.time), masker=getattr(log, "masker", None))
        return cls(config, iris, OllamaClient(config), DedupStore(config.state_dir, config.dedup_window, log), log,
                   **clocks)

    # -- control

    def request_stop(self):
        """Finish or release the current alert, release the rest, then return from run_forever."""
        if not self.stop_event.is_set():
            self.stop_requested_at = time.monotonic()
            self.stop_event.set()

    def run_forever(self):
        config = self.config
        self.log.info(f"instance {config.instance} ({config.instance_index + 1} of {config.instances}) polling "
                      f"every {config.poll_seconds:g}s, model {config.ollama_model}")
        self.pipelined = True
        while not self.stop_event.is_set():
            try:
                busy = self.run_cycle()
            except ServiceError as exc:
                self.log.warning(f"cycle failed: {exc}")
                busy = False
            except Exception as exc:  # a bug must cost one cycle, never the process
                self.log.error(f"cycle failed: {internal_error(exc)}; polling again after the poll interval")
                busy = False
            if not busy:
                self.stop_event.wait(self._idle_seconds())
        self._release_carry("stopping")
        self.log.info("stopped")

    def _release_carry(self, why):
        """Give back the claims of a batch claimed ahead that will not be processed now."""
        carry, self.carry = [claim for batch in self.carry for claim in batch], []
        for claim in carry:
            try:
                self.claims.release_if_mine(claim, why)
            except (ServiceError, LeaseExpired, ClaimLost) as exc:
                self.log.info(f"alert {claim.alert_id}: not released ({type(exc).__name__}); its claim expires")

    def _idle_seconds(self):
        """Until the next poll, or during an Ollama outage until the next try."""
        if self.outage.active:
            return max(0.0, self.outage.retry_at - time.monotonic())
        if self.rate.available() <= 0:  # at the rate limit: only the rest of the window, not a whole poll,
            # and until a whole batch may be claimed: claims made together leave the window together, and a
            # batch of one would pay the settle time for one alert
            return min(self.config.poll_seconds, self.rate.wait_seconds(self.config.max_per_cycle))
        return self.config.poll_seconds

    def run_cycle(self):
        """One poll-claim-process round; True when it used its whole budget (more work may wait)."""
        if self.outage.active and not self._ollama_back():
            self._release_carry("Ollama unavailable")
            return False
        self.claims.sweep()  # writes whose answer never came: undo or heal what they left, if they landed
        budget = min(self.config.max_per_cycle, self.rate.available())
        claims = []
        if budget > 0 and not self.stop_event.is_set():
            candidates = self._candidates(2 * budget)
            self.clock.update(self.iris.clock_sample)  # measured on the poll that just ran
            if not self.clock.ok:
                self._release_carry("clock off")
                return False
            claims = self._claim_all(candidates, budget)
        full = budget > 0 and len(claims) >= budget
        if not self.pipelined:
            self._process_batch(claims)
            return full
        if claims:
            self.carry.append(claims)
        if not self.carry:
            return False
        oldest = self.carry[0]
        settled = max(c.acked for c in oldest) + self.config.settle_seconds <= self.claims.monotonic()
        if full and len(self.carry) <= LOOKAHEAD and not settled and not self.stop_event.is_set():
            return True  # while the oldest batch settles, claim the next one (next cycle, at once)
        if len(claims) == budget < self.config.max_per_cycle and not settled and self._slots_free_first(oldest):
            return True  # at the rate limit, a whole batch became claimable before the oldest batch settled
        self._process_batch(self.carry.pop(0))  # the batches behind it settle meanwhile
        return True

    def _slots_free_first(self, oldest):
        """At the rate limit: when a whole batch may be claimed before the oldest claimed batch has settled, wait
        for that (stop-aware) and say so, so that the next batch settles beside the oldest, not after it was
        processed (a rate limit of N a minute then gives N a minute). False when there is nothing to wait for."""
        if self.rate.per_minute <= 0 or len(self.carry) > LOOKAHEAD or self.stop_event.is_set():
            return False
        wait = self.rate.wait_seconds(self.config.max_per_cycle)
        left = max(c.acked for c in oldest) + self.config.settle_seconds - self.claims.monotonic()
        if not 0 < wait < left:
            return False
        self.stop_event.wait(wait)
        return True

    def _claim_all(self, candidates, budget):
        claims = []
        for alert_id in candidates:
            if len(claims) >= budget or self.stop_event.is_set():
                break
            try:
                claim = self.claims.claim(alert_id)
            except Exception as exc:  # one alert's bug never stops the queue
                self.log.error(f"alert {alert_id}: not claimed: {internal_error(exc)}")
                self.deferred.add(alert_id)
                continue
            if claim:
                self.rate.spend()
                claims.append(claim)
        return claims

    def _process_batch(self, claims):
        if not claims:
            return
        first = claims[0] if not self.stop_event.is_set() else None
        if first is not None:
            self._start_first_try(first)  # the first alert's model call runs during the settle wait
        self.claims.confirm_all(claims)
        self.claims.defer_writes()
        try:
            self._handle(claims)
        finally:
            self.claims.flush()

    def _handle(self, claims):
        for claim in claims:
            try:
                if self.stop_event.is_set() and getattr(claim, "first_try", None) is None:
                    self.claims.release_if_mine(claim, "stopping")  # not started (a running model call is)
                else:
                    self._process(claim)
            except ServiceError as exc:
                self.log.warning(f"alert {claim.alert_id}: {exc} (its claim expires after the TTL)")
            except LeaseExpired:
                self.log.warning(f"alert {claim.alert_id}: lease ran out; not writing, a takeover will finish it")
            except ClaimLost:
                pass  # logged where it was found
            except Exception as exc:  # this alert's failed attempt, never the process's
                self._failed_internally(claim, exc)

    def _failed_internally(self, claim, exc):
        """An unexpected exception while handling one claimed alert: that alert's failed attempt."""
        reason = internal_error(exc)
        self.deferred.add(claim.alert_id)
        try:
            self.claims.fail(claim, reason, kind=f"internal-{type(exc).__name__}")
        except (ServiceError, LeaseExpired, ClaimLost) as again:
            self.log.error(f"alert {claim.alert_id}: {reason}; could not count the attempt: {again}")
        except Exception as again:
            self.log.error(f"alert {claim.alert_id}: {reason}; could not count the attempt: {internal_error(again)}")

    def _ollama_back(self):
        """During an outage: True once the backoff has passed and a one-token probe got an answer."""
        if time.monotonic() < self.outage.retry_at:
            return False
        job = Background(self.ollama.probe)
        if not self._wait_for(job, grace=0.0):
            return False
        if isinstance(job.error, OllamaUnavailable):
            self.outage.failed(str(job.error))
            return False
        self.outage.answered(probe=True)
        return True

    # -- choosing

    def _my_turn(self, alert_id, now):
        """Own share at once; another instance's share only after it waited takeover_grace x distance."""
        count = self.config.instances
        owner = alert_id % count
        distance = (self.config.instance_index - owner) % count
        if distance == 0:
            return True
        seen = self.first_seen.setdefault(alert_id, now)
        if now - seen < self.config.takeover_grace * distance:
            return False
        if owner not in self.helping:
            self.helping.add(owner)
            self.log.warning(f"instance {owner + 1} of {count} has left alert {alert_id} waiting for "
                             f"{now - seen:.0f}s: helping with its share (is socstack-ai-worker@{owner + 1} "
                             f"running, and is AI_WORKER_INSTANCES={count} right?)")
        return True

    def _candidates(self, wanted):
        """Ids of pending alerts this worker may claim now, oldest event first."""
        found, waiting, page, complete = [], set(), 1, False
        now = time.monotonic()
        while True:
            data = self.iris.pending_page(page)
            for item in data.get("alerts") or []:
                tags = split_tags(item.get("alert_tags"))
                if TAG_PENDING not in tags:  # the server filter is a substring match
                    continue
                if self.config.customer_ids and item.get("alert_customer_id") not in self.config.customer_ids:
                    continue  # triage only where the customer agreed to it (AI_WORKER_CUSTOMER_IDS)
                alert_id = int(item["alert_id"])
                waiting.add(alert_id)
                if any(not self.claims.is_stale(tag) for tag in claim_tags(tags)):
                    continue
                if self._my_turn(alert_id, now):
                    found.append(alert_id)
            next_page = data.get("next_page")
            if not next_page:
                complete = True
            if complete or len(found) >= wanted:
                break
            page = int(next_page)
        if complete:
            self.first_seen = {k: v for k, v in self.first_seen.items() if k in waiting}
            self.deferred &= waiting
            owners = {alert_id % self.config.instances for alert_id in self.first_seen}
            self.helping &= owners
        found.sort(key=lambda alert_id: alert_id in self.deferred)  # stable: oldest first otherwise
        return found[:wanted]

    # -- processing a claimed alert

    def _process(self, claim):
        alert, config, claims = claim.alert, self.config, self.claims
        tags = split_tags(alert.get("alert_tags"))
        settle_left = max(0.0, claim.acked + config.settle_seconds - claims.monotonic())
        needed = settle_left + config.ollama_timeout + WRITES_AFTER_CLAIM * config.iris_timeout
        if claims.lease_left(claim) < needed:
            claims.release_if_mine(claim, "too little lease left")  # let someone else finish it safely
            return
        # The limits come first: an alert that broke every earlier attempt gets no more work done on it.
        over_limit = counter(tags, TAKEOVERS_PREFIX) > config.max_takeovers or (
            counter(tags, ATTEMPTS_PREFIX) >= config.max_attempts
        )
        if over_limit or claim.unservable:
            self._give_up(claim, over_limit)
            return
        alert, key, skip_reason, earlier, prompt = self._prepare(claim)
        job, claim.first_try = getattr(claim, "first_try", None), None
        current = claims.confirm(claim)
        if current is None:
            return
        round_id = tag_value(split_tags(current.get("alert_tags")), ROUND_PREFIX) or claim.token.nonce
        try:
            if not claim.new_round and claims.round_comments(claim.alert_id, round_id):
                self.log.info(f"alert {claim.alert_id}: this round's analysis was posted by an earlier attempt")
                claims.finish(claim, TAG_REVIEWED)
            elif skip_reason:
                self.log.info(f"alert {claim.alert_id}: not sent to the model, {skip_reason}")
                claims.finish(claim, TAG_SKIPPED)
            elif earlier:
                claims.post(claim, render_comment(earlier["analysis"], round_id, config.ollama_model, earlier),
                            round_id)
                self.log.info(f"alert {claim.alert_id}: reused the analysis of alert {earlier['alert_id']}")
                claims.finish(claim, TAG_REVIEWED)
            elif self.outage.active:
                claims.release(claim, "Ollama unavailable")
            else:
                job = job or Background(lambda: self.ollama.generate(prompt))
                self._complete_with_model(claim, job, round_id, key)
        except OllamaUnavailable as exc:
            self.outage.failed(str(exc))
            self.deferred.add(claim.alert_id)
            claims.release(claim, "Ollama unavailable")
        except AnalysisError as exc:
            claims.fail(claim, str(exc), kind="bad-answer")
        except ServiceError as exc:
            claims.fail(claim, str(exc), kind=service_error_kind(exc))

    def _prepare(self, claim):
        """(alert made encodable, dedup key, allowlist reason, earlier analysis, prompt), computed once."""
        if getattr(claim, "prepared", None) is None:
            alert, notes = encodable(claim.alert)  # lone surrogates and deep nesting: replaced, never raised on
            if notes:
                self.log.info(f"alert {claim.alert_id}: " + "; ".join(notes))
            key = dedup_key(alert)
            skip_reason = allowlist_reason(alert, self.config)
            earlier = None if skip_reason else self.dedup.lookup(key, time.time())
            claim.prepared = (alert, key, skip_reason, earlier,
                              build_prompt(alert, self.redactor, self.config.max_prompt_chars))
        return claim.prepared

    def _start_first_try(self, claim):
        """Start the model call of a batch's first alert before the settle wait (a first attempt only)."""
        tags = split_tags(claim.alert.get("alert_tags"))
        config = self.config
        if (claim.unservable or claim.takeover or counter(tags, ATTEMPTS_PREFIX) or self.outage.active
                or counter(tags, TAKEOVERS_PREFIX) > config.max_takeovers):
            return
        try:
            _alert, _key, skip_reason, earlier, prompt = self._prepare(claim)
        except Exception:  # handled (and counted) when the alert itself is processed
            return
        if not (skip_reason or earlier):
            claim.first_try = Background(lambda: self.ollama.generate(prompt))

    def _give_up(self, claim, over_limit):
        """Limits reached, or IRIS cannot serve the alert: checked before any work on it."""
        if claim.unservable and not over_limit:
            if self.claims.confirm(claim) is None:
                return
            final = "too large" in claim.unservable
            self.deferred.add(claim.alert_id)
            self.claims.fail(claim, claim.unservable, final=final, kind="too-large" if final else "iris-unservable")
            return
        if self.claims.confirm(claim) is None:
            return
        self.log.warning(f"alert {claim.alert_id}: attempt or takeover limit reached, giving up")
        self.claims.finish(claim, TAG_FAILED, reason="limit reached")

    def _complete_with_model(self, claim, job, round_id, key):
        if not self._wait_for(job, grace=self.config.stop_grace):
            self.log.info(f"alert {claim.alert_id}: stopping before the model answered")
            self.claims.release(claim, "stopping")
            return
        if isinstance(job.error, OllamaUnavailable):
            raise job.error
        self.outage.answered()  # even a bad answer shows that Ollama serves the model
        if job.error:
            raise job.error
        analysis, _notes = encodable(parse_analysis(job.result))  # a lone surrogate in the answer, too
        self.claims.post(claim, render_comment(analysis, round_id, self.config.ollama_model), round_id)
        self.dedup.record(key, claim.alert_id, analysis, time.time())
        self.log.info(f"alert {claim.alert_id}: analysis posted ({analysis['verdict']})")
        self.claims.finish(claim, TAG_REVIEWED)

    def _wait_for(self, job, grace):
        """Wait for the model; after a stop request wait at most ``grace`` more. False when given up."""
        deadline = time.monotonic() + self.config.ollama_timeout + 5
        while not job.done.wait(0.05):
            now = time.monotonic()
            if self.stop_requested_at is not None and now - self.stop_requested_at >= grace:
                return False
            if now >= deadline:
                job.error = OllamaUnavailable("Ollama generate: no answer within the timeout")
                return True
        return True
