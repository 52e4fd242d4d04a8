#!/usr/bin/env -S python3 -I
"""Launcher of the AI triage worker; the program is the package iris_ai_worker beside this file, on the
shared core socstack_core (also beside it). systemd runs it as socstack-ai-worker@N (docs/ai-worker.md).

-I ignores PYTHON* variables and the user's site directory; the installer compiles the packages'
bytecode, so nothing is written at run time.
"""
import os
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.append(HERE)  # last, so nothing here shadows the stdlib
if not os.path.isdir(os.path.join(HERE, "socstack_core")):  # run from the repository: files/socstack_core
    sys.path.append(os.path.dirname(HERE))

from iris_ai_worker.main import main  # noqa: E402 -- found through the path entries just added

sys.exit(main())
