"""The collection builds, installs from its tarball and exposes its playbooks by FQCN."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml"))
# one build and install for the whole module, also under pytest-xdist (one worker runs the module)
pytestmark = pytest.mark.xdist_group("collection_build")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Builds the tarball and installs it into an empty collections path (no Galaxy access)."""
    tmp = tmp_path_factory.mktemp("build")
    # Only the tarball may provide the collection: drop the working tree's collection path.
    clean = {k: v for k, v in os.environ.items() if k != "ANSIBLE_COLLECTIONS_PATH"}
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp), str(ROOT)])
    assert build.returncode == 0, build.stderr
    tarballs = list(tmp.glob("socstack-wazuh_iris-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    dest = tmp / "collections"
    inst = run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(dest), str(tarballs[0])],
        env=clean,
    )
    assert inst.returncode == 0, inst.stderr
    bundled = Path(yaml.__file__).parents[1]  # site-packages holds the `ansible` package's collections
    env = dict(clean, ANSIBLE_COLLECTIONS_PATH=f"{dest}:{bundled}")
    return {"tarball": tarballs[0], "env": env, "dest": dest}


def test_tarball_leaves_out_dev_artefacts(installed):
    root = installed["dest"] / "ansible_collections" / "socstack" / "wazuh_iris"
    assert (root / "MANIFEST.json").is_file()
    for unwanted in (".venv", ".cache", "lab", ".git"):
        assert not (root / unwanted).exists(), unwanted


def test_galaxy_metadata():
    meta = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert (meta["namespace"], meta["name"]) == ("socstack", "wazuh_iris")
    assert meta["license"] == ["GPL-3.0-or-later"]
    assert "community.docker" in meta["dependencies"]


def test_runtime_declares_iris_action_group():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"]
    assert runtime["action_groups"]["iris"], "the iris action group lists the IRIS modules"


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_runs_by_fqcn(installed, playbook, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    iris: {}\n    wazuh_managers: {}\n    ai_workers: {}\n")
    res = run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), f"socstack.wazuh_iris.{playbook}", "--syntax-check"],
        env=installed["env"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_ansible_doc_lists_collection_plugins(installed):
    res = run([str(BIN / "ansible-doc"), "-l", "socstack.wazuh_iris"], env=installed["env"])
    assert res.returncode == 0, res.stderr
    modules = sorted((ROOT / "plugins" / "modules").glob("iris_*.py"))
    for module in modules:
        assert f"socstack.wazuh_iris.{module.stem}" in res.stdout
