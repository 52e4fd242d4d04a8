"""The iris_customer, iris_group, iris_user and iris_api_key modules, run in-process against the IRIS emulator.

Each module's main() runs with its arguments in ``basic._ANSIBLE_ARGS``; the result is the JSON the
module prints, after Ansible's no_log masking. Writes are checked in the emulator's request log.
"""
import importlib
import json

import pytest

from tests.conftest import IRIS_ADMIN_KEY
from tests.integration.iris_module_harness import run_module as run_main

ADMIN_KEY = IRIS_ADMIN_KEY  # the key the shared iris_emulator fixture starts with
STRONG = "Correct9HorseBattery"


@pytest.fixture
def emu(iris_emulator):
    """The shared IRIS emulator (tests/conftest.py), under this module's short name."""
    return iris_emulator


@pytest.fixture
def run(collection_root, emu):
    """run(module_name, check=False, diff=False, **options) -> the module's result dict.

    An option given as None is left out (so that url=None, api_key=None test the environment fallback).
    """

    def run_module(module_name, /, check=False, diff=False, **options):
        module = importlib.import_module("ansible_collections.socstack.wazuh_iris.plugins.modules." + module_name)
        args = {"url": emu.url, "api_key": ADMIN_KEY, "_ansible_check_mode": check, "_ansible_diff": diff}
        args.update(options)
        return run_main(module.main, {key: value for key, value in args.items() if value is not None})

    return run_module


def writes(emu):
    """(method, path) of every state-changing request the emulator has seen."""
    return [(method, path) for method, path, _login, _status in emu.request_log
            if method == "POST" or "/activate/" in path or "/deactivate/" in path]


def customer_row(emu, name):
    with emu.lock:
        return next((dict(c) for c in emu.state["customers"] if c["customer_name"] == name), None)


def group_row(emu, name):
    with emu.lock:
        return next((dict(g) for g in emu.state["groups"] if g["group_name"] == name), None)


def user_row(emu, login):
    with emu.lock:
        return next((dict(u) for u in emu.state["users"] if u["login"] == login), None)


# -- shared connection handling --------------------------------------------------------------------


def test_connection_options_from_the_environment(run, emu, monkeypatch):
    monkeypatch.setenv("IRIS_URL", emu.url)
    monkeypatch.setenv("IRIS_API_KEY", ADMIN_KEY)
    result = run("iris_customer", url=None, api_key=None, name="Env Corp")
    assert result["changed"] is True
    assert customer_row(emu, "Env Corp") is not None


def test_wrong_key_fails_cleanly(run):
    result = run("iris_group", api_key="W" * 64, name="Any")
    assert result["failed"] is True
    assert result["msg"].startswith("IRIS rejected the API key (401)")
    assert result["http_status"] == 401
    assert "W" * 64 not in json.dumps(result)


def test_unreachable_url_fails_cleanly(run, emu):
    emu.stop()
    result = run("iris_customer", name="Acme Corp")
    assert result["failed"] is True
    assert result["msg"].startswith("Cannot reach IRIS at %s: " % emu.url)
    assert "Connection refused" in result["msg"]
    emu.start()


def test_bad_url_and_timeout_are_refused(run):
    assert "url must start with http" in run("iris_customer", url="iris.local", name="X1")["msg"]
    assert "timeout must be a positive" in run("iris_customer", timeout=0, name="X1")["msg"]


# -- iris_customer ---------------------------------------------------------------------------------


def test_customer_create_then_idempotent(run, emu):
    first = run("iris_customer", name="Acme Corp", description="Production", sla="24h")
    assert first["changed"] is True
    assert first["id"] == 2  # first customer after IrisInitialClient
    assert first["customer"] == {"name": "Acme Corp", "description": "Production", "sla": "24h"}
    emu.request_log.clear()
    second = run("iris_customer", name="acme corp", description="Production", sla="24h")
    assert second["changed"] is False
    assert second["id"] == 2
    assert writes(emu) == []


