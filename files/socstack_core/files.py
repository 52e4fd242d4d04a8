"""Files the host programs keep: atomic writes that clean up after themselves, and flock locks.

``write_atomic`` writes a temp file in the target's directory, fsyncs it, renames it over the
target and fsyncs the directory: readers see the old file or the whole new one, and after it
returns the new one survives a crash of the process or of the machine. On every failure path
(ENOSPC, EROFS, EACCES, an interrupted write) the temp file is removed before the error is
raised, so a full disk never leaves partial files behind. With ``keep_locked`` the new file is
``flock``-ed before it becomes visible, and the locked descriptor is returned: no other process can
take a file that is still being worked on, and the lock goes away with the process, however it ends.
"""
import os
import stat

from . import faults

TEMP_PREFIX = ".tmp-"


def fsync_dir(path):
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flock(fd, blocking=False):
    import fcntl  # noqa: PLC0415 -- small C module, only needed by programs that lock

    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))


def write_atomic(path, data, *, mode=0o640, keep_locked=False, durable=True):
    """Replace path by data (bytes) atomically; returns the locked fd when keep_locked, else None.

    Raises OSError with no temp file left behind.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    try:
        faults.point("file:write")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
        if keep_locked:
            _flock(fd)
        faults.point("file:rename")
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if not keep_locked:
        os.close(fd)
    if durable:
        try:
            fsync_dir(directory)
        except OSError:
            pass  # the rename is done; only its durability across a power cut is in doubt
    return fd if keep_locked else None


def write_json(path, value, masker=None, **kwargs):
    """write_atomic of value as JSON (ASCII, so any string round-trips), secrets masked."""
    from .jsonio import dumps  # noqa: PLC0415

    text = dumps(value, ensure_ascii=True)
    if masker:
        text = masker.mask(text)
    return write_atomic(path, text.encode("ascii"), **kwargs)


def try_lock(path, mode=0o640):
    """An fd holding an exclusive flock on path (created if missing), or None when another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        _flock(fd)
    except OSError:
        os.close(fd)
        return None
    return fd


def lock(path, mode=0o640):
    """An fd holding an exclusive flock on path (created if missing), waiting for another holder to let go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        _flock(fd, blocking=True)
    except OSError:
        os.close(fd)
        raise
    return fd


def lock_existing(path, writable=False):
    """An fd holding an exclusive flock on the regular file now at path, or None (missing, locked, or not a
    regular file: a FIFO is opened without blocking and refused). writable: opened for writing too."""
    try:
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        _flock(fd)
        # The file may have been replaced or removed between open and flock: lock the current one only.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise OSError("replaced")
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_temp_files(directory, older_than, now):
    """Remove temp files that a killed writer left in directory (older than older_than seconds)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        try:
            if entry.name.startswith(TEMP_PREFIX) and now - entry.stat().st_mtime > older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed
