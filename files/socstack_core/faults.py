"""Named fault points: places in the host programs where a test can stop, kill or fail a run.

A program calls ``point("name")`` at each step that matters for its guarantees (before a request is
sent, after the answer, after a spool write...). In production ``hook`` is None and a point costs one
global lookup. A test sets ``hook`` (in the process itself, or through tests/fault_runner.py for a
child process it will signal) to a callable taking the point's name; the callable may block until
the test says go on, or raise to simulate a failure at that point.
"""

hook = None


def point(name):
    """Report that the program reached the named point (see the module docstring)."""
    if hook is not None:
        hook(name)
