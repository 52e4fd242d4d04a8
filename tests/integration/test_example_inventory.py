"""The example inventory a user copies parses, its vaulted secrets decrypt, and its groups are
the ones the tier playbooks target."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "examples" / "inventory"
VAULT_PASSWORD = ROOT / "examples" / "vault-password.example"


def ansible(*args):
    res = subprocess.run(
        [str(BIN / "ansible"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD), *args],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_groups_match_the_tier_playbooks():
    res = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD),
         "--list"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    inv = json.loads(res.stdout)
    assert inv["iris"]["hosts"] == ["iris.example.org"]
    assert len(inv["wazuh_managers"]["hosts"]) == 2
    assert inv["ai_workers"]["children"] == ["wazuh_managers"], "AI workers default to the managers"


def test_vaulted_secrets_decrypt_and_are_not_plain_text():
    out = ansible("iris.example.org", "-m", "ansible.builtin.debug", "-a", "var=iris_admin_password", "-c", "local")
    assert "ChangeMe-Example-2026" in out
    vault_file = (INVENTORY / "group_vars" / "all" / "vault.yml").read_text()
    assert "ChangeMe-Example-2026" not in vault_file
    assert vault_file.count("$ANSIBLE_VAULT;1.1;AES256") == 3


# --- README.md "Using it against your own inventory": the copy and vault steps, without a lab -----
# (molecule/readme follows the whole section, install and run included, against lab containers)

def readme_blocks():
    sys.path.insert(0, str(ROOT / "molecule" / "readme"))
    try:
        import follow_readme  # the scenario's own parser of the README section
    finally:
        sys.path.pop(0)
    return follow_readme, dict(follow_readme.section_blocks(ROOT / "README.md"))


def test_readme_vault_block_writes_exactly_the_example_secrets():
    _module, blocks = readme_blocks()
    written = re.findall(r"--name (\w+)", blocks["vault"])
    example = re.findall(r"^(\w+): !vault", (INVENTORY / "group_vars" / "all" / "vault.yml").read_text(), re.M)
    assert sorted(written) == sorted(example), "the README's new vault.yml must replace every example secret"
    assert "> group_vars/all/vault.yml" in blocks["vault"], "the file is written anew, no old value stays"


def test_readme_copy_and_vault_steps_give_an_inventory_with_only_new_secrets(tmp_path):
    module, blocks = readme_blocks()
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    password = module.new_admin_password()
    for name in ("copy", "vault"):
        code = blocks[name]
        if name == "vault":
            code = module.fill_vault_block(code, password, "lab-opencti-token-0123")
        res = subprocess.run(["/bin/bash", "-euo", "pipefail", "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False, timeout=120)
        assert res.returncode == 0, f"README block {name}: {res.stdout}{res.stderr}"
    inventory = home / "socstack-inventory"
    vault_file = inventory / "group_vars" / "all" / "vault.yml"
    assert vault_file.read_text().count("$ANSIBLE_VAULT;1.1;AES256") == 3
    assert password not in vault_file.read_text()
    assert oct((home / ".socstack-vault-password").stat().st_mode & 0o777) == "0o600"

    def show(password_file):
        return subprocess.run(
            [str(BIN / "ansible"), "-i", str(inventory), "--vault-password-file", str(password_file),
             "iris.example.org", "-c", "local", "-m", "ansible.builtin.debug", "-a", "var=iris_admin_password"],
            capture_output=True, text=True, check=False, timeout=120, env=env,
        )

    mine = show(home / ".socstack-vault-password")
    assert mine.returncode == 0 and password in mine.stdout, mine.stdout + mine.stderr
    example = show(VAULT_PASSWORD)
    assert example.returncode != 0 and "Decryption failed" in example.stdout + example.stderr
