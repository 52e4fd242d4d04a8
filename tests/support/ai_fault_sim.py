"""A seeded fault simulation of AI workers against the IRIS emulator, on a virtual clock (issue 23).

Every worker is a real ``iris_ai_worker.loop.Worker``; only three things are replaced so that a fault
schedule runs the same way every time, in one thread, in milliseconds:
- its IRIS transport: requests go straight to ``IrisEmulator.handle_request`` (the emulator's own
  handlers, validation and modification_history) through ``SimNetwork``, which can **hold** a write
  (the client sees a timeout, IRIS applies it whenever the schedule releases it: a write held past its
  timeout by a saturated IRIS), or **lose its answer** (applied now, the client sees a timeout);
- its clocks: wall and monotonic time are a shared virtual clock, each worker's wall clock off by its
  own skew within the bound; waiting (the settle time) moves the clock on;
- Ollama: a function that answers a valid analysis at once.
Fault points (socstack_core.faults) let the schedule pause a worker (the clock jumps, other workers run
meanwhile) or kill it (``Killed`` is a BaseException: nothing in the worker catches it; its replacement
starts with the same state directory, as systemd would restart it).
"""
import json

from iris_ai_worker import heal, loop, settings
from iris_ai_worker import tags as worker_tags
from iris_ai_worker.iris import IrisClient
from socstack_core import faults, http

from tests.emulators.iris import IrisEmulator
from tests.support.ai_worker import SSH_EVENT, LogLines

EPOCH = 1_800_000_000.0
TTL = 60.0
SKEW = 4.0
ANSWER = json.dumps({"summary": "Brute force from one source.", "verdict": "likely_true_positive",
                     "reasons": ["many failures"], "severity": "medium", "severity_reason": "external",
                     "next_steps": ["block the source"], "mitre": [{"technique_id": "T1110"}]})
WRITE_KINDS = ("claim", "comment", "update")


class Killed(BaseException):
    """The worker process died at a fault point."""


class Clock:
    def __init__(self):
        self.now = 0.0

    def advance(self, seconds):
        self.now += max(0.0, seconds)


