"""Follow README.md's "Using it against your own inventory" literally, against the readme lab.

The section's shell blocks are the ones marked `<!-- readme-test: NAME -->`; they must be, in this
order, install, copy, vault, run. Each runs with bash (-e, -o pipefail) from the checkout, as a
user would type it, with a HOME of its own (so the collection is installed into that HOME, and no
variable of the molecule run reaches Ansible). Between the blocks this script does only what the
section tells the user to do by hand, and nothing else:

- the host names in hosts.yml become the lab's containers; the host variables on their lines say
  how Ansible reaches them (docker exec) and what is particular to a Docker engine inside a
  container (storage driver, IPv6 setting), as a user's lines name their own hosts;
- iris_server_name, wazuh_opencti_url: the values of the lab (the OpenCTI emulator on the manager);
- the four iris_*_image variables ("Behind a registry mirror or offline"): the stand-in images the
  lab loaded on the IRIS host (it has no registry);
- the two REPLACE-... strings of the vault block: a new admin password and the lab's OpenCTI token.

What it chose and where it ran go to a JSON file (mode 0600) for the scenario's verify step.
Usage: follow_readme.py --project DIR --handoff FILE --opencti-token TOKEN
"""

import argparse
import json
import os
import re
import secrets
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SECTION = "## Using it against your own inventory"
BLOCK = re.compile(r"^<!-- readme-test: ([a-z]+) -->\n```sh\n(.*?)^```$", re.S | re.M)
BLOCK_ORDER = ["install", "copy", "vault", "run"]
INVENTORY = "~/socstack-inventory"
# The two strings README tells the user to replace with their own values (placeholders, not secrets).
PLACEHOLDER_PASSWORD = "'REPLACE-with-your-IRIS-admin-password'"  # noqa: S105
PLACEHOLDER_TOKEN = "'REPLACE-with-your-OpenCTI-API-token'"  # noqa: S105
IMAGE_VARS = ["iris_app_image", "iris_db_image", "iris_nginx_image", "iris_rabbitmq_image"]

# The lab's hosts, as the user's hosts.yml would name them (molecule/readme/molecule.yml).
LAB_HOST_LINES = {
    "iris.example.org": (
        "readme-iris: {ansible_connection: community.docker.docker,"
        " docker_daemon_options: {storage-driver: vfs},"
        " docker_service_environment: {DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE: '1'}}"
    ),
    "wazuh-master.example.org": "readme-wazuh: {ansible_connection: community.docker.docker}",
    "wazuh-worker1.example.org": None,  # the lab has one manager: the line goes
}
LAB_SETTINGS = {
    "group_vars/iris/main.yml": {"iris_server_name": "readme-iris"},
    "group_vars/wazuh_managers/main.yml": {"wazuh_opencti_url": "http://127.0.0.1:8080/graphql"},
}
# lab/standin-images/load.sh: the images the prepare step loaded into readme-iris's engine (the real
# IRIS app and worker from lab/iris-images, the db, nginx and RabbitMQ stand-ins).
LAB_IMAGES = {name: f"socstack-lab/iris-{name.split('_')[1]}:standin" for name in IMAGE_VARS}
LAB_IMAGES["iris_app_image"] = "socstack-lab/iris-app:v2.4.20"


def section_blocks(readme):
    """The marked shell blocks of the section, as (name, code) in README order."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else len(text)]
    blocks = BLOCK.findall(section)
    names = [name for name, _code in blocks]
    if names != BLOCK_ORDER:
        raise SystemExit(f"README section: marked blocks {names}, expected {BLOCK_ORDER}")
    mirror = section[section.index("### Behind a registry mirror"):]
    missing = [name for name in IMAGE_VARS if f"\n{name}: " not in mirror]
    if missing:
        raise SystemExit(f"README mirror instructions no longer name {missing}")
    return blocks


def new_admin_password():
    """A password the README's rules allow: 20 letters and digits with each class present."""
    while True:
        value = "".join(secrets.choice(string.ascii_letters + string.digits) for _i in range(20))
        if any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value):
            return value


def fill_vault_block(code, password, token):
    """Put the user's own values where the README says to: the two REPLACE-... strings, nothing else."""
    for placeholder in (PLACEHOLDER_PASSWORD, PLACEHOLDER_TOKEN):
        if code.count(placeholder) != 1:
            raise SystemExit(f"README vault block: expected {placeholder} once")
    return code.replace(PLACEHOLDER_PASSWORD, f"'{password}'").replace(PLACEHOLDER_TOKEN, f"'{token}'")