def test_customer_update_writes_only_the_difference(run, emu):
    emu.add_customer("Acme Corp")
    emu.request_log.clear()
    result = run("iris_customer", name="ACME CORP", sla="4h", diff=True)
    assert result["changed"] is True
    assert result["diff"] == {"before": {"name": "Acme Corp", "description": None, "sla": None},
                              "after": {"name": "Acme Corp", "description": None, "sla": "4h"}}
    assert writes(emu) == [("POST", "/manage/customers/update/2")]
    row = customer_row(emu, "Acme Corp")  # the existing spelling is kept
    assert (row["customer_sla"], row["customer_description"]) == ("4h", None)


def test_customer_check_mode_changes_nothing(run, emu):
    created = run("iris_customer", check=True, diff=True, name="Acme Corp", sla="24h")
    assert created["changed"] is True and created["id"] is None
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["sla"] == "24h"
    emu.add_customer("Globex")
    emu.add_customer("Initech")
    updated = run("iris_customer", check=True, name="Globex", description="new")
    deleted = run("iris_customer", check=True, name="Globex", state="absent", force=True)
    assert updated["changed"] is True
    assert (deleted["changed"], deleted["unlinked_users"]) == (True, ["administrator"])
    assert writes(emu) == []
    assert customer_row(emu, "Acme Corp") is None
    assert customer_row(emu, "Globex")["customer_description"] is None


def test_customer_absent_when_missing_is_unchanged(run, emu):
    result = run("iris_customer", name="Nobody", state="absent")
    assert (result["changed"], result["id"], result["unlinked_users"]) == (False, None, [])
    assert writes(emu) == []


