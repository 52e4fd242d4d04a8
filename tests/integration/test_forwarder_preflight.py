"""``custom-wazuh_iris.py --check-connection --options FILE`` against the IRIS emulator: one line per check,
each kind of problem with its own line and exit code, and nothing changed (no file, no alert, only GETs).

The answers the problems come from are the recorded ones (iris-transcripts): 401 "Authentication required"
for a wrong key (auth_versions.json), 403 "Permission denied" on /alerts/filter for an account without an
alerts group (alerts.json), 404 HTML for an unknown path, the severity and alert-status lists of a fresh
2.4.20 (lookups.json). The harness is tests/support/forwarder.py.
"""
import pytest

from tests.support.forwarder import Hook, Manager, run_like_integratord

ALL_OK = ["options", "api_key_file", "connection", "severity_by_level", "status", "alerts_read", "customer"]


def checks(lines, status):
    """Check names of the lines with this status ("ok", "warning", "error")."""
    return [line.split(" ", 2)[1].rstrip(":") for line in lines if line.startswith(status + " ")]


def line_of(lines, start):
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, lines
    return found[0]


def assert_changed_nothing(manager, emu):
    assert manager.files_written() == []  # no spool, cache, rejected/ or log file under the Wazuh home
    assert not manager.state.exists()
    assert {entry[0] for entry in emu.request_log} <= {"GET"}
    assert emu.alerts() == []


# ------------------------------------------------------------------------------------------ success
def test_a_good_configuration_gives_one_ok_line_per_check_and_changes_nothing(manager, emu, capsys):
    code, lines, err = manager.check(capsys)
    assert code == 0, lines
    assert checks(lines, "ok") == ALL_OK
    assert checks(lines, "error") == []
    expected = f"ok connection: IRIS v2.4.20 at {emu.url} accepts the key (plain HTTP)"
    assert line_of(lines, "ok connection:") == expected
    assert "ok severity_by_level: Informational=3, Low=4, Medium=1, High=5, Critical=6" in lines
    assert "ok status: New=2" in lines
    assert "ok customer: the account is linked to customer 1 (IrisInitialClient)" in lines
    assert checks(lines, "warning") == ["tls"]  # plain http is worth a word, not a failure
    assert err == ""
    assert_changed_nothing(manager, emu)


