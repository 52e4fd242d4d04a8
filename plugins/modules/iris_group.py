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
    permission_names,
)


def _mask(names):
    """OR of the bit values of permission ``names``."""
    mask = 0
    for name in names:
        mask |= PERMISSIONS[name]
    return mask


def _view(name, description, mask):
    return {"name": name, "description": description, "permissions": permission_names(mask)}


class IrisGroup(IrisModule):
    """Group present/absent."""

    module_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        permissions=dict(type="list", elements="str", choices=list(PERMISSIONS)),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )

    def manage(self):
        current = self.client.find_group(self.params["name"])
        if current:
            self.before = _view(current["group_name"], current.get("group_description"),
                                current.get("group_permissions") or 0)
        self.result["id"] = current["group_id"] if current else None
        if self.params["state"] == "absent":
            if current:
                self.write("POST", "/manage/groups/delete/%d" % current["group_id"])
                self.result["id"] = None
        else:
            self._ensure(current)
        self.result["group"] = self.after or {}

    def _ensure(self, current):
        params = self.params
        if current is None and params["description"] is None:
            raise IrisError("description is required to create group %r (IRIS needs a group description)"
                            % params["name"])
        if current is None:
            name, description, mask = params["name"], params["description"], 0
        else:
            name, description = current["group_name"], current.get("group_description")
            mask = current.get("group_permissions") or 0
        if params["description"] is not None:
            description = params["description"]
        if params["permissions"] is not None:
            mask = _mask(params["permissions"])
        self.after = _view(name, description, mask)
        self.result["permissions_mask"] = mask
        if self.after == self.before:
            return
        body = {
            "group_name": name,
            "group_description": description,
            "group_permissions": [bit for bit in PERMISSIONS.values() if mask & bit],
        }
        if current is None:
            created = self.write("POST", "/manage/groups/add", body)
            self.result["id"] = created["group_id"] if created else None
        else:
            self.write("POST", "/manage/groups/update/%d" % current["group_id"], body)


def main():
    IrisGroup().run()


if __name__ == "__main__":
    main()
