"""The settings file systemd reads (``EnvironmentFile=``), read the way systemd reads it.

The role writes ``NAME="value"`` lines with ``\\ " ` $`` escaped; the checks (``--check-options``,
``--check-connection``, ``--pull-model``) read the same file so that they see exactly what an instance
gets. Understood: blank lines, comments (``#`` or ``;`` first), ``NAME=value`` with the value bare
(trailing blanks dropped, ``\\`` escapes the next character), in double quotes (``\\`` escapes
``" \\ ` $``, other backslashes stay) or in single quotes (taken as it is). A value spanning lines is
reported as a problem, not guessed at.
"""
import re

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BYTES = 1024 * 1024


def _double_quoted(text):
    """(value, rest after the closing quote) of text that follows an opening double quote, or None."""
    out, position = [], 0
    while position < len(text):
        char = text[position]
        if char == '"':
            return "".join(out), text[position + 1:]
        if char == "\\" and position + 1 < len(text):
            following = text[position + 1]
            out.append(following if following in '"\\`$' else char + following)
            position += 2
            continue
        out.append(char)
        position += 1
    return None


def _bare(text):
    out, position = [], 0
    text = text.rstrip()
    while position < len(text):
        if text[position] == "\\" and position + 1 < len(text):
            out.append(text[position + 1])
            position += 2
            continue
        out.append(text[position])
        position += 1
    return "".join(out)


def parse(text, where="settings file"):
    """(dict of the variables, problems one line each) of the text of an environment file."""
    env, problems = {}, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not NAME_RE.fullmatch(name):
            problems.append(f"{where} line {number}: not a NAME=value line")
            continue
        value = value.lstrip()
        if value.startswith('"'):
            parsed = _double_quoted(value[1:])
            if parsed is None or parsed[1].strip():
                problems.append(f"{where} line {number}: {name} has an unterminated or trailing-text quoted value")
                continue
            value = parsed[0]
        elif value.startswith("'"):
            closing = value.find("'", 1)
            if closing < 0 or value[closing + 1:].strip():
                problems.append(f"{where} line {number}: {name} has an unterminated or trailing-text quoted value")
                continue
            value = value[1:closing]
        else:
            value = _bare(value)
        env[name] = value
    return env, problems


def read(path):
    """(variables, problems) of the environment file at path; an unreadable file is one problem."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return {}, [f"cannot read settings file {path} ({exc.strerror or type(exc).__name__})"]
    if len(raw) > MAX_BYTES:
        return {}, [f"settings file {path} is larger than {MAX_BYTES} bytes"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [f"settings file {path} is not UTF-8"]
    return parse(text, f"settings file {path}")
