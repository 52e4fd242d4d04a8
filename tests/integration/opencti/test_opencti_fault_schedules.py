"""Generated fault schedules for the OpenCTI enrichment: its cache, its events and its deadline.

Method: Hypothesis stateful testing, as for the forwarder (tests/integration/test_forwarder_fault_schedules.py
says why; profile ``socstack-faults`` in tests/conftest.py). The program runs in this process against the
OpenCTI emulator on 127.0.0.1; time.time is virtual (steps both ways), time.monotonic real (the deadline).

Steps: alert runs (one public address each, from a small pool so that results are cached and reused), runs
concurrent with each other (sharing the cache file), OpenCTI answers (fine, HTTP 500, GraphQL errors that
echo the token across the cut, no data, not JSON, no answer within the timeout), wall-clock steps both ways,
and a corrupt cache file. Invariants checked after every step:
- every run ends 0 and sends exactly one event per finding, or exactly ONE error event when OpenCTI failed;
- a run asks OpenCTI exactly when its address has no live cache entry (0 <= now - stored < cache_ttl): an
  entry dated in the future is never used, a live one always is;
- concurrent runs keep every result they stored (each one's entry is in the cache afterwards);
- a run ends within timeout + QUEUE_GRACE seconds (plus scheduling slack), whatever OpenCTI does;
- no 16 consecutive characters of the token in any event, log line or cache file.
Budget: EXAMPLES examples of at most STEPS steps by default; SOCSTACK_FAULT_EXAMPLES=N for a deeper search.
"""
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import opencti_enrich
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from opencti_enrich.cache import CACHE_FILE
from opencti_enrich.settings import QUEUE_GRACE

from tests.conftest import FAULT_EXAMPLES
from tests.emulators.opencti import OpenCTIEmulator
from tests.support.fault_schedule import leaked
from tests.support.opencti import IP_A, IP_B, IP_C, IP_E, OPENCTI_TOKEN, OpenctiRun, QueueRecorder, ids_alert

EXAMPLES = FAULT_EXAMPLES or 10
STEPS = 20
TTL = 3600
TIMEOUT = 1
SLACK = 1.5  # scheduling on a loaded machine, on top of timeout + QUEUE_GRACE
FAULTS = (None, "http_500", "graphql_errors", "null_data", "not_json")
POOL = (IP_A, IP_B, IP_C, IP_E)
MAX_HANGS = 1


class OpenctiSchedule(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.emu = OpenCTIEmulator(token=OPENCTI_TOKEN).start()
        self.emu.load_sample_data()
        self.queue = QueueRecorder()
        self.run_files = OpenctiRun(self.emu, self.queue)
        self.run_files.options.update({"cache_ttl": TTL})
        self.tmp = Path(tempfile.mkdtemp(prefix="oc-schedule-"))
        self.wall = 0.0
        self._time = time.time
        time.time = lambda: self._time() + self.wall
        self.hangs = 0
        self.events = []
        self.count = 0
        self.lock = threading.Lock()

    # ---------------------------------------------------------------------------------- helpers
    def _live(self):
        """Addresses whose cache entry may be used now (0 <= now - stored < ttl)."""
        path = self.run_files.state_dir / CACHE_FILE
        try:
            entries = json.loads(path.read_text())["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return set()
        now = time.time()
        if not isinstance(entries, dict):
            return set()
        return {key.split(":", 1)[1] for key, entry in entries.items() if isinstance(entry, dict)
                and isinstance(entry.get("stored"), (int, float)) and now - entry["stored"] + 5 >= 0
                and now - entry["stored"] < TTL}

    def _run(self, address):
        alert = ids_alert(src_ip=address)
        with self.lock:
            self.count += 1
            alert_file = self.tmp / f"{self.count}.alert"  # one per run: runs may be concurrent
        alert_file.write_text(json.dumps(alert))
        argv = ["integrations", str(alert_file), OPENCTI_TOKEN, self.emu.graphql_url, "", self.options_file,
                str(TIMEOUT), "3", "> /dev/null 2>&1"]
        started = time.monotonic()
        code = opencti_enrich.main(argv)
        elapsed = time.monotonic() - started
        assert code == 0, self.run_files.log()[-2000:]
        assert elapsed <= TIMEOUT + QUEUE_GRACE + SLACK, f"run took {elapsed:.1f} s"
        return alert["id"]

    # ---------------------------------------------------------------------------------- rules
    @initialize()
    def start(self):
        self.options_file = self.run_files.write_options()  # once: concurrent runs read it

    @rule(address=st.sampled_from(POOL))
    def alert_run(self, address):
        live = address in self._live()
        before = len(self.emu.requests)
        self._run(address)
        asked = len(self.emu.requests) - before
        assert asked == (0 if live else 1), f"{address}: live cache entry {live}, {asked} request(s)"
        events = self.queue.events()
        self.events += events
        if self.emu.fault is not None and not live:
            assert [e["event_type"] for e in events] == ["error"], events
        else:
            assert all(e["event_type"] != "error" for e in events), events

    @rule(addresses=st.lists(st.sampled_from(POOL), min_size=2, max_size=6, unique=True))
    def concurrent_runs(self, addresses):
        fault = self.emu.fault
        barrier = threading.Barrier(len(addresses))
        errors = []

        def one(address):
            try:
                barrier.wait(30)
                self._run(address)
            except BaseException as exc:
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(address,)) for address in addresses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        self.events += self.queue.events()
        if fault is None:  # every result stored by one of them is kept
            assert set(addresses) <= self._live(), (addresses, self._live())

    @rule(fault=st.sampled_from(FAULTS))
    def opencti_answers(self, fault):
        self.emu.fault = fault
        if fault == "graphql_errors":
            self.emu.error_message = "e" * (300 - len(OPENCTI_TOKEN) // 2) + OPENCTI_TOKEN

    @precondition(lambda self: self.hangs < MAX_HANGS)
    @rule(address=st.sampled_from(POOL))
    def opencti_does_not_answer_in_time(self, address):
        self.hangs += 1
        self.emu.delay = TIMEOUT + 2
        live = address in self._live()
        try:
            self._run(address)
        finally:
            self.emu.delay = 0.0
        events = self.queue.events()
        self.events += events
        kinds = [e["event_type"] for e in events]
        assert kinds == ["error"] if not live else "error" not in kinds, events

    @rule(days=st.integers(-2, 2).filter(bool))
    def step_the_wall_clock(self, days):
        self.wall += days * 86400

    @rule(content=st.sampled_from([b"{torn", b'{"entries": []}', b'{"entries": {"ipv4:1.2.3.4": 5}}']))
    def corrupt_the_cache(self, content):
        self.run_files.state_dir.mkdir(parents=True, exist_ok=True)
        (self.run_files.state_dir / CACHE_FILE).write_bytes(content)

    @invariant()
    def the_token_is_nowhere(self):
        texts = [json.dumps(self.events), self.run_files.log()]
        cache = self.run_files.state_dir / CACHE_FILE
        if cache.exists():
            texts.append(cache.read_text(errors="replace"))
        for text in texts:
            assert leaked(text, OPENCTI_TOKEN) is None

    def teardown(self):
        time.time = self._time
        self.emu.stop()
        self.queue.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestOpenctiFaultSchedules = pytest.mark.slow(OpenctiSchedule.TestCase)
TestOpenctiFaultSchedules.settings = settings(settings.get_profile("socstack-faults"), max_examples=EXAMPLES,
                                              stateful_step_count=STEPS)
