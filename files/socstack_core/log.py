"""Masking of secrets, and the log every host program writes.

``Masker`` knows the secrets of a run (API keys) and replaces each of them, in its raw form and in
its JSON-escaped form, by ``***``. Every sink the programs write goes through one: the log file,
stderr, and every state file (files.write_json takes the masker), so a server answer that echoes a
key cannot carry it to disk.

``Log`` writes one line per event in Wazuh's integration log format,
``YYYY/MM/DD HH:MM:SS <prog>: LEVEL: message``, with line breaks escaped. It never raises: when
its file cannot be opened or written (a full disk, say) it falls back to stderr, and if that fails
too the line is dropped.
"""
import sys
import time

MIN_SECRET = 6  # shorter strings are no real key, and masking them would garble the log
MAX_LINE = 65536  # characters of one log line's message, cut AFTER masking (a cut never halves a key)


class Masker:
    """Replaces known secrets by *** in text and bytes."""

    def __init__(self, secrets=()):
        self._forms = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret):
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            return
        from .jsonio import dumps  # noqa: PLC0415 -- cheap; jsonio is loaded by every program anyway

        for form in (secret, dumps(secret)[1:-1], dumps(secret, ensure_ascii=True)[1:-1]):
            if form not in self._forms:
                self._forms.append(form)
        self._forms.sort(key=len, reverse=True)  # a longer form first, so no piece of it survives

    def __bool__(self):
        return bool(self._forms)

    def mask(self, text):
        for form in self._forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    def mask_bytes(self, data):
        for form in self._forms:
            raw = form.encode("utf-8", "replace")
            if raw in data:
                data = data.replace(raw, b"***")
        return data


class Log:
    """One masked line per event, appended to a file (stderr when the file cannot be used)."""

    def __init__(self, prog, path=None, *, debug=False, masker=None, stderr=None):
        self.prog = prog
        self.path = path
        self.debug_enabled = debug
        self.masker = masker if masker is not None else Masker()
        self.last_error = ""
        self._stderr = stderr if stderr is not None else sys.stderr
        self._stream = None

    def set_path(self, path):
        self.close()
        self.path = path

    def clean(self, message):
        """message masked, on one line, at most MAX_LINE characters (masked first, then cut)."""
        text = self.masker.mask(str(message)).replace("\r", "\\r").replace("\n", "\\n")
        if len(text) > MAX_LINE:
            text = f"{text[:MAX_LINE]}... [{len(text) - MAX_LINE} more characters not logged]"
        return text

    def _open(self):
        if self.path is None:
            return self._stderr
        try:
            return open(self.path, "a", encoding="utf-8", errors="replace")
        except OSError as exc:
            self._fallback(f"cannot open log file {self.path}: {exc.strerror or exc}")
            return self._stderr

    def _fallback(self, why):
        try:
            self._stderr.write(f"{self.prog}: WARNING: {why}; logging to stderr\n")
        except (OSError, ValueError):
            pass

    def write(self, level, message):
        line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {self.prog}: {level}: {self.clean(message)}\n"
        if self._stream is None:
            self._stream = self._open()
        try:
            self._stream.write(line)
            self._stream.flush()
            return
        except (OSError, ValueError) as exc:
            if self._stream is self._stderr:
                return
            self._close_stream()
            self._stream = self._stderr
            self._fallback(f"cannot write log file {self.path}: {getattr(exc, 'strerror', None) or exc}")
        try:
            self._stream.write(line)
            self._stream.flush()
        except (OSError, ValueError):
            return

    def debug(self, message):
        if self.debug_enabled:
            self.write("DEBUG", message)

    def info(self, message):
        self.write("INFO", message)

    def warning(self, message):
        self.write("WARNING", message)

    def error(self, message):
        self.last_error = self.clean(message)
        self.write("ERROR", message)

    def _close_stream(self):
        stream, self._stream = self._stream, None
        if stream is not None and stream is not self._stderr:
            try:
                stream.close()
            except OSError:
                pass

    def close(self):
        self._close_stream()


def end_process(code):
    """Flush stdout and stderr, then end the process with code at once, skipping the interpreter's slow
    teardown (a per-alert program's state is all written by then; close its Log first)."""
    import os  # noqa: PLC0415 -- loaded at start-up already; only the programs' last call needs it

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
