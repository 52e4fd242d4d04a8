"""The forwarder's state on disk: the spool, rejected/, the drain lock and the outage marker.

Layout under state_dir (docs/forwarder.md, "Store-and-forward"):
    spool/<ns-time>-<random>-<ref>.json   one alert waiting for IRIS (see alert.new_item)
    spool/s<ns-time>-...json              one whose last send IRIS answered with a 5xx not yet known to be
                                          its own problem (tried after the others; see delivery)
    rejected/                             alerts IRIS refused for good, poison items, unreadable input
    drain.lock                            flock held by whoever drains the spool
    unavailable                           outage marker: when IRIS was last found unavailable
    lookups.json                          severity/status cache (iris.resolve_ids)

Every spool file is written atomically (socstack_core.files) with secrets masked, and is flock-ed
by the process working on it from before it becomes visible until that process is done with it or
dies: a drain skips a locked file, so an alert in flight is never sent by two processes.

An item file is one JSON object whose FIRST member is ``"mark"``, a fixed-width text holding the
delivery state, the wall time of the last send and its boot-clock stamp (socstack_core.clock). Marking an
item ``unknown`` right before its POST overwrites those bytes in place (pwrite + fsync): no new block,
so a spool that filled its own disk still drains.
"""
import os
import time

from socstack_core import clock, faults, files
from socstack_core.jsonio import dumps, loads

REJECTED_KEEP_BYTES = 1024 * 1024  # how much of an unparseable alert file is kept for inspection
STALE_TEMP_SECONDS = 600  # temp files older than this were left by a killed writer
MAX_ITEM_BYTES = 64 * 1024 * 1024  # a spool file larger than this is not one of ours
ITEM_VERSION = 3
MARK_PREFIX = b'{"mark":"'
STATES = ("unsent", "unknown")
STAMP_WIDTH = 60
MARK_WIDTH = 7 + 1 + 17 + 1 + STAMP_WIDTH
SUSPECT_PREFIX = "s"


class Held:
    """A spool file this process holds the lock of; markable: its mark can be overwritten in place."""

    __slots__ = ("fd", "markable", "path")

    def __init__(self, path, fd, markable=False):
        self.path = path
        self.fd = fd
        self.markable = markable

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _safe_name(text):
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:64]


def mark_text(item):
    """The fixed-width mark of an item: state, wall time of the last send, boot-clock stamp of it."""
    state = item.get("state") if item.get("state") in STATES else "unknown"
    sent_at = item.get("sent_at")
    sent_at = sent_at if clock.is_time(sent_at) and sent_at >= 0 else 0
    stamp = str(item.get("sent_clock") or "")
    stamp = stamp if len(stamp) <= STAMP_WIDTH and all(c.isalnum() or c in "-@." for c in stamp) else ""
    return f"{state:<7} {sent_at:017.3f} {stamp:<{STAMP_WIDTH}}"


def encode(item, masker=None):
    """The bytes of an item's file: its mark first (fixed width), then the rest, secrets masked."""
    rest = {key: value for key, value in item.items() if key not in ("mark", "state", "sent_at", "sent_clock", "v")}
    text = dumps({"mark": mark_text(item), "v": ITEM_VERSION, **rest}, ensure_ascii=True)
    return (masker.mask(text) if masker else text).encode("ascii")


def _number(item, key, default=0):
    value = item.get(key)
    item[key] = value if clock.is_time(value) else default


