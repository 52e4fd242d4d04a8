"""The forwarder's state on disk: the spool, rejected/, the drain lock and the outage marker.

Layout under state_dir (docs/forwarder.md, "Store-and-forward"):
    spool/<ns-time>-<random>-<ref>.json   one alert waiting for IRIS (see alert.new_item)
    rejected/                             alerts IRIS refused for good, poison items, unreadable input
    drain.lock                            flock held by whoever drains the spool
    unavailable                           outage marker; its mtime is when IRIS was last unavailable
    lookups.json                          severity/status cache (iris.resolve_ids)

Every spool file is written atomically (socstack_core.files) with secrets masked, and is flock-ed
by the process working on it from before it becomes visible until that process is done with it or
dies: a drain skips a locked file, so an alert in flight is never sent by two processes.
"""
import os
import time

from socstack_core import files
from socstack_core.jsonio import loads

REJECTED_KEEP_BYTES = 1024 * 1024  # how much of an unparseable alert file is kept for inspection
STALE_TEMP_SECONDS = 600  # temp files older than this were left by a killed writer


class Held:
    """A spool file this process holds the lock of."""

    __slots__ = ("fd", "path")

    def __init__(self, path, fd):
        self.path = path
        self.fd = fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _safe_name(text):
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:64]


def normalise(item):
    """A loaded item in the current format (items spooled by 0.1 had an "ambiguous" flag)."""
    if "state" not in item:
        item["state"] = "unknown" if item.get("ambiguous") else "unsent"
        item.pop("ambiguous", None)
    item.setdefault("sent_at", None)
    for key in ("attempts", "failures", "not_before", "created"):
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            item[key] = 0
    item.setdefault("last_error", "")
    return item


