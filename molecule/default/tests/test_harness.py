"""Checks that the lab harness gives a real systemd host on both images."""


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_release_matches_image(host):
    codename = host.system_info.codename
    name = host.backend.get_hostname()
    assert codename in name, f"{name} runs {codename}"


def test_package_installed(host):
    assert host.package("jq").is_installed
    assert host.run("jq -n 1+1").stdout.strip() == "2"


def test_service_running_and_enabled(host):
    svc = host.service("harness-probe.service")
    assert svc.is_running
    assert svc.is_enabled
