"""Fixtures of the tests against a real Wazuh manager core (tests/support/wazuh.py): one manager per
version, with the collection's rule files installed and analysisd running, for the whole session.

The rule files are installed as the roles install them: files/rules/opencti_rules.xml with the
default rule id base (wazuh_opencti) and the IRIS test rule rendered from the role's template with
the role's defaults (wazuh_iris).
"""
import pytest
import yaml
from jinja2 import Environment, StrictUndefined

from tests.support import wazuh

ROOT = wazuh.REPO


def iris_test_rule_xml(**overrides):
    """roles/wazuh_iris/templates/wazuh_iris_test_rules.xml.j2 with the role's defaults."""
    defaults = yaml.safe_load((ROOT / "roles" / "wazuh_iris" / "defaults" / "main.yml").read_text())
    values = {name: value for name, value in defaults.items() if name.startswith("wazuh_iris_test_rule")}
    template = (ROOT / "roles" / "wazuh_iris" / "templates" / "wazuh_iris_test_rules.xml.j2").read_text()
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(ansible_managed="Ansible managed", **{**values, **overrides})


def skip_unless_available(version):
    reason = wazuh.available(version)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session", params=wazuh.VERSIONS, ids=lambda v: f"wazuh-{v}")
def running_manager(request):
    """A Wazuh manager of each version with the collection's rules and analysisd (logtest) running."""
    skip_unless_available(request.param)
    manager = wazuh.Manager(request.param)
    manager.put("etc/rules/opencti_rules.xml", (ROOT / "files" / "rules" / "opencti_rules.xml").read_text())
    manager.put("etc/decoders/opencti_decoder.xml", (ROOT / "files" / "decoders" / "opencti_decoder.xml").read_text())
    manager.put("etc/rules/wazuh_iris_test_rules.xml", iris_test_rule_xml())
    try:
        yield manager.start("wazuh-analysisd", ready="queue/sockets/logtest")
    finally:
        manager.close()


@pytest.fixture(params=wazuh.VERSIONS, ids=lambda v: f"wazuh-{v}")
def manager(request):
    """A fresh copy of a Wazuh manager of each version, no daemon running."""
    skip_unless_available(request.param)
    manager = wazuh.Manager(request.param)
    yield manager
    manager.close()
