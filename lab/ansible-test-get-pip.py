"""Offline stand-in for the pip bootstrap script that `ansible-test --venv` downloads.

ansible-test runs this file (found as ~/.ansible/test/cache/get_pip_<version>.py) inside each
fresh virtualenv with the arguments it would give the real bootstrap script. It installs pip from
the wheel lying beside it (fetched from PyPI by lab/ansible-test-offline.sh), then the requested
packages. The bootstrap-only flags --no-setuptools / --no-wheel are dropped: pip does not know them.
"""

import glob
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
wheels = sorted(glob.glob(os.path.join(here, "pip-*-py3-none-any.whl")))
if not wheels:
    sys.exit(f"no pip wheel beside {__file__}: run lab/ansible-test-offline.sh")
sys.path.insert(0, wheels[-1])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.argv = ["pip", "install", "--upgrade", "--force-reinstall", *args]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
