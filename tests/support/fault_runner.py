"""Run a host program's main() in a child process that stops at named fault points, for fault tests.

    python tests/support/fault_runner.py --program iris_forwarder --report-fd R --resume-fd W \\
        [--pause POINT ...] [--fail POINT=ERRNO ...] -- ARGV...

socstack_core.faults.point(name) is called by the programs at every step that matters for their
guarantees. Here it is hooked: at a --pause point the child writes "POINT\\n" to the report pipe and
blocks until the test writes one byte to the resume pipe (or kills it: that is the point); at a
--fail point it raises OSError(ERRNO). Each point pauses or fails once, the first time it is reached.
The test side is FaultyChild in tests/support/forwarder.py. Nothing here sleeps: the child and the test
move on events (pipe reads) only.
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "files"), str(ROOT / "files" / "integrations")]

from socstack_core import faults  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--program", default="iris_forwarder")
    parser.add_argument("--report-fd", type=int, required=True)
    parser.add_argument("--resume-fd", type=int, required=True)
    parser.add_argument("--pause", action="append", default=[])
    parser.add_argument("--fail", action="append", default=[])
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    pauses = set(args.pause)
    fails = {name: int(code) for name, _sep, code in (item.rpartition("=") for item in args.fail)}

    def hook(name):
        if name in fails:
            code = fails.pop(name)
            raise OSError(code, os.strerror(code))
        if name in pauses:
            pauses.discard(name)
            os.write(args.report_fd, f"{name}\n".encode())
            os.read(args.resume_fd, 1)

    faults.hook = hook
    program = __import__(args.program)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    sys.exit(program.main(["integrations", *argv] if argv[:1] != ["--replay"] else ["x", *argv]))


if __name__ == "__main__":
    main()
