"""The OpenCTI enrichment's preflight (--check-options, --check-connection) without a network, and the
`debug` option. Exchanges with a server are in tests/integration/opencti/test_opencti_check_connection.py.
"""
import io
import json

import opencti_enrich
import pytest
from opencti_enrich import preflight
from opencti_enrich.settings import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, OPTIONS
from socstack_core import options as opt

TOKEN = "unit-preflight-token-7c1e9a"


def run(*args, stdin=""):
    """(exit code, output lines) of the program run with args."""
    out = io.StringIO()
    code = preflight.main(["custom-opencti", *args], out, io.TextIOWrapper(io.BytesIO(stdin.encode())))
    return code, out.getvalue().splitlines()


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- --check-options
def test_the_defaults_pass_the_check(tmp_path):
    """The program's table is the one source of defaults: written out, they are a valid options file."""
    path = write(tmp_path, "options.json", opt.defaults(OPTIONS))
    assert run("--check-options", path) == (EXIT_OK, [])
    assert opt.defaults(OPTIONS)["debug"] is False


@pytest.mark.parametrize("content", [
    "",
    "{}\n",
    {"max_ind_alerts": 0, "max_obs_alerts": 5, "max_observables": 1, "cache_ttl": 0, "cache_max_entries": 1,
     "state_dir": "/var/ossec/var/opencti", "ca_file": "/var/ossec/etc/opencti-ca.pem", "verify_tls": False,
     "queue_socket": "/tmp/q", "log_file": "logs/integrations.log", "debug": True},
    {"ca_file": None, "debug": False},
], ids=["empty-file", "empty-object", "every-option", "nulls-and-false"])
def test_good_options_files(tmp_path, content):
    assert run("--check-options", write(tmp_path, "o.json", content)) == (EXIT_OK, [])


@pytest.mark.parametrize(("content", "lines"), [
    ({"debug": "yes"}, ["option 'debug' must be true or false"]),
    ({"cache_ttl": -1, "max_observables": 0}, ["option 'cache_ttl' must be >= 0",
                                               "option 'max_observables' must be >= 1"]),
    ({"verify_tls": "no", "ca_file": 5}, ["option 'verify_tls' must be true or false",
                                          "option 'ca_file' must be a string or null"]),
    ({"max_ind_alerts": 2.5, "state_dir": None}, ["option 'max_ind_alerts' must be an integer",
                                                  "option 'state_dir' must be a string"]),
    ({"max_obs_alert": 1}, ["unknown option 'max_obs_alert'"]),
    ("[1, 2]", ["options file {path} must hold a JSON object"]),
], ids=["debug-not-bool", "out-of-range", "wrong-types", "float-and-null", "typo", "not-an-object"])
def test_bad_options_files_give_one_line_per_problem(tmp_path, content, lines):
    path = write(tmp_path, "o.json", content)
    code, output = run("--check-options", path)
    assert code == EXIT_CONFIG
    assert output == [f"{path}: {line.format(path=path)}" for line in lines]


def test_options_file_that_is_not_json_or_missing(tmp_path):
    path = write(tmp_path, "o.json", "{max_ind_alerts: 3}")
    code, [line] = run("--check-options", path)
    assert code == EXIT_CONFIG and line.startswith(f"{path}: options file {path} is not JSON")
    missing = str(tmp_path / "missing.json")
    assert run("--check-options", missing) == (
        EXIT_CONFIG, [f"{missing}: cannot read options file {missing} (No such file or directory)"])


@pytest.mark.parametrize("args", [["--check-options"], ["--check-options", "a", "b"], ["--check-options", ""],
                                  ["--check-everything"]])
def test_check_command_line_errors(args):
    code, output = run(*args)
    assert code == EXIT_USAGE
    assert output[-1].startswith("usage: custom-opencti --check-options OPTIONS_FILE")


def test_the_program_entry_dispatches_the_checks(tmp_path, capsys):
    assert opencti_enrich.main(["custom-opencti", "--check-options", write(tmp_path, "o.json", {"debug": 1})]) == 6
    assert "option 'debug' must be true or false" in capsys.readouterr().out


