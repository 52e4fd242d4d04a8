"""Generated fault schedules for the forwarder: the delivery promise checked under faults nobody listed.

Method: Hypothesis stateful testing (``RuleBasedStateMachine``). Chosen over a home-made seeded simulation
because a failing schedule *shrinks* to a minimal sequence of steps that Hypothesis prints as code, which is
then kept below as a regular test; the search is derandomized (the same examples on every run) through the
``socstack-faults`` profile of tests/conftest.py, and no example database is written. The clock is virtual
(support/fault_schedule.VirtualClock: wall-clock steps both ways, and time passing on both the wall and the
boot clock), so windows and backoffs of minutes or hours pass without waiting, and nothing in a schedule
waits for real time.

Steps (rules) drive alert runs (each a new alert, for the default customer or the tenant ``Acme``), replays
and concurrent alert runs, through: a kill at every fault point (in-process, support/fault_schedule.Points),
IRIS answers (success, 5xx for one alert, 5xx for every write while reads work, 503/429/404 before and after
creating, 200 with a proxy's HTML page after creating, a reset before and after, everything 503, down), a
POST whose connection drops after sending and that IRIS commits later (after the client gave up, within
ambiguity_window) or never, wall-clock steps both ways, time passing, a full disk and freed, the tenant's
link removed and restored, corrupt spool files and a FIFO in the spool.

Invariants, once the faults clear and the spool drains (teardown):
- every alert whose run got past the write-ahead (fault point ``alert:spooled``) is in IRIS exactly once,
  unless it is in rejected/ (below) or the test itself corrupted its spool file; no alert is in IRIS twice;
- rejected/ holds only alerts IRIS refused while accepting others (the ``fail_one`` poison alerts) and the
  files the test corrupted: never an alert of a server-wide failure;
- no 16 consecutive characters of the API key in any file, log line or standard stream (IRIS echoes it);
- no run ends with an internal error (exit 1);
and after every healthy replay (IRIS fine, nothing held, disk free): no alert of another customer is left
due in the spool while the tenant is unlinked (one tenant's misconfiguration never delays another's alert).

Budget: ``make test`` runs EXAMPLES examples of at most STEPS steps (about 20-40 s on 2 cores);
``SOCSTACK_FAULT_EXAMPLES=N`` runs N (the deepest search run is named in docs/forwarder.md).
"""
import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from tests.conftest import FAULT_EXAMPLES, IRIS_ADMIN_KEY
from tests.emulators.iris import IrisEmulator
from tests.support import fault_schedule as fs
from tests.support.forwarder import Manager, alert

EXAMPLES = FAULT_EXAMPLES or 25
STEPS = 25
MAX_HOLDS = 4
LOGIN = "wazuh-forwarder"