class SimNetwork:
    """Requests of every worker to the emulator, with the write faults the schedule arms."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.armed = {}  # (login, kind) -> "hold" | "lose-answer"
        self.held = []  # (login, key, method, path, body) not applied yet
        self.last_point = {}  # login -> last fault point reached

    def deliver(self, key, method, path, raw):
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        status, _ctype, payload, _cookie = self.emulator.handle_request(method, path, headers, raw or b"")
        return status, payload if isinstance(payload, bytes) else str(payload).encode()

    def kind(self, login, method, path):
        if method != "POST":
            return None
        if path.endswith("/comments/add"):
            return "comment"
        if path.startswith("/alerts/update/"):
            return "claim" if self.last_point.get(login) == "ai_worker:claim:send" else "update"
        return None

    def call(self, login, key, method, path, raw):
        """The http.Response of one request, or the http.TransportError a held write or a lost answer gives."""
        kind = self.kind(login, method, path)
        fate = self.armed.pop((login, kind), None) if kind else None
        if fate == "hold":
            self.held.append((login, key, method, path, raw))
            raise http.TransportError("timed out", sent=True, timeout=True)
        status, payload = self.deliver(key, method, path, raw)
        if fate == "lose-answer":
            raise http.TransportError("timed out", sent=True, timeout=True)
        return http.Response(status, {}, payload)

    def release(self, index):
        if self.held:
            _login, key, method, path, body = self.held.pop(index % len(self.held))
            self.deliver(key, method, path, body)


class SimIris(IrisClient):
    """IrisClient whose HTTP exchanges go through the SimNetwork: everything above the transport is the real one
    (the shared socstack_core.iris_client reads the envelope, classifies and masks; the worker's routes)."""

    def __init__(self, network, login, config):
        super().__init__(config)
        self.network = network
        self.login = login

    def _send(self, method, target, **request):
        return self.network.call(self.login, self.api_key, method, target, request.get("body"))


class SimOllama:
    model = "phi4-mini:latest"

    def generate(self, prompt):
        return ANSWER

    def probe(self):
        return None


class Simulation:
    """Alerts, workers and an analyst on one emulator; ``run(schedule)`` then ``settle()`` and ``check()``."""

    def __init__(self, tmp_path, workers=2, alerts=2, skews=None):
        self.emulator = IrisEmulator(admin_api_key="A" * 64)  # never started: requests are handed in directly
        self.network = SimNetwork(self.emulator)
        self.clock = Clock()
        self.tmp_path = tmp_path
        self.log = LogLines()
        self.analyst_id, self.analyst_key = self.emulator.add_user("alice", service_account=False,
                                                                   groups=["Analysts"], customers=["IrisInitialClient"])
        self.alerts = [self.emulator.create_alert(alert_title=f"alert {n}", alert_severity_id=4, alert_status_id=2,
                                                  alert_customer_id=1, alert_tags="wazuh,ai-pending",
                                                  alert_note="",
                                                  alert_source_content=dict(SSH_EVENT, data={"srcip": f"10.0.0.{n}"}))
                       ["alert_id"] for n in range(alerts)]
        self.skews = list(skews or [0.0] * workers)
        self.keys = {}
        self.workers = [self.new_worker(index) for index in range(workers)]
        self.current = None
        self.pending_faults = {}  # login -> (point, action, argument)
        self.intent = {alert_id: {"tags": set(), "owner": None, "note": ""} for alert_id in self.alerts}
        self.kills = 0

    # -- workers

    def login(self, index):
        return f"w{index}"

    def new_worker(self, index):
        login = self.login(index)
        if login not in self.keys:
            self.keys[login] = self.emulator.add_user(login, groups=["Analysts"], customers=["IrisInitialClient"])[1]
        env = {"IRIS_BASE_URL": "http://127.0.0.1:9", "IRIS_BEARER": self.keys[login], "OLLAMA_MODEL": SimOllama.model,
               "AI_WORKER_CLAIM_TIMEOUT": "1", "AI_WORKER_IRIS_TIMEOUT": "2", "AI_WORKER_OLLAMA_TIMEOUT": "5",
               "AI_WORKER_CLAIM_TTL": str(TTL), "AI_WORKER_CLOCK_SKEW": str(SKEW), "AI_WORKER_POLL_SECONDS": "1",
               "AI_WORKER_MAX_PER_MINUTE": "0", "AI_WORKER_DEDUP_WINDOW": "0", "AI_WORKER_MAX_PER_CYCLE": "1",
               "AI_WORKER_MAX_ATTEMPTS": "50", "AI_WORKER_MAX_TAKEOVERS": "50",
               "AI_WORKER_STATE_DIR": str(self.tmp_path / login)}
        config = settings.load_config(env)
        log = loop.LevelLog("DEBUG", stderr=self.log)
        log.prog = f"iris-ai-worker[{login}]"
        skew = self.skews[index]
        worker = loop.Worker(config, SimIris(self.network, login, config), SimOllama(),
                             loop.DedupStore(None, 0, log), log,
                             wall=lambda: EPOCH + self.clock.now + skew, monotonic=lambda: self.clock.now,
                             sleep=self.clock.advance)
        worker.outage.clock = lambda: self.clock.now
        worker.rate.clock = lambda: self.clock.now
        return worker

    def hook(self, point):
        if not point.startswith("ai_worker:"):
            return  # socstack_core's own points (file writes of the heal journal)
        login = self.login(self.current)
        self.network.last_point[login] = point
        armed = self.pending_faults.get(login)
        if not armed or armed[0] != point:
            return
        del self.pending_faults[login]
        _point, action, argument = armed
        if action == "kill":
            raise Killed
        if action == "pause":  # the clock jumps; another worker runs a cycle meanwhile
            seconds, other = argument
            self.clock.advance(seconds)
            if other != self.current:
                self.cycle(other)
        elif action == "analyst":
            self.analyst_edit(*argument)

    def cycle(self, index):
        previous, self.current = self.current, index
        try:
            self.workers[index].run_cycle()
        except Killed:
            self.kills += 1
            self.workers[index] = self.new_worker(index)  # systemd restarts it, same state directory
        finally:
            self.current = previous
            self.clock.advance(0.5)

    # -- the analyst (edits are applied at once: an analyst in the web UI)

    def analyst_edit(self, alert_index, what, number):
        alert_id = self.alerts[alert_index % len(self.alerts)]
        alert = next(a for a in self.emulator.alerts() if a["alert_id"] == alert_id)
        intent = self.intent[alert_id]
        body = {"alert_tags": alert["alert_tags"] or "", "alert_owner_id": alert["alert_owner_id"] or -1}
        if what == "tag":
            tag = f"escalated-{number}"
            body["alert_tags"] = worker_tags.join_tags([*worker_tags.split_tags(alert["alert_tags"]), tag])
            intent["tags"].add(tag)
        elif what == "owner":
            body["alert_owner_id"] = self.analyst_id
            intent["owner"] = self.analyst_id
        else:
            body["alert_note"] = f"analyst note {number}"
            intent["note"] = body["alert_note"]
        status, _payload = self.network.deliver(self.analyst_key, "POST", f"/alerts/update/{alert_id}",
                                                json.dumps(body).encode())
        assert status == 200

    # -- schedule

    def step(self, step):
        action = step[0]
        if action == "cycle":
            self.cycle(step[1] % len(self.workers))
        elif action in ("hold", "lose-answer"):
            _action, index, kind = step
            self.network.armed[(self.login(index % len(self.workers)), kind)] = action
        elif action == "release":
            self.network.release(step[1])
        elif action == "advance":
            self.clock.advance(step[1])
        elif action == "analyst":
            self.analyst_edit(*step[1:])
        elif action in ("kill", "pause", "analyst-at"):
            _action, index, point, argument = step
            kind = "analyst" if action == "analyst-at" else action
            self.pending_faults[self.login(index % len(self.workers))] = (point, kind, argument)

    def run(self, schedule):
        faults.hook = self.hook
        try:
            for step in schedule:
                self.step(step)
            self.settle()
        finally:
            faults.hook = None

    def settle(self):
        """The faults clear: held writes land (in order), nothing is armed; workers run until quiet."""
        self.network.armed.clear()
        self.pending_faults.clear()
        while self.network.held:
            self.network.release(0)
        for _round in range(4):
            for index in range(len(self.workers)):
                self.cycle(index)
            self.clock.advance(TTL + SKEW + 5)  # any claim left behind goes stale and is taken over
        for _round in range(2):  # the journals' re-checks come at most 15 minutes apart
            self.clock.advance(heal.RECHECK_MAX + 1)
            for index in range(len(self.workers)):
                self.cycle(index)

    # -- the properties

    def problems(self):
        """What is wrong after the faults cleared: not exactly one analysis, or an analyst change lost."""
        found = []
        for alert in self.emulator.alerts():
            alert_id = alert["alert_id"]
            tags = worker_tags.split_tags(alert["alert_tags"])
            analyses = [c for c in self.emulator.comments(alert_id) if worker_tags.comment_round(c)]
            if len(analyses) != 1:
                found.append(f"alert {alert_id}: {len(analyses)} analyses")
            if "ai-reviewed" not in tags or "ai-pending" in tags or worker_tags.claim_tags(tags):
                found.append(f"alert {alert_id}: tags {tags}")
            intent = self.intent[alert_id]
            lost = intent["tags"] - set(tags)
            if lost:
                found.append(f"alert {alert_id}: analyst tags lost {sorted(lost)}")
            if alert["alert_owner_id"] != intent["owner"]:
                found.append(f"alert {alert_id}: owner {alert['alert_owner_id']}, analyst set {intent['owner']}")
            if intent["note"] and alert["alert_note"] != intent["note"]:
                found.append(f"alert {alert_id}: note lost")
        return found
