#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_user
short_description: Manage DFIR-IRIS users, service accounts and their memberships
version_added: 1.0.0
description:
  - Create, update, deactivate or delete a user of a DFIR-IRIS 2.4 server, found by its exact login.
  - Logins are compared case-sensitively, as IRIS does (C(ALICE) and C(alice) are two users).
  - Group and customer memberships are given by name. IRIS replaces a whole membership at once and
    refuses an empty one, so the module sends the complete set, and only when it differs.
author:
  - socstack SOC engineering (@socstack)
options:
  login:
    description:
      - Login of the user, compared exactly.
    type: str
    required: true
  name:
    description:
      - Display name. Required to create a user; left unchanged when not given.
    type: str
  email:
    description:
      - E-mail address. Required to create a user; left unchanged when not given.
    type: str
  service_account:
    description:
      - Whether the user is a service account (API key only, no password login).
      - Used when the user is created, default V(false) then; compared and updated afterwards when given.
    type: bool
  password:
    description:
      - Password of the user. Required to create a user that is not a service account.
      - Must have at least 12 characters with an upper-case letter, a lower-case letter and a digit
        (the IRIS policy); checked before anything is sent.
    type: str
  update_password:
    description:
      - V(on_create) sets O(password) only when the user is created.
      - V(always) sends O(password) on every run; IRIS cannot tell whether it changed, so the task
        then always reports a change.
    type: str
    choices: [on_create, always]
    default: on_create
  groups:
    description:
      - Names of all the groups the user belongs to (case-insensitive). Left unchanged when not given.
      - IRIS cannot remove a user's last group, so V([]) on a user that has groups fails with an
        explanation; remove the user or give it another group instead.
    type: list
    elements: str
  customers:
    description:
      - Names of all the customers the user is linked to (case-insensitive). Left unchanged when not given.
      - As for O(groups), V([]) on a user that has customers fails.
    type: list
    elements: str
  active:
    description:
      - V(false) deactivates the user (its API key stops working), V(true) activates it again.
      - Left unchanged when not given; new users are active.
    type: bool
  state:
    description:
      - V(present) creates or updates the user.
      - V(absent) deletes it; IRIS only deletes deactivated users, so an active user is deactivated first.
      - IRIS refuses to delete a user that is linked to a customer, and a user's last customer link
        cannot be removed; V(absent) then fails before changing anything. Use O(active=false) to lock
        such an account.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - socstack.wazuh_iris.iris
  - socstack.wazuh_iris.iris.attributes
notes:
  - The API key of a new user is returned once, in RV(api_key). Run the task with C(no_log=true)
    and keep the key in a vault; use M(socstack.wazuh_iris.iris_api_key) to check or renew it later.
"""

EXAMPLES = r"""
- name: Service account used by the Wazuh forwarder
  socstack.wazuh_iris.iris_user:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    login: wazuh-forwarder
    name: Wazuh forwarder
    email: wazuh-forwarder@example.org
    service_account: true
    groups: [SOAR Bots]
    customers: [Acme Corp]
  no_log: true
  register: forwarder

- name: An analyst
  socstack.wazuh_iris.iris_user:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    login: alice
    name: Alice Analyst
    email: alice@example.org
    password: "{{ alice_initial_password }}"
    groups: [Analysts]
    customers: [Acme Corp]

- name: Lock an account out
  socstack.wazuh_iris.iris_user:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    login: alice
    active: false
"""

RETURN = r"""
id:
  description:
    - IRIS id of the user.
    - Null when it does not exist (after O(state=absent), or in check mode before creation).
  returned: always
  type: int
  sample: 2
