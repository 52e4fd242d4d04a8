"""Runs the validation tasks of the roles for a table of cases in ONE ansible-playbook run.

Each case becomes one inventory host (connection local, this Python as interpreter) carrying the case's
variables; one play per role and mode (check mode or not) includes the role's validation tasks file. The
``ansible.posix.json`` callback gives every host's task results, from which each case's outcome is read:
whether the host failed, and the task names and messages of its failures.

Used by tests/integration/test_role_validation.py.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "socstack.wazuh_iris"


@dataclass(frozen=True)
class Case:
    """One row of a role's table: variables, and the message fragment of the refusal ('' = accepted).

    ``hidden`` are texts (secrets) that must appear nowhere in the host's results. ``check_mode`` False runs
    the case outside check mode. ``environment`` is the environment of the role's tasks.
    """

    name: str
    variables: dict
    refused: str = ""
    hidden: tuple = ()
    check_mode: bool = True
    environment: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RoleTable:
    """The cases of one role, the tasks file that validates (``tasks_from``) and the variables every case
    starts from (``base``, valid together). ``facts`` become ``ansible_facts`` of each host (gather_facts is off)."""

    role: str
    tasks_from: str
    base: dict
    cases: tuple
    facts: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What happened on one case's host."""

    ran: bool = False
    failed: bool = False
    messages: list = field(default_factory=list)  # "task name: message" of each failure
    dump: str = ""  # every result of the host, as JSON text

    def describe(self):
        return "; ".join(self.messages) or "no failure"


def host_name(table, case):
    """The inventory name of a case: unique by its place in the table, readable by its name."""
    place = next(number for number, row in enumerate(table.cases) if row is case)
    return f"{table.role}__{table.tasks_from}__{place:03d}_{re.sub('[^A-Za-z0-9_]', '_', case.name)}"


def fill(value, context):
    """``value`` with each ``{name}`` of ``context`` in its strings replaced (a whole-string placeholder keeps
    the context value's type)."""
    if isinstance(value, str):
        for key, replacement in context.items():
            if value == "{" + key + "}":
                return replacement
            value = value.replace("{" + key + "}", str(replacement))
        return value
    if isinstance(value, dict):
        return {fill(key, context): fill(item, context) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [fill(item, context) for item in value]
    return value


def build(tables, context, check_mode, extra_hosts=None):
    """(inventory, playbook) as YAML texts for the cases of ``tables`` that run in (or out of) check mode."""
    groups, plays = {}, []
    for table in tables:
        cases = [case for case in table.cases if case.check_mode == check_mode]
        if not cases:
            continue
        group = f"{table.role}__{table.tasks_from}"
        hosts = {}
        for case in cases:
            variables = fill({**table.base, **case.variables}, context)
            variables.update(
                ansible_connection="local",
                ansible_python_interpreter=sys.executable,
                case_facts=fill(table.facts, {**context, **variables}),
                case_environment=fill(case.environment, context),
            )
            hosts[host_name(table, case)] = variables
        groups[group] = {"hosts": hosts}
        plays.append({
            "name": f"{table.role} tasks/{table.tasks_from}.yml",
            "hosts": group,
            "gather_facts": False,
            "environment": "{{ case_environment }}",
            "tasks": [
                {"name": "Give the host the case's facts", "ansible.builtin.set_fact": {
                    "ansible_facts": "{{ case_facts }}"}, "when": "case_facts | length > 0"},
                {"name": "Run the validation", "ansible.builtin.include_role": {
                    "name": f"{COLLECTION}.{table.role}", "tasks_from": table.tasks_from}},
            ],
        })
    if not plays:
        return None, None
    if extra_hosts:
        groups["not_validated"] = {"hosts": extra_hosts}
    inventory = {"all": {"children": groups}}
    return yaml.safe_dump(inventory, sort_keys=False), yaml.safe_dump(plays, sort_keys=False)


def ansible_playbook():
    beside = Path(sys.executable).with_name("ansible-playbook")
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


def run(tables, context, workdir, collections_path, extra_hosts=None, timeout=900):
    """Runs every case: one ansible-playbook run per role table and mode, all at the same time, so that one
    role that does not load fails only its own cases. Cases in check mode run with ``--check`` (the variable
    ansible_check_mode follows only the command line). Returns {host name: Outcome}; the hosts of a run that
    gave no report have ``ran`` False and the run's output as their message."""
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORKS="16",
        ANSIBLE_PIPELINING="true",
        ANSIBLE_RETRY_FILES_ENABLED="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(workdir / "tmp"),
    )
    runs = []
    for table in tables:
        for check_mode in (True, False):
            inventory, playbook = build([table], context, check_mode, extra_hosts)
            if inventory is None:
                continue
            name = f"{table.role}-{table.tasks_from}-{'check' if check_mode else 'run'}"
            (workdir / f"{name}-inventory.yml").write_text(inventory)
            (workdir / f"{name}.yml").write_text(playbook)
            args = [ansible_playbook(), "-i", f"{name}-inventory.yml", f"{name}.yml"]
            process = subprocess.Popen(args + (["--check"] if check_mode else []), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env, cwd=workdir)
            hosts = [host_name(table, case) for case in table.cases if case.check_mode == check_mode]
            runs.append((process, hosts))
    found = {}
    for process, hosts in runs:
        stdout, stderr = process.communicate(timeout=timeout)
        try:
            found.update(outcomes(json.loads(stdout)))
        except ValueError:
            error = f"ansible-playbook gave no report (rc {process.returncode}): {stdout[-3000:]} {stderr[-3000:]}"
            found.update({host: Outcome(messages=[error]) for host in hosts})
    return found


def failure_messages(result):
    """The messages of a failed result, and of its failed loop items."""
    messages = [str(result.get("msg", ""))]
    for item in result.get("results", []):
        if isinstance(item, dict) and item.get("failed"):
            messages.append(str(item.get("msg", "")))
    return [message for message in messages if message]


def outcomes(report):
    """{host name: Outcome} from the JSON callback's report."""
    found = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            task_name = task.get("task", {}).get("name", "")
            for host, result in task.get("hosts", {}).items():
                outcome = found.setdefault(host, Outcome())
                outcome.dump += json.dumps(result) + "\n"
                if result.get("failed") or result.get("unreachable"):
                    outcome.messages += [f"{task_name}: {message}" for message in failure_messages(result) or [""]]
    for host, stats in report.get("stats", {}).items():
        outcome = found.setdefault(host, Outcome())
        outcome.ran = True
        outcome.failed = bool(stats.get("failures") or stats.get("unreachable"))
    return found
