"""Unit tests of the forwarder's configuration: the --check-connection command line, reading the API key
file, the debug option, and the connection check's report (no socket: the checks against the IRIS emulator
are in tests/integration/test_forwarder_preflight.py and test_forwarder_api_key.py)."""
import io

import iris_forwarder
import pytest
from iris_forwarder import settings
from iris_forwarder.preflight import Report
from socstack_core.log import Log, Masker

KEY = "K3y-" + "s" * 60


def test_check_connection_arguments():
    args = iris_forwarder.parse_args(["x", "--check-connection", "--options", "/etc/o.json", "--debug"])
    assert (args.check_connection, args.replay, args.options_file, args.debug) == (True, False, "/etc/o.json", True)
    args = iris_forwarder.parse_args(["x", "--check-connection", "--options=/etc/o.json"])
    assert (args.check_connection, args.debug) == (True, False)


@pytest.mark.parametrize("argv, message", [
    (["x", "--check-connection"], "--check-connection needs --options FILE"),
    (["x", "--check-connection", "--options"], "--check-connection takes --options FILE and optionally --debug"),
    (["x", "--check-connection", "/etc/o.json"], "--check-connection takes --options FILE and optionally --debug"),
    (["x", "--replay", "--what"], "replay mode takes --options FILE and optionally --debug"),
])
def test_bad_check_connection_arguments(argv, message):
    with pytest.raises(iris_forwarder.UsageError, match=message):
        iris_forwarder.parse_args(argv)


def test_the_debug_option_defaults_to_off_and_must_be_a_bool(tmp_path):
    assert iris_forwarder.default_options()["debug"] is False
    path = tmp_path / "o.json"
    path.write_text('{"debug": true}')
    assert iris_forwarder.load_options(str(path)) == (dict(iris_forwarder.default_options(), debug=True), [])
    path.write_text('{"debug": "yes"}')
    options, problems = iris_forwarder.load_options(str(path))
    assert options["debug"] is False
    assert problems == ["option 'debug' must be true or false; using the default False"]


@pytest.mark.parametrize("content, key", [
    (KEY + "\n", KEY),
    (f"  {KEY}\r\n\n", KEY),
])
def test_read_api_key(tmp_path, content, key):
    path = tmp_path / "iris.key"
    path.write_bytes(content.encode())
    path.chmod(0o640)  # as the role writes it (a key file open to every user is refused)
    assert settings.read_api_key(str(path)) == key


@pytest.mark.parametrize("content, message", [
    (None, "cannot read api_key_file {path}: No such file or directory"),
    (b"", "api_key_file {path} is empty"),
    (b" \n\t\n", "api_key_file {path} is empty"),
    (b"\xff\xfe" + KEY.encode(), "api_key_file {path} is not UTF-8 text"),
    (KEY.encode() + b"\n" + KEY.encode(), "api_key_file {path} holds more than one word; it must hold the key alone"),
    (b"k" * 4097, "api_key_file {path} is larger than 4096 bytes; it must hold the key alone"),
])
def test_read_api_key_problems_name_the_file_never_the_content(tmp_path, content, message):
    path = tmp_path / "iris.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o640)  # as the role writes it (a key file open to every user is refused)
    with pytest.raises(settings.KeyFileError) as caught:
        settings.read_api_key(str(path))
    assert str(caught.value) == message.format(path=path)
    assert KEY not in str(caught.value)


def test_the_report_masks_its_lines_and_sets_the_exit_code():
    out = io.StringIO()
    report = Report(Log("t", None, masker=Masker([KEY]), stderr=io.StringIO()), out)
    report.ok("a", f"key {KEY}")
    report.warning("b", "line\nbreak")
    assert report.exit_code() == 0
    report.error("c", "wrong")
    assert report.exit_code() == 5
    report.error("d", "gone", unavailable=True)
    assert report.exit_code() == 2
    assert out.getvalue() == "ok a: key ***\nwarning b: line\\nbreak\nerror c: wrong\nerror d: gone\n"


def test_a_check_connection_usage_error_exits_5_and_names_no_value(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default log file is relative to the working directory
    assert iris_forwarder.main(["x", "--check-connection", KEY]) == 5
    captured = capsys.readouterr()
    assert "--check-connection takes --options FILE" in captured.err
    assert KEY not in captured.err + captured.out
