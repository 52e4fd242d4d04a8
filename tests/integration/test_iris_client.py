"""The IRIS client in plugins/module_utils/iris.py, against the IRIS emulator (tests/emulators/iris.py).

Every error path a user can meet is checked for its message, its HTTP status, and for the absence of
the API key in the message.
"""
import http.server
import json
import socket
import threading
import time

import pytest

from tests.conftest import IRIS_ADMIN_KEY
from tests.emulators.iris import IrisEmulator

ADMIN_KEY = IRIS_ADMIN_KEY  # the key the shared iris_emulator fixture starts with


@pytest.fixture
def client(iris, emu):
    return iris.IrisClient(emu.url, ADMIN_KEY, timeout=5)


@pytest.fixture
def tls_emu(tls_files):
    cert, key = tls_files
    emulator = IrisEmulator(admin_api_key=ADMIN_KEY, tls_cert=str(cert), tls_key=str(key)).start()
    yield emulator
    emulator.stop()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failure(call, *args, **kwargs):
    """The IrisError raised by ``call``; fails the test when nothing is raised."""
    with pytest.raises(Exception) as caught:
        call(*args, **kwargs)
    assert type(caught.value).__name__ == "IrisError", repr(caught.value)
    assert ADMIN_KEY not in caught.value.message
    return caught.value


# -- success path ------------------------------------------------------------------------------


def test_envelope_is_unpacked(client):
    versions = client.get("/api/versions")
    assert versions["iris_current"] == "v2.4.20"
    assert client.get("/api/ping") == []


def test_key_is_sent_as_bearer_and_reaches_the_admin(client, emu):
    client.ping()
    assert emu.request_log[-1][:4] == ("GET", "/api/ping", "administrator", 200)


def test_lookups_by_name(client):
    # Ids differ between installs, so groups and customers are looked up by name, case-insensitively.
    assert client.membership("groups", ["analysts", "ADMINISTRATORS"], [], "bot") == (
        ["Administrators", "Analysts"], [1, 2])
    assert client.membership("customers", ["irisinitialclient"], [], "bot") == (["IrisInitialClient"], [1])
    assert client.find_customer("IRISINITIALCLIENT")["customer_id"] == 1
    assert client.find_group("nope") is None


def test_unknown_lookup_names_are_listed(client):
    err = failure(client.membership, "customers", ["Acme"], [], "bot")
    assert err.message == "unknown customer name(s): Acme; IRIS has: IrisInitialClient"
    err = failure(client.membership, "groups", ["Analysts", "Ghosts", "Spooks"], ["Analysts"], "bot")
    assert "unknown group name(s): Ghosts, Spooks" in err.message


def test_an_empty_membership_is_refused_only_when_one_would_be_removed(client, emu):
    assert client.membership("groups", [], [], "bot") == ([], [])
    err = failure(client.membership, "customers", [], ["Acme Corp", "Globex"], "bot")
    assert err.message.startswith("customers=[] cannot be applied to user 'bot': IRIS refuses an empty customers list")
    assert "(current: Acme Corp, Globex)" in err.message
    assert emu.request_log == []  # decided without asking IRIS


def test_users_linked_to_a_customer(client, emu):
    acme = emu.add_customer("Acme Corp")
    bot_id, _key = emu.add_user("soar-bot", customers=["IrisInitialClient", "Acme Corp"])
    emu.add_user("other-bot", customers=["IrisInitialClient"])
    # the administrator is linked to the customers it adds, not to the first-boot one
    assert client.users_linked_to(acme) == {"administrator": (1, [acme]), "soar-bot": (bot_id, [1, acme])}


def test_user_logins_are_exact(client, emu):
    emu.add_user("alice")
    emu.add_user("ALICE")
    assert client.find_user("alice")["user_login"] == "alice"
    assert client.find_user("ALICE")["user_login"] == "ALICE"
    assert client.find_user("Alice") is None


def test_permission_names(iris):
    # Analysts' mask 1133 = 1+4+8+32+64+1024 (reference: transcripts README, first-boot state).
    assert iris.permission_names(1133) == [
        "standard_user", "alerts_read", "alerts_write", "search_across_cases", "customers_read", "activities_read",
    ]
    assert iris.permission_names(0) == []
    assert iris.permission_mask(["alerts_write", "standard_user", "alerts_read"]) == 13
    assert iris.permission_mask([]) == 0


def test_password_policy(iris):
    # The IRIS policy: 12 characters or more with an upper-case letter, a lower-case letter and a digit.
    assert iris.password_problems("Correct9HorseBattery") == []
    assert iris.password_problems("weakpass1") == ["at least 12 characters", "an upper-case letter"]
    assert iris.password_problems("ALLUPPERCASE") == ["a lower-case letter", "a digit"]
    assert sum(iris.PERMISSIONS.values()) == 4095


# -- errors reported by IRIS ---------------------------------------------------------------------


def test_wrong_key(iris, emu):
    err = failure(iris.IrisClient(emu.url, "B" * 64).ping)
    assert err.message.startswith("IRIS rejected the API key (401)")
    assert err.status == 401
    assert "B" * 64 not in err.message


def test_400_carries_message_and_field_errors(client):
    client.request("POST", "/manage/customers/add", {"customer_name": "Acme Corp"})
    err = failure(client.request, "POST", "/manage/customers/add", {"customer_name": "ACME CORP"})
    assert err.status == 400
    assert err.message == (
        "IRIS refused POST /manage/customers/add (400): Error adding customer; customer_name: Customer already exists"
    )
    assert err.data == {"customer_name": ["Customer already exists"]}


