"""The IRIS emulator against a real DFIR-IRIS 2.4.20 (``pytest --real-iris``), on the routes the programs use;
and the forwarder, its preflight and the AI worker, run end to end against the real server.

One scripted exchange (the forwarder's, the preflight's, the AI worker's and the modules' calls, in the
order a deployment makes them) runs against both servers; for each call the HTTP status, whether the
answer is JSON, the envelope (``status``, ``message``) and the fields the programs read (their presence,
type and, where both servers must agree, value) must be the same. Names carry a random suffix, so the
real server (one per session) can have served other tests before. Every difference found when this
test was written is listed in CHANGELOG.md (issue 25) and was corrected in the emulator.
"""
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request

import pytest
from iris_ai_worker import loop, settings, tags

from tests.conftest import IRIS_ADMIN_KEY
from tests.emulators.ollama import OllamaEmulator
from tests.integration.test_forwarder_preflight import ALL_OK, checks, line_of
from tests.support.ai_worker import AI_BASE_ENV, AI_MODEL, SSH_EVENT, LogLines
from tests.support.forwarder import Manager, alert, run_like_integratord

pytestmark = pytest.mark.integration

MISSING = object()


def call(base, method, path, key, body=None):
    """(status, parsed JSON or None) of one request, without cookies (as the programs do)."""
    data = None if body is None else json.dumps(body).encode()  # ensure_ascii: lone surrogates go escaped
    headers = {"Authorization": "Bearer " + key}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def pick(document, path):
    """The value at a dotted path ("data.alerts.0.alert_id"), MISSING when absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def kind(value):
    if value is MISSING:
        return "missing"
    return "null" if value is None else type(value).__name__


def run_script(base, tag):
    """Run the scripted exchange against one server (names suffixed with tag); return [(step, observation)]."""
    seen = []
    ids = {}

    def step(name, method, path, key=IRIS_ADMIN_KEY, body=None, *, read=(), same=()):
        status, document = call(base, method, path.format(**ids), key, body)
        observed = {"status": status, "json": document is not None}
        if isinstance(document, dict):
            observed["envelope"] = document.get("status"), document.get("message")
            for field in read:  # fields a program reads: present with the same type
                observed[field] = kind(pick(document, field))
            for field in same:  # fields both servers must answer alike
                observed[field + "="] = pick(document, field)
        seen.append((name, observed))
        return document

    step("ping", "GET", "/api/ping", read=("data",), same=("message",))
    step("ping with a wrong key", "GET", "/api/ping", key="W" * 64)
    step("versions", "GET", "/api/versions", read=("data.iris_current", "data.api_current"),
         same=("data.iris_current",))
    step("whoami", "GET", "/user/whoami", read=("data.user_id", "data.user_login", "data.is_service_account"),
         same=("data.user_login",))
    step("severities", "GET", "/manage/severities/list", read=("data.0.severity_id", "data.0.severity_name"))
    step("alert statuses", "GET", "/manage/alert-status/list", read=("data.0.status_id", "data.0.status_name"))
    customers = step("customers", "GET", "/manage/customers/list",
                     read=("data.0.customer_id", "data.0.customer_name"))
    step("groups", "GET", "/manage/groups/list",
         read=("data.0.group_id", "data.0.group_name", "data.0.group_permissions"))
    step("users", "GET", "/manage/users/list", read=("data.0.user_id", "data.0.user_login"))
    document = step("customer add", "POST", "/manage/customers/add",
                    body={"customer_name": f"Cmp {tag}", "customer_description": "cmp", "customer_sla": ""},
                    read=("data.customer_id", "data.customer_name"), same=("data.customer_name",))
    ids["customer"] = pick(document, "data.customer_id")
    step("customer add again", "POST", "/manage/customers/add",
         body={"customer_name": f"cmp {tag}", "customer_description": "cmp", "customer_sla": ""})
    step("customer get", "GET", "/manage/customers/{customer}", read=("data.customer_id", "data.customer_name"))
    step("customer get missing", "GET", "/manage/customers/987654")
    document = step("group add", "POST", "/manage/groups/add",
                    body={"group_name": f"Cmp {tag}", "group_description": "cmp group",
                          "group_permissions": [1, 4, 8, 64]},
                    read=("data.group_id", "data.group_permissions"), same=("data.group_permissions",))
    ids["group"] = pick(document, "data.group_id")
    step("group add without description", "POST", "/manage/groups/add",
         body={"group_name": f"Cmp2 {tag}", "group_permissions": [1]}, same=("data",))
    document = step("user add", "POST", "/manage/users/add",
                    body={"user_login": f"cmp-{tag}", "user_name": f"cmp-{tag}", "user_email": f"cmp-{tag}@example.org",
                          "user_password": "", "user_is_service_account": True},
                    read=("data.id", "data.user_api_key", "data.user_login", "data.user_active"),
                    same=("data.user_login", "data.user_active"))
    ids["user"] = pick(document, "data.id")
    service_key = pick(document, "data.user_api_key")
    step("user groups", "POST", "/manage/users/{user}/groups/update",
         body={"groups_membership": [ids["group"]]}, read=("data",))
    step("user customers", "POST", "/manage/users/{user}/customers/update",
         body={"customers_membership": [ids["customer"]]}, read=("data",))
    step("user customers empty", "POST", "/manage/users/{user}/customers/update",
         body={"customers_membership": []})
    step("user get", "GET", "/manage/users/{user}",
         read=("data.user_groups.0.group_name", "data.user_customers.0.customer_name",
               "data.user_is_service_account", "data.user_active"),
         same=("data.user_is_service_account", "data.user_active"))
    step("lookup login", "GET", f"/manage/users/lookup/login/cmp-{tag}", read=("data.user_id",))
    step("service whoami", "GET", "/user/whoami", key=service_key,
         read=("data.user_login", "data.is_service_account"), same=("data.is_service_account",))
    step("service customers", "GET", "/manage/customers/list", key=service_key,
         read=("data.0.customer_name",), same=("data.0.customer_name",))
    ref = f"cmp-manager:{tag}"
    alert = {"alert_title": f"cmp {tag}", "alert_description": "cmp", "alert_severity_id": 4, "alert_status_id": 2,
             "alert_customer_id": ids["customer"], "alert_source": "wazuh", "alert_source_ref": ref,
             "alert_source_event_time": "2026-12-07T10:00:00", "alert_tags": f"wazuh,ai-pending-{tag}",
             "alert_source_content": {"rule": {"id": "5710"}}}
    document = step("alert add", "POST", "/alerts/add", key=service_key, body=alert,
                    read=("data.alert_id", "data.alert_source_ref", "data.alert_tags"),
                    same=("data.alert_source_ref", "data.alert_tags"))
    ids["alert"] = pick(document, "data.alert_id")
    step("alert add for a customer not linked", "POST", "/alerts/add", key=service_key,
         body=dict(alert, alert_customer_id=pick(customers, "data.0.customer_id")))
    step("alert add with list tags", "POST", "/alerts/add", key=service_key, body=dict(alert, alert_tags=["a"]))
    step("alert add with a NUL in a text field", "POST", "/alerts/add", key=service_key,
         body=dict(alert, alert_note="a\x00b"))
    step("alert add with a lone surrogate in a text field", "POST", "/alerts/add", key=service_key,
         body=dict(alert, alert_title="a\ud800b"))
    step("alert add with NUL and a lone surrogate in the source content", "POST", "/alerts/add", key=service_key,
         body=dict(alert, alert_source_ref=ref + "-content", alert_source_content={"a": "x\x00\udfffy"}),
         read=("data.alert_id",))
    query = urllib.parse.urlencode({"source_reference": ref, "per_page": 5})
    step("filter by reference", "GET", "/alerts/filter?" + query, key=service_key,
         read=("data.total", "data.alerts.0.alert_id", "data.alerts.0.alert_source_ref", "data.last_page",
               "data.current_page", "data.next_page"),
         same=("data.total", "data.alerts.0.alert_source_ref", "data.current_page", "data.next_page"))
    query = urllib.parse.urlencode({"alert_tags": f"ai-pending-{tag[:4]}", "per_page": 5})
    step("filter by tag substring", "GET", "/alerts/filter?" + query, key=service_key,
         read=("data.total",), same=("data.total",))
    step("filter customer, one field", "GET",
         "/alerts/filter?alert_customer_id={customer}&per_page=1&page=1&fields=alert_id", key=service_key,
         read=("data.total", "data.alerts.0.alert_id"), same=("data.total", "data.alerts.0"))
    step("alert get", "GET", "/alerts/{alert}", key=service_key,
         read=("data.alert_id", "data.alert_tags", "data.alert_source_content", "data.alert_owner_id",
               "data.customer.customer_name"), same=("data.alert_tags", "data.alert_source_content"))
    step("alert update tags", "POST", "/alerts/update/{alert}", key=service_key,
         body={"alert_tags": f"wazuh,ai-done-{tag}"}, read=("data.alert_tags",), same=("data.alert_tags",))
    document = step("comment add", "POST", "/alerts/{alert}/comments/add", key=service_key,
                    body={"comment_text": "cmp comment"}, read=("data.comment_id", "data.comment_text"),
                    same=("data.comment_text",))
    ids["comment"] = pick(document, "data.comment_id")
    step("comments list", "GET", "/alerts/{alert}/comments/list", key=service_key,
         read=("data.0.comment_id", "data.0.comment_text", "data.0.comment_user_id", "data.0.user.user_login"),
         same=("data.0.comment_text",))
    step("comment delete", "POST", "/alerts/{alert}/comments/{comment}/delete", key=service_key)
    step("comment delete again", "POST", "/alerts/{alert}/comments/{comment}/delete", key=service_key)
    document = step("renew key", "POST", "/manage/users/renew-api-key/{user}", read=("data.api_key",))
    step("old key after renewal", "GET", "/api/ping", key=service_key)
    step("new key after renewal", "GET", "/api/ping", key=pick(document, "data.api_key"))
    step("unknown path", "GET", "/no/such/route")
    return seen


def test_emulator_answers_like_the_real_iris(real_iris, iris_emulator):
    tag = secrets.token_hex(3)
    real = run_script(real_iris.url, tag)
    emulated = run_script(iris_emulator.url, tag)
    assert [step[0] for step in real] == [step[0] for step in emulated]
    differences = []
    for (name, want), (_emulated_name, got) in zip(real, emulated):
        for key in sorted(set(want) | set(got)):
            if want.get(key, MISSING) != got.get(key, MISSING):
                real_value, emulated_value = want.get(key, "absent"), got.get(key, "absent")
                differences.append(f"{name}: {key}: real {real_value!r}, emulator {emulated_value!r}")
    assert differences == [], "\n".join(differences)


def add_account(real_iris, groups, customers=(1,), *, password=""):
    """A new user (a service account unless a password is given) in these groups and customers: (id, key)."""
    login = "acct-" + secrets.token_hex(3)
    _status, user = call(real_iris.url, "POST", "/manage/users/add", IRIS_ADMIN_KEY,
                         {"user_login": login, "user_name": login, "user_email": f"{login}@example.org",
                          "user_password": password, "user_is_service_account": not password})
    user_id = user["data"]["id"]
    call(real_iris.url, "POST", f"/manage/users/{user_id}/groups/update", IRIS_ADMIN_KEY,
         {"groups_membership": list(groups)})
    call(real_iris.url, "POST", f"/manage/users/{user_id}/customers/update", IRIS_ADMIN_KEY,
         {"customers_membership": list(customers)})
    return user_id, user["data"]["user_api_key"]


@pytest.fixture
def real_manager(tmp_path, real_iris):
    """A stand-in Wazuh home whose forwarder talks to the real IRIS with a new service account (group with
    alerts_read, alerts_write, customers_read, standard_user; linked to IrisInitialClient, id 1)."""
    _status, group = call(real_iris.url, "POST", "/manage/groups/add", IRIS_ADMIN_KEY,
                          {"group_name": "Forwarders " + secrets.token_hex(3), "group_description": "forwarder tests",
                           "group_permissions": [1, 4, 8, 64]})
    _user_id, key = add_account(real_iris, [group["data"]["group_id"]])
    return Manager(tmp_path / "ossec", real_iris, key)


def test_preflight_against_the_real_iris(real_manager, real_iris, capsys):
    code, lines, _err = real_manager.check(capsys)
    assert code == 0, lines
    assert checks(lines, "ok") == ALL_OK
    expected = f"ok connection: IRIS v2.4.20 at {real_iris.url} accepts the key (plain HTTP)"
    assert line_of(lines, "ok connection:") == expected
    assert "ok severity_by_level: Informational=3, Low=4, Medium=1, High=5, Critical=6" in lines
    assert "ok status: New=2" in lines
    assert "ok customer: the account is linked to customer 1 (IrisInitialClient)" in lines


def test_forwarder_delivers_an_alert_to_the_real_iris(real_manager, real_iris, launcher):
    number = secrets.randbelow(10**8)
    wazuh_alert = alert(number)
    result = run_like_integratord(real_manager, launcher, real_manager.argv(wazuh_alert))
    assert result.returncode == 0, real_manager.log()
    query = urllib.parse.urlencode({"source_reference": f"1700000000.{number}", "per_page": 5})
    _status, found = call(real_iris.url, "GET", "/alerts/filter?" + query, real_manager.api_key)
    assert found["data"]["total"] == 1, found
    delivered = found["data"]["alerts"][0]
    assert "sshd: brute force" in delivered["alert_title"]
    assert delivered["alert_source_ref"].endswith(f"1700000000.{number}")
    assert delivered["alert_severity_id"] == 5  # rule level 10: High, whose id is 5 on 2.4.20
    assert real_manager.spooled() == []


def test_forwarder_replaces_nul_characters_the_real_iris_refuses(real_manager, real_iris, launcher):
    """A NUL in a text field gets 400 from IRIS (psycopg2); the forwarder replaces it (U+FFFD) so the alert
    arrives; the source content (a JSON column) keeps it."""
    number = secrets.randbelow(10**8)
    wazuh_alert = alert(number, full_log="May 11 sshd[1]: user a\x00b", agent={"id": "001", "name": "web\x00"})
    result = run_like_integratord(real_manager, launcher, real_manager.argv(wazuh_alert))
    assert result.returncode == 0, real_manager.log()
    assert real_manager.rejected() == []
    query = urllib.parse.urlencode({"source_reference": f"1700000000.{number}", "per_page": 5})
    delivered = call(real_iris.url, "GET", "/alerts/filter?" + query, real_manager.api_key)[1]["data"]["alerts"][0]
    assert delivered["alert_title"].endswith("(web\ufffd)")
    assert "NUL characters in alert_title, alert_description, alert_tags replaced" in delivered["alert_description"]
    assert delivered["alert_source_content"]["full_log"] == "May 11 sshd[1]: user a\x00b"


def test_ai_worker_changes_only_tags_and_one_comment_on_the_real_iris(real_iris, tmp_path):
    """test_ai_worker_flow.py's first test against the real server: the worker's updates leave the owner (set
    or unset) and the note alone, and each alert gets one analysis comment."""
    # A customer of its own: the worker's account sees no alert of the other tests (non-administrators see only
    # the alerts of their customers), so the session's server needs no reset.
    _status, customer = call(real_iris.url, "POST", "/manage/customers/add", IRIS_ADMIN_KEY,
                             {"customer_name": "AI " + secrets.token_hex(3), "customer_description": "ai worker test",
                              "customer_sla": ""})
    customer_id = customer["data"]["customer_id"]
    analyst_id, _key = add_account(real_iris, [2], [customer_id], password="Correct9HorseBattery")  # Analysts
    _worker_id, worker_key = add_account(real_iris, [2], [customer_id])
    ids = []
    for owner in (None, analyst_id):
        body = {"alert_title": "sshd: non-existent user", "alert_severity_id": 4, "alert_status_id": 2,
                "alert_customer_id": customer_id, "alert_tags": "wazuh,ai-pending", "alert_note": "analyst wrote this",
                "alert_source_content": SSH_EVENT}
        if owner is not None:
            body["alert_owner_id"] = owner
        ids.append(call(real_iris.url, "POST", "/alerts/add", IRIS_ADMIN_KEY, body)[1]["data"]["alert_id"])
    before = {i: call(real_iris.url, "GET", f"/alerts/{i}", IRIS_ADMIN_KEY)[1]["data"] for i in ids}
    ollama = OllamaEmulator(models=[AI_MODEL]).start()
    try:
        # A real IRIS answers in about 0.5-1 s on a loaded 2-core machine: the emulator-sized timeouts
        # of AI_BASE_ENV (claim 0.5 s, IRIS 2 s) left a claim written but unanswered (measured 2026-12-07).
        env = dict(AI_BASE_ENV, IRIS_BASE_URL=real_iris.url, IRIS_BEARER=worker_key, OLLAMA_URL=ollama.url,
                   AI_WORKER_STATE_DIR=str(tmp_path / "state"), AI_WORKER_IRIS_TIMEOUT="30",
                   AI_WORKER_CLAIM_TIMEOUT="10", AI_WORKER_CLAIM_TTL="600")
        lines = LogLines()
        loop.Worker.from_config(settings.load_config(env), log=loop.LevelLog("DEBUG", stderr=lines)).run_cycle()
    finally:
        ollama.stop()
    for alert_id in ids:
        after = call(real_iris.url, "GET", f"/alerts/{alert_id}", IRIS_ADMIN_KEY)[1]["data"]
        assert after["alert_owner_id"] == before[alert_id]["alert_owner_id"], lines.lines
        assert after["alert_note"] == "analyst wrote this"
        assert tags.split_tags(after["alert_tags"]) == ["wazuh", "ai-reviewed"], lines.lines
        comments = call(real_iris.url, "GET", f"/alerts/{alert_id}/comments/list", IRIS_ADMIN_KEY)[1]["data"]
        assert len(comments) == 1, comments
        assert tags.comment_round(comments[0])
