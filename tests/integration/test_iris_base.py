"""The shared present/absent logic of the iris_* modules: IrisModule.ensure, ensure_absent and run.

A probe module subclasses IrisModule the way the real modules do. Its create/update/delete callbacks
either record their calls (to see exactly what ensure decides) or write to the IRIS emulator (to see
that check mode sends nothing and that a refusal carries the server's message).
"""
import json

import pytest

from tests.conftest import IRIS_ADMIN_KEY
from tests.integration.iris_module_harness import module_args, run_module

CURRENT = {"name": "Acme Corp", "description": "Production", "sla": None}


@pytest.fixture
def probe(iris, emu):
    """probe(check=False, diff=False, **options) -> a module instance; its callbacks record into ``calls``."""

    class Probe(iris.IrisModule):
        resource = "customer"
        module_spec = dict(name=dict(type="str"), description=dict(type="str"), sla=dict(type="str"),
                           secret=dict(type="str", no_log=True))

        def __init__(self):
            super().__init__()
            self.calls = []

        def create(self, wanted):
            self.calls.append(("create", wanted))
            return 7

        def update(self, changes, wanted):
            self.id_at_update = self.result.get("id")
            self.calls.append(("update", changes, wanted))

        def delete(self):
            self.calls.append(("delete",))

    def make(check=False, diff=False, **options):
        args = dict(options, url=emu.url, api_key=IRIS_ADMIN_KEY, _ansible_check_mode=check, _ansible_diff=diff)
        with module_args(args):
            return Probe()

    return make


def posts(emu):
    return [(method, path) for method, path, _login, _status in emu.request_log if method == "POST"]


# -- ensure ----------------------------------------------------------------------------------------


def test_ensure_equal_state_writes_nothing(probe):
    module = probe()
    assert module.ensure(dict(CURRENT), dict(CURRENT), module.create, module.update) is False
    assert module.calls == []
    assert module.result == {"changed": False}
    assert (module.before, module.after) == (CURRENT, CURRENT)


def test_ensure_update_gets_only_the_differences(probe):
    module = probe()
    wanted = dict(CURRENT, description="Staging", sla="4h")
    assert module.ensure(dict(CURRENT), wanted, module.create, module.update) is True
    assert module.calls == [("update", {"description": "Staging", "sla": "4h"}, wanted)]
    assert module.result == {"changed": True}  # an update keeps the id the module found
    assert (module.before, module.after) == (CURRENT, wanted)


def test_ensure_creates_when_absent_and_returns_the_new_id(probe):
    module = probe()
    module.result["id"] = None
    assert module.ensure(None, dict(CURRENT), module.create, module.update) is True
    assert module.calls == [("create", CURRENT)]
    assert module.result == {"changed": True, "id": 7}
    assert (module.before, module.after) == (None, CURRENT)


def test_ensure_sets_right_after_creation_what_creation_cannot(probe):
    module = probe()
    module.result["id"] = None
    wanted = dict(CURRENT, sla="4h")
    module.ensure(None, wanted, module.create, module.update, created_with={"sla": None, "description": "Production"})
    assert module.calls == [("create", wanted), ("update", {"sla": "4h"}, wanted)]
    assert module.result == {"changed": True, "id": 7}
    assert module.id_at_update == 7  # the update writes to the resource just created
    module.calls.clear()
    module.ensure(None, dict(CURRENT), module.create, module.update, created_with={"sla": None})
    assert module.calls == [("create", CURRENT)]  # nothing left to set


def test_ensure_force_sends_an_update_without_differences(probe):
    module = probe()
    assert module.ensure(dict(CURRENT), dict(CURRENT), module.create, module.update, force=True) is True
    assert module.calls == [("update", {}, CURRENT)]
    assert module.result["changed"] is True


def test_ensure_in_check_mode_predicts_without_calling(probe):
    module = probe(check=True)
    assert module.ensure(None, dict(CURRENT), module.create, module.update) is True
    assert module.ensure(dict(CURRENT), dict(CURRENT, sla="1h"), module.create, module.update) is True
    assert module.ensure(dict(CURRENT), dict(CURRENT), module.create, module.update, force=True) is True
    assert module.calls == []
    assert module.result == {"changed": True, "id": None}  # a resource only predicted has no id yet


# -- ensure_absent ---------------------------------------------------------------------------------


def test_ensure_absent_deletes_an_existing_resource(probe):
    module = probe()
    module.result["id"] = 3
    assert module.ensure_absent(dict(CURRENT), module.delete) is True
    assert module.calls == [("delete",)]
    assert module.result == {"changed": True, "id": None}
    assert (module.before, module.after) == (CURRENT, None)


def test_ensure_absent_of_a_missing_resource_is_unchanged(probe):
    module = probe()
    assert module.ensure_absent(None, module.delete) is False
    assert module.calls == []
    assert module.result == {"changed": False, "id": None}


def test_ensure_absent_in_check_mode_predicts_without_deleting(probe):
    module = probe(check=True)
    module.result["id"] = 3
    assert module.ensure_absent(dict(CURRENT), module.delete) is True
    assert module.calls == []
    assert module.result == {"changed": True, "id": None}


