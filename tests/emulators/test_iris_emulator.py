"""Behaviour of the DFIR-IRIS emulator itself: harness features (hooks, outage, TLS, persistence, CLI)
and the IRIS rules other components' tests rely on. Needs nothing from ../shared."""

import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.emulators.iris import IrisEmulator

EMULATOR_SCRIPT = Path(__file__).resolve().parents[1] / "emulators" / "iris.py"


def call(emu, method, path, key=None, *, body=None, headers=None, tls_context=None):
    """One request without a cookie jar; returns (status, parsed JSON or HTML text, response headers)."""
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    if tls_context is None:
        connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", emu.port, timeout=10, context=tls_context)
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
        content = json.loads(text) if response.getheader("Content-Type") == "application/json" else text
        return response.status, content, response
    finally:
        connection.close()


# --- auth, envelope, errors ----------------------------------------------------------------------------


def test_auth_header_variants(iris_emulator, iris_admin_key):
    accepted = [{"Authorization": f"Bearer {iris_admin_key}"}, {"Authorization": iris_admin_key},
                {"X-IRIS-AUTH": iris_admin_key}, {"X-IRIS-AUTH": f"Bearer {iris_admin_key}"}]
    for headers in accepted:
        status, body, _ign = call(iris_emulator, "GET", "/api/ping", headers=headers)
        assert (status, body) == (200, {"status": "success", "message": "pong", "data": []}), headers
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {iris_admin_key}"}]
    for headers in refused:
        status, body, _ign = call(iris_emulator, "GET", "/api/ping", headers=headers)
        assert (status, body) == (401, {"status": "error", "message": "Authentication required", "data": []})


def test_routing_errors_are_html_pages(iris_emulator, iris_admin_key):
    status, page, response = call(iris_emulator, "GET", "/api/nope", key=iris_admin_key)
    assert status == 404 and "<title>IRIS - 404 Error</title>" in page
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    status, page, _ign = call(iris_emulator, "POST", "/api/ping", key=iris_admin_key, body={})
    assert status == 405 and "405 Method Not Allowed" in page
    status, page, _ign = call(iris_emulator, "GET", "/manage/customers/99999", key=iris_admin_key)
    assert status == 500 and "500 Internal Server Error" in page


def test_first_boot_state_and_lookup_order(iris_emulator, iris_admin_key):
    _ign, users, _ign = call(iris_emulator, "GET", "/manage/users/list", key=iris_admin_key)
    assert [(u["user_id"], u["user_login"]) for u in users["data"]] == [(1, "administrator")]
    _ign, groups, _ign = call(iris_emulator, "GET", "/manage/groups/list", key=iris_admin_key)
    assert [(g["group_id"], g["group_name"], g["group_permissions"]) for g in groups["data"]] == [
        (1, "Administrators", 4095), (2, "Analysts", 1133)]
    _ign, customers, _ign = call(iris_emulator, "GET", "/manage/customers/list", key=iris_admin_key)
    assert [(c["customer_id"], c["customer_name"]) for c in customers["data"]] == [(1, "IrisInitialClient")]
    _ign, severities, _ign = call(iris_emulator, "GET", "/manage/severities/list", key=iris_admin_key)
    assert [s["severity_id"] for s in severities["data"]] == [4, 3, 2, 5, 1, 6]
    _ign, statuses, _ign = call(iris_emulator, "GET", "/manage/alert-status/list", key=iris_admin_key)
    assert [s["status_id"] for s in statuses["data"]] == [1, 6, 8, 4, 5, 2, 3, 7]
    _ign, group, _ign = call(iris_emulator, "POST", "/manage/groups/add", key=iris_admin_key,
                             body={"group_name": "Bots", "group_description": "bots", "group_permissions": [4, 8]})
    assert group["data"]["group_id"] == 4


