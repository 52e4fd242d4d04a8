"""Prints every check of the repository, one a line, so that a before/after diff shows a lost check.

    python tests/list_checks.py                 every check with where it is
    python tests/list_checks.py --no-location   the checks without their file, scenario or function, sorted:
                                                a check moved to another scenario or test is then no change
    python tests/list_checks.py --no-pytest     only the molecule verifiers (no pytest collection run)
    python tests/list_checks.py --root ../main  the checks of another checkout (e.g. before a change)

Kinds of line (fields separated by a tab):
    pytest      <test id>                                       every id of `pytest --collect-only -q`
    testinfra   <scenario> <file>::<function>                   every test function of molecule/*/tests/*.py
    py-assert   <scenario> <file>::<function>  <condition>      every `assert` statement in molecule/**/*.py
    yml-assert  <scenario> <file>: <task name>  <condition>     every condition of an assert task (`that:`)
    yml-fail    <scenario> <file>: <task name>  <when>          every ansible.builtin.fail task of a molecule
                                                                playbook (a check written as fail + when)

Conditions are printed normalised (Python: ast.unparse; YAML: whitespace folded) so that reformatting a check
is no change. Run with the development virtualenv's Python (it needs pytest and PyYAML); the pytest ids
come from pytest.ini's testpaths.
"""
import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ASSERT_MODULES = {"assert", "ansible.builtin.assert", "ansible.legacy.assert"}
FAIL_MODULES = {"fail", "ansible.builtin.fail", "ansible.legacy.fail"}


def pytest_ids(root):
    """Every test id pytest collects (pytest.ini's testpaths), in collection order."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=root, capture_output=True, text=True, check=False)
    ids = [line for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if done.returncode != 0 or not ids:
        sys.exit(f"pytest --collect-only failed (rc {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return ids


def scenario_of(path):
    """The scenario folder of a molecule file (``_shared`` for the shared helpers)."""
    return path.parts[path.parts.index("molecule") + 1]


def python_checks(path, root):
    """(kind, location, condition) of every test function and `assert` statement of one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    relative = path.relative_to(root)
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name if function is None else f"{function}.{child.name}"
                if function is None and child.name.startswith("test") and "/tests/" in str(relative):
                    found.append(("testinfra", f"{scenario_of(path)} {relative}::{name}", ""))
                visit(child, name)
            elif isinstance(child, ast.ClassDef):
                visit(child, child.name if function is None else f"{function}.{child.name}")
            else:
                if isinstance(child, ast.Assert):
                    found.append(("py-assert", f"{scenario_of(path)} {relative}::{function or '<module>'}",
                                  ast.unparse(child.test)))
                visit(child, function)

    visit(tree, None)
    return found


def fold(text):
    return re.sub(r"\s+", " ", str(text)).strip()


def tasks_of(node):
    """Every task of a playbook or tasks file, blocks and handlers included (depth first)."""
    if isinstance(node, list):
        for item in node:
            yield from tasks_of(item)
    elif isinstance(node, dict):
        if any(key in node for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")):
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers", "block", "rescue", "always"):
                yield from tasks_of(node.get(key) or [])
        else:
            yield node


def yaml_checks(path, root):
    """(kind, location, condition) of every assert condition and fail task of one YAML file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []  # a template or an emulator's data file, no playbook
    found = []
    for task in tasks_of(document):
        location = f"{scenario_of(path)} {path.relative_to(root)}: {fold(task.get('name', '<unnamed>'))}"
        for module in ASSERT_MODULES & set(task):
            that = (task[module] or {}).get("that", []) if isinstance(task[module], dict) else []
            for condition in that if isinstance(that, list) else [that]:
                found.append(("yml-assert", location, fold(condition)))
        if FAIL_MODULES & set(task):
            when = task.get("when", "")
            found.append(("yml-fail", location, fold(" and ".join(map(str, when)) if isinstance(when, list) else when)))
    return found


def molecule_checks(root):
    found = []
    for path in sorted((root / "molecule").rglob("*")):
        if path.suffix == ".py":
            found += python_checks(path, root)
        elif path.suffix in (".yml", ".yaml") and path.name != "molecule.yml":
            found += yaml_checks(path, root)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--no-location", action="store_true",
                        help="leave out where each check is (scenario, file, function) and sort the lines")
    parser.add_argument("--no-pytest", action="store_true", help="only the molecule verifiers")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to list (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    rows = [] if args.no_pytest else [("pytest", test_id, "") for test_id in pytest_ids(root)]
    rows += molecule_checks(root)
    if args.no_location:
        # a pytest id is its own identity; a testinfra test is its function's name; an assert is its condition
        def identity(kind, where):
            return where if kind == "pytest" else where.rpartition("::")[2] if kind == "testinfra" else ""

        lines = sorted(f"{kind}\t{identity(kind, where)}\t{what}".rstrip() for kind, where, what in rows)
    else:
        lines = [f"{kind}\t{where}\t{what}".rstrip() for kind, where, what in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