def test_wanted_applies_only_the_given_options(probe):
    module = probe(description="Staging", sla=None)
    assert module.wanted(CURRENT, ("description", "sla")) == dict(CURRENT, description="Staging")
    assert CURRENT["description"] == "Production"  # the current view is not modified


# -- run(), against the emulator -------------------------------------------------------------------


@pytest.fixture
def run_probe(iris, emu):
    """run_probe(check=False, diff=False, **options) -> result of a probe that manages one customer for real."""

    class CustomerProbe(iris.IrisModule):
        resource = "customer"
        module_spec = dict(name=dict(type="str", required=True), sla=dict(type="str"),
                           state=dict(type="str", default="present"), secret=dict(type="str", no_log=True))

        def manage(self):
            record = self.client.find_customer(self.params["name"])
            current = {"name": record["customer_name"], "sla": record.get("customer_sla")} if record else None
            self.result["id"] = record["customer_id"] if record else None
            if self.params["state"] == "absent":
                self.ensure_absent(current, lambda: self.client.request(
                    "POST", "/manage/customers/delete/%d" % record["customer_id"]))
                return
            wanted = self.wanted(current or {"name": self.params["name"], "sla": None}, ["sla"])
            self.ensure(current, wanted, self.create, self.update)

        def create(self, wanted):
            body = {"customer_name": wanted["name"], "customer_sla": wanted["sla"]}
            return self.client.request("POST", "/manage/customers/add", body)["customer_id"]

        def update(self, changes, wanted):
            body = {"customer_name": wanted["name"], "customer_sla": changes["sla"]}
            self.client.request("POST", "/manage/customers/update/%d" % self.result["id"], body)

    def run(check=False, diff=False, **options):
        args = dict(options, url=emu.url, api_key=IRIS_ADMIN_KEY, _ansible_check_mode=check, _ansible_diff=diff)
        return run_module(lambda: CustomerProbe().run(), args)

    return run


def test_run_check_mode_with_diff_writes_nothing(run_probe, emu):
    emu.request_log.clear()
    created = run_probe(check=True, diff=True, name="Acme Corp", sla="24h")
    assert created["changed"] is True and created["id"] is None
    assert created["diff"] == {"before": {}, "after": {"name": "Acme Corp", "sla": "24h"}}
    assert created["customer"] == {"name": "Acme Corp", "sla": "24h"}
    emu.add_customer("Globex")
    emu.request_log.clear()
    updated = run_probe(check=True, diff=True, name="globex", sla="8h")
    deleted = run_probe(check=True, diff=True, name="Globex", state="absent")
    assert updated["diff"] == {"before": {"name": "Globex", "sla": None}, "after": {"name": "Globex", "sla": "8h"}}
    assert deleted["diff"] == {"before": {"name": "Globex", "sla": None}, "after": {}}
    assert (updated["changed"], deleted["changed"], deleted["customer"]) == (True, True, {})
    assert posts(emu) == []


def test_run_writes_once_then_is_idempotent(run_probe, emu):
    first = run_probe(name="Acme Corp", sla="24h")
    assert (first["changed"], first["id"], first["customer"]) == (True, 2, {"name": "Acme Corp", "sla": "24h"})
    assert "diff" not in first
    emu.request_log.clear()
    again = run_probe(name="ACME CORP", sla="24h")
    assert (again["changed"], again["id"]) == (False, 2)
    changed = run_probe(name="acme corp", sla="4h")
    assert changed["changed"] is True
    assert posts(emu) == [("POST", "/manage/customers/update/2")]


def test_run_delete_then_absent_is_unchanged(iris, run_probe, emu):
    emu.add_customer("Initech")
    client = iris.IrisClient(emu.url, IRIS_ADMIN_KEY)  # the administrator is unlinked, so that IRIS lets it go
    client.request("POST", "/manage/users/1/customers/update", {"customers_membership": [1]})
    removed = run_probe(name="initech", state="absent", diff=True)
    assert (removed["changed"], removed["id"], removed["customer"]) == (True, None, {})
    assert removed["diff"]["after"] == {}
    assert posts(emu)[-1] == ("POST", "/manage/customers/delete/2")
    emu.request_log.clear()
    assert run_probe(name="Initech", state="absent")["changed"] is False
    assert posts(emu) == []


def test_run_refused_delete_keeps_id_and_reports_no_change(run_probe, emu):
    emu.add_customer("Globex")  # linked to the administrator, as the user who creates a customer is
    result = run_probe(name="Globex", state="absent")
    assert result["failed"] is True
    assert (result["changed"], result["id"], result["http_status"]) == (False, 2, 400)
    assert result["msg"] == "IRIS refused POST /manage/customers/delete/2 (400): Cannot delete a referenced customer"


def test_run_failure_carries_the_server_message(run_probe, emu):
    emu.add_customer("Globex")
    result = run_probe(name="G", secret="hush-hush-123")  # too short for IRIS
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("IRIS refused POST /manage/customers/add (400): Error adding customer; "
                             "customer_name: Shorter than minimum length 2.")
    assert result["http_status"] == 400
    assert "customer" not in result  # no resource is reported from a failed run
    assert "hush-hush-123" not in json.dumps(result)
