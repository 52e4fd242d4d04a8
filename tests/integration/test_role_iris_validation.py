"""Role iris: bad input fails before anything is started, and the message names the variable.

Runs the role's validation (``tasks_from: validate``, the first thing ``tasks/main.yml`` does) with
ansible-playbook against localhost, in check mode so that no Docker engine is needed.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "iris"
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: socstack.wazuh_iris.iris
        tasks_from: validate
"""
# Modules the validation may use: none of them changes the host.
READ_ONLY_MODULES = {
    "ansible.builtin.assert",
    "ansible.builtin.command",  # only `docker ps`, with changed_when false
    "ansible.builtin.set_fact",
    "ansible.builtin.stat",
    "ansible.builtin.wait_for",
}


def ansible_playbook():
    """Path of ansible-playbook next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("ansible-playbook")
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


@pytest.fixture(scope="module")
def run_validation(tmp_path_factory, collection_root):
    """Returns run(**extra_vars) -> (returncode, output) of the validation in check mode."""
    binary = ansible_playbook()
    if not binary:
        pytest.skip("ansible-playbook is not installed")
    workdir = tmp_path_factory.mktemp("iris-validate")
    playbook = workdir / "validate.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_root), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")

    def run(**extra_vars):
        values = {name: value if isinstance(value, int) else str(value) for name, value in extra_vars.items()}
        values["ansible_python_interpreter"] = sys.executable
        args = [binary, "-i", "localhost,", "-c", "local", "--check", "-e", json.dumps(values), str(playbook)]
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=workdir, timeout=120, check=False)
        return done.returncode, done.stdout + done.stderr

    return run


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_valid_input_passes(run_validation, free_port):
    code, output = run_validation(
        iris_port=free_port, iris_admin_api_key="A1b2" * 10, iris_db_password="Abc123def456ghi"
    )
    assert code == 0, output


def test_short_admin_key_fails_naming_the_variable(run_validation, free_port):
    code, output = run_validation(iris_port=free_port, iris_admin_api_key="abc123")
    assert code != 0
    assert "iris_admin_api_key must be 32 characters or more" in output
    assert "abc123" not in output  # the value itself is not shown


def test_non_alphanumeric_db_password_fails(run_validation, free_port):
    code, output = run_validation(iris_port=free_port, iris_db_password="pass'word;DROP")
    assert code != 0
    assert "iris_db_password must be alphanumeric" in output
    assert "DROP" not in output


def test_missing_certificate_file_fails(run_validation, free_port, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("not used")
    missing = tmp_path / "missing.pem"
    code, output = run_validation(iris_port=free_port, iris_tls_cert_path=missing, iris_tls_key_path=key)
    assert code != 0
    assert f"iris_tls_cert_path: {missing} does not exist" in output


def test_port_in_use_fails(run_validation):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, output = run_validation(iris_port=port)
    assert code != 0
    assert f"iris_port: 127.0.0.1:{port} is already in use" in output


def test_latest_image_fails(run_validation, free_port):
    code, output = run_validation(iris_port=free_port, iris_app_image="ghcr.io/dfir-iris/iriswebapp_app:latest")
    assert code != 0
    assert "iris_app_image=ghcr.io/dfir-iris/iriswebapp_app:latest: give a pinned tag" in output


def test_validation_runs_first_and_changes_nothing():
    main = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert main[0]["ansible.builtin.import_tasks"] == "validate.yml"
    validate = yaml.safe_load((ROLE / "tasks" / "validate.yml").read_text())
    modules = {next(key for key in task if key.startswith("ansible.builtin.")) for task in validate}
    assert modules <= READ_ONLY_MODULES
    commands = [task for task in validate if "ansible.builtin.command" in task]
    assert all(task["changed_when"] is False for task in commands)
