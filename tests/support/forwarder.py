"""The forwarder's test harness: a stand-in Wazuh home that runs the forwarder the way integratord does,
sample alerts, emulator hooks, and a child process that stops at a named fault point.

Used by tests/integration/test_forwarder_iris.py and test_forwarder_faults.py; the fixtures that build these
are in tests/integration/conftest.py.
"""
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import iris_forwarder  # files/integrations is on sys.path (tests/conftest.py)
from iris_forwarder.spool import decode

from tests.conftest import IRIS_ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "files" / "integrations"
LAUNCHER = SOURCES / "custom-wazuh_iris.py"
REDIRECT = "> /dev/null 2>&1"
ADMIN_KEY = IRIS_ADMIN_KEY  # the key the shared iris_emulator fixture starts with
# Ids of a fresh IRIS 2.4.20 (not in natural order): severities and alert statuses.
SEVERITY_IDS = {"Medium": 1, "Unspecified": 2, "Informational": 3, "Low": 4, "High": 5, "Critical": 6}
STATUS_NEW, STATUS_ASSIGNED = 2, 3

ALERT_A = {
    "timestamp": "2025-06-03T10:02:11.730+0000",
    "rule": {"level": 3, "description": "Audit: Command: /usr/bin/curl.", "id": "80792",
             "groups": ["audit", "audit_command"]},
    "agent": {"id": "004", "name": "app01", "ip": "192.168.20.14"},
    "id": "1748944931.9912214",
    "full_log": 'type=EXECVE msg=audit(1748944931.712:8812): argc=3 a0="curl" a1="-sO"',
    "location": "/var/log/audit/audit.log",
}
ALERT_B = {
    "timestamp": "2022-05-11T12:29:19.905+0000",
    "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system.", "id": "5712",
             "mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]},
             "groups": ["syslog", "sshd", "authentication_failures"]},
    "agent": {"id": "000", "name": "wazuh-manager"},
    "id": "1652272159.1549653",
    "full_log": "May 11 12:29:18 localhost sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
    "location": "/var/log/secure",
}


def alert(number, **changes):
    """A distinct alert (its own Wazuh id) built from ALERT_B."""
    return dict(ALERT_B, id=f"1700000000.{number}", **changes)


class Manager:
    """A stand-in for a Wazuh manager's home (/var/ossec) running the forwarder like integratord."""

    def __init__(self, root, emu, api_key):
        self.fw = iris_forwarder
        self.root = root
        self.emu = emu
        self.api_key = api_key
        (root / "logs").mkdir(parents=True)
        (root / "tmp").mkdir()
        self.state = root / "var" / "iris-forwarder"
        self.log_file = root / "logs" / "integrations.log"
        self.key_file = root / "etc" / "iris.key"
        self.key_file.parent.mkdir()
        self.key_file.write_text(api_key + "\n")
        self.key_file.chmod(0o640)  # as the role writes it; a key file open to every user is refused
        # No outage backoff, ambiguity window or retry backoff: these tests look at one step at a time;
        # tests/integration/test_forwarder_faults.py proves the windows themselves.
        self.options = {"state_dir": str(self.state), "log_file": str(self.log_file), "outage_backoff": 0,
                        "ambiguity_window": 0, "retry_backoff": 0}
        self.count = 0

    @property
    def hook_url(self):
        return f"{self.emu.url}/alerts/add"

    def write_options(self, **changes):
        self.count += 1
        path = self.root / "tmp" / f"custom-wazuh_iris-{self.count}.options"
        path.write_text(json.dumps(dict(self.options, **changes)) + "\n")
        return str(path)

    def alert_file(self, content):
        self.count += 1
        path = self.root / "tmp" / f"custom-wazuh_iris-{self.count}.alert"
        path.write_bytes(content if isinstance(content, bytes) else (json.dumps(content) + "\n").encode())
        return str(path)

    def argv(self, content, *, key=None, url=None, debug="", timeout="10", retries="0", options=None):
        options_file = self.write_options(**(options or {}))
        tail = [] if debug else [REDIRECT]
        return ["integrations", self.alert_file(content), self.api_key if key is None else key,
                self.hook_url if url is None else url, debug, options_file, timeout, retries, *tail]

    def run(self, content, **kwargs):
        """One alert through main() in this process; returns the exit code."""
        return self.fw.main(self.argv(content, **kwargs))

    def replay_argv(self, **options):
        base = {"hook_url": self.hook_url, "api_key_file": str(self.key_file)}
        return ["x", "--replay", "--options", self.write_options(**dict(base, **options))]

    def replay(self, **options):
        """One replay (the timer's run) through main() in this process; returns the exit code."""
        return self.fw.main(self.replay_argv(**options))

    def check_argv(self, **options):
        """argv of --check-connection with an options file like the role's (hook_url and api_key_file in it)."""
        base = {"hook_url": self.hook_url, "api_key_file": str(self.key_file)}
        return ["x", "--check-connection", "--options", self.write_options(**dict(base, **options))]

    def check(self, capsys, *extra, **options):
        """One --check-connection through main() in this process: (exit code, stdout lines, stderr)."""
        code = self.fw.main(self.check_argv(**options) + list(extra))
        captured = capsys.readouterr()
        return code, captured.out.splitlines(), captured.err

    def log(self):
        return self.log_file.read_text() if self.log_file.exists() else ""

    def spooled(self):
        spool = self.state / "spool"
        return [decode(json.loads(p.read_text())) for p in sorted(spool.glob("*.json"))] if spool.exists() else []

    def rejected(self):
        folder = self.state / "rejected"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def files_written(self):
        """(path, bytes) of every file the forwarder wrote under the stand-in Wazuh home (but the key file)."""
        return [(path, path.read_bytes()) for path in self.root.rglob("*")
                if path.is_file() and path != self.key_file and path.parent.name != "tmp"]

    def posts(self):
        return [entry for entry in self.emu.request_log if entry[:2] == ("POST", "/alerts/add")]