class ForwarderSchedule(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="fw-schedule-"))
        self.emu = IrisEmulator(admin_api_key=IRIS_ADMIN_KEY).start()
        self.tenant_id = self.emu.add_customer(fs.TENANT)
        _user, key = self.emu.add_user(LOGIN, groups=["Analysts"], customers=["IrisInitialClient", fs.TENANT])
        self.manager = Manager(self.root / "ossec", self.emu, key)
        self.manager.options.update({
            "ambiguity_window": 120, "retry_backoff": 60, "outage_backoff": 30, "poison_max_attempts": 3,
            "customer_field": "agent.labels.customer", "customers": {fs.TENANT: self.tenant_id},
        })
        self.key = key
        self.iris = fs.IrisFaults(key, self.emu)
        self.emu.add_hook(self.iris)
        self.clock, self.disk, self.points = fs.VirtualClock(), fs.Disk(), fs.Points()
        for part in (self.clock, self.disk, self.points):
            part.install()
        self.number = 0
        self.tenant_of = {}  # ref -> "default" or the tenant
        self.past_write_ahead = set()
        self.corrupted = set()
        self.unlinked = False
        self.holds = 0
        self.streams = io.StringIO()

    # ------------------------------------------------------------------------------ the runs
    def _main(self, argv, kill_at=None):
        """One run of main() in this thread; (exit code or 'killed', points reached)."""
        self.points.start(kill_at)
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = self.manager.fw.main(argv)
        except fs.Killed:
            code = "killed"
            fs.close_fds_under(self.root)  # what the kernel does when a process dies: its locks go
        finally:
            self.streams.write(out.getvalue() + err.getvalue())
        seen = self.points.seen()
        self.points.start(None)
        assert code != 1, f"internal error: {self.manager.log()[-2000:]}"
        return code, seen

    def _new_alert(self, tenant):
        self.number += 1
        labels = {"customer": fs.TENANT} if tenant else {}
        content = alert(self.number, agent={"name": f"host-{self.number}", "labels": labels})
        self.tenant_of[content["id"]] = fs.TENANT if tenant else "default"
        return content

    def _alert_run(self, tenant, kill_at=None):
        content = self._new_alert(tenant)
        code, seen = self._main(self.manager.argv(content, timeout="1"), kill_at)
        if "alert:spooled" in seen:
            self.past_write_ahead.add(content["id"])
        return code

    def _replay(self, kill_at=None):
        return self._main(self.manager.replay_argv(), kill_at)[0]

    # ------------------------------------------------------------------------------ the rules
    @initialize()
    def start(self):
        self.manager.write_options()

    @rule(tenant=st.booleans())
    def alert_run(self, tenant):
        self._alert_run(tenant)

    @rule(tenant=st.booleans(), point=st.sampled_from(fs.KILL_POINTS))
    def alert_run_killed(self, tenant, point):
        self._alert_run(tenant, kill_at=point)

    @rule()
    def replay(self):
        self._replay()
        self._check_tenant_isolation()

    @rule(point=st.sampled_from(fs.KILL_POINTS))
    def replay_killed(self, point):
        self._replay(kill_at=point)

    @rule(count=st.integers(2, 6), tenant=st.booleans())
    def concurrent_alert_runs(self, count, tenant):
        contents = [self._new_alert(tenant and number % 2 == 0) for number in range(count)]
        barrier = threading.Barrier(count)
        results = {}

        def one(content):
            barrier.wait(30)
            results[content["id"]] = self._main(self.manager.argv(content, timeout="1"))
        threads = [threading.Thread(target=one, args=(content,)) for content in contents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for ref, (_code, seen) in results.items():
            if "alert:spooled" in seen:
                self.past_write_ahead.add(ref)

    @rule(mode=st.sampled_from(fs.IRIS_MODES))
    def iris_answers(self, mode):
        self.iris.mode = mode
        if mode == "fail_one":
            self.iris.poison = set(list(self.tenant_of)[-2:])  # the last alerts are the poison

    @rule()
    def iris_down(self):
        self.emu.stop()

    @rule()
    def iris_up(self):
        self.emu.start()

    @precondition(lambda self: self.holds < MAX_HOLDS)
    @rule(tenant=st.booleans(), commit=st.booleans())
    def alert_run_with_a_post_held(self, tenant, commit):
        self.holds += 1
        self.iris.hold_next = commit
        self._alert_run(tenant)
        self.iris.hold_next = None

    @rule()
    def held_posts_finish(self):
        self.iris.release()

    @rule(days=st.integers(-2, 2).filter(bool))
    def step_the_wall_clock(self, days):
        self.clock.step_wall(days * 86400)

    @rule(seconds=st.sampled_from([31, 130, 4000]))
    def time_passes(self, seconds):
        if seconds >= self.manager.options["ambiguity_window"]:
            # The documented assumption (docs/forwarder.md, "Why an alert is never doubled"): IRIS commits
            # a request within ambiguity_window, so held POSTs are finished before the window can pass.
            self.iris.release()
        self.clock.advance(seconds)

    @rule(full=st.booleans())
    def disk(self, full):
        self.disk.full = full

    @rule(linked=st.booleans())
    def tenant_link(self, linked):
        fs.link(self.emu, LOGIN, self.tenant_id, linked)
        self.unlinked = not linked

    @rule(index=st.integers(0, 50), how=st.sampled_from(["garbage", "types", "fifo"]))
    def corrupt_the_spool(self, index, how):
        items = fs.spool_items(self.manager)
        if how == "fifo":
            folder = self.manager.state / "spool"
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkfifo(folder / f"00000000000000000000-fifo{index}.json")
            return
        if not items:
            return
        path, item = items[index % len(items)]
        if item is None:
            return  # already corrupt
        self.corrupted.add(item["source_ref"])
        if how == "garbage":
            path.write_bytes(b'{"mark": "unk')
        else:
            document = json.loads(path.read_text())
            document.update(severity=7, payload=["not", "an", "object"])
            path.write_text(json.dumps(document))

    # ------------------------------------------------------------------------------ the checks
    def _healthy(self):
        return (self.iris.mode == "ok" and not self.iris.holds and not self.disk.full
                and self.emu._server is not None)

    def _check_tenant_isolation(self):
        """After a healthy replay, no other customer's alert is left due in the spool (see the docstring)."""
        if not self._healthy():
            return
        from iris_forwarder.delivery import in_window, waiting
        from socstack_core.log import Log

        quiet = Log("check", os.devnull)
        options = dict(self.manager.options)
        for _path, item in fs.spool_items(self.manager):
            if item is None or self.tenant_of.get(item["source_ref"]) == fs.TENANT:
                continue
            due = waiting(item, quiet) == 0 and not (item["state"] == "unknown" and in_window(item, options))
            assert not due, f"alert {item['source_ref']} of another customer left due in the spool"

    def teardown(self):
        try:
            self._clear_and_drain()
            self._check_invariants()
        finally:
            self.iris.release()
            for part in (self.clock, self.disk, self.points):
                part.uninstall()
            self.emu.stop()
            shutil.rmtree(self.root, ignore_errors=True)

    def _clear_and_drain(self):
        self.iris.release()  # late commits land now, within the window, before any lookup
        self.iris.mode = "ok"
        self.disk.full = False
        self.emu.start()
        fs.link(self.emu, LOGIN, self.tenant_id, True)
        self.clock.wall = self.clock.boot  # the wall clock is set right again
        for _round in range(8):
            self.clock.advance(4000)  # past every window and backoff
            assert self._replay() == 0, self.manager.log()[-3000:]
            if not [item for _path, item in fs.spool_items(self.manager) if item is not None]:
                break

    def _check_invariants(self):
        counts = {}
        for created in self.emu.alerts():
            counts[created["alert_source_ref"]] = counts.get(created["alert_source_ref"], 0) + 1
        twice = {ref: n for ref, n in counts.items() if n > 1}
        assert not twice, f"alerts in IRIS more than once: {twice}"
        rejected = self.manager.state / "rejected"
        kept = {}
        for path in rejected.iterdir() if rejected.exists() else []:
            try:
                kept[json.loads(path.read_text()).get("source_ref")] = path.name
            except (ValueError, OSError, AttributeError):
                kept[path.name] = path.name
        allowed = self.iris.poison | self.corrupted
        stray = {ref for ref in kept if ref not in allowed and not str(ref).endswith(".json")}
        assert not stray, f"rejected/ holds alerts IRIS never refused on their own: {stray}"
        for ref in self.past_write_ahead - self.corrupted:
            assert counts.get(ref, 0) == 1 or ref in kept, f"alert {ref} past the write-ahead is lost"
        assert [item for _path, item in fs.spool_items(self.manager) if item is not None] == [], "spool not drained"
        for path in self.manager.root.rglob("*"):
            if path.is_file() and path != self.manager.key_file:
                assert fs.leaked(path.read_bytes().decode("utf-8", "replace"), self.key) is None, path
        assert fs.leaked(self.streams.getvalue(), self.key) is None, "the key in stdout/stderr"


TestForwarderFaultSchedules = pytest.mark.slow(ForwarderSchedule.TestCase)
TestForwarderFaultSchedules.settings = settings(settings.get_profile("socstack-faults"), max_examples=EXAMPLES,
                                                stateful_step_count=STEPS)


# ------------------------------------------------------------------- shrunk failures, kept as tests
def run_schedule(*steps):
    """Replay a schedule Hypothesis shrank (steps: (rule name, arguments)); teardown checks the invariants."""
    machine = ForwarderSchedule()
    machine.start()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
    finally:
        machine.teardown()


def test_schedule_a_kill_right_after_the_write_ahead():
    """Shrunk: a run killed at alert:spooled left its item locked by a descriptor the harness kept open;
    a killed process's locks go with it (the harness now closes them, as the kernel does)."""
    run_schedule(("alert_run_killed", {"tenant": False, "point": "alert:spooled"}))


def test_schedule_a_late_commit_within_the_window():
    """Shrunk: a POST dropped after sending, committed by IRIS later; the replay after time passed must find
    it, not resend it (IRIS commits within ambiguity_window, the documented assumption)."""
    run_schedule(("alert_run_with_a_post_held", {"tenant": False, "commit": True}), ("time_passes", {"seconds": 130}),
                 ("replay", {}))


def test_schedule_a_file_corrupted_twice():
    """Shrunk (harness): a spool file already unreadable, then given wrong types, goes to rejected/ once."""
    run_schedule(("iris_down", {}), ("alert_run", {"tenant": False}),
                 ("corrupt_the_spool", {"how": "garbage", "index": 0}),
                 ("corrupt_the_spool", {"how": "types", "index": 0}))


def test_schedule_a_server_wide_write_failure_with_concurrent_runs_and_a_step_back():
    """The issue's first defect under a schedule: every write fails, alerts arrive concurrently, the clock is
    set back; nothing may go to rejected/, and all arrive once IRIS writes again."""
    run_schedule(("iris_answers", {"mode": "fail_all_writes"}),
                 ("concurrent_alert_runs", {"count": 4, "tenant": False}),
                 ("replay", {}), ("step_the_wall_clock", {"days": -1}), ("alert_run", {"tenant": True}),
                 ("replay", {}), ("time_passes", {"seconds": 4000}), ("replay", {}))


def test_schedule_an_unknown_alert_of_an_unlinked_customer_is_looked_up_again_once_linked():
    """Shrunk (a real defect, found by the deep search): an alert of unknown outcome whose customer was
    unlinked was looked up (IRIS shows an account only its customers' alerts, so: absent), POSTed, refused
    (not entitled) and marked unsent; once linked it was sent again although IRIS had the first send: two
    copies. It now stays unknown, and is looked up again once the link is back."""
    run_schedule(("alert_run_with_a_post_held", {"commit": True, "tenant": True}), ("held_posts_finish", {}),
                 ("tenant_link", {"linked": False}), ("time_passes", {"seconds": 4000}), ("replay", {}))
