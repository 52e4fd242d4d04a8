"""The OpenCTI enrichment's test helpers: sample alerts, the queue socket, and one run's files.

Used by tests/unit/test_opencti.py and the tests in tests/integration/opencti/, whose conftest.py
builds the fixtures from these.
"""
import json
import shutil
import socket
import tempfile
from pathlib import Path

import opencti_enrich  # files/integrations is on sys.path (tests/conftest.py)

IP_A = "45.155.205.233"  # public addresses (the emulator's sample intel has IP_A): only looked up, never contacted
IP_B = "185.220.101.4"
IP_C = "194.165.16.11"
IP_E = "91.240.118.172"
IP6 = "2a03:2880:f12f:83:face:b00c:0:25de"
DOMAIN = "update-check.example.net"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def ip_pattern(ip):
    """The STIX pattern of an indicator for one address."""
    return f"[{'ipv6-addr' if ':' in ip else 'ipv4-addr'}:value = '{ip}']"


def make_alert(groups, data=None, *, agent=None, **top):
    """A Wazuh alert of the given rule groups (manager alert unless agent is given)."""
    alert = {
        "timestamp": "2025-06-03T09:14:22.518+0000",
        "id": "1748942062.8845211",
        "rule": {"id": "100100", "level": 5, "description": "test alert", "groups": groups},
        "agent": agent or {"id": "000", "name": "wazuh-manager"},
        "data": data or {},
        "location": "test",
    }
    alert.update(top)
    return alert


def ids_alert(**data):
    """A Suricata alert of agent 005 with the given data fields."""
    return make_alert(["ids", "suricata"], data, agent={"id": "005", "name": "ids-sensor-01", "ip": "192.168.10.5"})


OPENCTI_TOKEN = "oc-token-7f3a9c1e2b4d6f8a0c2e4a6b8d0f1e3c5a7b"


class QueueRecorder:
    """A datagram socket standing in for analysisd's queue, in a short /tmp directory (AF_UNIX paths are
    limited to 108 bytes); reads the "1:<location>:<json>" messages the enrichment sends."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="oc", dir="/tmp"))
        self.dir.chmod(0o755)
        self.path = str(self.dir / "queue")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def datagrams(self, wait=0.0):
        """(location, payload text as sent) of every datagram received so far; waits up to `wait` s for the
        first."""
        found = []
        self.sock.settimeout(wait or None)
        if not wait:
            self.sock.setblocking(False)
        while True:
            try:
                text = self.sock.recv(70000).decode("utf-8")
            except (BlockingIOError, TimeoutError):
                return found
            self.sock.setblocking(False)
            assert text.startswith("1:"), text[:80]
            cut = text.index(':{"integration"')
            found.append((text[2:cut], text[cut + 1:]))

    def messages(self, wait=0.0):
        """(location, payload) of every datagram received so far; waits up to `wait` s for the first."""
        return [(location, json.loads(payload)) for location, payload in self.datagrams(wait)]

    def events(self):
        """The opencti objects of the messages received so far."""
        payloads = [payload for _location, payload in self.messages()]
        assert all(payload["integration"] == "opencti" for payload in payloads)
        return [payload["opencti"] for payload in payloads]

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class OpenctiRun:
    """Files for one enrichment run beside a QueueRecorder: the alert, the options, state and log."""

    def __init__(self, emu, queue):
        self.emu = emu
        self.queue = queue
        self.dir = queue.dir
        self.state_dir = self.dir / "state"
        self.log_file = self.dir / "integrations.log"
        self.options = {"state_dir": str(self.state_dir), "queue_socket": queue.path, "log_file": str(self.log_file)}

    def write_alert(self, alert):
        path = self.dir / "alert.json"
        path.write_text(alert if isinstance(alert, str) else json.dumps(alert), encoding="utf-8")
        return str(path)

    def write_options(self, extra=None):
        path = self.dir / "options.json"
        path.write_text(json.dumps({**self.options, **(extra or {})}) + "\n")
        return str(path)

    def argv(self, alert, *, options=None, token=OPENCTI_TOKEN, url=None, timeout="5", debug=""):
        """The 4.8+ layout integratord uses when debug is off (literal redirect element included)."""
        return ["integrations", self.write_alert(alert), token, url or self.emu.graphql_url, debug,
                self.write_options(options), timeout, "3", "> /dev/null 2>&1"]

    def run(self, alert, **kwargs):
        """Run the program in this process; returns its exit code."""
        return opencti_enrich.main(self.argv(alert, **kwargs))

    def messages(self):
        return self.queue.messages()

    def events(self):
        return self.queue.events()

    def log(self):
        return self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""
