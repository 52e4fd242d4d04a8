#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_api_key
short_description: Check and renew the API key of a DFIR-IRIS user
version_added: 1.0.0
description:
  - Checks that a user's API key still works and belongs to that user, and renews the key only when
    asked to (O(rotate=true)) or when the key is missing or rejected by IRIS.
  - The check sends requests authenticated with O(user_api_key) itself, C(GET /api/ping) and then
    C(GET /user/whoami) to learn whose key it is. When the server has no identity route (it answers 404)
    the module can only confirm that the key is accepted, and says so in a warning.
  - B(Renewal kills the old key at once.) Every program still using it gets 401 from that moment,
    so update their configuration in the same play.
author:
  - socstack SOC engineering (@socstack)
options:
  login:
    description:
      - Login of the user whose key is managed, compared exactly (case-sensitive).
    type: str
    required: true
  user_api_key:
    description:
      - The key the user has now (for example read from a vault). When not given, the key is renewed.
      - This is the user's key; the key that authenticates the module is O(api_key).
    type: str
  rotate:
    description:
      - Renew the key even when the current one works.
    type: bool
    default: false
extends_documentation_fragment:
  - socstack.wazuh_iris.iris
  - socstack.wazuh_iris.iris.attributes
notes:
  - A deactivated user's key is always rejected, and renewing it would not help; the module fails
    instead and tells to activate the user.
  - Renewing the key of the user whose O(api_key) the module runs with also invalidates O(api_key).
  - RV(api_key) is a secret, so run the task with C(no_log=true).
"""

EXAMPLES = r"""
- name: Make sure the forwarder's key still works, renew it if not
  socstack.wazuh_iris.iris_api_key:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    login: wazuh-forwarder
    user_api_key: "{{ vault_forwarder_iris_key | default(omit) }}"
  no_log: true
  register: forwarder_key

- name: Yearly rotation
  socstack.wazuh_iris.iris_api_key:
    url: https://iris.example.org:9094
    api_key: "{{ iris_admin_api_key }}"
    login: wazuh-forwarder
    rotate: true
  no_log: true
  register: forwarder_key
"""

RETURN = r"""
api_key:
  description:
    - The new key. Secret; register it under C(no_log).
    - A key that is kept is not echoed back (Ansible would mask it, as O(user_api_key) is a secret
      option), so use C(result.api_key | default(current_key)).
  returned: when the key was renewed, not in check mode
  type: str
key_state:
  description: What the module found before acting, V(valid), V(missing) (no O(user_api_key)) or V(rejected) (401).
  returned: always
  type: str
  sample: valid
renewed:
  description: Whether the key was (or, in check mode, would be) renewed.
  returned: always
  type: bool
"""

from ansible_collections.socstack.wazuh_iris.plugins.module_utils.iris import IrisError, IrisModule

WHOAMI = "/user/whoami"


class IrisApiKey(IrisModule):
    """Check a user's key; renew when told to or when it does not work."""

    module_spec = dict(
        login=dict(type="str", required=True),
        user_api_key=dict(type="str", no_log=True),
        rotate=dict(type="bool", default=False),
    )

    def manage(self):
        login = self.params["login"]
        user = self.client.find_user(login)
        if user is None:
            raise IrisError("IRIS has no user with login %r" % login)
        if not user.get("user_active"):
            raise IrisError("user %r is deactivated, so no key of it can work; activate it first "
                            "(iris_user active=true)" % login)
        key = self.params["user_api_key"]
        state = self._key_state(key, user) if key else "missing"
        renew = self.params["rotate"] or state != "valid"
        self.result.update(key_state=state, renewed=renew)
        self.ensure({"login": login, "api_key": state}, {"login": login, "api_key": "renewed" if renew else state},
                    create=None, update=lambda changes, wanted: self._renew(user["user_id"]))

    def _renew(self, user_id):
        renewed = self.client.request("POST", "/manage/users/renew-api-key/%d" % user_id)
        if renewed:
            self.result["api_key"] = renewed["api_key"]

    def _key_state(self, key, user):
        """"valid" or "rejected"; fails when the key works but belongs to someone else."""
        try:
            self.client.ping(api_key=key)
        except IrisError as err:
            if err.status == 401:
                return "rejected"
            raise
        try:
            identity = self.client.get(WHOAMI, api_key=key) or {}
        except IrisError as err:
            if err.status != 404:
                raise
            self.warn("IRIS has no %s route: the key of %r is accepted by IRIS, but whether it belongs to "
                      "that user could not be checked" % (WHOAMI, user["user_login"]))
            return "valid"
        if identity.get("user_id") != user["user_id"]:
            raise IrisError("the given user_api_key belongs to user %r, not to %r; nothing was changed"
                            % (identity.get("user_login"), user["user_login"]))
        return "valid"


def main():
    IrisApiKey().run()


if __name__ == "__main__":
    main()