# --------------------------------------------------------------------------- --check-connection arguments
@pytest.mark.parametrize(("args", "message"), [
    ([], "--check-connection needs --url"),
    (["--url", "http://o"], "--check-connection needs --token-file"),
    (["--url", "http://o", "--token-file"], "--token-file needs a value"),
    (["--url", "http://o", "--token-file", "t", "--url", "http://p"], "--url is given twice"),
    (["--url", "http://o", "--token-file", "t", TOKEN], "unknown argument #6 of --check-connection"),
    (["--url", "http://o", "--token-file", "t", "--timeout", "0"], "--timeout must be a whole number"),
    (["--url", "http://o", "--token-file", "t", "--timeout=301"], "--timeout must be a whole number"),
], ids=["no-url", "no-token-file", "no-value", "twice", "stray-value", "timeout-0", "timeout-high"])
def test_connection_command_line_errors(args, message):
    code, output = run("--check-connection", *args)
    assert code == EXIT_USAGE
    assert output[0].startswith(f"custom-opencti: {message}")
    assert TOKEN not in "\n".join(output)  # an argument's value is never echoed


def test_connection_arguments_both_forms():
    given = preflight.parse_connection_args(["--url=https://o", "--token-file", "-", "--options", "o", "--timeout=3"])
    assert given == {"--url": "https://o", "--token-file": "-", "--options": "o", "--timeout": 3}
    assert preflight.parse_connection_args(["--url", "u", "--token-file", "t"])["--timeout"] == 10


# --------------------------------------------------------------------------- the token file
def test_token_from_a_file_or_standard_input(tmp_path):
    path = write(tmp_path, "token", f"  {TOKEN}\n")
    assert preflight.read_token(path, None) == (TOKEN, None)
    stdin = io.TextIOWrapper(io.BytesIO(f"{TOKEN}\n".encode()))
    assert preflight.read_token("-", stdin) == (TOKEN, None)


@pytest.mark.parametrize(("content", "problem"), [
    ("\n", "token file {path} is empty"),
    (f"{TOKEN}\nsecond line\n", "token file {path} must hold the token alone, on one line"),
    (b"\xff\xfe", "token file {path} is not UTF-8"),
], ids=["empty", "two-lines", "not-utf8"])
def test_unusable_token_files(tmp_path, content, problem):
    path = tmp_path / "token"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    token, found = preflight.read_token(str(path), None)
    assert token is None and found.startswith(problem.format(path=path))
    assert "second line" not in found


def test_missing_token_file_is_a_setup_problem(tmp_path):
    missing = tmp_path / "none"
    code, output = run("--check-connection", "--url", "http://127.0.0.1:9/", "--token-file", str(missing))
    assert (code, output) == (EXIT_CONFIG, [f"error token_file: cannot read token file {missing} (No such file or "
                                            "directory)"])


# --------------------------------------------------------------------------- set-up problems (no request)
def test_options_problems_stop_the_check_before_any_request(tmp_path):
    options = write(tmp_path, "o.json", {"verify_tls": "no", "debug": 1})
    token = write(tmp_path, "token", TOKEN)
    code, output = run("--check-connection", "--url", "http://127.0.0.1:9", "--token-file", token, "--options", options)
    assert code == EXIT_CONFIG
    assert output == [f"error options: {options}: option 'verify_tls' must be true or false",
                      f"error options: {options}: option 'debug' must be true or false"]


@pytest.mark.parametrize(("url", "options", "line"), [
    ("ftp://opencti.example", {}, "unsupported OpenCTI URL ftp://opencti.example/graphql "
                                  "(the URL must start with http:// or https://)"),
    ("https://opencti.example", {"ca_file": "/nonexistent/ca.pem"}, "cannot load ca_file /nonexistent/ca.pem: "),
], ids=["bad-url", "bad-ca-file"])
def test_unusable_url_or_ca_file(tmp_path, url, options, line):
    options_path = write(tmp_path, "o.json", options)
    token = write(tmp_path, "token", TOKEN)
    code, [output] = run("--check-connection", "--url", url, "--token-file", token, "--options", options_path)
    assert code == EXIT_CONFIG and output.startswith("error ") and output.split(": ", 1)[1].startswith(line)