def test_400_with_a_list_in_data(client):
    acme = client.request("POST", "/manage/customers/add", {"customer_name": "Acme Corp"})
    client.request("POST", "/manage/customers/add", {"customer_name": "Globex"})
    err = failure(client.request, "POST", "/manage/customers/update/%d" % acme["customer_id"],
                  {"customer_name": "GLOBEX"})
    assert err.status == 400
    assert err.message.endswith("(400): Customer already exists")


def test_403_carries_the_server_message(iris, emu):
    _bot_id, bot_key = emu.add_user("soar-bot")
    err = failure(iris.IrisClient(emu.url, bot_key).list_users)
    assert err.status == 403
    assert "Permission denied" in err.message
    assert bot_key not in err.message


def test_500_html_page_gives_status_and_first_line(client):
    # A missing customer id answers a 500 HTML page on the real server (transcripts: customers).
    err = failure(client.get, "/manage/customers/99999")
    assert err.status == 500
    assert err.message.startswith("IRIS answered HTTP 500 to GET /manage/customers/99999: ")
    detail = err.message.split(": ", 1)[1]
    assert detail and "<" not in detail


def test_injected_503_envelope(client, emu):
    emu.add_hook(lambda phase, method, path, *rest: (503, {"status": "error", "message": "busy", "data": []})
                 if phase == "before" and path == "/api/ping" else None)
    err = failure(client.ping)
    assert (err.status, err.message) == (503, "IRIS refused GET /api/ping (503): busy")


# -- transport failures --------------------------------------------------------------------------


def test_unreachable_url_names_url_and_os_error(iris):
    port = free_port()
    err = failure(iris.IrisClient("http://user:s3cret@127.0.0.1:%d" % port, ADMIN_KEY, timeout=3).ping)
    assert err.message.startswith("Cannot reach IRIS at http://127.0.0.1:%d: " % port)
    assert "Connection refused" in err.message
    assert "s3cret" not in err.message
    assert err.status is None


def test_outage_then_recovery(client, emu):
    emu.stop()
    assert "Connection refused" in failure(client.ping).message
    emu.start()
    client.ping()


def test_timeout_is_bounded(iris, emu):
    emu.add_hook(lambda phase, method, path, *rest: time.sleep(2) if phase == "before" else None)
    started = time.monotonic()
    err = failure(iris.IrisClient(emu.url, ADMIN_KEY, timeout=1).ping)
    assert time.monotonic() - started < 1.9
    assert "did not answer GET /api/ping within 1 seconds" in err.message


def test_tls_failure_names_the_options(iris, tls_emu):
    assert tls_emu.url.startswith("https://")
    err = failure(iris.IrisClient(tls_emu.url, ADMIN_KEY, timeout=5).ping)
    assert err.message.startswith("TLS failure talking to %s" % tls_emu.url)
    assert "ca_path" in err.message and "validate_certs" in err.message
    assert "CERTIFICATE_VERIFY_FAILED" in err.message


def test_tls_with_ca_path_or_without_validation(iris, tls_emu, tls_files):
    iris.IrisClient(tls_emu.url, ADMIN_KEY, ca_path=str(tls_files[0]), timeout=5).ping()
    iris.IrisClient(tls_emu.url, ADMIN_KEY, validate_certs=False, timeout=5).ping()


def test_url_must_be_http(iris):
    with pytest.raises(iris.IrisError, match="url must start with http:// or https://"):
        iris.IrisClient("iris.example.org", ADMIN_KEY)


# -- cookies and redirects -----------------------------------------------------------------------


class _CookieSetter(http.server.BaseHTTPRequestHandler):
    """Answers like IRIS (an envelope plus a session cookie) and records the headers it receives."""

    seen = []

    def do_GET(self):
        type(self).seen.append((self.path, dict(self.headers)))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/api/ping")
            body = b""
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            body = json.dumps({"status": "success", "message": "pong", "data": []}).encode()
        self.send_header("Set-Cookie", "session=admin-session; Path=/; HttpOnly")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """Silence."""


@pytest.fixture
def cookie_server():
    _CookieSetter.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1], _CookieSetter.seen
    server.shutdown()
    server.server_close()


def test_no_cookie_is_ever_sent(iris, cookie_server):
    url, seen = cookie_server
    client = iris.IrisClient(url, ADMIN_KEY)
    client.ping()
    client.ping()
    assert len(seen) == 2
    for _path, headers in seen:
        assert "Cookie" not in headers
        assert headers["Authorization"] == "Bearer " + ADMIN_KEY


def test_no_session_leaks_between_keys(iris, emu):
    """The emulator, like IRIS, serves a returned session cookie as its user: none may ride along."""
    _bot_id, bot_key = emu.add_user("soar-bot")
    iris.IrisClient(emu.url, ADMIN_KEY).list_users()
    assert failure(iris.IrisClient(emu.url, bot_key).list_users).status == 403
    assert emu.request_log[-1] == ("GET", "/manage/users/list", "soar-bot", 403)


def test_redirects_are_not_followed(iris, cookie_server):
    url, seen = cookie_server
    err = failure(iris.IrisClient(url, ADMIN_KEY).get, "/redirect")
    assert err.status == 302
    assert "redirect (302) to /api/ping" in err.message
    assert [entry[0] for entry in seen] == ["/redirect"]