def test_permission_bits_and_membership_rules(iris_emulator, iris_admin_key):
    _ign, added, _ign = call(iris_emulator, "POST", "/manage/groups/add", key=iris_admin_key,
                             body={"group_name": "Bots", "group_description": "bots", "group_permissions": [1, 4, 8]})
    assert added["data"]["group_permissions"] == 13
    named = {"group_name": "Named", "group_description": "x", "group_permissions": ["alerts_read"]}
    status, _ign, _ign = call(iris_emulator, "POST", "/manage/groups/add", key=iris_admin_key, body=named)
    assert status == 500
    status, dup, _ign = call(iris_emulator, "POST", "/manage/groups/add", key=iris_admin_key,
                             body={"group_name": "BOTS", "group_description": "dup"})
    assert (status, dup["data"]) == (400, {"group_name": ["Group already exists"]})
    _ign, reset, _ign = call(iris_emulator, "POST", "/manage/groups/update/4", key=iris_admin_key,
                             body={"group_name": "Bots", "group_description": "no permissions key"})
    assert reset["data"]["group_permissions"] == 0

    user_id, bot_key = iris_emulator.add_user("bot")
    status, denied, _ign = call(iris_emulator, "GET", "/manage/users/list", key=bot_key)
    assert (status, denied["message"]) == (403, "Permission denied")
    status, empty, _ign = call(iris_emulator, "POST", f"/manage/users/{user_id}/groups/update", key=iris_admin_key,
                               body={"groups_membership": []})
    assert (status, empty["message"]) == (400, "Invalid request")
    call(iris_emulator, "POST", f"/manage/users/{user_id}/groups/update", key=iris_admin_key,
         body={"groups_membership": [4]})
    _ign, stale, _ign = call(iris_emulator, "POST", f"/manage/users/{user_id}/groups/update", key=iris_admin_key,
                             body={"groups_membership": [2]})
    assert [g["group_id"] for g in stale["data"]["user_groups"]] == [4]  # the user as it was before
    _ign, details, _ign = call(iris_emulator, "GET", f"/manage/users/{user_id}", key=iris_admin_key)
    assert [g["group_id"] for g in details["data"]["user_groups"]] == [2]  # replaced, not added


def test_duplicate_rules_and_password_policy(iris_emulator, iris_admin_key):
    def add_user(login, email, password="Str0ngPassw0rd"):
        return call(iris_emulator, "POST", "/manage/users/add", key=iris_admin_key,
                    body={"user_name": login, "user_login": login, "user_email": email, "user_password": password})

    assert add_user("alice", "alice@example.com")[0] == 200
    assert add_user("ALICE", "alice2@example.com")[0] == 200  # logins are case-sensitive
    status, body, _ign = add_user("alice", "alice3@example.com")
    assert (status, body["data"]) == (400, {"user_login": ["User name already taken"]})
    status, body, _ign = add_user("weak", "weak@example.com", password="weakpass")
    assert body["data"]["user_password"] == [
        "Password must be longer than 12 characters. Password must contain uppercase char. "
        "Password must contain digit. "]
    assert add_user("nopass", "nopass@example.com", password=None)[0] == 500

    call(iris_emulator, "POST", "/manage/customers/add", key=iris_admin_key, body={"customer_name": "Acme Corp"})
    status, body, _ign = call(iris_emulator, "POST", "/manage/customers/add", key=iris_admin_key,
                              body={"customer_name": "ACME CORP"})
    assert (status, body["data"]) == (400, {"customer_name": ["Customer already exists"]})


def test_renew_invalidates_old_key_and_key_only_shown_on_add_and_renew(iris_emulator, iris_admin_key):
    user_id, old_key = iris_emulator.add_user("bot")
    _ign, details, _ign = call(iris_emulator, "GET", f"/manage/users/{user_id}", key=iris_admin_key)
    assert old_key not in json.dumps(details)
    _ign, renewed, _ign = call(iris_emulator, "POST", f"/manage/users/renew-api-key/{user_id}", key=iris_admin_key)
    new_key = renewed["data"]["api_key"]
    assert new_key != old_key and renewed["message"] == "API key of user bot renewed"
    assert call(iris_emulator, "GET", "/api/ping", key=old_key)[0] == 401
    assert call(iris_emulator, "GET", "/api/ping", key=new_key)[0] == 200


