"""The entry point: run the worker, or one of the checks the role runs (preflight.py).

    iris-ai-worker                                     run until SIGTERM or SIGINT (settings: the environment)
    iris-ai-worker --check-options FILE                check a settings file (the role's validate step)
    iris-ai-worker --check-connection [--env-file FILE] [--model-may-be-missing]
    iris-ai-worker --pull-model [--env-file FILE]

Exit codes: 0 after a stop request (or a check that passed), 1 a check found problems, 2 a bad
configuration (systemd does not restart it) or command line.
"""
import os
import signal
import sys

from socstack_core.log import Log

from . import preflight
from .iris import ServiceError
from .loop import Worker
from .settings import PROG, ConfigError, load_config

EXIT_CONFIG = 2
USAGE = ("usage: iris-ai-worker [--check-options FILE | --check-connection [--env-file FILE] [--model-may-be-missing]"
         " | --pull-model [--env-file FILE]]")


class UsageError(Exception):
    """The command line is none of the supported ones."""


def parse_args(argv):
    """(mode, env_file or options file, allow_missing_model) of the command line."""
    rest = list(argv)
    if not rest:
        return "run", None, False
    mode = rest.pop(0)
    if mode == "--check-options":
        if len(rest) != 1:
            raise UsageError("--check-options takes one settings file")
        return "check-options", rest[0], False
    if mode not in ("--check-connection", "--pull-model"):
        raise UsageError(f"unknown argument {mode!r}")
    env_file, allow_missing = None, False
    while rest:
        word = rest.pop(0)
        if word == "--env-file" and rest:
            env_file = rest.pop(0)
        elif word == "--model-may-be-missing" and mode == "--check-connection":
            allow_missing = True
        else:
            raise UsageError(f"unexpected argument {word!r} after {mode}")
    return mode[2:], env_file, allow_missing


def main(env=None, argv=None, out=None):
    argv = sys.argv[1:] if argv is None else argv
    out = out or sys.stdout
    try:
        mode, path, allow_missing = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n{USAGE}\n")
        return EXIT_CONFIG
    if mode == "check-options":
        return preflight.check_options(path, out)
    if mode != "run":
        config, failed = preflight.load(path, dict(os.environ if env is None else env), out)
        if failed is not None:
            return failed
        if mode == "check-connection":
            return preflight.check_connection(config, out, allow_missing)
        return preflight.pull_model(config, out)
    return run(env)


def run(env=None):
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