def test_customer_absent_linked_fails_listing_users(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_customer("Globex")
    emu.add_user("soar-bot", customers=["Acme Corp", "Globex"])
    emu.request_log.clear()
    result = run("iris_customer", name="Acme Corp", state="absent")
    assert result["failed"] is True
    assert "still linked to users: administrator, soar-bot" in result["msg"]
    assert "force=true" in result["msg"]
    assert writes(emu) == []


def test_customer_absent_force_unlinks_then_deletes(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_customer("Globex")
    emu.add_user("soar-bot", customers=["Acme Corp", "Globex"])
    result = run("iris_customer", name="acme corp", state="absent", force=True, diff=True)
    assert result["changed"] is True
    assert result["unlinked_users"] == ["administrator", "soar-bot"]
    assert result["diff"]["after"] == {}
    assert customer_row(emu, "Acme Corp") is None
    assert user_row(emu, "soar-bot")["customers"] == [3]


def test_customer_absent_force_refuses_a_users_last_customer(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_customer("Globex")
    emu.add_user("solo", customers=["Acme Corp"])
    emu.request_log.clear()
    result = run("iris_customer", name="Acme Corp", state="absent", force=True)
    assert result["failed"] is True
    assert "only customer of users: solo" in result["msg"]
    assert writes(emu) == []  # the administrator was not unlinked either


def test_customer_server_error_is_reported(run, emu):
    emu.add_customer("Globex")
    result = run("iris_customer", name="G")  # too short for IRIS
    assert result["failed"] is True
    assert result["msg"] == ("IRIS refused POST /manage/customers/add (400): Error adding customer; "
                             "customer_name: Shorter than minimum length 2.")


# -- iris_group ------------------------------------------------------------------------------------


def test_group_create_sends_permission_ints(run, emu):
    bodies = []
    emu.add_hook(lambda phase, method, path, query, body, login:
                 bodies.append(body) if phase == "before" and method == "POST" else None)
    result = run("iris_group", name="SOAR Bots", description="Automation accounts",
                 permissions=["alerts_write", "standard_user", "alerts_read"])
    assert result["changed"] is True
    assert result["id"] == 4  # the first group created on a fresh server
    assert result["permissions_mask"] == 13
    assert bodies == [{"group_name": "SOAR Bots", "group_description": "Automation accounts",
                       "group_permissions": [1, 4, 8]}]
    assert group_row(emu, "SOAR Bots")["group_permissions"] == 13
    again = run("iris_group", name="soar bots", permissions=["standard_user", "alerts_read", "alerts_write"])
    assert again["changed"] is False


def test_group_update_always_sends_the_full_set(run, emu):
    emu.add_group("SOAR Bots", permissions=["standard_user", "alerts_read"])
    bodies = []
    emu.add_hook(lambda phase, method, path, query, body, login:
                 bodies.append((path, body)) if phase == "before" and method == "POST" else None)
    result = run("iris_group", name="SOAR Bots", description="Bots", diff=True)  # description only
    assert result["changed"] is True
    assert bodies == [("/manage/groups/update/4", {"group_name": "SOAR Bots", "group_description": "Bots",
                                                   "group_permissions": [1, 4]})]
    assert group_row(emu, "SOAR Bots")["group_permissions"] == 5  # not reset to 0
    assert result["diff"]["before"]["permissions"] == result["diff"]["after"]["permissions"]
    cleared = run("iris_group", name="SOAR Bots", permissions=[])
    assert cleared["changed"] is True and cleared["group"]["permissions"] == []
    assert group_row(emu, "SOAR Bots")["group_permissions"] == 0


def test_group_unknown_permission_fails_before_any_request(run, emu):
    emu.request_log.clear()
    result = run("iris_group", name="SOAR Bots", description="x1", permissions=["alerts_read", "alerts_writer"])
    assert result["failed"] is True
    assert "alerts_writer" in result["msg"]
    assert "server_administrator" in result["msg"] and "all_activities_read" in result["msg"]
    assert emu.request_log == []


def test_group_create_needs_a_description(run, emu):
    result = run("iris_group", name="SOAR Bots", permissions=["alerts_read"])
    assert result["failed"] is True
    assert "description is required" in result["msg"]
    assert writes(emu) == []


def test_group_check_mode_and_absent(run, emu):
    emu.add_group("Old Group", permissions=["alerts_read"])
    emu.request_log.clear()
    assert run("iris_group", check=True, name="Old Group", state="absent")["changed"] is True
    assert run("iris_group", check=True, name="Old Group", permissions=["alerts_write"])["changed"] is True
    assert writes(emu) == []
    removed = run("iris_group", name="old group", state="absent")
    assert (removed["changed"], removed["id"]) == (True, None)
    assert group_row(emu, "Old Group") is None
    assert run("iris_group", name="Old Group", state="absent")["changed"] is False


# -- iris_user -------------------------------------------------------------------------------------


def test_user_service_account_created_with_memberships(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_group("SOAR Bots", permissions=["alerts_write"])
    result = run("iris_user", login="soar-bot", name="SOAR Bot", email="soar-bot@example.com",
                 service_account=True, groups=["soar bots"], customers=["ACME CORP"])
    assert result["changed"] is True
    row = user_row(emu, "soar-bot")
    assert result["api_key"] == row["api_key"]
    assert (row["groups"], row["customers"], row["is_service_account"]) == ([4], [2], True)
    assert result["user"] == {"login": "soar-bot", "name": "SOAR Bot", "email": "soar-bot@example.com",
                              "service_account": True, "active": True, "groups": ["SOAR Bots"],
                              "customers": ["Acme Corp"]}
    emu.request_log.clear()
    again = run("iris_user", login="soar-bot", name="SOAR Bot", groups=["SOAR Bots"], customers=["Acme Corp"])
    assert again["changed"] is False
    assert "api_key" not in again
    assert writes(emu) == []


def test_user_password_policy_checked_before_sending(run, emu):
    result = run("iris_user", login="alice", name="Alice", email="alice@example.com", password="weakpass1")
    assert result["failed"] is True
    assert result["msg"] == ("password does not meet the IRIS policy; it needs at least 12 characters, "
                             "an upper-case letter")
    assert "weakpass1" not in json.dumps(result)
    assert emu.request_log == []


def test_user_creation_needs_name_email_and_password(run, emu):
    result = run("iris_user", login="alice", name="Alice")
    assert result["failed"] is True
    assert "also give: email, password (or service_account=true)" in result["msg"]
    assert writes(emu) == []


def test_user_logins_are_case_sensitive(run, emu):
    emu.add_user("alice", service_account=False)
    result = run("iris_user", login="ALICE", name="Alice Upper", email="ALICE@example.com", password=STRONG)
    assert result["changed"] is True
    assert result["id"] != user_row(emu, "alice")["id"]
    assert user_row(emu, "alice")["name"] == "alice"


def test_user_membership_sent_only_when_different(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_customer("Globex")
    emu.add_user("soar-bot", groups=["Analysts"], customers=["Acme Corp"])
    emu.request_log.clear()
    result = run("iris_user", login="soar-bot", groups=["Analysts"], customers=["Globex", "Acme Corp"], diff=True)
    assert result["changed"] is True
    assert writes(emu) == [("POST", "/manage/users/2/customers/update")]
    assert result["diff"]["before"]["customers"] == ["Acme Corp"]
    assert result["diff"]["after"]["customers"] == ["Acme Corp", "Globex"]
    assert sorted(user_row(emu, "soar-bot")["customers"]) == [2, 3]


def test_user_empty_membership_on_non_empty_fails(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_user("soar-bot", groups=["Analysts"], customers=["Acme Corp"])
    emu.request_log.clear()
    result = run("iris_user", login="soar-bot", groups=[])
    assert result["failed"] is True
    assert "groups=[] cannot be applied to user 'soar-bot'" in result["msg"]
    assert "current: Analysts" in result["msg"]
    assert writes(emu) == []
    empty = run("iris_user", login="fresh", name="Fresh", email="fresh@example.com", service_account=True,
                groups=[], customers=[])
    assert empty["changed"] is True and empty["user"]["groups"] == []


def test_user_unknown_group_fails_before_writing(run, emu):
    result = run("iris_user", login="bot", name="Bot", email="bot@example.com", service_account=True,
                 groups=["Analysts", "Ghosts"])
    assert result["failed"] is True
    assert "unknown group name(s): Ghosts" in result["msg"]
    assert writes(emu) == []


def test_user_update_fields_and_password(run, emu):
    emu.add_user("alice", service_account=False)
    emu.request_log.clear()
    renamed = run("iris_user", login="alice", name="Alice A. Analyst", password=STRONG)
    assert renamed["changed"] is True and renamed["password_updated"] is False
    assert writes(emu) == [("POST", "/manage/users/update/2")]
    hash_before = user_row(emu, "alice")["password_hash"]
    again = run("iris_user", login="alice", name="Alice A. Analyst", password=STRONG, update_password="always")
    assert again["changed"] is True and again["password_updated"] is True
    assert user_row(emu, "alice")["password_hash"] != hash_before
    assert STRONG not in json.dumps(again)


def test_user_active_toggles_through_the_routes(run, emu):
    _bot_id, key = emu.add_user("soar-bot")
    emu.request_log.clear()
    off = run("iris_user", login="soar-bot", active=False)
    assert off["changed"] is True
    assert writes(emu) == [("GET", "/manage/users/deactivate/2")]
    assert user_row(emu, "soar-bot")["active"] is False
    assert run("iris_user", login="soar-bot", active=False)["changed"] is False
    on = run("iris_user", login="soar-bot", active=True)
    assert on["changed"] is True
    assert writes(emu)[-1] == ("GET", "/manage/users/activate/2")
    assert user_row(emu, "soar-bot")["api_key"] == key


def test_user_check_mode_changes_nothing(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_user("soar-bot")
    emu.request_log.clear()
    created = run("iris_user", check=True, login="new-bot", name="New", email="new@example.com",
                  service_account=True, customers=["Acme Corp"])
    changed = run("iris_user", check=True, login="soar-bot", customers=["Acme Corp"], active=False)
    assert created["changed"] is True and created["id"] is None and "api_key" not in created
    assert changed["changed"] is True
    assert writes(emu) == []


def test_user_absent(run, emu):
    emu.add_user("gone-bot", groups=["Analysts"])
    removed = run("iris_user", login="gone-bot", state="absent", diff=True)
    assert removed["changed"] is True
    assert removed["diff"]["after"] == {}
    assert user_row(emu, "gone-bot") is None
    assert run("iris_user", login="gone-bot", state="absent")["changed"] is False


def test_user_absent_refused_for_a_user_with_customers(run, emu):
    emu.add_customer("Acme Corp")
    emu.add_user("soar-bot", customers=["Acme Corp"])
    emu.request_log.clear()
    result = run("iris_user", login="soar-bot", state="absent")
    assert result["failed"] is True
    assert "linked to customers: Acme Corp" in result["msg"] and "active=false" in result["msg"]
    assert writes(emu) == []


# -- iris_api_key ----------------------------------------------------------------------------------


def test_api_key_valid_key_is_kept(run, emu):
    _bot_id, key = emu.add_user("soar-bot")
    result = run("iris_api_key", login="soar-bot", user_api_key=key)
    assert (result["changed"], result["key_state"], result["renewed"]) == (False, "valid", False)
    assert "api_key" not in result
    assert user_row(emu, "soar-bot")["api_key"] == key
    assert ("GET", "/api/ping", "soar-bot", 200) in emu.request_log  # checked with the key itself
    # 2.4.20 has /user/whoami (the emulator lacked it until test_iris_real.py compared it with a real IRIS)
    assert ("GET", "/user/whoami", "soar-bot", 200) in emu.request_log
    assert not result.get("warnings")


def test_api_key_on_a_server_without_identity_route_is_kept_with_a_warning(run, emu):
    """An IRIS without /user/whoami (older than 2.4.20; simulated by a hook answering 404)."""
    _bot_id, key = emu.add_user("soar-bot")
    emu.add_hook(lambda phase, method, path, query, body, login:
                 (404, "IRIS - 404 Error") if phase == "before" and path == "/user/whoami" else None)
    result = run("iris_api_key", login="soar-bot", user_api_key=key)
    assert (result["changed"], result["key_state"], result["renewed"]) == (False, "valid", False)
    assert "could not be checked" in json.dumps(result["warnings"])


def test_api_key_rotate_renews_and_kills_the_old_key(run, emu):
    _bot_id, key = emu.add_user("soar-bot")
    result = run("iris_api_key", login="soar-bot", user_api_key=key, rotate=True, diff=True)
    assert result["changed"] is True and result["renewed"] is True
    new_key = result["api_key"]
    assert new_key == user_row(emu, "soar-bot")["api_key"] != key
    assert result["diff"] == {"before": {"login": "soar-bot", "api_key": "valid"},
                              "after": {"login": "soar-bot", "api_key": "renewed"}}
    stale = run("iris_api_key", login="soar-bot", user_api_key=key, check=True)
    assert (stale["key_state"], stale["changed"]) == ("rejected", True)
    assert user_row(emu, "soar-bot")["api_key"] == new_key  # check mode renewed nothing


def test_api_key_rejected_or_missing_key_is_renewed(run, emu):
    emu.add_user("soar-bot")
    rejected = run("iris_api_key", login="soar-bot", user_api_key="R" * 64)
    assert (rejected["key_state"], rejected["changed"]) == ("rejected", True)
    assert rejected["api_key"] == user_row(emu, "soar-bot")["api_key"]
    missing = run("iris_api_key", login="soar-bot")
    assert (missing["key_state"], missing["changed"]) == ("missing", True)
    assert missing["api_key"] == user_row(emu, "soar-bot")["api_key"] != rejected["api_key"]


def test_api_key_unknown_or_deactivated_user_fails(run, emu):
    assert "no user with login 'Soar-Bot'" in run("iris_api_key", login="Soar-Bot")["msg"]
    user_id, key = emu.add_user("soar-bot")
    run("iris_user", login="soar-bot", active=False)
    result = run("iris_api_key", login="soar-bot", user_api_key=key)
    assert result["failed"] is True
    assert "deactivated" in result["msg"]
    assert key not in json.dumps(result)
    assert ("POST", "/manage/users/renew-api-key/%d" % user_id) not in writes(emu)


def test_api_key_of_another_user_fails_when_identity_is_known(run, emu):
    """/user/whoami tells whose key it is."""
    _bot_id, bot_key = emu.add_user("soar-bot")
    emu.add_user("other-bot")
    result = run("iris_api_key", login="other-bot", user_api_key=bot_key)
    assert result["failed"] is True
    assert result["msg"] == "the given user_api_key belongs to user 'soar-bot', not to 'other-bot'; nothing was changed"
    assert bot_key not in json.dumps(result)
    kept = run("iris_api_key", login="soar-bot", user_api_key=bot_key)
    assert (kept["changed"], kept["key_state"]) == (False, "valid")
    assert not kept.get("warnings")