def test_session_cookie_overrides_the_api_key_with_cached_permissions(iris_emulator, iris_admin_key):
    bot_id, bot_key = iris_emulator.add_user("bot")
    status, _ign, response = call(iris_emulator, "GET", "/api/ping", key=iris_admin_key)
    cookie = response.getheader("Set-Cookie")
    assert status == 200 and cookie.startswith("session=") and "HttpOnly" in cookie
    session = cookie.split(";")[0]
    # The bot's key with the admin's cookie acts as the admin, as on the real server.
    status, _ign, _ign = call(iris_emulator, "GET", "/manage/users/list", key=bot_key, headers={"Cookie": session})
    assert status == 200
    assert iris_emulator.request_log[-1][2] == "administrator"
    # The cached permission mask outlives a group change.
    call(iris_emulator, "POST", "/manage/users/1/groups/update", key=iris_admin_key, body={"groups_membership": [2]})
    assert call(iris_emulator, "GET", "/manage/users/list", key=iris_admin_key)[0] == 403
    assert call(iris_emulator, "GET", "/manage/users/list", headers={"Cookie": session})[0] == 200
    assert call(iris_emulator, "GET", "/api/ping", key=bot_key)[0] == 200 and bot_id == 2


# --- alerts --------------------------------------------------------------------------------------------


def test_alert_add_validation_and_entitlement(iris_emulator, iris_admin_key):
    acme = iris_emulator.add_customer("Acme")
    bots = iris_emulator.add_group("Bots", ["standard_user", "alerts_read", "alerts_write"])
    assert bots == 4
    _ign, unlinked_key = iris_emulator.add_user("unlinked", groups=["Bots"])
    _ign, key = iris_emulator.add_user("bot", groups=["Bots"], customers=["Acme"])
    alert = {"alert_title": "t", "alert_severity_id": 5, "alert_status_id": 2, "alert_customer_id": acme}

    status, body, _ign = call(iris_emulator, "POST", "/alerts/add", key=unlinked_key, body=alert)
    assert (status, body["message"]) == (400, "User not entitled to create alerts for the client")
    status, body, _ign = call(iris_emulator, "POST", "/alerts/add", key=key, body={"alert_title": "only"})
    assert body["message"] == ("{'alert_severity_id': ['Missing data for required field.'], 'alert_status_id': "
                               "['Missing data for required field.'], 'alert_customer_id': "
                               "['Missing data for required field.']}")
    status, body, _ign = call(iris_emulator, "POST", "/alerts/add", key=key, body=dict(alert, alert_tags=["a"]))
    assert (status, body["message"]) == (400, "'list' object has no attribute 'split'")
    status, body, _ign = call(iris_emulator, "POST", "/alerts/add", key=key, body=dict(alert, alert_severity_id=999))
    assert status == 400 and body["message"].startswith("(psycopg2.errors.ForeignKeyViolation)")
    status, body, _ign = call(iris_emulator, "POST", "/alerts/add", key=key, body=alert)
    assert status == 200 and body["data"]["alert_id"] == 2  # the failed insert used up id 1
    assert body["data"]["alert_tags"] is None and body["data"]["owner"] is None
    assert call(iris_emulator, "POST", "/alerts/add", key=key, body=alert)[1]["data"]["alert_id"] == 3  # no dedup


