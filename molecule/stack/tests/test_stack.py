"""End-to-end checks of the stack scenario, per tier."""
import pytest

testinfra_hosts = ["ansible://all"]


def test_systemd_up(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


@pytest.mark.parametrize("expected", [("lab-iris", "trixie"), ("lab-wazuh", "bookworm")])
def test_tiers_on_their_releases(host, expected):
    name, codename = expected
    if host.backend.get_hostname() != name:
        pytest.skip(f"check for {name}")
    assert host.system_info.codename == codename
