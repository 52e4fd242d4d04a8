"""Fixtures for the unit tests: the collection importable as ``ansible_collections.socstack.wazuh_iris``."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