# --------------------------------------------------------------------------- reading the answer
WHERE = "https://opencti.example/graphql"
GRAPHQL_ERROR = f"OpenCTI at {WHERE} returned a GraphQL error: "
REFUSED = f"OpenCTI at {WHERE} refused the token: "
NOT_OPENCTI = "(is the URL the OpenCTI one?)"


@pytest.mark.parametrize(("status", "body", "lines"), [
    (200, {"data": {"me": {"name": "wazuh"}}}, []),
    (200, {"errors": [{"message": "You must be logged in to do this.", "extensions": {"code": "AUTH_REQUIRED"}}],
           "data": None},
     [GRAPHQL_ERROR + "You must be logged in to do this. (AUTH_REQUIRED)"]),
    (200, {"errors": [{"message": "first\nline"}, {"message": "second", "extensions": {}}, "junk"]},
     [GRAPHQL_ERROR + "first line", GRAPHQL_ERROR + "second"]),
    (400, {"errors": [{"message": 'Cannot query field "me" on type "Query".',
                       "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]},
     [GRAPHQL_ERROR + 'Cannot query field "me" on type "Query". (GRAPHQL_VALIDATION_FAILED)']),
    (401, b"Unauthorized: token expired", [REFUSED + "HTTP 401: Unauthorized: token expired"]),
    (403, {"errors": [{"message": "Access denied"}]}, [REFUSED + "HTTP 403: Access denied"]),
    (403, b"", [REFUSED + "HTTP 403: (no text)"]),
    (502, b"<html>Bad Gateway</html>", [f"OpenCTI at {WHERE} answered HTTP 502: <html>Bad Gateway</html>"]),
    (200, b"<html>login</html>", [f"OpenCTI at {WHERE} answered with something that is not JSON {NOT_OPENCTI}"]),
    (200, {"data": {"me": None}}, [f"OpenCTI at {WHERE} answered without data.me.name {NOT_OPENCTI}"]),
    (200, {"data": {"me": {"name": 5}}}, [f"OpenCTI at {WHERE} answered without data.me.name {NOT_OPENCTI}"]),
], ids=["ok", "auth-required", "several", "validation-400", "401-text", "403-json", "403-empty", "502", "not-json",
        "me-null", "name-number"])
def test_answer_problems(status, body, lines):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    found, name = preflight.answer_problems(status, raw, WHERE)
    assert found == lines
    assert (name == "wazuh") is (not lines)


def test_long_server_text_is_clipped_to_one_line():
    [line], _name = preflight.answer_problems(500, ("x" * 1000 + "\n").encode(), WHERE)
    assert line.endswith("x" * preflight.MAX_TEXT + "...")


# --------------------------------------------------------------------------- the debug option
def test_debug_option_turns_on_debug_logging(opencti_unit_run):
    """An alert with nothing to look up: the run logs only at debug level, so the log shows the option."""
    assert opencti_unit_run({}) == ""
    assert "DEBUG: alert 1748942062.8845211 (rule 100100): nothing to look up" in opencti_unit_run({"debug": True})
    assert opencti_unit_run({"debug": "yes"}).count("DEBUG") == 0  # a bad value: its default, with a warning


@pytest.fixture
def opencti_unit_run(tmp_path):
    from tests.support.opencti import OPENCTI_TOKEN, make_alert

    def run_with(options):
        log = tmp_path / "integrations.log"
        log.unlink(missing_ok=True)
        alert = write(tmp_path, "alert.json", make_alert(["syslog"]))
        options_path = write(tmp_path, "o.json", {**options, "log_file": str(log), "state_dir": str(tmp_path / "s")})
        argv = ["integrations", alert, OPENCTI_TOKEN, "http://127.0.0.1:9/graphql", "", options_path, "5", "3"]
        assert opencti_enrich.main(argv) == 0
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        assert OPENCTI_TOKEN not in text
        return text

    return run_with
