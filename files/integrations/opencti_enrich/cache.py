"""Per-observable lookup results (hits and misses) in one JSON file, valid for cache_ttl seconds.

The file is replaced atomically (socstack_core.files.write_json: temp file, fsync, rename), so a
reader sees the old file or the whole new one; an unreadable or odd file is logged and taken as empty.
Writers take a flock on state_dir itself (no lock file) and merge: each re-reads the file under the lock and adds
its own new results to it, so concurrent runs keep each other's entries. An entry is trusted only while
0 <= now - stored < cache_ttl: one stored "in the future" (a clock set back, an edited file) is not.
"""
import math
import os
import time

from socstack_core import files, jsonio

CACHE_FILE = "opencti-cache.json"
MAX_CACHE_BYTES = 64 * 1024 * 1024
FUTURE_SLACK = 5  # seconds an entry may be dated ahead of now (clock jitter between runs)


def _is_id(value):
    return isinstance(value, str) and bool(value)


def _valid_indicators(items):
    return isinstance(items, list) and all(isinstance(r, dict) and _is_id(r.get("id")) for r in items)


def valid_result(result):
    """True for a result of the shape answer.attribute_results makes (guards against an edited cache)."""
    if not isinstance(result, dict) or not _valid_indicators(result.get("indicators")):
        return False
    observables = result.get("observables")
    if not _valid_indicators(observables):
        return False
    for record in observables:
        if not _valid_indicators(record.get("indicators") or []):
            return False
        related = record.get("related") or []
        if not isinstance(related, list) or not all(
                isinstance(rel, dict) and _valid_indicators(rel.get("indicators") or []) for rel in related):
            return False
    return True


def _stamp(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _lock_dir(path):
    """An fd holding an exclusive flock on the directory path (writers of the cache take turns)."""
    import fcntl  # noqa: PLC0415 -- only runs that store results

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    return fd


class ResultCache:
    """Results per observable key ('ipv4:45.155.205.233'), each with the time it was stored."""

    def __init__(self, state_dir, ttl, max_entries, log):
        self.path = os.path.join(state_dir, CACHE_FILE)
        self.ttl = ttl
        self.max_entries = max_entries
        self.log = log
        self.entries = {}
        self.fresh = {}  # entries this run stored
        if ttl > 0:
            self.entries = self._read()

    @staticmethod
    def key(obs):
        return f"{obs.kind}:{obs.value}"

    def _read(self):
        """The file's entries ({} when there is none, or it is unusable: logged)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_CACHE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self.log.warning(f"cache file {self.path} is unreadable ({exc.strerror or exc}); starting empty")
            return {}
        try:
            if len(raw) > MAX_CACHE_BYTES:
                raise ValueError("too large")
            document = jsonio.loads(raw)
        except (ValueError, RecursionError) as exc:
            self.log.warning(f"cache file {self.path} is corrupt ({type(exc).__name__}); starting empty")
            return {}
        entries = document.get("entries") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            self.log.warning(f"cache file {self.path} has an unexpected layout; starting empty")
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict) and _stamp(v.get("stored"))}

    def _live(self, entry, now):
        return now - entry["stored"] + FUTURE_SLACK >= 0 and now - entry["stored"] < self.ttl

    def get(self, obs):
        """The cached result, or None when absent, older than the TTL, dated in the future, or of another shape."""
        entry = self.entries.get(self.key(obs))
        if not entry or not self._live(entry, time.time()):
            return None
        result = entry.get("result")
        return result if valid_result(result) else None

    def put(self, obs, result):
        if self.ttl > 0:
            self.fresh[self.key(obs)] = {"stored": time.time(), "result": result}

    def save(self):
        """Merge this run's results into the file under its lock, atomically; a failure only costs future
        requests (logged)."""
        if not self.fresh:
            return
        lock = None
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o750, exist_ok=True)
            lock = _lock_dir(os.path.dirname(self.path) or ".")
            now = time.time()
            merged = dict(self._read(), **self.fresh)
            live = sorted(((k, v) for k, v in merged.items() if self._live(v, now)),
                          key=lambda item: item[1]["stored"])[-self.max_entries:]
            files.write_json(self.path, {"version": 1, "entries": dict(live)}, mode=0o640)
        except (OSError, ValueError, TypeError) as exc:
            self.log.warning(f"cannot write cache file {self.path}: {getattr(exc, 'strerror', None) or exc}")
        finally:
            if lock is not None:
                os.close(lock)