def test_the_installed_launcher_checks_like_the_role_runs_it(manager, emu, launcher):
    argv = ["custom-wazuh_iris.py", *manager.check_argv()[1:]]
    result = run_like_integratord(manager, launcher, argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert checks(result.stdout.splitlines(), "ok") == ALL_OK
    assert result.stderr == ""
    assert_changed_nothing(manager, emu)


def test_tls_verified_with_the_ca_file(tls_manager, certificates, capsys):
    code, lines, _err = tls_manager.check(capsys, ca_file=str(certificates / "ca.pem"))
    assert code == 0, lines
    assert f"(TLS verified with ca_file {certificates / 'ca.pem'})" in line_of(lines, "ok connection:")
    assert checks(lines, "warning") == []


def test_verification_off_is_a_warning(tls_manager, capsys):
    code, lines, err = tls_manager.check(capsys, verify_tls=False)
    assert code == 0, lines
    assert "TLS, certificate NOT verified" in line_of(lines, "ok connection:")
    assert "verify_tls: false" in line_of(lines, "warning tls:")
    assert err == ""  # the run-time WARNING line is not repeated on stderr


# ------------------------------------------------------------------------------------- connection
def test_iris_unreachable_names_the_url_and_exits_2(manager, emu, capsys):
    emu.stop()
    code, lines, _err = manager.check(capsys)
    assert code == 2
    assert line_of(lines, "error ").startswith(f"error connection: IRIS unreachable at {emu.url}: ")
    assert checks(lines, "ok") == ["options", "api_key_file"]  # nothing after the connection is tried


def test_iris_answering_503_is_not_available(manager, emu, capsys):
    with _answer_get(emu, "/api/ping", 503, "Service Unavailable"):
        code, lines, _err = manager.check(capsys)
    assert code == 2
    assert "HTTP 503" in line_of(lines, "error connection: IRIS is not available")


def test_a_url_that_does_not_lead_to_iris(manager, emu, capsys):
    code, lines, _err = manager.check(capsys, hook_url=f"{emu.url}/not-iris/alerts/add")
    assert code == 5
    assert line_of(lines, "error ") == (f"error hook_url: {emu.url}/not-iris/api/ping answered HTTP 404: hook_url "
                                        "does not lead to IRIS's API (give IRIS's base URL or its /alerts/add)")


def test_a_bad_url_is_a_configuration_error(manager, emu, capsys):
    code, lines, _err = manager.check(capsys, hook_url="ftp://iris.example/alerts/add")
    assert code == 5
    assert "must start with http:// or https://" in line_of(lines, "error hook_url:")
    assert emu.request_log == []


# -------------------------------------------------------------------------------------------- TLS
def test_a_name_the_certificate_does_not_carry(tls_manager, certificates, capsys):
    url = tls_manager.hook_url.replace("127.0.0.1", "localhost")
    code, lines, _err = tls_manager.check(capsys, hook_url=url, ca_file=str(certificates / "ca.pem"))
    assert code == 5
    line = line_of(lines, "error ")
    assert line.startswith("error tls: the certificate of localhost is not issued for the name localhost (")
    assert "mismatch" in line.lower()


def test_a_certificate_of_another_ca(tls_manager, tls_files, capsys):
    other_ca, _key = tls_files  # a self-signed certificate: a CA that did not sign the server's
    code, lines, _err = tls_manager.check(capsys, ca_file=str(other_ca))
    assert code == 5
    line = line_of(lines, "error ")
    assert line.startswith("error tls: the certificate of 127.0.0.1 is not trusted (")
    assert line.endswith(f"it is not signed by the CA in ca_file {other_ca}")


def test_no_ca_file_and_a_private_ca(tls_manager, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
    (tmp_path / "empty.pem").write_text("")
    code, lines, _err = tls_manager.check(capsys)
    assert code == 5
    assert line_of(lines, "error ").endswith("it is not signed by a system CA (set ca_file)")


def test_an_unreadable_ca_file(tls_manager, capsys):
    code, lines, _err = tls_manager.check(capsys, ca_file=str(tls_manager.root / "none.pem"))
    assert code == 5
    assert line_of(lines, "error ").startswith(f"error ca_file: cannot load ca_file {tls_manager.root / 'none.pem'}")


# -------------------------------------------------------------------------------------------- key
def test_a_wrong_key_gives_iris_own_401_text_and_never_prints_the_key(manager, emu, capsys):
    wrong = "W" * 40
    manager.key_file.write_text(wrong + "\n")
    code, lines, err = manager.check(capsys, "--debug")
    assert code == 5
    assert line_of(lines, "error ") == (f"error api_key: IRIS at {emu.url} refused the key in api_key_file "
                                        f"{manager.key_file}: HTTP 401 'Authentication required' (a wrong or renewed "
                                        "key, or a deactivated account)")
    assert emu.request_log[-1][3] == 401
    assert wrong not in "\n".join(lines) + err


@pytest.mark.parametrize("content, message", [
    (None, "cannot read api_key_file {path}: No such file or directory"),
    ("", "api_key_file {path} is empty"),
    (" \n\n", "api_key_file {path} is empty"),
    ("two words\n", "api_key_file {path} holds more than one word; it must hold the key alone"),
    ("dir", "cannot read api_key_file {path}: Is a directory"),
])
def test_key_file_problems_are_one_line_each_and_nothing_is_asked(manager, emu, capsys, content, message):
    path = manager.root / "etc" / "broken.key"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
        path.chmod(0o640)  # as the role writes it (a key file open to every user is refused)
    code, lines, _err = manager.check(capsys, api_key_file=str(path))
    assert code == 5
    assert line_of(lines, "error ") == f"error api_key_file: {message.format(path=path)}"
    assert emu.request_log == []


def test_hook_url_and_api_key_file_must_be_in_the_options(manager, emu, capsys):
    code, lines, _err = manager.check(capsys, hook_url=None, api_key_file=None)
    assert code == 5
    assert checks(lines, "error") == ["hook_url", "api_key_file"]
    assert emu.request_log == []


def test_an_unusable_options_file_stops_at_once(manager, capsys):
    code = manager.fw.main(["x", "--check-connection", "--options", str(manager.root / "missing.json")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 5
    assert lines == [f"error options: cannot read options file {manager.root / 'missing.json'} (No such file or "
                     "directory)"]


def test_bad_option_values_are_reported_and_the_rest_still_checked(manager, capsys):
    code, lines, _err = manager.check(capsys, cache_ttl=-1, colour="blue")
    assert code == 5
    assert checks(lines, "error") == ["options", "options"]
    assert "connection" in checks(lines, "ok")


def test_debug_shows_the_exchanges_on_stderr_with_the_key_masked(manager, emu, capsys):
    secret = manager.api_key

    def echo(phase, method, path, *rest):
        if (phase, path) == ("after", "/api/versions"):
            return 200, {"status": "success", "message": f"echo {secret}", "data": {"iris_current": secret}}
        return None
    emu.add_hook(echo)
    try:
        code, lines, err = manager.check(capsys, "--debug")
    finally:
        emu.remove_hook(echo)
    assert code == 0, lines
    assert "DEBUG: GET /api/ping -> HTTP 200" in err
    assert "DEBUG: GET /manage/customers/list -> HTTP 200" in err
    assert "IRIS *** at" in line_of(lines, "ok connection:")
    assert secret not in err + "\n".join(lines)
    code, _lines, err = manager.check(capsys, debug=True)  # the option does the same
    assert code == 0 and "DEBUG: GET /api/ping" in err
    assert manager.check(capsys)[2] == ""  # and without either, stderr stays empty


# ------------------------------------------------------------------------------ severity and status
def test_severity_and_status_names_missing_in_this_iris(manager, capsys):
    code, lines, _err = manager.check(capsys, severity_by_level={"0-6": "low", "7-12": "Severe", "13-15": "Dire"},
                                      status="Triage")
    assert code == 5
    errors = [line for line in lines if line.startswith("error ")]
    assert errors == [
        "error severity_by_level: IRIS has no severity named 'Severe'; IRIS knows: Critical, High, Informational, "
        "Low, Medium, Unspecified",
        "error severity_by_level: IRIS has no severity named 'Dire'; IRIS knows: Critical, High, Informational, "
        "Low, Medium, Unspecified",
        "error status: IRIS has no alert status named 'Triage'; IRIS knows: Assigned, Closed, Escalated, In progress, "
        "Merged, New, Pending, Unspecified",
    ]
    assert "customer" in checks(lines, "ok")  # the other checks still ran


# ------------------------------------------------------------------------------------- permissions
def test_an_account_without_alerts_read(emu, tmp_path, capsys):
    manager = _manager_with(emu, tmp_path, ["alerts_write", "customers_read"])
    code, lines, _err = manager.check(capsys)
    assert code == 5
    assert line_of(lines, "error ") == (
        "error alerts_read: GET /alerts/filter answered HTTP 403 'Permission denied': the account's groups lack "
        "alerts_read (needed to look an alert up before resending it; an account in no such group cannot create "
        "alerts either)")


# --------------------------------------------------------------------------------------- customers
def test_a_customer_the_account_is_not_linked_to(manager, emu, capsys):
    other = emu.add_customer("Globex")
    code, lines, _err = manager.check(capsys, customer_id=other)
    assert code == 5
    assert line_of(lines, "error ") == (
        f"error customer: the account is not linked to customer {other} (or IRIS has no such customer), so IRIS "
        "refuses its alerts with 'User not entitled to create alerts for the client': link the account to it, or "
        "fix customer_id")
    code, lines, _err = manager.check(capsys, customer_id=99)
    assert code == 5 and "not linked to customer 99" in line_of(lines, "error ")


def test_customers_and_routes_are_checked_by_id_and_name(manager, emu, capsys):
    acme, globex = emu.add_customer("Acme"), emu.add_customer("Globex")
    _link(emu, manager, acme, globex)
    routes = [{"field": "agent.name", "match": "a*", "customer": "acme"},
              {"field": "agent.name", "match": "g*", "customer": "Globex"},
              {"field": "agent.name", "match": "i*", "customer": "Initech"}]
    code, lines, _err = manager.check(capsys, customers={"Acme": acme, "Umbrella": globex}, customer_routes=routes)
    assert code == 5
    assert "ok customer: the account is linked to customer 1 (IrisInitialClient)" in lines
    assert f"ok customer: the account is linked to customer {acme} (Acme)" in lines
    assert f"error customers: the option maps 'Umbrella' to customer {globex}, but IRIS calls customer {globex} " \
           "'Globex'" in lines
    assert f"ok customer_routes: customer 'Globex' is IRIS customer {globex}, linked to the account" in lines
    assert "error customer_routes: IRIS has no customer named 'Initech' that the account can see; alerts routed " \
           "to it would go to rejected/" in lines
    assert len(checks(lines, "error")) == 2


def test_without_customers_read_a_link_shows_through_alerts_or_stays_unverified(emu, tmp_path, capsys):
    manager = _manager_with(emu, tmp_path, ["alerts_read", "alerts_write", "standard_user"])  # the provisioned group
    globex = emu.add_customer("Globex")
    code, lines, _err = manager.check(capsys, customers={"Globex": globex})
    assert code == 0, lines  # cannot tell: warnings, not errors
    assert checks(lines, "warning") == ["tls", "customer", "customer"]
    assert ("warning customer: cannot tell whether the account is linked to customer 1: it may not list customers "
            "(its groups lack customers_read) and sees no alert of that customer yet; the first alert will tell (or "
            "give the account customers_read)") in lines
    emu.create_alert(alert_title="t", alert_severity_id=1, alert_status_id=2, alert_customer_id=1)
    emu.create_alert(alert_title="t", alert_severity_id=1, alert_status_id=2, alert_customer_id=globex)
    code, lines, _err = manager.check(capsys, customers={"Globex": globex})
    assert code == 0
    assert "ok customer: the account sees alerts of customer 1, so it is linked to it" in lines
    assert f"warning customer: cannot tell whether the account is linked to customer {globex}" in \
           line_of(lines, "warning customer:")  # it is not linked: its alerts stay invisible to it
    routes = [{"field": "agent.name", "match": "*", "customer": "Initech"}]
    code, lines, _err = manager.check(capsys, customer_routes=routes)
    assert code == 5
    assert line_of(lines, "error ") == (
        "error customer_routes: customer 'Initech' is not in the customers option and the account may not list "
        "customers (HTTP 403), so alerts routed to it would go to rejected/: add it to customers")


# ---------------------------------------------------------------------------------------- helpers
def _manager_with(emu, tmp_path, permissions):
    emu.add_group("Forwarders", permissions)
    _user_id, key = emu.add_user("fwd", groups=["Forwarders"], customers=["IrisInitialClient"])
    return Manager(tmp_path / "ossec", emu, key)


def _link(emu, manager, *customers):
    with emu.lock:
        user = next(u for u in emu.state["users"] if u["api_key"] == manager.api_key)
        user["customers"].extend(customers)


def _answer_get(emu, path, status, message):
    """A hook answering GETs of one path with (status, IRIS error envelope), as IRIS or a proxy would."""
    envelope = {"status": "error", "message": message, "data": []}
    return Hook(emu, lambda phase, body: (status, envelope) if phase == "before" else None, method="GET", path=path)
