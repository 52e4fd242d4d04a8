"""Compile modules to hash-checked bytecode when theirs is missing or stale; fix owner and mode.

Run by the host_program role with the interpreter that will import the modules:
    python3 - GROUP [--check] MODULE.py...   (this file on stdin, or with -c)
Prints "compiled <path>" for each module it (re)compiled, or would compile with --check. A .pyc is
fresh when it is hash-checked and its hash is the source's: then nothing is written, so a run with
nothing to do reports no change. The __pycache__ directories become root:GROUP 0750 and the .pyc
files root:GROUP 0640, so the group can load them (compileall makes them root:root).
"""
import grp
import importlib.util
import os
import py_compile
import sys


def fresh(source, pyc):
    try:
        with open(pyc, "rb") as handle:
            head = handle.read(16)
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    flags = int.from_bytes(head[4:8], "little")
    return (head[:4] == importlib.util.MAGIC_NUMBER and flags == 0b11
            and head[8:16] == importlib.util.source_hash(data))


def main(argv):
    group, rest = argv[0], argv[1:]
    check = "--check" in rest
    modules = [path for path in rest if path != "--check"]
    gid = None if check else grp.getgrnam(group).gr_gid
    for source in modules:
        pyc = importlib.util.cache_from_source(source)
        if not fresh(source, pyc):
            print(f"compiled {source}")
            if check:
                continue
            py_compile.compile(source, cfile=pyc, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        if check:
            continue
        for path, mode in ((os.path.dirname(pyc), 0o750), (pyc, 0o640)):
            info = os.stat(path)
            if (info.st_uid, info.st_gid) != (0, gid):
                os.chown(path, 0, gid)
            if info.st_mode & 0o7777 != mode:
                os.chmod(path, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
