"""Checks of the docker scenario: the docker role alone on Debian 13 (roles/docker/README.md)."""
import json


def test_the_engine_is_enabled_running_and_answers(host):
    service = host.service("docker")
    assert service.is_enabled
    assert service.is_running
    version = host.run("docker version --format '{{json .Server.Version}}'")
    assert version.rc == 0, version.stderr
    assert json.loads(version.stdout)


def test_compose_v2_is_a_cli_plugin(host):
    result = host.run("docker compose version --short")
    assert result.rc == 0, result.stderr
    assert int(result.stdout.strip().lstrip("v").split(".")[0]) >= 2


def test_daemon_json_is_the_defaults_merged_with_the_options(host):
    daemon = host.file("/etc/docker/daemon.json")
    assert (daemon.user, daemon.group, daemon.mode) == ("root", "root", 0o644)
    config = json.loads(daemon.content_string)
    assert config["storage-driver"] == "vfs"
    assert config["log-driver"] == "json-file"
    assert config["log-opts"]["max-size"] == "20m"  # the option wins over the default
    info = host.run("docker info --format '{{json .Driver}}'")
    assert json.loads(info.stdout) == "vfs"  # and the running engine uses it


def test_the_service_environment_drop_in(host):
    result = host.run("systemctl show docker --property=Environment")
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in result.stdout


def test_the_users_are_in_group_docker_and_can_use_the_engine(host):
    assert "docker" in host.user("deploy").groups
    result = host.run("runuser -u deploy -- docker ps --quiet")
    assert result.rc == 0, result.stderr
