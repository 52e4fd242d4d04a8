"""Clocks for the timers of the host programs: step-proof within a boot, clamped across boots.

The wall clock (``time.time()``) can be stepped both ways (NTP after a cold start, an operator, a VM
restored from a snapshot) and a value read from a state file can be anything. A timer that must
survive that is kept as a *stamp*: ``<boot id>@<seconds since boot>``, where the seconds come from
CLOCK_BOOTTIME (monotonic, counts suspend, never stepped). ``elapsed(stamp, wall_then)`` is exact
when the stamp was taken during this boot; after a reboot (or where there is no boot id) it falls back
to the wall clock, and a wall difference that is negative (the clock went back) is reported as
``None`` so that the caller decides, visibly, instead of waiting for the clock to catch up.
"""
import time

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)
_boot_id = []  # cached: [id or ""]


def boot_id():
    """This boot's id (Linux), or "" where the system has none."""
    if not _boot_id:
        try:
            with open(BOOT_ID_FILE, "rb") as handle:
                text = handle.read(64).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        _boot_id.append(text if text and all(c.isalnum() or c == "-" for c in text) else "")
    return _boot_id[0]


def boot_seconds():
    """Seconds since boot on a clock that is never stepped (CLOCK_BOOTTIME, else CLOCK_MONOTONIC)."""
    if _BOOTTIME is not None:
        try:
            return time.clock_gettime(_BOOTTIME)
        except OSError:  # pragma: no cover -- a kernel without CLOCK_BOOTTIME
            pass
    return time.monotonic()


def stamp():
    """A stamp of now for elapsed() ('' where the system has no boot id)."""
    ident = boot_id()
    return f"{ident}@{boot_seconds():.3f}" if ident else ""


def _seconds_of(text):
    ident, at, seconds = str(text or "").partition("@")
    if not at or not ident or ident != boot_id():
        return None
    try:
        value = float(seconds)
    except ValueError:
        return None
    return value if 0 <= value < 1e12 else None


def elapsed(then_stamp, wall_then, wall_now=None):
    """Seconds since the moment of then_stamp (taken with wall time wall_then), or None when unknown.

    Same boot: the boot clock, exact whatever the wall clock did. Otherwise the wall clock; None when it
    says the moment is in the future (the clock was set back) or wall_then is not a finite number.
    """
    then = _seconds_of(then_stamp)
    if then is not None:
        now = boot_seconds()
        if now >= then - 0.001:  # the stamp is rounded to the millisecond
            return max(0.0, now - then)
    if not is_time(wall_then):
        return None
    wall_now = time.time() if wall_now is None else wall_now
    diff = wall_now - wall_then
    return diff if diff >= 0 else None


def is_time(value):
    """True for a finite number that can be a wall-clock time (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -1e11 < value < 1e11