def run_like_integratord(manager, launcher, argv, **kwargs):
    """Run the installed launcher by its path, through its shebang, with integratord's argv and cwd."""
    return subprocess.run(argv, executable=str(launcher), cwd=manager.root, capture_output=True, text=True,
                          timeout=60, check=False, **kwargs)


def refs(emu):
    return [a["alert_source_ref"] for a in emu.alerts()]


class Hook:
    """An emulator hook acting on one method and path, POST /alerts/add unless told otherwise.

    fn(phase, body) may sleep or return a reply (status, body); None lets the request through.
    """

    def __init__(self, emu, fn, method="POST", path="/alerts/add"):
        self.emu, self.fn, self.method, self.path = emu, fn, method, path

    def __call__(self, phase, method, path, *rest):
        """The emulator's hook call; rest is (query, body, login)."""
        if (method, path) == (self.method, self.path):
            return self.fn(phase, rest[1])
        return None

    def __enter__(self):
        self.emu.add_hook(self)
        return self

    def __exit__(self, *exc):
        self.emu.remove_hook(self)


def wait_for(predicate, seconds=5.0):
    """Poll until predicate() is true (for requests the emulator is still finishing)."""
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def late_commit(emu):
    """(Hook, release, committed): the POST is held until release is set, then IRIS commits it (committed)."""
    import threading

    release, committed = threading.Event(), threading.Event()

    def late(phase, body):
        if phase == "before":
            assert release.wait(60)
        else:
            committed.set()
    return Hook(emu, late), release, committed


def reply_once(status, message, phase="before"):
    """A hook function answering the first POST with (status, envelope) and letting later ones through."""
    calls = []

    def fn(hook_phase, body):
        if hook_phase == phase and not calls:
            calls.append(body)
            return status, {"status": "error", "message": message, "data": []}
        return None
    return fn


class FaultyChild:
    """The forwarder in a child process (tests/support/fault_runner.py) that stops at fault points.

    ``reach(point)`` blocks until the child reports it has reached that point and is waiting there;
    then the test may ``kill(sig)`` it or ``resume()`` it. ``finish()`` waits for the exit code. A stuck
    child fails the test after ``limit`` seconds instead of hanging the run.
    """

    RUNNER = ROOT / "tests" / "support" / "fault_runner.py"

    def __init__(self, manager, argv, pause=(), fail=(), limit=60.0):
        report_read, report_write = os.pipe()
        resume_read, resume_write = os.pipe()
        command = [sys.executable, str(self.RUNNER), "--report-fd", str(report_write), "--resume-fd", str(resume_read)]
        for point in pause:
            command += ["--pause", point]
        for point in fail:
            command += ["--fail", point]
        self.limit = limit
        self.process = subprocess.Popen([*command, "--", *argv[1:]], cwd=manager.root, pass_fds=(report_write,
                                        resume_read), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(report_write)
        os.close(resume_read)
        self.reports = os.fdopen(report_read, "rb", buffering=0)
        self.resume_fd = resume_write

    def reach(self, point):
        end = time.monotonic() + self.limit
        while True:
            ready, _w, _x = select.select([self.reports], [], [], max(0.0, end - time.monotonic()))
            assert ready, f"the child did not reach {point} within {self.limit} s"
            line = self.reports.readline().decode().strip()
            if not line:
                errors = self.process.stderr.read()
                raise AssertionError(f"the child ended (exit {self.finish()}) before {point}: {errors!r}")
            if line == point:
                return

    def resume(self):
        os.write(self.resume_fd, b"g")

    def kill(self, sig=signal.SIGKILL):
        self.process.send_signal(sig)
        return self.finish()

    def finish(self):
        try:
            return self.process.wait(timeout=self.limit)
        finally:
            for stream in (self.reports, self.process.stdout, self.process.stderr):
                if stream and not stream.closed:
                    stream.close()
            with contextlib.suppress(OSError):
                os.close(self.resume_fd)