def test_alert_filter_semantics(iris_emulator, iris_admin_key):
    acme = iris_emulator.add_customer("Acme")
    other = iris_emulator.add_customer("Other")
    base = {"alert_severity_id": 4, "alert_status_id": 2, "alert_customer_id": acme}
    iris_emulator.create_alert(alert_title="one", alert_tags="ai-pending", alert_source_ref="REF-1",
                               alert_source_event_time="2024-01-01T00:00:00", **base)
    iris_emulator.create_alert(alert_title="two", alert_tags="AI-PENDING-x", alert_source_ref="ref-1",
                               alert_source_event_time="2024-01-03T00:00:00+0200", **base)
    iris_emulator.create_alert(alert_title="three", alert_tags="ai_pending", alert_source_ref="REF-10",
                               alert_source_event_time="2024-01-02T00:00:00Z", **base)
    iris_emulator.create_alert(alert_title="four", alert_severity_id=4, alert_status_id=6, alert_customer_id=other)

    def ids(query, key=iris_admin_key):
        status, body, _ign = call(iris_emulator, "GET", "/alerts/filter" + query, key=key)
        assert status == 200
        return [a["alert_id"] for a in body["data"]["alerts"]]

    assert ids("?alert_tags=ai-pending") == [2, 1]  # ILIKE substring, newest source event first
    assert ids("?alert_tags=ai_pending") == [2, 3, 1]  # '_' is a LIKE wildcard
    assert ids("?source_reference=REF-1") == [3, 1]  # case-sensitive substring
    assert ids("?alert_status_id=6") == [4] and ids("?alert_status_id=abc") == [4, 2, 3, 1]
    assert ids("?sort=asc&alert_customer_id=1") == [] and ids("?sort=bogus&alert_title=o") == [1, 2, 4]
    _ign, page, _ign = call(iris_emulator, "GET", "/alerts/filter?per_page=3&page=2&fields=alert_id,alert_tags",
                            key=iris_admin_key)
    assert page["data"]["alerts"] == [{"alert_id": 1, "alert_tags": "ai-pending"}]
    assert (page["data"]["total"], page["data"]["last_page"], page["data"]["next_page"]) == (4, 2, None)
    _ign, viewer = iris_emulator.add_user("viewer", groups=["Analysts"], customers=["Other"])
    assert ids("", key=viewer) == [4]


def test_alert_update_owner_tags_comments_and_delete(iris_emulator, iris_admin_key):
    acme = iris_emulator.add_customer("Acme")
    bot_id, key = iris_emulator.add_user("bot", groups=["Analysts"], customers=["Acme"])
    alert = iris_emulator.create_alert(alert_title="t", alert_severity_id=4, alert_status_id=2,
                                       alert_customer_id=acme, alert_tags="a,b")
    path = f"/alerts/update/{alert['alert_id']}"
    _ign, updated, _ign = call(iris_emulator, "POST", path, key=key, body={"alert_tags": "c"})
    assert updated["data"]["alert_tags"] == "c" and updated["data"]["alert_owner_id"] == bot_id
    _ign, updated, _ign = call(iris_emulator, "POST", path, key=key, body={"alert_owner_id": -1})
    assert updated["data"]["alert_owner_id"] is None
    _ign, updated, _ign = call(iris_emulator, "POST", path, key=iris_admin_key, body={"alert_note": "n"})
    assert updated["data"]["alert_owner_id"] == 1  # the caller takes an unowned alert

    call(iris_emulator, "POST", f"/alerts/{alert['alert_id']}/comments/add", key=key, body={"comment_text": "hi"})
    assert [c["comment_text"] for c in iris_emulator.comments(alert["alert_id"])] == ["hi"]
    assert iris_emulator.alerts()[0]["comments"] == [1]
    assert call(iris_emulator, "POST", f"/alerts/delete/{alert['alert_id']}", key=key)[0] == 403
    _ign, deleted, _ign = call(iris_emulator, "POST", f"/alerts/delete/{alert['alert_id']}", key=iris_admin_key)
    assert deleted["data"] == {"alert_id": alert["alert_id"]} and iris_emulator.alerts() == []