user:
  description: The user as it is after the run (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample:
    login: wazuh-forwarder
    name: Wazuh forwarder
    email: wazuh-forwarder@example.org
    service_account: true
    active: true
    groups: [SOAR Bots]
    customers: [Acme Corp]
api_key:
  description:
    - API key of the newly created user. Secret; register it under C(no_log).
  returned: when the user was created (not in check mode)
  type: str
password_updated:
  description: Whether the password was sent to IRIS.
  returned: when O(state=present)
  type: bool
"""

import re

from ansible_collections.socstack.wazuh_iris.plugins.module_utils.iris import IrisError, IrisModule


def password_problems(password):
    """What the IRIS password policy would reject in ``password`` (empty when it is acceptable)."""
    problems = []
    if len(password) < 12:
        problems.append("at least 12 characters")
    if not re.search(r"[A-Z]", password):
        problems.append("an upper-case letter")
    if not re.search(r"[a-z]", password):
        problems.append("a lower-case letter")
    if not re.search(r"[0-9]", password):
        problems.append("a digit")
    return problems


def _view(record):
    """The user fields this module manages, from a GET /manage/users/<id> record."""
    return {
        "login": record["user_login"],
        "name": record.get("user_name"),
        "email": record.get("user_email"),
        "service_account": bool(record.get("user_is_service_account")),
        "active": bool(record.get("user_active")),
        "groups": sorted(g["group_name"] for g in record.get("user_groups") or []),
        "customers": sorted(c["customer_name"] for c in record.get("user_customers") or []),
    }


class IrisUser(IrisModule):
    """User present/absent with group and customer memberships."""

    module_spec = dict(
        login=dict(type="str", required=True),
        name=dict(type="str"),
        email=dict(type="str"),
        service_account=dict(type="bool"),
        password=dict(type="str", no_log=True),
        update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
        groups=dict(type="list", elements="str"),
        customers=dict(type="list", elements="str"),
        active=dict(type="bool"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )

    def manage(self):
        params = self.params
        if params["password"] and params["state"] == "present":
            problems = password_problems(params["password"])
            if problems:
                raise IrisError("password does not meet the IRIS policy; it needs " + ", ".join(problems))
        current = self.client.find_user(params["login"])
        self.before = _view(current) if current else None
        self.result["id"] = current["user_id"] if current else None
        if params["state"] == "absent":
            if current:
                self._delete(current)
        else:
            self._ensure(current)
        self.result["user"] = self.after or {}

    def _delete(self, current):
        """Deactivate then delete; refused up front when IRIS would refuse (the user has customers)."""
        if self.before["customers"]:
            raise IrisError(
                "user %r is linked to customers: %s; IRIS refuses to delete a user linked to a customer and "
                "cannot remove a user's last customer link, so use active=false to lock the account instead"
                % (current["user_login"], ", ".join(self.before["customers"]))
            )
        if current.get("user_active"):
            self.write("GET", "/manage/users/deactivate/%d" % current["user_id"])
        self.write("POST", "/manage/users/delete/%d" % current["user_id"])
        self.result["id"] = None

    def _ensure(self, current):
        params = self.params
        wanted = dict(self.before) if current else self._new_user_view()
        for option in ("name", "email", "service_account", "active"):
            if params[option] is not None:
                wanted[option] = params[option]
        memberships = {}
        for option, lookup in (("groups", self.client.resolve_groups), ("customers", self.client.resolve_customers)):
            if params[option] is None:
                continue
            wanted[option], ids = self._resolve(option, lookup)
            if wanted[option] != (self.before or {}).get(option, []):
                memberships[option] = ids
        self.after = wanted
        if current is None:
            user_id = self._create(wanted)
        else:
            user_id = current["user_id"]
            self._update(user_id, wanted)
        if user_id is None:  # check mode, user not created yet
            return
        for option, ids in memberships.items():
            self.write("POST", "/manage/users/%d/%s/update" % (user_id, option), {"%s_membership" % option: ids})
        was_active = self.before["active"] if self.before else True  # IRIS creates users active
        if wanted["active"] != was_active:
            self.write("GET", "/manage/users/%s/%d" % ("activate" if wanted["active"] else "deactivate", user_id))

    def _new_user_view(self):
        params = self.params
        missing = [o for o in ("name", "email") if params[o] is None]
        if not params["service_account"] and not params["password"]:
            missing.append("password (or service_account=true)")
        if missing:
            raise IrisError("to create user %r, also give: %s" % (params["login"], ", ".join(missing)))
        return {"login": params["login"], "name": None, "email": None, "service_account": False,
                "active": True, "groups": [], "customers": []}

    def _resolve(self, option, lookup):
        """Canonical IRIS names and ids of the wanted groups or customers; [] on a non-empty set fails."""
        names = self.params[option]
        current = (self.before or {}).get(option, [])
        if not names:
            if current:
                raise IrisError(
                    "%s=[] cannot be applied to user %r: IRIS refuses an empty %s list, so a user's last %s "
                    "cannot be removed (current: %s); give the set it should have, or remove the user"
                    % (option, self.params["login"], option, option[:-1], ", ".join(current))
                )
            return [], []
        found = lookup(names)
        return sorted(found.values()), sorted(found)

    def _create(self, wanted):
        body = {
            "user_login": wanted["login"],
            "user_name": wanted["name"],
            "user_email": wanted["email"],
            "user_password": self.params["password"] or "",
            "user_is_service_account": wanted["service_account"],
        }
        self.result["password_updated"] = bool(self.params["password"])
        created = self.write("POST", "/manage/users/add", body)
        if created is None:
            return None
        self.result["id"] = created["id"]
        self.result["api_key"] = created.get("user_api_key")
        return created["id"]

    def _update(self, user_id, wanted):
        body = {}
        for option, field in (("name", "user_name"), ("email", "user_email"),
                              ("service_account", "user_is_service_account")):
            if wanted[option] != self.before[option]:
                body[field] = wanted[option]
        send_password = bool(self.params["password"]) and self.params["update_password"] == "always"  # noqa: S105
        if send_password:
            body["user_password"] = self.params["password"]
            self.result["changed"] = True
        self.result["password_updated"] = send_password
        if body:
            self.write("POST", "/manage/users/update/%d" % user_id, body)


def main():
    IrisUser().run()


if __name__ == "__main__":
    main()
