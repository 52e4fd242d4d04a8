"""Options files read against a typed schema.

A schema maps each option name to ``(check, default)``; a check takes the JSON value and returns
the value to use or raises ValueError with what is wrong. ``load`` is forgiving, the way an
integration must be: a bad value takes its default and is reported, and the run goes on.
``problems`` is strict and is what a ``--check-options`` command prints, one line per problem.
"""
import math

MAX_OPTIONS_BYTES = 1024 * 1024


def _within(value, minimum, maximum):
    if minimum is not None and value < minimum:
        raise ValueError(f"must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be <= {maximum}")
    return value


def integer(minimum=None, maximum=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return _within(value, minimum, maximum)
    return check


def number(minimum=None, maximum=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a finite number")
        return _within(value, minimum, maximum)
    return check


def boolean(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def optional_text(value):
    return None if value is None or value == "" else text(value)


def string_list(value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of strings")
    return [item.strip() for item in value if item.strip()]


def defaults(schema):
    """Every option at its default value (checked)."""
    return {name: check(default) for name, (check, default) in schema.items()}


def read_bounded(path, limit, where, stream=None):
    """(bytes or None, problem or None) of a small input file: at most ``limit`` bytes of the file path.

    With ``stream`` (a binary file object, e.g. standard input's buffer) that is read instead. A problem
    (the file cannot be read, or holds more than ``limit`` bytes) is one line naming the source as ``where``.
    """
    try:
        if stream is not None:
            raw = stream.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        return None, f"cannot read {where} ({exc.strerror or type(exc).__name__})"
    if len(raw) > limit:
        return None, f"{where} is larger than {limit} bytes"
    return raw, None


def read(path):
    """(parsed JSON object or None, problem or None) of an options file; an empty file is {}."""
    from .jsonio import loads  # noqa: PLC0415

    raw, problem = read_bounded(path, MAX_OPTIONS_BYTES, f"options file {path}")
    if problem:
        return None, problem
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"cannot read options file {path} (not UTF-8)"
    try:
        given = loads(text) if text.strip() else {}
    except (ValueError, RecursionError) as exc:
        return None, f"options file {path} is not JSON ({exc})"
    if not isinstance(given, dict):
        return None, f"options file {path} must hold a JSON object"
    return given, None


def load(path, schema):
    """(options, problems): the file's options over the defaults; bad parts fall back to them."""
    options = defaults(schema)
    if not path:
        return options, []
    given, problem = read(path)
    if problem:
        return options, [f"{problem}; using defaults"]
    problems = []
    for name, value in given.items():
        if name not in schema:
            problems.append(f"unknown option {name!r} ignored")
            continue
        try:
            options[name] = schema[name][0](value)
        except ValueError as exc:
            problems.append(f"option {name!r} {exc}; using the default {schema[name][1]!r}")
    return options, problems


def problems(path, schema):
    """Every problem of an options file, one line each (empty when it is fine)."""
    given, problem = read(path)
    if problem:
        return [problem]
    found = []
    for name, value in given.items():
        if name not in schema:
            found.append(f"unknown option {name!r}")
            continue
        try:
            schema[name][0](value)
        except ValueError as exc:
            found.append(f"option {name!r} {exc}")
    return found


# ------------------------------------------------------------------------ environment variables
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def _from_text(raw, default):
    """The JSON-typed value of an environment string, typed after the option's default."""
    if isinstance(default, bool):
        word = raw.lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ValueError(f"must be true or false, got {raw!r}")
    if isinstance(default, (int, float)):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if isinstance(default, int):
            if not math.isfinite(value) or value != int(value):
                raise ValueError(f"must be a whole number, got {raw!r}")
            return int(value)
        return value
    if isinstance(default, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def from_environment(env, schema):
    """(options, problems) of settings given as environment variables, strict like ``problems``.

    schema maps each variable name to ``(check, default)`` as for options files. A variable that is
    unset or blank takes its default; any other value is read as the type of its default (bool:
    true/false/yes/no/on/off/1/0; int: a whole number; float: a number; list: comma-separated
    words; anything else: the text) and then checked. Each problem is one line naming the variable;
    the value is quoted only for numbers and booleans, so a secret never lands in a problem.
    """
    values, found = {}, []
    for name, (check, default) in schema.items():
        raw = str(env.get(name, "") or "").strip()
        try:
            values[name] = check(_from_text(raw, default) if raw else default)
        except ValueError as exc:
            found.append(f"{name} {exc}")
            values[name] = default
    return values, found
