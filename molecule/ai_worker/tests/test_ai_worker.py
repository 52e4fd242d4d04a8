"""Checks of the ai_worker role: two hardened instances (@1, @2) that triage the pending alert exactly once."""

import json
import re
import time

import pytest

UNIT = "socstack-ai-worker@{}.service"
ENV_FILE = "/etc/socstack-ai-worker/ai-worker.env"
MAX_EXPOSURE = 2.0
TRIAGE_WAIT_SECONDS = 120

# Runs inside the container: GET one IRIS API path with the test CA, print the JSON `data`.
IRIS_GET = """
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="/opt/socstack-test/ca.pem")
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.stdin.read().strip()})
print(json.dumps(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["data"]))
"""


def iris_get(host, path):
    """Data of a GET on IRIS, asked from inside the container (key on stdin, not argv)."""
    variables = host.ansible.get_variables()
    url = f"https://127.0.0.1:{variables['molecule_iris_port']}{path}"
    script = IRIS_GET.replace("'", "'\"'\"'")
    result = host.run(f"printf %s '{variables['molecule_iris_admin_key']}' | python3 -c '{script}' {url}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def the_alert(host):
    ref = host.ansible.get_variables()["molecule_alert_ref"]
    alerts = iris_get(host, f"/alerts/filter?source_reference={ref}&per_page=50")["alerts"]
    matching = [alert for alert in alerts if alert["alert_source_ref"] == ref]
    assert len(matching) == 1, matching
    return matching[0]


def tags(alert):
    return [tag.strip() for tag in (alert.get("alert_tags") or "").split(",") if tag.strip()]


@pytest.mark.parametrize("instance", [1, 2])
def test_instances_run_and_are_enabled(host, instance):
    service = host.service(UNIT.format(instance))
    assert service.is_running
    assert service.is_enabled


def test_no_surplus_instance(host):
    for instance in (0, 3):
        assert not host.service(UNIT.format(instance)).is_running
        listed = host.run(f"systemctl list-units --all --plain --no-legend 'socstack-ai-worker@{instance}*'")
        assert listed.stdout.strip() == ""


@pytest.mark.parametrize("instance", [1, 2])
def test_instance_identity_and_settings_reach_the_process(host, instance):
    pid = host.run(f"systemctl show -P MainPID {UNIT.format(instance)}").stdout.strip()
    assert pid not in ("", "0")
    with host.sudo():
        environ = host.file(f"/proc/{pid}/environ").content.split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    assert env["AI_WORKER_INSTANCE"] == str(instance)
    assert env["AI_WORKER_INSTANCES"] == "2"
    assert env["AI_WORKER_CA_FILE"] == "/etc/socstack-ai-worker/iris-ca.pem"
    assert "AI_WORKER_VERIFY_TLS" not in env  # left at null: the program's own default (true) applies
    assert env["AI_WORKER_POLL_SECONDS"] == "2"
    assert json.loads(env["AI_WORKER_REDACT_PATTERNS"]) == ["password=\\S+", 'token "[^"]*"', "cost \\$[0-9]+"]
    assert env["STATE_DIRECTORY"] == "/var/lib/socstack-ai-worker"
    assert host.process.get(pid=int(pid)).user == "socstack-ai-worker"


def test_environment_file_is_root_only(host):
    env_file = host.file(ENV_FILE)
    assert env_file.user == "root"
    assert env_file.group == "root"
    assert env_file.mode == 0o600


def test_program_is_root_owned_and_readable_by_the_worker_group_only(host):
    """Installed by host_program: launcher, package and shared core, with their bytecode; no single file."""
    home = "/usr/local/lib/socstack-ai-worker"
    launcher = host.file(f"{home}/iris-ai-worker")
    assert (launcher.user, launcher.group, launcher.mode) == ("root", "socstack-ai-worker", 0o750)
    with host.sudo():
        assert launcher.content_string.splitlines()[0] == "#!/usr/bin/python3 -I"
        for package in ("iris_ai_worker", "socstack_core"):
            folder = host.file(f"{home}/{package}")
            assert (folder.user, folder.group, folder.mode) == ("root", "socstack-ai-worker", 0o750)
            assert host.file(f"{home}/{package}/__init__.py").mode == 0o640
        assert host.run(f"ls {home}/iris_ai_worker/__pycache__").stdout.count(".pyc") >= 10
    assert not host.file(f"{home}/iris_ai_worker.py").exists


def test_state_directory_is_private(host):
    state = host.file("/var/lib/socstack-ai-worker")
    assert state.user == "socstack-ai-worker"
    assert state.mode == 0o700


def test_exposure_is_at_most_2(host):
    result = host.run(f"systemd-analyze security --no-pager {UNIT.format(1)}")
    assert result.rc == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "Overall exposure level" in line)
    print(line)
    exposure = float(re.search(r"exposure level for \S+: ([0-9.]+)", line).group(1))
    assert exposure <= MAX_EXPOSURE, line


def test_pending_alert_is_triaged_exactly_once(host):
    deadline = time.monotonic() + TRIAGE_WAIT_SECONDS
    alert = the_alert(host)
    while "ai-reviewed" not in tags(alert) and time.monotonic() < deadline:
        time.sleep(2)
        alert = the_alert(host)
    assert "ai-reviewed" in tags(alert), f"not triaged within {TRIAGE_WAIT_SECONDS}s: {tags(alert)}"
    assert "ai-pending" not in tags(alert)
    assert not [tag for tag in tags(alert) if tag.startswith("ai-claim:")]
    assert "ai-processing" not in tags(alert)  # written with the claim, removed with it
    comments = iris_get(host, f"/alerts/{alert['alert_id']}/comments/list")
    assert len(comments) == 1, comments
    assert alert["alert_owner_id"] is None
    # The analysis was remembered for dedup in the StateDirectory, the only place the unit may write.
    memory = host.file("/var/lib/socstack-ai-worker/dedup.json")
    assert memory.exists
    assert memory.user == "socstack-ai-worker"
    assert memory.mode == 0o600


def test_worker_logs_go_to_the_journal_without_the_key(host):
    key = host.ansible.get_variables()["molecule_iris_admin_key"]
    with host.sudo():
        journal = host.run("journalctl --no-pager -u 'socstack-ai-worker@*'").stdout
    assert "polling every" in journal
    assert key not in journal


def test_the_role_pulled_the_model_into_ollama(host):
    """prepare started the emulated Ollama without the model; the role pulled it (POST /api/pull)."""
    variables = host.ansible.get_variables()
    result = host.run(f"python3 -c 'import json, urllib.request; print(json.dumps([m[\"name\"] for m in json.load("
                      f"urllib.request.urlopen(\"http://127.0.0.1:{variables['molecule_ollama_port']}/api/tags\"))"
                      f"[\"models\"]]))'")
    assert result.rc == 0, result.stderr
    assert variables["molecule_ollama_model"] in json.loads(result.stdout)


def test_the_connection_check_passes_with_the_installed_settings(host):
    with host.sudo():
        result = host.run(f"/usr/local/lib/socstack-ai-worker/iris-ai-worker --check-connection --env-file {ENV_FILE}")
    assert result.rc == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("ok ") for line in lines), lines
    assert any("over verified TLS and accepts the API key" in line for line in lines)


def test_the_settings_file_passes_the_programs_own_check(host):
    with host.sudo():
        result = host.run(f"/usr/local/lib/socstack-ai-worker/iris-ai-worker --check-options {ENV_FILE}")
    assert result.rc == 0 and result.stdout == "", result.stdout
