"""Runs an iris_* module (or any AnsibleModule) in this process, as Ansible would run it on a target.

Shared by the module tests (test_iris_modules.py) and the tests of their base class (test_iris_base.py).
"""
import contextlib
import io
import json
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common import warnings


@contextlib.contextmanager
def module_args(args):
    """While active, an AnsibleModule created in this process reads ``args`` as its task arguments."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(basic, "_ANSIBLE_ARGS",
                                              json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()))
        if hasattr(basic, "_ANSIBLE_PROFILE"):  # ansible-core 2.19 and later
            stack.enter_context(mock.patch.object(basic, "_ANSIBLE_PROFILE", "legacy"))
            # A module runs in a process of its own; once a test in this process has imported controller
            # code, warn() would go to the controller's display instead of the module result.
            from ansible.module_utils import _internal

            stack.enter_context(mock.patch.object(_internal, "is_controller", False))
        for name in ("_global_warnings", "_global_deprecations"):  # a dict from 2.19 on, a list before
            held = getattr(warnings, name, None)
            if isinstance(held, dict):  # emptied in place: other modules may hold the same object
                stack.enter_context(mock.patch.dict(held, clear=True))
            elif isinstance(held, list):
                stack.enter_context(mock.patch.object(warnings, name, []))
        yield


def run_module(main, args):
    """Call ``main()`` with the task arguments ``args``; returns the result the module prints.

    The result is what Ansible receives, after the module's no_log masking. A traceback in it fails the test.
    """
    printed = io.StringIO()
    with module_args(args), contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        main()
    result = json.loads(printed.getvalue())
    assert "exception" not in result, result.get("exception")
    return result
