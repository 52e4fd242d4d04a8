# -*- coding: utf-8 -*-
# Copyright: socstack.wazuh_iris contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Connection options and attributes shared by the socstack.wazuh_iris.iris_* modules."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the DFIR-IRIS server, for example C(https://iris.example.org:9094).
      - If not set, the value of the E(IRIS_URL) environment variable is used.
    type: str
    required: true
  api_key:
    description:
      - API key of an IRIS user allowed to manage customers, groups and users (the
        C(server_administrator) permission).
      - Sent as an C(Authorization) header with the C(Bearer) scheme. The modules never keep or send
        cookies, because an IRIS session cookie would override the key's permissions.
      - If not set, the value of the E(IRIS_API_KEY) environment variable is used.
    type: str
    required: true
  validate_certs:
    description:
      - Verify the server's TLS certificate.
      - Set to V(false) only for a lab; use O(ca_path) for a private CA instead.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) used to verify the IRIS server.
    type: path
  timeout:
    description:
      - Seconds to wait for each answer from IRIS.
    type: int
    default: 10
notes:
  - All modules of this collection that talk to IRIS are in the action group C(socstack.wazuh_iris.iris),
    so O(url) and O(api_key) can be set once with C(module_defaults).
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: all
  action_group:
    description: Use C(group/socstack.wazuh_iris.iris) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - socstack.wazuh_iris.iris
"""
