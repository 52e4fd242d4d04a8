"""The example inventory a user copies parses, its vaulted secrets decrypt, and its groups are
the ones the tier playbooks target."""
import json
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
