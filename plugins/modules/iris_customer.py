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


def _body(wanted):
    return {"customer_name": wanted["name"], "customer_description": wanted["description"],
            "customer_sla": wanted["sla"]}


class IrisCustomer(IrisModule):
    """Customer present/absent."""

    resource = "customer"
    module_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        sla=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        force=dict(type="bool", default=False),
    )

    def find(self):
        record = self.client.find_customer(self.params["name"])
        if record is None:
            return None, None
        view = {"name": record.get("customer_name"), "description": record.get("customer_description"),
                "sla": record.get("customer_sla")}
        return record["customer_id"], view

    def present(self, current):
        wanted = self.wanted(current or {"name": self.params["name"], "description": None, "sla": None},
                             ("description", "sla"))
        self.ensure(current, wanted, self._create, self._update)

    def _create(self, wanted):
        return self.client.request("POST", "/manage/customers/add", _body(wanted))["customer_id"]

    def _update(self, changes, wanted):
        self.client.request("POST", "/manage/customers/update/%d" % self.result["id"], _body(wanted))

    def absent(self, current):
        """Unlink the users (force) and delete; every refusal is decided before the first write."""
        customer_id = self.result["id"]
        self.result["unlinked_users"] = []
        links = self.client.users_linked_to(customer_id) if current else {}
        if links and not self.params["force"]:
            raise IrisError("customer %r is still linked to users: %s; unlink them (iris_user customers) or set "
                            "force=true" % (current["name"], ", ".join(sorted(links))))
        stranded = sorted(login for login, link in links.items() if link[1] == [customer_id])
        if stranded:
            raise IrisError("customer %r is the only customer of users: %s, and IRIS cannot leave a user with no "
                            "customer; link them to another customer first (iris_user customers)"
                            % (current["name"], ", ".join(stranded)))
        self.result["unlinked_users"] = sorted(links)
        self.ensure_absent(current, lambda: self._delete(customer_id, links))

    def _delete(self, customer_id, links):
        """IRIS replaces a user's customers as a whole: each linked user gets its set without this one."""
        for login in sorted(links):
            user_id, ids = links[login]
            remaining = [i for i in ids if i != customer_id]
            self.client.request("POST", "/manage/users/%d/customers/update" % user_id,
                                {"customers_membership": remaining})
        self.client.request("POST", "/manage/customers/delete/%d" % customer_id)


def main():
    IrisCustomer().run()


if __name__ == "__main__":
    main()