def test_concurrent_adds_get_distinct_ids(iris_emulator, iris_admin_key):
    body = {"alert_title": "t", "alert_severity_id": 4, "alert_status_id": 2, "alert_customer_id": 1}
    results = []

    def add():
        results.append(call(iris_emulator, "POST", "/alerts/add", key=iris_admin_key, body=body)[1])

    threads = [threading.Thread(target=add) for _ign in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(r["data"]["alert_id"] for r in results) == list(range(1, 21))


# --- harness features ----------------------------------------------------------------------------------


def test_hooks_see_requests_and_can_fail_them(iris_emulator, iris_admin_key):
    seen = []

    def record(*hook_args):  # (phase, method, path, query, body, login)
        seen.append(hook_args)

    def unavailable(phase, method, path, *_query_body_login):
        if phase == "before" and path == "/alerts/add":
            return 503, {"status": "error", "message": "injected", "data": []}
        return None

    iris_emulator.add_hook(record)
    iris_emulator.add_hook(unavailable)
    status, body, _ign = call(iris_emulator, "POST", "/alerts/add?x=1", key=iris_admin_key, body={"alert_title": "t"})
    assert (status, body["message"]) == (503, "injected")
    assert iris_emulator.alerts() == []  # the handler never ran
    assert seen == [("before", "POST", "/alerts/add", {"x": "1"}, {"alert_title": "t"}, "administrator")]
    assert iris_emulator.request_log[-1] == ("POST", "/alerts/add?x=1", "administrator", 503)

    iris_emulator.remove_hook(unavailable)
    call(iris_emulator, "GET", "/api/ping")
    assert seen[-2:] == [("before", "GET", "/api/ping", {}, None, None), ("after", "GET", "/api/ping", {}, None, None)]
    assert iris_emulator.request_log[-1] == ("GET", "/api/ping", None, 401)


def test_after_hook_loses_the_response_but_keeps_the_change(iris_emulator, iris_admin_key):
    def lose(phase, *_request):
        return (502, {"status": "error", "message": "lost", "data": []}) if phase == "after" else None

    iris_emulator.add_hook(lose)
    status, _ign, _ign = call(iris_emulator, "POST", "/manage/customers/add", key=iris_admin_key,
                              body={"customer_name": "Acme"})
    iris_emulator.remove_hook(lose)
    assert status == 502
    _ign, customers, _ign = call(iris_emulator, "GET", "/manage/customers/list", key=iris_admin_key)
    assert [c["customer_name"] for c in customers["data"]] == ["IrisInitialClient", "Acme"]


def test_a_request_held_in_a_hook_does_not_block_others(iris_emulator, iris_admin_key):
    entered, release = threading.Event(), threading.Event()

    def hold(phase, _method, path, *_query_body_login):
        if phase == "before" and path == "/api/versions":
            entered.set()
            release.wait(timeout=5)

    iris_emulator.add_hook(hold)
    held = threading.Thread(target=call, args=(iris_emulator, "GET", "/api/versions", iris_admin_key))
    held.start()
    try:
        assert entered.wait(timeout=5)
        assert call(iris_emulator, "GET", "/api/ping", key=iris_admin_key)[0] == 200
        assert held.is_alive()  # still inside the hook while the ping was served
    finally:
        release.set()
        held.join(timeout=5)
    assert iris_emulator.request_log[-1][:2] == ("GET", "/api/versions")


def test_outage_stop_and_start_on_the_same_port(iris_emulator, iris_admin_key):
    port = iris_emulator.port
    customer = iris_emulator.add_customer("Acme")
    iris_emulator.stop()
    with pytest.raises(ConnectionRefusedError):
        call(iris_emulator, "GET", "/api/ping", key=iris_admin_key)
    iris_emulator.start()
    assert iris_emulator.port == port
    status, body, _ign = call(iris_emulator, "GET", f"/manage/customers/{customer}", key=iris_admin_key)
    assert (status, body["data"]["customer_name"]) == (200, "Acme")


def test_tls_mode_with_a_self_signed_certificate(tls_files, iris_admin_key):
    cert, key = tls_files
    emu = IrisEmulator(admin_api_key=iris_admin_key, tls_cert=str(cert), tls_key=str(key)).start()
    try:
        assert emu.url == f"https://127.0.0.1:{emu.port}"
        context = ssl.create_default_context(cafile=str(cert))
        status, body, response = call(emu, "GET", "/api/ping", key=iris_admin_key, tls_context=context)
        assert (status, body["message"]) == (200, "pong")
        assert "Secure" in response.getheader("Set-Cookie")
        with pytest.raises(ssl.SSLError):  # the system trust store does not know the certificate
            call(emu, "GET", "/api/ping", key=iris_admin_key, tls_context=ssl.create_default_context())
    finally:
        emu.stop()


def test_state_file_persists_and_first_boot_settings_apply_once(tmp_path, iris_admin_key):
    state_file = tmp_path / "iris-state.json"
    emu = IrisEmulator(admin_api_key=iris_admin_key, state_file=str(state_file)).start()
    try:
        call(emu, "POST", "/manage/customers/add", key=iris_admin_key, body={"customer_name": "Acme"})
        _ign, bot_key = emu.add_user("bot")
    finally:
        emu.stop()
    assert not list(tmp_path.glob(".iris-state-*"))  # atomic writes leave no temporary file behind

    emu = IrisEmulator(admin_api_key="another-key", state_file=str(state_file)).start()
    try:
        assert call(emu, "GET", "/api/ping", key="another-key")[0] == 401  # not a new state: key unchanged
        assert call(emu, "GET", "/api/ping", key=bot_key)[0] == 200
        _ign, customers, _ign = call(emu, "GET", "/manage/customers/list", key=iris_admin_key)
        assert [c["customer_name"] for c in customers["data"]] == ["IrisInitialClient", "Acme"]
        status, _ign, _ign = call(emu, "POST", "/manage/customers/add", key=iris_admin_key,
                                  body={"customer_name": "Globex"})
    finally:
        emu.stop()
    assert status == 200 and json.loads(state_file.read_text())["seq"]["customer"] == 4


def _run_cli(state_file, env_overrides):
    env = dict(os.environ, **env_overrides)
    process = subprocess.Popen(
        [sys.executable, str(EMULATOR_SCRIPT), "--host", "127.0.0.1", "--port", "0", "--state-file", str(state_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    assert "listening on http://127.0.0.1:" in line, line or process.stderr.read()
    return process, int(line.rsplit(":", 1)[1])


class _Endpoint:
    def __init__(self, port):
        self.port = port


def test_cli_reads_the_iris_adm_environment_on_first_start_only(tmp_path):
    state_file = tmp_path / "state.json"
    first_env = {"IRIS_ADM_API_KEY": "cli-admin-key-1", "IRIS_ADM_PASSWORD": "Adm1nPassword",
                 "IRIS_ADM_USERNAME": "root-admin", "IRIS_ADM_EMAIL": "root@example.org"}
    process, port = _run_cli(state_file, first_env)
    try:
        status, admin, _ign = call(_Endpoint(port), "GET", "/manage/users/1", key="cli-admin-key-1")
        assert status == 200
        assert (admin["data"]["user_login"], admin["data"]["user_email"]) == ("root-admin", "root@example.org")
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        stderr = process.stderr.read()
    assert "cli-admin-key-1" not in stderr and "Adm1nPassword" not in stderr

    process, port = _run_cli(state_file, dict(first_env, IRIS_ADM_API_KEY="cli-admin-key-2"))
    try:
        assert call(_Endpoint(port), "GET", "/api/ping", key="cli-admin-key-1")[0] == 200
        assert call(_Endpoint(port), "GET", "/api/ping", key="cli-admin-key-2")[0] == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
