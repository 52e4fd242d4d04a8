"""Dedup memory (the same event analysed recently is not sent to the model again) and burst control."""
import collections
import hashlib
import os
import re
import sys
import time

from socstack_core import files
from socstack_core.jsonio import dumps, loads

from .prompt import rule_and_agent, wazuh_event

_VOLATILE_KEY_RE = re.compile(
    r"time|date|timestamp|recordid|guid|processid|threadid|^pid$|port|flow_?id|logonid|sequence|^id$", re.IGNORECASE
)
# Each pattern is bounded or starts at a character its repeat cannot match: linear on any text.
_VOLATILE_TEXT = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\[\d+\]"), "[<pid>]"),
    (re.compile(r"\bport \d+", re.IGNORECASE), "port <n>"),
]


def _without_volatile(data):
    if isinstance(data, dict):
        return {k: _without_volatile(v) for k, v in data.items() if not _VOLATILE_KEY_RE.search(str(k))}
    if isinstance(data, list):
        return [_without_volatile(item) for item in data]
    if isinstance(data, str):
        for pattern, replacement in _VOLATILE_TEXT:
            data = pattern.sub(replacement, data)
    return data


def customer_of(alert):
    """The alert's IRIS customer id (an int), or None when IRIS did not say."""
    customer = alert.get("alert_customer_id")
    return customer if isinstance(customer, int) and not isinstance(customer, bool) else None


def dedup_key(alert):
    """``customer|rule|agent|fingerprint`` of the event, ignoring timestamps, pids, ports and record ids.

    Scoped to one customer (tenant): agent ids such as ``001`` repeat across Wazuh managers and one
    scanner makes the same event everywhere, so an analysis is only ever reused within the customer
    that owns it. None when the alert has no Wazuh rule id or no customer (never deduplicated).
    """
    event = wazuh_event(alert)
    rule_id, agent_id, agent_name, _groups = rule_and_agent(alert)
    customer = customer_of(alert)
    if not rule_id or customer is None:
        return None
    basis = event.get("data") or event.get("full_log") or alert.get("alert_description") or ""
    canonical = dumps([customer, rule_id, agent_id or agent_name, _without_volatile(basis)], sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()[:32]
    return f"c{customer}|{rule_id}|{agent_id or agent_name}|{digest}"


def key_customer(key):
    """The customer id a dedup key is scoped to (the ``c<id>|`` prefix), or None."""
    head = (key or "").partition("|")[0]
    return int(head[1:]) if head.startswith("c") and head[1:].isdigit() else None


class DedupStore:
    """Analyses by dedup key for a time window; a JSON file shared by the instances of one host.

    Without a state directory it lives in memory only. Entries are recorded only after the analysis
    was posted, and a reuse never refreshes an entry (the window runs from the real analysis). The
    file is replaced atomically (readers see the old or the new one) under a lock file for writers.
    """

    def __init__(self, state_dir, window, log=None):
        self.window = window
        self.path = os.path.join(state_dir, "dedup.json") if state_dir else None
        self.memory = {}
        self.log = log

    def _read(self):
        if not self.path:
            return self.memory
        try:
            with open(self.path, "rb") as handle:
                data = loads(handle.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError):
            if self.log is not None:
                self.log.warning(f"dedup state {self.path} is unreadable; starting with an empty one")
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, key, now):
        """The earlier analysis for this key if it is inside the window."""
        if not key or self.window <= 0:
            return None
        entry = self._read().get(key)
        # The entry must name the key's customer: an entry of another tenant (or of a version before keys
        # were scoped, without a customer) is never reused.
        customer = key_customer(key)
        if (isinstance(entry, dict) and customer is not None and entry.get("customer") == customer
                and now - float(entry.get("time", 0)) <= self.window):
            return entry
        return None

    def record(self, key, alert_id, analysis, now):
        """Remember a posted analysis; expired entries are pruned on the way."""
        if not key or self.window <= 0 or key_customer(key) is None:
            return
        entry = {"alert_id": alert_id, "customer": key_customer(key), "time": now, "analysis": analysis}
        if not self.path:
            self.memory = {k: v for k, v in self.memory.items() if now - v["time"] <= self.window}
            self.memory[key] = entry
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = files.lock(self.path + ".lock", mode=0o600)
        try:
            data = {k: v for k, v in self._read().items()
                    if isinstance(v, dict) and now - float(v.get("time", 0)) <= self.window}
            data[key] = entry
            files.write_json(self.path, data, mode=0o600, durable=False)
        finally:
            os.close(fd)


class RateLimiter:
    """At most ``per_minute`` events in any 60 s window (0 means no limit)."""

    def __init__(self, per_minute, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.events = collections.deque()

    def available(self):
        if self.per_minute <= 0:
            return sys.maxsize
        now = self.clock()
        while self.events and now - self.events[0] >= 60.0:
            self.events.popleft()
        return self.per_minute - len(self.events)

    def spend(self):
        self.events.append(self.clock())

    def wait_seconds(self, count=1):
        """Seconds until ``count`` more events are allowed (0 when they are now); count is capped at the limit."""
        missing = min(count, self.per_minute) - self.available()
        if missing <= 0:
            return 0.0
        return max(0.0, self.events[missing - 1] + 60.0 - self.clock())
