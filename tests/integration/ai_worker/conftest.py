"""Fixtures of the AI worker's integration tests (helpers: tests/support/ai_worker.py)."""
import pytest

from tests.emulators.iris import IrisEmulator
from tests.emulators.ollama import OllamaEmulator
from tests.support.ai_worker import AI_MODEL, AiStack


@pytest.fixture
def ai_stack(tmp_path):
    iris = IrisEmulator(admin_api_key="A" * 64).start()
    ollama = OllamaEmulator(models=[AI_MODEL]).start()
    yield AiStack(iris, ollama, tmp_path / "state")
    iris.stop()
    ollama.stop()
