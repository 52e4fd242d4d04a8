#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_customer
short_description: Manage DFIR-IRIS customers
version_added: 1.0.0
description:
  - Create, update or delete a customer of a DFIR-IRIS 2.4 server, found by name.
  - Names are compared case-insensitively, as IRIS does; an existing customer keeps its spelling.
  - Only the fields that differ are written.
author:
  - socstack SOC engineering (@socstack)
options:
  name:
    description:
      - Name of the customer (2 characters or more).
    type: str
    required: true
  description:
    description:
      - Description of the customer. Left unchanged when not given.
    type: str
  sla:
    description:
      - Service level text of the customer, for example C(24h). Left unchanged when not given.
    type: str
  state:
    description:
      - V(present) creates or updates the customer, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Only with O(state=absent). IRIS refuses to delete a customer that users are still linked to
        (and the user who creates a customer is linked to it automatically).
      - With V(false) the module fails and lists the linked users; nothing is changed.
      - With V(true) the module first removes this customer from each linked user's customers, then
        deletes it. IRIS cannot leave a user with no customer at all, so the module still fails,
        before changing anything, when this customer is the only one of a linked user.
    type: bool
    default: false
extends_documentation_fragment:
  - socstack.wazuh_iris.iris
  - socstack.wazuh_iris.iris.attributes
"""

EXAMPLES = r"""
- name: A customer for the Wazuh alerts
  socstack.wazuh_iris.iris_customer:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    name: Acme Corp
    description: Production estate
    sla: 24h

- name: Remove a customer, unlinking the users still attached to it
  socstack.wazuh_iris.iris_customer:
    name: Old Customer
    state: absent
    force: true
  environment:
    IRIS_URL: https://iris.example.org:9094
    IRIS_API_KEY: "{{ iris_admin_api_key }}"
"""

RETURN = r"""
id:
  description:
    - IRIS id of the customer.
    - Null when it does not exist (after O(state=absent), or in check mode before creation).
  returned: always
  type: int
  sample: 2
customer:
  description: The customer as it is after the run (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample: {"name": "Acme Corp", "description": "Production estate", "sla": "24h"}
unlinked_users:
  description: Logins of the users whose link to the customer was removed (O(force=true)).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["administrator"]
"""

from ansible_collections.socstack.wazuh_iris.plugins.module_utils.iris import IrisError, IrisModule


def _view(record):
    """The customer fields this module manages, keyed by option name."""
    return {
        "name": record.get("customer_name"),
        "description": record.get("customer_description"),
        "sla": record.get("customer_sla"),
    }


class IrisCustomer(IrisModule):
    """Customer present/absent."""

    module_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        sla=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        force=dict(type="bool", default=False),
    )

    def manage(self):
        current = self.client.find_customer(self.params["name"])
        self.before = _view(current) if current else None
        self.result["id"] = current["customer_id"] if current else None
        if self.params["state"] == "absent":
            self.result["unlinked_users"] = []
            if current:
                self._delete(current["customer_id"])
        else:
            self._ensure(current)
        self.result["customer"] = self.after or {}

    def _ensure(self, current):
        wanted = dict(self.before or {"name": self.params["name"], "description": None, "sla": None})
        for option in ("description", "sla"):
            if self.params[option] is not None:
                wanted[option] = self.params[option]
        self.after = wanted
        if wanted == self.before:
            return
        body = {"customer_name": wanted["name"], "customer_description": wanted["description"],
                "customer_sla": wanted["sla"]}
        if current is None:
            created = self.write("POST", "/manage/customers/add", body)
            self.result["id"] = created["customer_id"] if created else None
        else:
            self.write("POST", "/manage/customers/update/%d" % current["customer_id"], body)

    def _delete(self, customer_id):
        """Unlink users (force) and delete; every refusal is decided before the first write."""
        links = self._linked_users(customer_id)
        if links and not self.params["force"]:
            raise IrisError(
                "customer %r is still linked to users: %s; unlink them (iris_user customers) or set force=true"
                % (self.before["name"], ", ".join(sorted(links)))
            )
        stranded = sorted(login for login, link in links.items() if link[1] == [customer_id])
        if stranded:
            raise IrisError(
                "customer %r is the only customer of users: %s, and IRIS cannot leave a user with no customer; "
                "link them to another customer first (iris_user customers)" % (self.before["name"], ", ".join(stranded))
            )
        for login in sorted(links):
            user_id, ids = links[login]
            remaining = [i for i in ids if i != customer_id]
            self.write("POST", "/manage/users/%d/customers/update" % user_id, {"customers_membership": remaining})
        self.result["unlinked_users"] = sorted(links)
        self.write("POST", "/manage/customers/delete/%d" % customer_id)
        self.result["id"] = None

    def _linked_users(self, customer_id):
        """login -> (user id, customer ids) of every user linked to ``customer_id``."""
        links = {}
        for entry in self.client.list_users():
            user = self.client.get_user(entry["user_id"])
            ids = [c["customer_id"] for c in user.get("user_customers") or []]
            if customer_id in ids:
                links[user["user_login"]] = (user["user_id"], ids)
        return links


def main():
    IrisCustomer().run()


if __name__ == "__main__":
    main()
