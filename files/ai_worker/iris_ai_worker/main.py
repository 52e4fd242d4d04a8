"""The entry point: read the settings, check Ollama once, run until SIGTERM or SIGINT.

Exit codes: 0 after a stop request, 2 for a bad configuration (systemd does not restart it).
"""
import signal

from socstack_core.log import Log

from .iris import ServiceError
from .loop import Worker
from .settings import PROG, ConfigError, load_config

EXIT_CONFIG = 2


def main(env=None):
    try:
        config = load_config(env)
    except ConfigError as exc:
        Log(PROG).error(f"configuration error: {exc}")  # the reason never holds the key
        return EXIT_CONFIG
    worker = Worker.from_config(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: worker.request_stop())
    try:
        if not worker.ollama.has_model():
            worker.log.warning(f"model {config.ollama_model} is not pulled on {config.ollama_url}: alerts stay "
                               "ai-pending until it is")
    except ServiceError as exc:
        worker.log.warning(f"cannot list Ollama models yet: {exc}")
    worker.run_forever()
    return 0
