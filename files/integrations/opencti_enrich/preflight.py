"""The role's preflight checks; each prints one line per problem on stdout and writes nothing else.

    custom-opencti --check-options OPTIONS_FILE
    custom-opencti --check-connection --url URL --token-file PATH [--options OPTIONS_FILE] [--timeout SECONDS]

--check-options reads the options file strictly (socstack_core.options.problems against OPTIONS,
the program's one table of options and defaults): every unknown key and every bad value is one
line ``<file>: <problem>``. Exit 0 (no output) when there is none, 6 otherwise.

--check-connection sends OpenCTI one cheap authenticated GraphQL query (CHECK_QUERY: ``me { name }``)
with the URL, token, ca_file and verify_tls a run would use, within one deadline (--timeout, default
10 s). The token is read from a file (``-``: standard input), never from the command line, and is
masked in every line printed. Nothing is written: no log, no cache, no queue socket. Output: the host
programs' one preflight report (socstack_core.preflight, ``<status> <check>: <text>``):
``ok connection: OpenCTI at <url> accepted the token (user <name>)`` and exit 0, or one ``error`` line
per problem: an options problem (check ``options``), a token file (``token_file``), a URL (``url``) or
ca_file (``connection``) that cannot be used (exit 6); OpenCTI that cannot be reached, a TLS certificate
refused (name or CA), an HTTP error status with the server's text, or the GraphQL errors[].message of
the answer (``connection``, exit 7). Bad command line: exit 2.
"""
import sys
import time

from socstack_core import http, jsonio
from socstack_core import options as opt
from socstack_core.log import Masker
from socstack_core.preflight import Report

from .settings import (
    DEFAULT_TIMEOUT,
    EXIT_CHECK_FAILED,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_USAGE,
    MAX_TIMEOUT,
    OPTIONS,
    PROG,
    LookupFailed,
    graphql_url,
    safe_url,
)
from .settings import read_token as _read_token

MAX_ANSWER_BYTES = 1024 * 1024
MAX_TEXT = 300
CONNECTION_FLAGS = ("--url", "--token-file", "--options", "--timeout")
USAGE = (f"usage: {PROG} --check-options OPTIONS_FILE | {PROG} --check-connection --url URL "
         "--token-file PATH|- [--options OPTIONS_FILE] [--timeout SECONDS]")


class CheckUsage(Exception):
    """The preflight command line is wrong (its values are never put in the message)."""


def parse_connection_args(rest):
    """{flag: value} of --check-connection's arguments (--flag VALUE or --flag=VALUE); raises CheckUsage."""
    given = {}
    index = 0
    while index < len(rest):
        flag, equals, value = rest[index].partition("=")
        if flag not in CONNECTION_FLAGS:
            raise CheckUsage(f"unknown argument #{index + 2} of --check-connection")
        if not equals:
            index += 1
            if index >= len(rest):
                raise CheckUsage(f"{flag} needs a value")
            value = rest[index]
        if flag in given:
            raise CheckUsage(f"{flag} is given twice")
        given[flag] = value
        index += 1
    for flag in ("--url", "--token-file"):
        if not given.get(flag):
            raise CheckUsage(f"--check-connection needs {flag}")
    timeout = given.get("--timeout", str(DEFAULT_TIMEOUT))
    if not (timeout.isascii() and timeout.isdigit() and 1 <= int(timeout) <= MAX_TIMEOUT):
        raise CheckUsage(f"--timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT}")
    given["--timeout"] = int(timeout)
    return given


def check_options(path, out):
    """--check-options: one line per problem; the exit code."""
    found = opt.problems(path, OPTIONS)
    for problem in found:
        out.write(f"{path}: {problem}\n")
    return EXIT_CONFIG if found else EXIT_OK


def read_token(path, stdin):
    """(token, None) or (None, problem) of --token-file (``-``: standard input); see settings.read_token."""
    return _read_token(path, stdin.buffer if path == "-" else None, check_mode=False)


def _one_line(text):
    """Server text for one output line: white space collapsed, clipped."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _graphql_errors(document):
    """'message (CODE)' of each error of a GraphQL answer's errors[] (empty when there is none)."""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    found = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        message = error.get("message")
        message = _one_line(message) if isinstance(message, str) and message.strip() else "(no message)"
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, dict) else None
        found.append(f"{message} ({code})" if isinstance(code, str) and code else message)
    return found