def edit_inventory(inventory):
    """The by-hand step of the README: hosts, per-tier settings, image references."""
    hosts = inventory / "hosts.yml"
    lines = hosts.read_text(encoding="utf-8").splitlines()
    out, seen = [], set()
    for line in lines:
        name = line.strip().rstrip(":")
        if name in LAB_HOST_LINES and line.rstrip().endswith(":") and not line.lstrip().startswith("#"):
            seen.add(name)
            if LAB_HOST_LINES[name]:
                out.append(line[:len(line) - len(line.lstrip())] + LAB_HOST_LINES[name])
            continue
        out.append(line)
    if seen != set(LAB_HOST_LINES):
        raise SystemExit(f"example hosts.yml: host lines {sorted(set(LAB_HOST_LINES) - seen)} not found")
    hosts.write_text("\n".join(out) + "\n", encoding="utf-8")

    for rel, settings in LAB_SETTINGS.items():
        path = inventory / rel
        text = path.read_text(encoding="utf-8")
        for key, value in settings.items():
            text, count = re.subn(rf"^{key}: \S+", f"{key}: {value}", text, flags=re.M)
            if count != 1:
                raise SystemExit(f"example {rel}: no single `{key}:` line")
        path.write_text(text, encoding="utf-8")

    iris_vars = inventory / "group_vars/iris/main.yml"
    images = "".join(f"{name}: {ref}\n" for name, ref in LAB_IMAGES.items())
    iris_vars.write_text(iris_vars.read_text(encoding="utf-8") + images, encoding="utf-8")


def run_block(name, code, *, cwd, env, log, timeout, shown):
    """One README block, as typed into bash; its output goes to the log and to stdout. The log shows
    the block as README has it (shown), not with the secrets put in."""
    log.write(f"\n===== block {name} =====\n{shown}\n----- output -----\n")
    log.flush()
    started = time.monotonic()
    # Running README's own shell code is the point of this script.
    with subprocess.Popen(["/bin/bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, text=True,  # noqa: S603
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        watchdog = threading.Timer(timeout, proc.kill)  # one deadline for the whole block
        watchdog.start()
        try:
            for line in proc.stdout:
                log.write(line)
                sys.stdout.write(line)
            rc = proc.wait()
        finally:
            watchdog.cancel()
    seconds = time.monotonic() - started
    log.write(f"----- rc {rc}, {seconds:.0f} s -----\n")
    log.flush()
    if rc != 0:
        raise SystemExit(f"README block {name!r} failed with exit code {rc} (log: {log.name})")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path, help="the checkout (README.md, Makefile)")
    parser.add_argument("--handoff", required=True, type=Path, help="JSON file for the verify step")
    parser.add_argument("--opencti-token", required=True, help="the token the lab's OpenCTI accepts")
    args = parser.parse_args()
    project = args.project.resolve()
    blocks = section_blocks(project / "README.md")

    work = Path(tempfile.mkdtemp(prefix="readme-run-", dir=args.handoff.parent))
    home = work / "home"
    home.mkdir()
    # A user's shell: their HOME, their PATH with Ansible on it (the project's virtualenv plays the
    # user's `pip install ansible`); no ANSIBLE_* or MOLECULE_* variable of this run.
    env = {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "USER": "root",
    }
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    password = new_admin_password()
    inventory = home / INVENTORY.removeprefix("~/")
    times = {}
    with open(work / "readme-run.log", "w", encoding="utf-8") as log:
        for name, shown in blocks:
            code = shown
            if name == "vault":
                edit_inventory(inventory)
                code = fill_vault_block(shown, password, args.opencti_token)
            times[name] = round(run_block(name, code, cwd=project, env=env, log=log, timeout=900, shown=shown), 1)
    handoff = {
        "home": str(home),
        "inventory": str(inventory),
        "vault_password_file": str(home / ".socstack-vault-password"),
        "admin_password": password,
        "opencti_token": args.opencti_token,
        "log": str(work / "readme-run.log"),
        "seconds": times,
    }
    fd = os.open(args.handoff, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(handoff, handle, indent=2)
    print(f"README blocks passed: {json.dumps(times)}")


if __name__ == "__main__":
    main()
