"""The execution-environment definition produces a usable ansible-builder context.

The base image cannot be pulled here, so the check stops at the generated build context
(`ansible-builder create`), which is what `ansible-builder build` would hand to the engine.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_execution_environment_context(tmp_path):
    builder = BIN / "ansible-builder"
    if not builder.exists() and not shutil.which("ansible-builder"):
        pytest.skip("ansible-builder is not installed (it is in requirements/dev.txt)")
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    tarball = ROOT / ".cache" / "dist" / f"socstack-wazuh_iris-{galaxy['version']}.tar.gz"
    galaxy_cli = str(BIN / "ansible-galaxy")
    build = subprocess.run(
        [galaxy_cli, "collection", "build", "--force", "--output-path", str(tarball.parent), str(ROOT)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    ctx = tmp_path / "context"
    res = subprocess.run(
        [str(builder), "create", "-f", str(ROOT / "execution-environment.yml"), "-c", str(ctx)],
        capture_output=True, text=True, check=False, timeout=120, cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    dockerfile = (ctx / "Dockerfile").read_text()
    assert f"socstack-wazuh_iris-{galaxy['version']}.tar.gz" in dockerfile
    assert (ctx / "_build" / "collections" / tarball.name).is_file()
    galaxy_reqs = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    names = {c["name"] for c in galaxy_reqs["collections"]}
    assert set(galaxy["dependencies"]) <= names, "every collection galaxy.yml depends on is in the EE"
    assert "docker==" in (ctx / "_build" / "requirements.txt").read_text()
