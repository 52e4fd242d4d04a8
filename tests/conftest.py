"""Shared pytest configuration for socstack.wazuh_iris.

Fixtures that belong to one component live beside that component's tests; this file only holds
what every test area needs.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Host programs in files/ (the forwarder's module in files/integrations, the AI worker's package in
# files/ai_worker) and the emulators in tests/
# are imported directly by the tests.
for extra in (ROOT, ROOT / "files", ROOT / "files" / "integrations", ROOT / "files" / "ai_worker"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

SHARED = Path(os.environ.get("SOCSTACK_SHARED", ROOT.parent / "shared"))

try:  # generated fault schedules (requirements/dev.txt pins hypothesis); reproducible, no database in the repo
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

    hypothesis_settings.register_profile("socstack", derandomize=True, database=None, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
    hypothesis_settings.load_profile("socstack")
except ImportError:  # pragma: no cover - only the generated suites need it
    pass


@pytest.fixture(scope="session")
def shared_reference():
    """Path of ../shared/reference; tests that need it skip when the folder is absent."""
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"reference material not found at {ref} (it ships beside the repo, not in it)")
    return ref


# --- DFIR-IRIS emulator (tests/emulators/iris.py) -------------------------------------------------------
IRIS_ADMIN_KEY = "emulated-iris-admin-key-" + "0123456789abcdef" * 2 + "01234567"  # 64 characters


@pytest.fixture
def iris_admin_key():
    """API key of the emulator's first-boot administrator (user id 1)."""
    return IRIS_ADMIN_KEY


def pytest_addoption(parser):
    parser.addoption(
        "--real-iris", action="store_true", default=False,
        help="also run the tests that need a real DFIR-IRIS 2.4.20 (started once per session from the lab's "
             "app image, socstack-lab/iris-app:v2.4.20, on the host's Docker engine; tests/support/real_iris.py)",
    )


@pytest.fixture(scope="session")
def real_iris(request):
    """A real DFIR-IRIS 2.4.20 (tests/support/real_iris.py), started once per session with IRIS_ADMIN_KEY as
    its administrator's key; skips unless pytest runs with --real-iris and the lab images are there."""
    if not request.config.getoption("--real-iris"):
        pytest.skip("needs a real IRIS: run pytest with --real-iris (lab images from lab/standin-images/build.sh)")
    from tests.support.real_iris import RealIris, Unavailable

    server = RealIris(IRIS_ADMIN_KEY)
    try:
        server.start()
    except Unavailable as why:
        pytest.skip(f"no real IRIS: {why}")
    yield server
    server.stop()


@pytest.fixture
def iris_emulator(iris_admin_key):
    """A started DFIR-IRIS 2.4.20 emulator in its first-boot state, stopped after the test."""
    from tests.emulators.iris import IrisEmulator

    emulator = IrisEmulator(admin_api_key=iris_admin_key).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA) made with the openssl CLI: (cert, key)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 signed by it (ca.pem, srv.pem, srv.key), made with the
    openssl CLI by the benchmark's recipe, with the extensions Python 3.13's strict X.509 checks want."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is needed to make test certificates")
    from tests.bench.bench_forwarder import make_certificates

    folder = tmp_path_factory.mktemp("ca")
    make_certificates(folder)
    return folder


@pytest.fixture(scope="session")
def collection_root(tmp_path_factory):
    """A tmp tree ``<tmp>/ansible_collections/socstack/wazuh_iris -> repo`` put on sys.path; returns ``<tmp>``."""
    base = tmp_path_factory.mktemp("collections")
    namespace = base / "ansible_collections" / "socstack"
    namespace.mkdir(parents=True)
    (namespace / "wazuh_iris").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(base))
    yield base
    sys.path.remove(str(base))


# --- Generated fault schedules (Hypothesis) -------------------------------------------------------------
# One profile for every generated suite: derandomized (the same examples on every run, so CI is
# reproducible), no example database written into the repository, no per-example deadline (a run talks
# to an emulator over 127.0.0.1). SOCSTACK_FAULT_EXAMPLES raises the number of examples for a deeper
# search (e.g. SOCSTACK_FAULT_EXAMPLES=500).
try:
    from hypothesis import HealthCheck, settings

    FAULT_EXAMPLES = int(os.environ.get("SOCSTACK_FAULT_EXAMPLES", "0") or 0)
    settings.register_profile(
        "socstack-faults", derandomize=True, database=None, deadline=None,
        print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.filter_too_much])
except ImportError:  # pragma: no cover -- hypothesis is in requirements/dev.txt
    FAULT_EXAMPLES = 0
