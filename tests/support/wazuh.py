"""A real Wazuh manager core for the tests: analysisd (with logtest) and integratord, built from Wazuh's
sources by lab/wazuh-manager/build.sh into <cache>/<version>/var/ossec (`make wazuh`; the cache is
/var/cache/socstack-lab/wazuh as root, else .cache/wazuh, or WAZUH_CACHE).

Each Manager is a private copy of that installation under a temporary directory (the daemons find
their home from their own path, so a copy is a separate manager), with the collection's rule files
added. It runs the daemons as Wazuh does - analysisd as root dropping to user wazuh in a chroot,
integratord as wazuh - so it needs root and the `wazuh` user the build created.

Where the build or root is missing, `available()` says why and the tests skip with that reason.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# lab/wazuh-manager/build.sh's cache: WAZUH_CACHE, else as root the machine's (shared by its clones), else the repo's
_DEFAULT_CACHE = "/var/cache/socstack-lab/wazuh" if os.geteuid() == 0 else REPO / ".cache" / "wazuh"
CACHE = Path(os.environ.get("WAZUH_CACHE") or _DEFAULT_CACHE)
NEWEST, OLDEST = "4.14.7", "4.8.2"  # Makefile WAZUH_NEWEST / WAZUH_OLDEST
VERSIONS = (NEWEST, OLDEST)
# analysisd opens its logtest socket only after its wait for wazuh-db, which this core lacks
# (../shared/wazuh/README.md: about 16 s on 4.14, 7 s on 4.8); the bound leaves room for a loaded machine.
START_TIMEOUT = 90.0


def installed(version):
    return CACHE / version / "var" / "ossec"


def available(version):
    """None when a manager of this version can run here, else the reason it cannot."""
    if not (installed(version) / "bin" / "wazuh-analysisd").exists():
        return (f"no Wazuh {version} build in {installed(version)}: run `make wazuh` (it builds from "
                "../shared/wazuh/wazuh-<version>-src-min.tar.gz, which a clone without ../shared lacks)")
    if os.geteuid() != 0:
        return "a real Wazuh manager runs its daemons as root dropping to user wazuh: run the tests as root"
    return None


class Manager:
    """A private copy of a built Wazuh manager; start() runs analysisd, integratord() the integrator."""

    def __init__(self, version):
        self.version = version
        # integratord runs as user wazuh without a chroot: every directory above the home must let it
        # pass, which pytest's private temporary directories do not.
        self.root = Path(tempfile.mkdtemp(prefix=f"socstack-wazuh-{version}-", dir="/tmp"))
        self.root.chmod(0o755)
        self.home = self.root / "var" / "ossec"
        self.home.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(installed(version)), str(self.home.parent)], check=True)
        self.processes = {}

    # --- files ---------------------------------------------------------------------------------
    def put(self, relative, text, owner="wazuh", mode=0o660):
        """Write a file under the manager's home, owned as Wazuh's installer would (wazuh:wazuh 0660)."""
        path = self.home / relative
        path.write_text(text, encoding="utf-8")
        shutil.chown(path, owner, "wazuh")
        path.chmod(mode)
        return path

    def add_to_ossec_conf(self, xml):
        """Insert XML before the last </ossec_config> of ossec.conf."""
        conf = self.home / "etc" / "ossec.conf"
        text = conf.read_text(encoding="utf-8")
        cut = text.rindex("</ossec_config>")
        conf.write_text(text[:cut] + xml + "\n" + text[cut:], encoding="utf-8")

    def log(self):
        return (self.home / "logs" / "ossec.log").read_text(encoding="utf-8", errors="replace")

    # --- -t --------------------------------------------------------------------------------------
    def test_config(self, daemon="wazuh-analysisd"):
        """`<daemon> -t` as the roles run it: (exit code, stdout + stderr)."""
        result = subprocess.run([str(self.home / "bin" / daemon), "-t"], cwd=self.home, capture_output=True,
                                check=False, text=True, timeout=120)
        return result.returncode, result.stdout + result.stderr

    # --- daemons ---------------------------------------------------------------------------------
    def start(self, daemon="wazuh-analysisd", ready=None):
        """Run a daemon in the foreground (-f) and wait for `ready` (a path under home) to exist."""
        log = open(self.home.parent / f"{daemon}.out", "wb")  # noqa: SIM115 -- kept open with the process
        self.processes[daemon] = (subprocess.Popen([str(self.home / "bin" / daemon), "-f"], cwd=self.home,
                                                   stdout=log, stderr=subprocess.STDOUT), log)
        if ready:
            self.wait_for((self.home / ready).exists, f"{daemon} to create {ready}", START_TIMEOUT)
        return self

    def wait_for(self, predicate, what, timeout):
        end = time.monotonic() + timeout
        while not predicate():
            for name, (process, _log) in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited {process.returncode} while waiting for {what}:\n"
                                         + self.log()[-3000:])
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n" + self.log()[-3000:])
            time.sleep(0.1)

    def close(self):
        """Stop the daemons and remove the copy."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def stop(self):
        for process, log in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
        self.processes.clear()

    # --- logtest and the queue socket --------------------------------------------------------------
    def logtest(self, event, location, log_format="syslog"):
        """One event through analysisd's logtest socket: the `output` (decoded event and matched rule)."""
        request = json.dumps({"version": 1, "origin": {"name": "socstack-tests", "module": "logtest"},
                              "command": "log_processing",
                              "parameters": {"event": event, "log_format": log_format, "location": location}})
        answer = _framed_exchange(str(self.home / "queue" / "sockets" / "logtest"), request.encode())
        assert answer["error"] == 0, answer
        return answer["data"]["output"]

    def send_queue(self, message):
        """One datagram on analysisd's queue socket, as integrations and logcollector send events."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(str(self.home / "queue" / "sockets" / "queue"))
            sock.send(message)
        finally:
            sock.close()

    def alerts(self):
        """The alerts analysisd wrote to logs/alerts/alerts.json so far."""
        path = self.home / "logs" / "alerts" / "alerts.json"
        if not path.exists():
            return []
        complete = path.read_text(encoding="utf-8").split("\n")[:-1]  # a line being written has no newline yet
        return [json.loads(line) for line in complete if line.strip()]

    def wait_for_alerts(self, predicate, count, what, timeout=60.0):
        """Wait until alerts.json holds `count` alerts that satisfy predicate; returns them."""
        found = []

        def enough():
            found[:] = [alert for alert in self.alerts() if predicate(alert)]
            return len(found) >= count

        self.wait_for(enough, what, timeout)
        return found


def _framed_exchange(path, payload):
    """Wazuh's local framing: a 4-byte little-endian length, then the bytes; both ways."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    try:
        sock.connect(path)
        sock.sendall(struct.pack("<I", len(payload)) + payload)
        size = struct.unpack("<I", _read(sock, 4))[0]
        return json.loads(_read(sock, size))
    finally:
        sock.close()


def _read(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("logtest closed the connection early")
        data += chunk
    return data
