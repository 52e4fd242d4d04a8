"""The report of a --check-connection program: one line per check, and the exit code they give.

Each line is ``<status> <check>: <text>`` with status ``ok``, ``warning`` or ``error``, the text masked
(every known secret) and on one line. The exit code is 0 when no line says error (warnings allowed),
``code_unavailable`` when an error says the server could not be reached or is not available (worth
retrying later), and ``code_error`` for any other error (the configuration). Each program passes its
own codes (the forwarder: 5 and 2). Nothing else is written: a check changes nothing.
"""
import sys


class Report:
    """Lines on out (stdout by default), masked by masker; see the module docstring."""

    def __init__(self, masker, out=None, *, code_error, code_unavailable):
        self.masker = masker
        self.out = out if out is not None else sys.stdout
        self.code_error = code_error
        self.code_unavailable = code_unavailable
        self.errors = 0
        self.unavailable = False

    def line(self, status, check, text):
        text = self.masker.mask(str(text)).replace("\r", "\\r").replace("\n", "\\n")
        self.out.write(f"{status} {check}: {text}\n")

    def ok(self, check, text):
        self.line("ok", check, text)

    def warning(self, check, text):
        self.line("warning", check, text)

    def error(self, check, text, unavailable=False):
        self.errors += 1
        self.unavailable = self.unavailable or unavailable
        self.line("error", check, text)

    def exit_code(self):
        if self.unavailable:
            return self.code_unavailable
        return self.code_error if self.errors else 0
