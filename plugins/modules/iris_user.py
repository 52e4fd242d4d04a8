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

from ansible_collections.socstack.wazuh_iris.plugins.module_utils.iris import IrisError, IrisModule, password_problems

# IRIS creates every user active and in no group, linked to no customer; those are set right after.
CREATED_WITH = {"active": True, "groups": [], "customers": []}
FIELDS = {"name": "user_name", "email": "user_email", "service_account": "user_is_service_account"}


class IrisUser(IrisModule):
    """User present/absent with group and customer memberships."""

    resource = "user"
    module_spec = dict(
        login=dict(type="str", required=True),
        name=dict(type="str"), email=dict(type="str"), service_account=dict(type="bool"), active=dict(type="bool"),
        password=dict(type="str", no_log=True),
        update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
        groups=dict(type="list", elements="str"), customers=dict(type="list", elements="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )

    def manage(self):
        problems = password_problems(self.params["password"]) if self.params["password"] else []
        if problems and self.params["state"] == "present":  # refused before any request
            raise IrisError("password does not meet the IRIS policy; it needs " + ", ".join(problems))
        super(IrisUser, self).manage()

    def find(self):
        record = self.client.find_user(self.params["login"])
        if record is None:
            return None, None
        return record["user_id"], {
            "login": record["user_login"], "name": record.get("user_name"), "email": record.get("user_email"),
            "service_account": bool(record.get("user_is_service_account")), "active": bool(record.get("user_active")),
            "groups": sorted(g["group_name"] for g in record.get("user_groups") or []),
            "customers": sorted(c["customer_name"] for c in record.get("user_customers") or []),
        }

    def present(self, current):
        params = self.params
        missing = [] if current else [option for option in ("name", "email") if params[option] is None]
        if not (current or params["service_account"] or params["password"]):
            missing.append("password (or service_account=true)")
        if missing:
            raise IrisError("to create user %r, also give: %s" % (params["login"], ", ".join(missing)))
        new = dict(CREATED_WITH, login=params["login"], name=None, email=None, service_account=False)
        wanted = self.wanted(current or new, ("name", "email", "service_account", "active"))
        self.ids = {}
        for kind in ("groups", "customers"):
            if params[kind] is not None:
                wanted[kind], self.ids[kind] = self.client.membership(kind, params[kind], wanted[kind], params["login"])
        # IRIS cannot tell whether a password changed: with update_password=always it is sent on every run.
        self.send_password = bool(current and params["password"] and params["update_password"] == "always")  # noqa: S105
        self.result["password_updated"] = self.send_password or bool(not current and params["password"])
        self.ensure(current, wanted, self._create, self._update, force=self.send_password, created_with=CREATED_WITH)

    def absent(self, current):
        if current and current["customers"]:
            raise IrisError("user %r is linked to customers: %s; IRIS refuses to delete a user linked to a customer "
                            "and cannot remove a user's last customer link, so use active=false to lock the account "
                            "instead" % (current["login"], ", ".join(current["customers"])))
        self.ensure_absent(current, lambda: self._delete(self.result["id"], current["active"]))

    def _create(self, wanted):
        body = {"user_login": wanted["login"], "user_password": self.params["password"] or ""}
        body.update((field, wanted[option]) for option, field in FIELDS.items())
        created = self.client.request("POST", "/manage/users/add", body)
        self.result["api_key"] = created.get("user_api_key")
        return created["id"]

    def _update(self, changes, wanted):
        """Fields, then each membership (IRIS replaces it as a whole), then the activity; each only when changed."""
        user_id = self.result["id"]
        body = {field: changes[option] for option, field in FIELDS.items() if option in changes}
        if self.send_password:
            body["user_password"] = self.params["password"]
        if body:
            self.client.request("POST", "/manage/users/update/%d" % user_id, body)
        for kind in ("groups", "customers"):
            if kind in changes:
                self.client.request("POST", "/manage/users/%d/%s/update" % (user_id, kind),
                                    {"%s_membership" % kind: self.ids[kind]})
        if "active" in changes:
            route = "activate" if changes["active"] else "deactivate"
            self.client.request("GET", "/manage/users/%s/%d" % (route, user_id))

    def _delete(self, user_id, active):
        if active:  # IRIS only deletes deactivated users
            self.client.request("GET", "/manage/users/deactivate/%d" % user_id)
        self.client.request("POST", "/manage/users/delete/%d" % user_id)


def main():
    IrisUser().run()


if __name__ == "__main__":
    main()
