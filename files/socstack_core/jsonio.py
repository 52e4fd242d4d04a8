"""JSON for the host programs: fast to import, and safe with whatever a parser accepted.

``loads`` and ``dumps`` use the C accelerator ``_json`` directly. The public ``json`` package
imports ``re`` and compiles several patterns, which costs more start-up time than the rest of a
forwarder run's JSON work; where ``_json`` is missing (another Python implementation), the public
package is used. Both behave like ``json.loads`` / ``json.dumps(ensure_ascii=...)`` with compact
separators.

``encodable`` turns any parsed value into one that can always be written out as UTF-8: a parser
accepts lone surrogates (``"\\ud800"``) and nesting deeper than an encoder can walk; both are
replaced, and what was replaced is reported so the caller can say so.
"""
try:
    import _json

    _scanner_make = _json.make_scanner
    _encoder_make = _json.make_encoder
    _encode_str = _json.encode_basestring
    _encode_str_ascii = _json.encode_basestring_ascii
except (ImportError, AttributeError):  # pragma: no cover -- CPython always has them
    _json = None

NAN, INF = float("nan"), float("inf")
_CONSTANTS = {"NaN": NAN, "Infinity": INF, "-Infinity": -INF}
_WHITESPACE = " \t\n\r"
MAX_DEPTH = 200  # deeper containers are replaced by encodable(); well below the interpreter's limit
REPLACEMENT = "\ufffd"


class _ScanContext:
    """The attributes _json.make_scanner reads (as json.JSONDecoder has them)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo = None


_scan = _scanner_make(_ScanContext()) if _json is not None else None


def _error(message, text, pos):
    import json  # noqa: PLC0415 -- only on the error path

    return json.JSONDecodeError(message, text, pos)


def loads(text):
    """Parse a JSON document (str or UTF-8 bytes). Raises ValueError (JSONDecodeError) or RecursionError."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if _json is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise _error("Expecting value", text, exc.value) from None
    except SystemError:
        # The C scanner reports syntax errors through json.decoder.JSONDecodeError, which it looks up in
        # sys.modules only; until json.decoder is imported it fails this way. Import it and parse again.
        import json.decoder  # noqa: PLC0415 -- rare: only invalid JSON gets here

        value, end = _scan(text, start)
    if text[end:].strip(_WHITESPACE):
        raise _error("Extra data", text, end)
    return value


def _not_serialisable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoders = {}


def dumps(value, ensure_ascii=False, sort_keys=False):
    """Compact JSON text of value (separators "," and ":"). Raises TypeError, ValueError, RecursionError."""
    if _json is None:  # pragma: no cover
        import json  # noqa: PLC0415

        return json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=sort_keys, separators=(",", ":"))
    if isinstance(value, str):
        return (_encode_str_ascii if ensure_ascii else _encode_str)(value)
    key = (ensure_ascii, sort_keys)
    encoder = _encoders.get(key)
    if encoder is None:
        encoder = _encoders[key] = _encoder_make(
            {}, _not_serialisable, _encode_str_ascii if ensure_ascii else _encode_str, None, ":", ",",
            sort_keys, False, True)
    return "".join(encoder(value, 0))


def _clean_text(text, counter):
    """text with lone surrogates replaced by U+FFFD; counter[0] counts the strings changed."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        counter[0] += 1
        return "".join(REPLACEMENT if "\ud800" <= char <= "\udfff" else char for char in text)


def encodable(value, max_depth=MAX_DEPTH):
    """(copy of value that dumps() can always encode to UTF-8, list of notes on what was replaced).

    Lone surrogates in strings (keys too) become U+FFFD; containers nested deeper than max_depth are
    replaced by a string saying so. Walks iteratively, so depth never meets the recursion limit.
    """
    strings = [0]
    cut = [0]

    def leaf(item):
        if isinstance(item, str):
            return _clean_text(item, strings)
        return item

    root = [None]
    # Each stack entry: (source container, target container, key in the parent target, depth).
    stack = [(value, root, 0, 0)]
    while stack:
        source, parent, key, depth = stack.pop()
        if isinstance(source, dict):
            target = {}
        elif isinstance(source, list):
            target = []
        else:
            parent[key] = leaf(source)
            continue
        if depth >= max_depth:
            cut[0] += 1
            parent[key] = f"[nested deeper than {max_depth} levels; left out]"
            continue
        parent[key] = target
        if isinstance(source, dict):
            for item_key, item in source.items():
                new_key = _clean_text(item_key, strings) if isinstance(item_key, str) else item_key
                target[new_key] = None
                stack.append((item, target, new_key, depth + 1))
        else:
            target.extend([None] * len(source))
            for index, item in enumerate(source):
                stack.append((item, target, index, depth + 1))
    notes = []
    if strings[0]:
        notes.append(f"{strings[0]} string(s) held text that is not valid Unicode (lone surrogates); "
                     "replaced by U+FFFD")
    if cut[0]:
        notes.append(f"{cut[0]} value(s) nested deeper than {max_depth} levels were left out")
    return root[0], notes
