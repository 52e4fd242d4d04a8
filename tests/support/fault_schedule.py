"""The world the generated fault schedules run the forwarder in: IRIS faults, a virtual clock, a disk that
fills, in-process kills at the fault points, and the record the invariants are checked against.

Used by tests/integration/test_forwarder_fault_schedules.py (which says why Hypothesis stateful testing).
Everything is in this process: the forwarder's main() is imported and called, the IRIS emulator serves on
127.0.0.1 in threads. A "kill" raises Killed (a BaseException the program does not catch) at a fault point:
the run ends there, its locks are released as the kernel would, and what it wrote stays as it was. (Real
SIGKILLs at every point are proven by tests/integration/test_forwarder_faults.py in child processes.)
"""
import contextlib
import errno
import json
import os
import threading
import time

from socstack_core import clock, faults

KILL_POINTS = ("alert:writing", "alert:spooled", "deliver:marked", "iris:post-sending", "iris:post-answered",
               "deliver:delivered", "deliver:failed", "deliver:removed", "drain:lookup", "file:write", "file:rename",
               "file:mark")
IRIS_MODES = ("ok", "fail_one", "fail_all_writes", "down_503", "503_before", "429_before", "404_before",
              "503_after", "429_after", "404_after", "html_after", "reset_before", "reset_after")
TENANT = "Acme"


class Killed(BaseException):
    """The process died at a fault point (raised by the hook, caught by the harness)."""


def envelope(status, message):
    return status, {"status": "error", "message": message, "data": []}


class IrisFaults:
    """An emulator hook: what IRIS (or a proxy in front of it) answers, by mode. Echoes the key in its
    messages, placed so that it crosses the cut the forwarder makes (masking must come first)."""

    def __init__(self, key, emu):
        self.key = key
        self.emu = emu
        self.mode = "ok"
        self.poison = set()  # refs IRIS fails on in mode fail_one (the alerts' own problem)
        self.hold_next = None  # True/False: the next POST's connection drops; IRIS commits it later, or never
        self.holds = []  # bodies of the held POSTs
        self.lock = threading.Lock()

    def echo(self, limit=500):
        return "x" * (limit - len(self.key) // 2) + self.key

    def __call__(self, phase, method, path, query, body, login):
        if path == "/alerts/add" and method == "POST":
            return self._post(phase, body)
        if self.mode == "down_503" and phase == "before":
            return envelope(503, f"maintenance {self.echo()}")
        return None

    def _post(self, phase, body):
        ref = body.get("alert_source_ref") if isinstance(body, dict) else None
        mode = self.mode
        if phase == "before":
            with self.lock:
                commit, self.hold_next = self.hold_next, None
                if commit is not None:  # the connection drops after sending; IRIS commits it later, or never
                    self.holds.append((body, commit))
            if commit is not None:
                raise ConnectionResetError("held by the test")
            if mode == "fail_all_writes" or (mode == "fail_one" and ref in self.poison):
                return envelope(500, f"could not write: {self.echo()}")
            if mode == "down_503":
                return envelope(503, f"maintenance {self.echo()}")
            if mode.endswith("_before") and mode[:3].isdigit():
                return envelope(int(mode[:3]), f"proxy: {self.echo()}")
            if mode == "reset_before":
                raise ConnectionResetError("reset by the test")
            return None
        if mode.endswith("_after") and mode[:3].isdigit():
            return envelope(int(mode[:3]), f"upstream reset after forwarding {self.echo()}")
        if mode == "html_after":
            return 200, f"proxy page {self.echo(300)}"
        if mode == "reset_after":
            raise ConnectionResetError("reset by the test")
        return None

    def release(self):
        """IRIS finishes the held POSTs: commits them (late, after the client gave up), or never does."""
        with self.lock:
            holds, self.holds = self.holds, []
        for body, commit in holds:
            if commit:
                self.emu.create_alert(**body)


class VirtualClock:
    """time.time and the boot clock, patched: steps of the wall clock alone (both ways), and time passing
    (both clocks). time.monotonic is left alone: deadlines stay real."""

    def __init__(self):
        self.wall = 0.0
        self.boot = 0.0
        self._time, self._boot = time.time, clock.boot_seconds

    def install(self):
        time.time = lambda: self._time() + self.wall
        clock.boot_seconds = lambda: self._boot() + self.boot

    def uninstall(self):
        time.time, clock.boot_seconds = self._time, self._boot

    def step_wall(self, seconds):
        self.wall += seconds

    def advance(self, seconds):
        self.wall += seconds
        self.boot += seconds


class Disk:
    """os.write failing with ENOSPC while full (in-place overwrites, pwrite, still work, as on ext4)."""

    def __init__(self):
        self.full = False
        self._write = os.write

    def install(self):
        def write(fd, data):
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._write(fd, data)
        os.write = write

    def uninstall(self):
        os.write = self._write


class Points:
    """faults.hook: records the points each thread's run reached; kills a run at one point when asked."""

    def __init__(self):
        self.local = threading.local()

    def start(self, kill_at=None):
        self.local.seen = []
        self.local.kill_at = kill_at

    def seen(self):
        return list(getattr(self.local, "seen", []))

    def __call__(self, name):
        seen = getattr(self.local, "seen", None)
        if seen is None:
            return
        seen.append(name)
        if self.local.kill_at == name:
            self.local.kill_at = None
            raise Killed(name)

    def install(self):
        faults.hook = self

    @staticmethod
    def uninstall():
        faults.hook = None


def link(emu, login, customer_id, linked):
    with emu.lock:
        user = next(u for u in emu.state["users"] if u["login"] == login)
        user["customers"] = [c for c in user["customers"] if c != customer_id] + ([customer_id] if linked else [])


def leaked(text, key, width=16):
    """The first `width` consecutive characters of key found in text, or None."""
    return next((key[i:i + width] for i in range(len(key) - width + 1) if key[i:i + width] in text), None)


def spool_items(manager):
    """(path, decoded item or None) of every regular spool file."""
    from iris_forwarder.spool import decode

    folder = manager.state / "spool"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        if not path.is_file():
            continue
        try:
            found.append((path, decode(json.loads(path.read_text()))))
        except (ValueError, OSError):
            found.append((path, None))
    return found


def open_fds():
    """This process's open file descriptors."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def close_fds_under(root):
    """Close every descriptor on a file under root: an in-process kill leaves the killed run's descriptors
    (and so its flocks) open, where the kernel would close them. (The harness keeps none open there.)"""
    root = str(root)
    for fd in open_fds():
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(root):
            with contextlib.suppress(OSError):
                os.close(fd)
