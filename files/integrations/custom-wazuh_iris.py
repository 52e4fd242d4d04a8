#!/usr/bin/env -S python3 -IS
"""Launcher of the Wazuh -> DFIR-IRIS forwarder; the program is the package iris_forwarder beside this file,
on the shared core socstack_core (also beside it).

wazuh-integratord runs this file once per alert, through its shebang, so start-up time is most of
the cost of an alert:
- Importing the program, rather than running it as the script, lets Python load its bytecode from
  __pycache__, which the installer compiles (hash-checked). A script is compiled again on every run.
- -I ignores PYTHON* variables (and SSLKEYLOGFILE) and the user's site directory; -S skips the site
  module, since only the standard library is used.
- Imports make thousands of objects that live until exit and no garbage, so the cyclic garbage
  collector is off while they run; gc.freeze() then keeps those objects out of later collections.
See docs/forwarder.md.
"""
import gc
import os
import sys

gc.disable()
sys.dont_write_bytecode = True  # integrations/ is not writable by wazuh; only the installer compiles
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.append(HERE)  # last, so nothing here shadows the stdlib
if not os.path.isdir(os.path.join(HERE, "socstack_core")):  # run from the repository: files/socstack_core
    sys.path.append(os.path.dirname(HERE))

import iris_forwarder  # noqa: E402 -- found through the path entry just added

gc.freeze()
gc.enable()
iris_forwarder.run()