def decode(document):
    """The item of a parsed spool file (any version), its fields checked; ValueError names a bad field."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    item = dict(document)
    has_mark = "mark" in item
    mark = item.pop("mark", None)
    if has_mark and not (isinstance(mark, str) and len(mark) == MARK_WIDTH):
        item.update(state="unknown", sent_at=None, sent_clock=None)  # a damaged mark: look it up before any resend
    elif has_mark:
        state = mark[:7].strip()
        try:
            sent_at = float(mark[8:25])
        except ValueError:
            sent_at = None
        item.update(state=state if state in STATES else "unknown", sent_at=sent_at or None,
                    sent_clock=mark[26:].strip() or None)
    elif "state" not in item:  # version 1 had an "ambiguous" flag
        item["state"] = "unknown" if item.get("ambiguous") else "unsent"
    item.pop("ambiguous", None)
    if item.get("state") not in STATES:
        item["state"] = "unknown"  # never less careful than the file may have meant
    for key, kinds in (("source_ref", str), ("payload", dict), ("severity", str), ("status", str)):
        if not isinstance(item.get(key), kinds) or (key == "source_ref" and not item[key].strip()):
            raise ValueError(f"its field {key} is {type(item.get(key)).__name__}, not {kinds.__name__}")
    if item.get("customer") is not None and not isinstance(item["customer"], str):
        raise ValueError(f"its field customer is {type(item['customer']).__name__}, not str")
    for key in ("attempts", "failures", "not_before", "created", "backoff"):
        _number(item, key)
    if not clock.is_time(item.get("sent_at")):
        item["sent_at"] = None
    for key in ("sent_clock", "failed_clock"):
        if not isinstance(item.get(key), str):
            item[key] = None
    if not isinstance(item.get("last_error"), str):
        item["last_error"] = ""
    item["suspect"] = item.get("suspect") is True
    return item


normalise = decode  # the name of earlier versions


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
        """Regular *.json files, oldest first; a FIFO, device or directory named *.json is never opened."""
        try:
            names = [entry.name for entry in os.scandir(directory) if entry.name.endswith(".json")
                     and not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)]
        except OSError:  # missing or unusable: nothing to drain (writing to it will report the problem)
            return []
        return [os.path.join(directory, name) for name in sorted(names)]

    def pending(self):
        """Spooled item paths, oldest first (file names start with a nanosecond time stamp); suspects last."""
        return self._listing(self.dir)

    @staticmethod
    def _new_path(directory, ref):
        return os.path.join(directory, f"{time.time_ns():020d}-{os.urandom(3).hex()}-{_safe_name(ref)}.json")

    # ----------------------------------------------------------------------------------- items
    def add(self, item):
        """Write a new item, locked before it is visible; returns its Held. Raises OSError, no temp left."""
        os.makedirs(self.dir, mode=0o750, exist_ok=True)
        path = self._new_path(self.dir, item["source_ref"])
        return Held(path, files.write_atomic(path, encode(item, self.masker), keep_locked=True), markable=True)

    def update(self, held, item):
        """Replace a held item's file; the lock moves to the new file. Raises OSError (old file kept)."""
        fd = files.write_atomic(held.path, encode(item, self.masker), keep_locked=True)
        held.close()
        held.fd = fd
        held.markable = True
        return held

    def mark(self, held, item):
        """Record item's state and send time in the held file: in place when it can be (no free space
        needed), else by rewriting it. Raises OSError (the file then keeps its previous mark)."""
        if not held.markable:
            return self.update(held, item)
        text = mark_text(item).encode("ascii")
        offset = len(MARK_PREFIX)
        faults.point("file:mark")
        if os.pwrite(held.fd, text, offset) != len(text):
            raise OSError("short write of the mark")
        os.fsync(held.fd)
        return held

    def claim(self, path):
        """Held for an item no other process works on, or None (locked elsewhere, gone, or not a regular file)."""
        fd = files.lock_existing(path, writable=True)
        return None if fd is None else Held(path, fd)

    def load(self, held):
        """The held item, or None (a corrupt file, or one with fields of the wrong type, goes to rejected/)."""
        try:
            size = os.fstat(held.fd).st_size
            if size > MAX_ITEM_BYTES:
                raise ValueError(f"larger than {MAX_ITEM_BYTES} bytes")
            raw = os.pread(held.fd, size + 1, 0)
            end = len(MARK_PREFIX) + MARK_WIDTH
            held.markable = raw.startswith(MARK_PREFIX) and raw[end:end + 2] == b'",'
            item = decode(loads(raw))
            return item
        except FileNotFoundError:
            return None
        except (OSError, RecursionError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        except ValueError as exc:
            problem = f"not a spool item ({exc})" if str(exc).startswith(("its field", "not a JSON", "larger")) \
                else f"unreadable ({type(exc).__name__})"
        self.log.error(f"spool file {os.path.basename(held.path)} is {problem}; moved to rejected/")
        self._move_to_rejected(held.path)
        return None

    def demote(self, held):
        """Rename a held item so that drains try it after the others (an unconfirmed 5xx). Never raises."""
        name = os.path.basename(held.path)
        if name.startswith(SUSPECT_PREFIX):
            return
        target = os.path.join(os.path.dirname(held.path), SUSPECT_PREFIX + name)
        try:
            os.rename(held.path, target)
        except OSError:
            return
        held.path = target

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

    def move_to_rejected(self, held):
        """Move a held spool file as it is into rejected/ (a rename: needs no free space)."""
        self._move_to_rejected(held.path)
        held.close()

    def reject(self, item, reason, held=None):
        """Keep a refused item in rejected/ (with the reason), removing it from the spool. Raises OSError."""
        item = dict(item, rejected_reason=reason, rejected_at=time.time())
        os.makedirs(self.rejected_dir, mode=0o750, exist_ok=True)
        target = os.path.join(self.rejected_dir, os.path.basename(held.path)) if held else \
            self._new_path(self.rejected_dir, item["source_ref"])
        files.write_atomic(target, encode(item, self.masker))
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
        """Seconds since IRIS was last found unavailable, when that is within backoff seconds.

        Timed on the boot clock when the marker was written during this boot (a clock step changes
        nothing), else on the marker's mtime; a marker dated in the future is no outage.
        """
        try:
            with open(self._outage_path(), "rb") as handle:
                first = handle.read(128).split(b"\n", 1)[0].decode("ascii", "replace")
                wall = os.fstat(handle.fileno()).st_mtime
        except OSError:
            return None
        age = clock.elapsed(first, wall)
        return age if age is not None and age < backoff else None

    def set_outage(self, reason):
        """Write the marker: only a run that contacted IRIS and found it unavailable calls this."""
        text = f"{clock.stamp()}\n{self.masker.mask(reason)}"
        try:
            files.write_atomic(self._outage_path(), text.encode("utf-8", "replace")[:1000], durable=False)
        except OSError:
            return

    def clear_outage(self):
        try:
            os.unlink(self._outage_path())
        except OSError:
            return
