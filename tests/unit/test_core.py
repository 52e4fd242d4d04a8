"""Unit tests of the shared core of the host programs (files/socstack_core): no sockets, no subprocesses.

The transport against real local servers (HTTP/1.0, keep-alive, chunked, trickling, TLS) is tested in
tests/integration/test_core_http.py.
"""
import errno
import io
import json
import math
import os
import ssl
import sys
import time
from pathlib import Path

import pytest
from socstack_core import faults, files, http, jsonio, options, tls
from socstack_core.log import Log, Masker

KEY = "K3y-" + "s" * 60


# ------------------------------------------------------------------------------------------- jsonio
@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5, -0.0, 1e300, "x\\u00e9\\n", null, true, false, {}], "b": {"c": "\\ud83d\\ude00"}}',
    ' \n[1]\t', '"just a string"', "12", '{"nan": NaN, "inf": -Infinity}',
])
def test_loads_matches_the_json_module(text):
    ours, theirs = jsonio.loads(text), json.loads(text)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    assert jsonio.loads(text.encode()) is not None or ours is None


@pytest.mark.parametrize("text", ["", "  ", "{", "{} x", "[1,]", "{'a': 1}", "[1] [2]"])
def test_loads_refuses_what_the_json_module_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonio.loads(text)


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True, "é\n\"q\"", {"b": []}]}, [], "x", 3, {"k": -1e-7}])
def test_dumps_matches_the_json_module(value):
    for ensure_ascii in (False, True):
        assert jsonio.dumps(value, ensure_ascii=ensure_ascii) == json.dumps(
            value, ensure_ascii=ensure_ascii, separators=(",", ":"))
    assert jsonio.dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'


def test_dumps_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})


def test_encodable_replaces_lone_surrogates_in_values_and_keys():
    value = jsonio.loads('{"k\\udc00": ["a\\ud800b", {"x": "\\udfff"}], "ok": "\\ud83d\\ude00"}')
    with pytest.raises(UnicodeEncodeError):
        jsonio.dumps(value).encode("utf-8")
    clean, notes = jsonio.encodable(value)
    assert clean == {"k\ufffd": ["a\ufffdb", {"x": "\ufffd"}], "ok": "\U0001F600"}
    assert notes == ["3 string(s) held text that is not valid Unicode (lone surrogates); replaced by U+FFFD"]


def test_encodable_cuts_nesting_that_an_encoder_could_not_walk():
    depth = sys.getrecursionlimit() + 100
    value = jsonio.loads('{"a": ' + "[" * 900 + "]" * 900 + "}")
    nested = [[]]
    for _level in range(depth):
        nested = [nested]
    for deep in (value, {"b": nested}):
        clean, notes = jsonio.encodable(deep)
        assert jsonio.dumps(clean).encode("utf-8")
        assert notes == [f"1 value(s) nested deeper than {jsonio.MAX_DEPTH} levels were left out"]


def test_encodable_leaves_an_ordinary_value_alone():
    value = {"a": [1, {"b": "c"}], "d": None}
    assert jsonio.encodable(value) == (value, [])


# --------------------------------------------------------------------------------------------- URL
@pytest.mark.parametrize("url, expected", [
    ("https://iris.example:9094/alerts/add", ("https", "iris.example", 9094, "")),
    ("https://iris.example", ("https", "iris.example", 443, "")),
    ("http://127.0.0.1:8000/", ("http", "127.0.0.1", 8000, "")),
    ("https://proxy.example/iris/alerts/add?x=1", ("https", "proxy.example", 443, "/iris")),
    ("https://[::1]:8443/alerts/add", ("https", "::1", 8443, "")),
])
def test_split_url(url, expected):
    assert http.split_url(url, "/alerts/add") == expected


@pytest.mark.parametrize("url", ["iris.example/alerts/add", "ftp://iris", "https://", "https://u:p@iris/",
                                 "https://iris:port/", "https://iris:70000/", "https://iris/a b"])
def test_split_url_refuses(url):
    with pytest.raises(ValueError):
        http.split_url(url)


def test_quote():
    assert http.quote("1.2 a/b&c=é") == "1.2%20a%2Fb%26c%3D%C3%A9"


