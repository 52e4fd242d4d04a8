"""Fixtures of the OpenCTI enrichment's integration tests: the emulator, the queue socket and one run's files.

One harness (tests/support/opencti.py) for both kinds of run: the program called in this process
(opencti_run.run) and the program started by the integratord emulator (test_opencti_integratord.py),
which reads its events from the same QueueRecorder.
"""
import pytest

from tests.emulators.opencti import OpenCTIEmulator
from tests.support.opencti import OPENCTI_TOKEN, OpenctiRun, QueueRecorder


@pytest.fixture
def opencti_token():
    """The API token the emulator accepts."""
    return OPENCTI_TOKEN


@pytest.fixture(scope="module")
def opencti_emulator_server():
    """One OpenCTI emulator (token OPENCTI_TOKEN) per test module."""
    emulator = OpenCTIEmulator(token=OPENCTI_TOKEN).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def opencti_emulator(opencti_emulator_server):
    """The module's OpenCTI emulator, emptied and in its default mode for each test."""
    opencti_emulator_server.reset()
    return opencti_emulator_server


@pytest.fixture
def opencti_queue():
    """A QueueRecorder, closed after the test."""
    recorder = QueueRecorder()
    yield recorder
    recorder.close()


@pytest.fixture
def opencti_run(opencti_emulator, opencti_queue):
    """An OpenctiRun against the OpenCTI emulator, its events on opencti_queue."""
    return OpenctiRun(opencti_emulator, opencti_queue)