def transport_problem(exc, endpoint_url, where, timeout):
    """The line of a TransportError of a request to endpoint_url (shown as where)."""
    if exc.config:
        return exc.reason
    if exc.timeout:
        return f"OpenCTI at {where} did not answer within {timeout} s"
    if exc.tls_verify:
        if "mismatch" in exc.tls_verify.lower():
            hint = "the URL's host must be a name or address the certificate is issued for"
        else:
            hint = "ca_file must hold the CA that signed OpenCTI's certificate (without it, the system store is used)"
        return f"TLS certificate of OpenCTI at {where} refused: {exc.tls_verify} ({hint})"
    reason = exc.reason
    if reason.startswith(endpoint_url + ": "):
        reason = reason[len(endpoint_url) + 2:]
    if "SSL" in reason or "TLS" in reason:
        return f"TLS error talking to OpenCTI at {where}: {reason}"
    return f"cannot reach OpenCTI at {where}: {reason}"


def answer_problems(status, raw, where):
    """([problem], user name): what is wrong with the answer to CHECK_QUERY."""
    try:
        document = jsonio.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        document = None
    errors = _graphql_errors(document)
    text = "; ".join(errors) if errors else _one_line(raw.decode("utf-8", "replace")) or "(no text)"
    if status in (401, 403):
        return [f"OpenCTI at {where} refused the token: HTTP {status}: {text}"], None
    if errors and status in (200, 400):  # GraphQL answers its errors with 200, or 400 for validation (§1)
        return [f"OpenCTI at {where} returned a GraphQL error: {error}" for error in errors], None
    if status != 200:
        return [f"OpenCTI at {where} answered HTTP {status}: {text}"], None
    if not isinstance(document, dict):
        return [f"OpenCTI at {where} answered with something that is not JSON (is the URL the OpenCTI one?)"], None
    data = document.get("data")
    me = data.get("me") if isinstance(data, dict) else None
    name = me.get("name") if isinstance(me, dict) else None
    if not isinstance(name, str):
        return [f"OpenCTI at {where} answered without data.me.name (is the URL the OpenCTI one?)"], None
    return [], name


def check_connection(given, out, stdin):
    """--check-connection: 'ok: ...' or one line per problem; the exit code."""
    from .graphql import CHECK_QUERY, endpoint_for, request_headers  # noqa: PLC0415

    options_path = given.get("--options", "")
    token, problem = read_token(given["--token-file"], stdin)
    report = Report(Masker([token] if token else ()), out, code_error=EXIT_CONFIG, code_unavailable=EXIT_CHECK_FAILED)
    for option_problem in opt.problems(options_path, OPTIONS) if options_path else ():
        report.error("options", f"{options_path}: {option_problem}")
    if problem:
        report.error("token_file", problem)
    if report.errors:
        return report.exit_code()
    options, _problems = opt.load(options_path, OPTIONS)
    url, timeout = given["--url"], given["--timeout"]
    where = safe_url(graphql_url(url))
    try:
        endpoint = endpoint_for(url, options)
    except LookupFailed as exc:
        report.error("url", str(exc))
        return report.exit_code()
    body = jsonio.dumps({"query": CHECK_QUERY}, ensure_ascii=True).encode("ascii")
    started = time.monotonic()
    try:
        response = http.request(endpoint, "POST", "", headers=request_headers(token), body=body, timeout=timeout,
                                deadline=started + timeout, max_bytes=MAX_ANSWER_BYTES)
    except http.TransportError as exc:
        report.error("connection", transport_problem(exc, endpoint.url, where, timeout), unavailable=not exc.config)
        return report.exit_code()
    # Masked BEFORE any cut: a token straddling a cut would otherwise survive without its tail.
    found, name = answer_problems(response.status, report.masker.mask_bytes(response.body), where)
    for line in found:
        report.error("connection", line, unavailable=True)
    if not found:
        report.ok("connection", f"OpenCTI at {where} accepted the token (user {_one_line(name)})")
    return report.exit_code()


def main(argv, out=None, stdin=None):
    """Run the preflight check argv[1] names; returns the exit code."""
    out = sys.stdout if out is None else out
    stdin = sys.stdin if stdin is None else stdin
    mode, rest = argv[1], list(argv[2:])
    try:
        if mode == "--check-options":
            if len(rest) != 1 or not rest[0]:
                raise CheckUsage("--check-options takes one options file")
            return check_options(rest[0], out)
        if mode == "--check-connection":
            return check_connection(parse_connection_args(rest), out, stdin)
        raise CheckUsage(f"unknown check {mode[:40]!r}")
    except CheckUsage as exc:
        out.write(f"{PROG}: {exc}\n{USAGE}\n")
        return EXIT_USAGE
    finally:
        try:
            out.flush()
        except (OSError, ValueError):
            pass
