#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_group
short_description: Manage DFIR-IRIS groups and their permissions
version_added: 1.0.0
description:
  - Create, update or delete a group of a DFIR-IRIS 2.4 server, found by name (case-insensitively, as IRIS).
  - Permissions are given by name and sent to IRIS as the list of their bit values, which is the
    only form IRIS accepts.
  - IRIS resets a group's permissions to none when an update omits them, so every update sends the
    name, the description and the full permission set. Nothing is sent when nothing differs.
author:
  - socstack SOC engineering (@socstack)
options:
  name:
    description:
      - Name of the group (2 characters or more). An existing group keeps its spelling.
    type: str
    required: true
  description:
    description:
      - Description of the group. Required to create a group; left unchanged when not given.
    type: str
  permissions:
    description:
      - The complete set of permissions the group grants. Left unchanged when not given; V([])
        removes them all.
      - An unknown name fails before any request is sent.
    type: list
    elements: str
    choices:
      - standard_user
      - server_administrator
      - alerts_read
      - alerts_write
      - alerts_delete
      - search_across_cases
      - customers_read
      - customers_write
      - case_templates_read
      - case_templates_write
      - activities_read
      - all_activities_read
  state:
    description:
      - V(present) creates or updates the group, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - socstack.wazuh_iris.iris
  - socstack.wazuh_iris.iris.attributes
"""

EXAMPLES = r"""
- name: Group of the Wazuh forwarder's service account
  socstack.wazuh_iris.iris_group:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    name: SOAR Bots
    description: Automation accounts
    permissions:
      - standard_user
      - alerts_read
      - alerts_write

- name: Remove a group
  socstack.wazuh_iris.iris_group:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    name: Old Group
    state: absent
"""

RETURN = r"""
id:
  description:
    - IRIS id of the group.
    - Null when it does not exist (after O(state=absent), or in check mode before creation).
  returned: always
  type: int
  sample: 4
group:
  description: The group as it is after the run (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  sample: {"name": "SOAR Bots", "description": "Automation accounts", "permissions": ["standard_user", "alerts_read"]}
permissions_mask:
  description: The group's permission bit mask after the run.
  returned: when O(state=present)
  type: int
  sample: 13
"""

from ansible_collections.socstack.wazuh_iris.plugins.module_utils.iris import (
    PERMISSIONS,
    IrisError,
    IrisModule,
    permission_mask,
    permission_names,
)


def _body(wanted):
    """IRIS resets the permissions an update leaves out, so the full set always goes, as bit values."""
    return {"group_name": wanted["name"], "group_description": wanted["description"],
            "group_permissions": [PERMISSIONS[name] for name in wanted["permissions"]]}


class IrisGroup(IrisModule):
    """Group present/absent."""

    resource = "group"
    module_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        permissions=dict(type="list", elements="str", choices=list(PERMISSIONS)),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )

    def find(self):
        record = self.client.find_group(self.params["name"])
        if record is None:
            return None, None
        view = {"name": record["group_name"], "description": record.get("group_description"),
                "permissions": permission_names(record.get("group_permissions") or 0)}
        return record["group_id"], view

    def present(self, current):
        params = self.params
        if current is None and params["description"] is None:
            raise IrisError("description is required to create group %r (IRIS needs a group description)"
                            % params["name"])
        wanted = self.wanted(current or {"name": params["name"], "description": None, "permissions": []},
                             ["description"])
        if params["permissions"] is not None:
            wanted["permissions"] = permission_names(permission_mask(params["permissions"]))
        self.result["permissions_mask"] = permission_mask(wanted["permissions"])
        self.ensure(current, wanted, self._create, self._update)

    def _create(self, wanted):
        return self.client.request("POST", "/manage/groups/add", _body(wanted))["group_id"]

    def _update(self, changes, wanted):
        self.client.request("POST", "/manage/groups/update/%d" % self.result["id"], _body(wanted))

    def absent(self, current):
        group_id = self.result["id"]
        self.ensure_absent(current, lambda: self.client.request("POST", "/manage/groups/delete/%d" % group_id))


def main():
    IrisGroup().run()


if __name__ == "__main__":
    main()