# ------------------------------------------------------------------------------ answer framing
class FakeConnection:
    """Stands in for a socket: hands out the given pieces one read at a time."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.sock = self

    def settimeout(self, _value):
        return None

    def read(self, _size):
        return self.pieces.pop(0) if self.pieces else b""


def answer(raw, method="GET", pieces=None, limit=http.MAX_RESPONSE_BYTES):
    reader = http._Reader(FakeConnection(pieces or [raw]), time.monotonic() + 5, limit)
    return http.read_response(reader, method)


def test_reads_content_length_chunked_and_close_delimited_bodies():
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA")[::2] == (200, b"body")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n"
    assert answer(chunked)[::2] == (200, b"wikipedia")
    assert answer(b"HTTP/1.0 503 Busy\r\nX: y\r\n\r\nall of it")[::2] == (503, b"all of it")
    assert answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")[0] == 201
    assert answer(b"HTTP/1.1 204 No Content\r\n\r\n")[::2] == (204, b"")
    assert answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")[::2] == (200, b"ok")  # bare LF


def test_an_answer_split_into_single_bytes_is_read_whole():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert answer(raw, pieces=[raw[i:i + 1] for i in range(len(raw))])[::2] == (200, b"abc")


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
])
def test_truncated_or_foreign_answers_raise(raw):
    with pytest.raises(ConnectionError):
        answer(raw)


def test_an_answer_over_the_limit_is_refused():
    with pytest.raises(OSError, match="larger than"):
        answer(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2000, limit=1000)


def test_a_past_deadline_stops_reading():
    reader = http._Reader(FakeConnection([b"HTTP/1.1 200 OK\r\n"]), time.monotonic() - 1, 1000)
    with pytest.raises(TimeoutError):
        http.read_response(reader)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    endpoint = http.Endpoint("http://127.0.0.1:9")
    with pytest.raises(http.TransportError) as raised:
        http.request(endpoint, "GET", "/", headers={"Authorization": f"Bearer {KEY}\r\nX-Evil: 1"}, timeout=1)
    assert not raised.value.sent
    assert raised.value.config


# --------------------------------------------------------------------------------------------- TLS
def test_the_fast_context_is_the_one_create_default_context_makes():
    """tls.py builds its context on _ssl; it must be what ssl.create_default_context() would make."""
    ours = tls.client_context().context
    theirs = ssl.create_default_context()
    for name in ("check_hostname", "verify_mode", "options", "verify_flags", "minimum_version", "maximum_version",
                 "post_handshake_auth"):
        mine = getattr(ours, name, None)
        if name in ("verify_mode", "minimum_version", "maximum_version", "options", "verify_flags"):
            mine = int(mine) if mine is not None else None
            assert mine == int(getattr(theirs, name)), name
        else:
            assert mine == getattr(theirs, name), name
    assert ours.get_ciphers() == theirs.get_ciphers()


def test_a_missing_or_bad_ca_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    for path in (str(tmp_path / "absent.pem"), str(bad)):
        for public in (False, True):
            tls.force_public_module = public
            try:
                with pytest.raises(tls.TlsConfigError, match="cannot load ca_file"):
                    tls.client_context(path)
            finally:
                tls.force_public_module = False


def test_verification_off_is_off():
    context = tls.client_context(verify=False).context
    assert context.check_hostname is False
    assert int(context.verify_mode) == int(ssl.CERT_NONE)


# --------------------------------------------------------------------------------------------- log
def test_masker_masks_raw_and_json_escaped_forms():
    secret = 'pa"ss\\wörd-123'
    masker = Masker([secret, "short"])
    text = f"{secret} {json.dumps(secret)} {json.dumps(secret, ensure_ascii=False)} short"
    masked = masker.mask(text)
    assert "pa" not in masked.replace("***", "")
    assert masked.endswith("short")  # shorter than a key: not masked
    assert masker.mask_bytes(f"x{secret}y".encode()) == b"x***y"


def test_log_masks_the_key_and_keeps_one_line_per_event(tmp_path):
    log = Log("custom-wazuh_iris", str(tmp_path / "l.log"), masker=Masker([KEY]))
    log.info(f"Authorization: Bearer {KEY}\nsecond line")
    log.debug("not shown")
    log.error(f"bad {KEY}")
    log.close()
    lines = (tmp_path / "l.log").read_text().splitlines()
    assert len(lines) == 2
    assert KEY not in "".join(lines)
    assert lines[0].endswith("INFO: Authorization: Bearer ***\\nsecond line")
    assert " custom-wazuh_iris: ERROR: bad ***" in lines[1]
    assert log.last_error == "bad ***"


def test_log_falls_back_to_stderr_when_the_file_cannot_be_opened(tmp_path):
    err = io.StringIO()
    log = Log("prog", str(tmp_path / "missing-dir" / "l.log"), stderr=err, masker=Masker([KEY]))
    log.warning(f"still visible {KEY}")
    assert "still visible ***" in err.getvalue()
    assert "cannot open log file" in err.getvalue()


class FullDisk(io.StringIO):
    def write(self, _text):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_log_never_raises_when_the_disk_is_full(tmp_path):
    err = io.StringIO()
    log = Log("prog", str(tmp_path / "l.log"), stderr=err)
    log._stream = FullDisk()
    log.error("the alert id 1.2 matters")
    assert "cannot write log file" in err.getvalue()
    assert "the alert id 1.2 matters" in err.getvalue()
    log._stderr = FullDisk()
    log._stream = FullDisk()
    log.error("and nothing raises when stderr is full too")


# ------------------------------------------------------------------------------------------- files
def test_write_atomic_replaces_and_keeps_the_mode(tmp_path):
    path = str(tmp_path / "f")
    files.write_atomic(path, b"one")
    files.write_atomic(path, b"two")
    assert Path(path).read_bytes() == b"two"
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
@pytest.mark.parametrize("where", ["file:write", "file:rename"])
def test_write_atomic_leaves_no_temp_file_on_any_failure(tmp_path, monkeypatch, code, where):
    path = str(tmp_path / "f")
    files.write_atomic(path, b"old")

    def fail(name):
        if name == where:
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(faults, "hook", fail)
    with pytest.raises(OSError) as raised:
        files.write_atomic(path, b"new", keep_locked=True)
    assert raised.value.errno == code
    assert os.listdir(tmp_path) == ["f"]
    assert Path(path).read_bytes() == b"old"


def test_a_short_write_is_finished_and_a_failing_write_cleans_up(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_then_enospc(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    with pytest.raises(OSError):
        files.write_atomic(str(tmp_path / "f"), b"abcdef")
    assert calls == [6, 3]
    assert os.listdir(tmp_path) == []


def test_keep_locked_locks_before_the_file_is_visible(tmp_path):
    path = str(tmp_path / "f")
    fd = files.write_atomic(path, b"x", keep_locked=True)
    try:
        assert files.lock_existing(path) is None
    finally:
        os.close(fd)
    other = files.lock_existing(path)
    assert other is not None
    os.close(other)
    assert files.lock_existing(str(tmp_path / "absent")) is None


def test_stale_temp_files_are_removed_only_when_old(tmp_path):
    old, new = tmp_path / ".tmp-1-aa", tmp_path / ".tmp-2-bb"
    old.write_bytes(b"")
    new.write_bytes(b"")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert files.remove_stale_temp_files(str(tmp_path), 600, time.time()) == 1
    assert sorted(os.listdir(tmp_path)) == [".tmp-2-bb"]


def test_write_json_masks_secrets_and_round_trips_any_string(tmp_path):
    path = str(tmp_path / "j")
    files.write_json(path, {"e": f"echo {KEY}", "s": "\ud800 é"}, Masker([KEY]))
    raw = Path(path).read_bytes()
    assert KEY.encode() not in raw
    assert jsonio.loads(raw) == {"e": "echo ***", "s": "\ud800 é"}


# ----------------------------------------------------------------------------------------- options
SCHEMA = {"n": (options.integer(1, 10), 5), "f": (options.number(0), 1.5), "b": (options.boolean, False),
          "t": (options.text, "x"), "o": (options.optional_text, None), "l": (options.string_list, [])}


def test_options_load_falls_back_per_key_and_problems_are_strict(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"n": 11, "f": 2, "b": "yes", "t": " y ", "o": "", "l": ["a", " "], "z": 1}))
    opts, found = options.load(str(path), SCHEMA)
    assert opts == {"n": 5, "f": 2, "b": False, "t": "y", "o": None, "l": ["a"]}
    assert len(found) == 3
    strict = options.problems(str(path), SCHEMA)
    assert strict == ["option 'n' must be <= 10", "option 'b' must be true or false", "unknown option 'z'"]


@pytest.mark.parametrize("value", [math.inf, math.nan, True, "1"])
def test_numbers_must_be_finite_numbers(value):
    with pytest.raises(ValueError):
        options.number()(value)


@pytest.mark.parametrize("content, message", [
    (b"{not json", "is not JSON"), (b"[1]", "must hold a JSON object"), (b"\xff{}", "not UTF-8"),
    (b"[" * 100000, "is not JSON"),
])
def test_unusable_options_files_are_reported(tmp_path, content, message):
    path = tmp_path / "o"
    path.write_bytes(content)
    assert message in options.problems(str(path), SCHEMA)[0]
    assert options.load(str(path), SCHEMA)[0] == options.defaults(SCHEMA)


def test_read_bounded_gives_the_bytes_or_one_line_naming_the_source(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(b"1234")
    assert options.read_bounded(str(path), 4, "key file") == (b"1234", None)
    assert options.read_bounded(str(path), 3, "key file") == (None, "key file is larger than 3 bytes")
    assert options.read_bounded(str(tmp_path / "gone"), 4, "key file") == (
        None, "cannot read key file (No such file or directory)")
    assert options.read_bounded("-", 4, "standard input", io.BytesIO(b"abc")) == (b"abc", None)


# ------------------------------------------------------------------ clock, iris_client, preflight (issue 22)
def test_elapsed_uses_the_boot_clock_within_a_boot_whatever_the_wall_clock_did():
    from socstack_core import clock

    stamp = clock.stamp()
    if not stamp:
        pytest.skip("no boot id on this system")
    assert 0 <= clock.elapsed(stamp, time.time(), wall_now=time.time() + 86400) < 5  # a step forward: ignored
    assert 0 <= clock.elapsed(stamp, time.time(), wall_now=time.time() - 86400) < 5  # a step back: ignored


def test_elapsed_falls_back_to_the_wall_clock_and_refuses_the_future():
    from socstack_core import clock

    assert clock.elapsed("another-boot@12.0", 1000.0, wall_now=1060.0) == 60.0
    assert clock.elapsed("another-boot@12.0", 1000.0, wall_now=900.0) is None  # the clock went back
    assert clock.elapsed(None, float("inf"), wall_now=900.0) is None
    assert clock.elapsed(None, 1e308, wall_now=900.0) is None


@pytest.mark.parametrize("status, method, kind, ambiguous", [
    (200, "POST", "unavailable", True), (401, "POST", "auth", False), (503, "POST", "unavailable", True),
    (429, "GET", "unavailable", False), (500, "POST", "item-error", True), (404, "POST", "config", True),
    (400, "POST", "rejected", False), (400, "GET", "config", False),
])
def test_iris_client_failure_kinds(status, method, kind, ambiguous):
    from socstack_core import iris_client

    failure = iris_client.failure_for(status, None, "text", method, "/alerts/add?x=1")
    assert (failure.kind, failure.ambiguous, failure.status) == (kind, ambiguous, status)
    assert failure.reason.startswith(f"{method} /alerts/add -> HTTP {status}: text")


def test_iris_client_masks_before_it_cuts():
    from socstack_core import http, iris_client

    client = iris_client.IrisClient("http://127.0.0.1:9", KEY)
    for body in (("x" * (iris_client.PAGE_CHARS - 10) + KEY).encode(),
                 json.dumps({"status": "error", "message": "y" * (iris_client.MESSAGE_CHARS - 10) + KEY}).encode()):
        answer = client.answer(http.Response(500, {}, body))
        assert not any(KEY[i:i + 16] in answer.text for i in range(len(KEY) - 15))


def test_preflight_report_lines_and_exit_codes():
    import io

    from socstack_core.preflight import Report

    out = io.StringIO()
    report = Report(Masker([KEY]), out, code_error=5, code_unavailable=2)
    report.ok("options", "fine")
    report.warning("tls", "plain http")
    assert report.exit_code() == 0
    report.error("api_key", f"refused {KEY}\nsecond line")
    assert report.exit_code() == 5
    report.error("connection", "down", unavailable=True)
    assert report.exit_code() == 2
    assert out.getvalue().splitlines() == ["ok options: fine", "warning tls: plain http",
                                           "error api_key: refused ***\\nsecond line", "error connection: down"]
