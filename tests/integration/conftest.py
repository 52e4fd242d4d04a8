"""Fixtures of the integration tests: the forwarder's stand-in Wazuh home against the IRIS emulator."""
import sys

import pytest

from tests.bench.bench_forwarder import install
from tests.conftest import IRIS_ADMIN_KEY
from tests.emulators.iris import IrisEmulator
from tests.support.forwarder import Manager


@pytest.fixture
def emu(iris_emulator):
    """The shared IRIS emulator (tests/conftest.py), under this module's short name."""
    return iris_emulator


@pytest.fixture(scope="module")
def iris(collection_root):
    """plugins/module_utils/iris.py (the IRIS client, the modules' base), imported through the collection path."""
    from ansible_collections.socstack.wazuh_iris.plugins.module_utils import iris as module

    return module


@pytest.fixture
def manager(tmp_path, emu):
    _user_id, api_key = emu.add_user("wazuh-forwarder", groups=["Analysts"], customers=["IrisInitialClient"])
    return Manager(tmp_path / "ossec", emu, api_key)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """The launcher installed as the role installs it, with this interpreter in its shebang."""
    return install(tmp_path_factory.mktemp("ossec") / "integrations", sys.executable)


@pytest.fixture
def tls_manager(tmp_path, certificates):
    """A stand-in Wazuh home against an emulator serving TLS with the test CA's server certificate."""
    emulator = IrisEmulator(admin_api_key=IRIS_ADMIN_KEY, tls_cert=str(certificates / "srv.pem"),
                            tls_key=str(certificates / "srv.key")).start()
    _user_id, api_key = emulator.add_user("wazuh-forwarder", groups=["Analysts"], customers=["IrisInitialClient"])
    yield Manager(tmp_path / "ossec", emulator, api_key)
    emulator.stop()
