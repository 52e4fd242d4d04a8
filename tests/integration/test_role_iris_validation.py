"""Role iris: validation comes first and changes nothing.

What each rule accepts and refuses (the message naming the variable, the value never shown) is in the
table of tests/integration/test_role_validation.py, with the rules of every other role.
"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "iris"
# Modules the validation may use: none of them changes the host.
READ_ONLY_MODULES = {
    "ansible.builtin.assert",
    "ansible.builtin.command",  # only `docker ps`, with changed_when false
    "ansible.builtin.set_fact",
    "ansible.builtin.stat",
    "ansible.builtin.wait_for",
}


def test_validation_runs_first_and_changes_nothing():
    main = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert main[0]["ansible.builtin.import_tasks"] == "validate.yml"
    validate = yaml.safe_load((ROLE / "tasks" / "validate.yml").read_text())
    modules = {next(key for key in task if key.startswith("ansible.builtin.")) for task in validate}
    assert modules <= READ_ONLY_MODULES
    commands = [task for task in validate if "ansible.builtin.command" in task]
    assert all(task["changed_when"] is False for task in commands)