class Spool:
    """Alerts waiting for IRIS (spool/) and alerts IRIS refused (rejected/), one JSON file each."""

    def __init__(self, options, log):
        self.state_dir = options["state_dir"]
        self.dir = os.path.join(self.state_dir, "spool")
        self.rejected_dir = os.path.join(self.state_dir, "rejected")
        self.max_files = options["spool_max_files"]
        self.rejected_max = options["rejected_max_files"]
        self.log = log
        self.masker = log.masker

    # ---------------------------------------------------------------------------------- listing
    @staticmethod
    def _listing(directory):
        try:
            names = [entry.name for entry in os.scandir(directory) if entry.name.endswith(".json")
                     and not entry.name.startswith(".")]
        except OSError:  # missing or unusable: nothing to drain (writing to it will report the problem)
            return []
        return [os.path.join(directory, name) for name in sorted(names)]

    def pending(self):
        """Spooled item paths, oldest first (file names start with a nanosecond time stamp)."""
        return self._listing(self.dir)

    @staticmethod
    def _new_path(directory, ref):
        return os.path.join(directory, f"{time.time_ns():020d}-{os.urandom(3).hex()}-{_safe_name(ref)}.json")

    # ----------------------------------------------------------------------------------- items
    def add(self, item):
        """Write a new item, locked before it is visible; returns its Held. Raises OSError, no temp left."""
        os.makedirs(self.dir, mode=0o750, exist_ok=True)
        path = self._new_path(self.dir, item["source_ref"])
        return Held(path, files.write_json(path, item, self.masker, keep_locked=True))

    def update(self, held, item):
        """Replace a held item's file; the lock moves to the new file. Raises OSError (old file kept)."""
        fd = files.write_json(held.path, item, self.masker, keep_locked=True)
        held.close()
        held.fd = fd
        return held

    def claim(self, path):
        """Held for an item no other process works on, or None (locked elsewhere, or gone)."""
        fd = files.lock_existing(path)
        return None if fd is None else Held(path, fd)

    def load(self, held):
        """The held item, or None (a corrupt file is moved to rejected/)."""
        try:
            with open(held.path, "rb") as handle:
                item = loads(handle.read())
            if isinstance(item, dict) and isinstance(item.get("payload"), dict) and item.get("source_ref"):
                return normalise(item)
            problem = "not a spool item"
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        self.log.error(f"spool file {os.path.basename(held.path)} is {problem}; moved to rejected/")
        self._move_to_rejected(held.path)
        return None

    def done(self, held):
        """Remove a delivered item. Not fsync-ed: should the removal be lost in a power cut, the item is
        looked up in IRIS before it is sent again."""
        try:
            os.unlink(held.path)
        except FileNotFoundError:
            pass
        held.close()

    # ---------------------------------------------------------------------------------- bounds
    def cleanup_temp(self):
        """Remove temp files that killed writers left behind."""
        files.remove_stale_temp_files(self.dir, STALE_TEMP_SECONDS, time.time())

    def enforce_bound(self):
        """Keep at most spool_max_files items, dropping (and naming) the oldest no process works on."""
        paths = self.pending()
        excess = len(paths) - self.max_files
        if excess <= 0:
            return
        refs = []
        for path in paths:
            if len(refs) >= excess:
                break
            held = self.claim(path)
            if held is None:
                continue
            try:
                item = self.load(held)
                refs.append(str(item.get("source_ref")) if item else os.path.basename(path))
                os.unlink(path)
            except OSError:
                continue
            finally:
                held.close()
        shown = ", ".join(refs[:20]) + (f" and {len(refs) - 20} more" if len(refs) > 20 else "")
        self.log.error(f"spool full ({self.max_files} files): dropped the {len(refs)} oldest alert(s): {shown}")

    def trim(self):
        """enforce_bound() when the spool is over its bound and no drain is running (a drain trims itself)."""
        if len(self.pending()) <= self.max_files:
            return
        lock = self.drain_lock()
        if lock is not None:
            try:
                self.enforce_bound()
            finally:
                os.close(lock)

    def _bound_rejected(self):
        try:
            names = sorted(name for name in os.listdir(self.rejected_dir) if not name.startswith("."))
        except OSError:
            return
        if len(names) > self.rejected_max:
            for name in names[: len(names) - self.rejected_max]:
                try:
                    os.unlink(os.path.join(self.rejected_dir, name))
                except OSError:
                    continue
            self.log.warning(f"rejected/ keeps at most {self.rejected_max} files; removed the oldest")

    # -------------------------------------------------------------------------------- rejected/
    def _move_to_rejected(self, path):
        try:
            os.makedirs(self.rejected_dir, mode=0o750, exist_ok=True)
            os.replace(path, os.path.join(self.rejected_dir, os.path.basename(path)))
        except OSError as exc:
            self.log.error(f"cannot move {os.path.basename(path)} to rejected/: {exc.strerror or exc}")
            return
        self._bound_rejected()

    def reject(self, item, reason, held=None):
        """Keep a refused item in rejected/ (with the reason), removing it from the spool. Raises OSError."""
        item = dict(item, rejected_reason=reason, rejected_at=time.time())
        os.makedirs(self.rejected_dir, mode=0o750, exist_ok=True)
        target = os.path.join(self.rejected_dir, os.path.basename(held.path)) if held else \
            self._new_path(self.rejected_dir, item["source_ref"])
        files.write_json(target, item, self.masker)
        if held:
            self.done(held)
        self._bound_rejected()

    def keep_unparsed(self, raw):
        """Keep the start of an alert file that could not be parsed, for inspection. Raises OSError."""
        os.makedirs(self.rejected_dir, mode=0o750, exist_ok=True)
        path = os.path.join(self.rejected_dir, f"{time.time_ns():020d}-{os.urandom(3).hex()}-unparsed.alert")
        files.write_atomic(path, self.masker.mask_bytes(raw[:REJECTED_KEEP_BYTES]))
        self._bound_rejected()
        return path

    # ------------------------------------------------------------------------------------ locks
    def drain_lock(self):
        """An fd holding the drain lock, or None when another process holds it."""
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        return files.try_lock(os.path.join(self.state_dir, "drain.lock"))

    # ------------------------------------------------------------------------------ outage mark
    def _outage_path(self):
        return os.path.join(self.state_dir, "unavailable")

    def recent_outage(self, backoff):
        """Seconds since IRIS was last found unavailable, when that is within backoff seconds."""
        try:
            age = time.time() - os.stat(self._outage_path()).st_mtime
        except OSError:
            return None
        return age if 0 <= age < backoff else None

    def set_outage(self, reason):
        try:
            files.write_atomic(self._outage_path(), self.masker.mask(reason).encode("utf-8", "replace")[:1000],
                               durable=False)
        except OSError:
            return

    def clear_outage(self):
        try:
            os.unlink(self._outage_path())
        except OSError:
            return
