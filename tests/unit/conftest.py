"""tests/unit holds tests that need no network and no other process: this keeps them that way.

Every unit test runs with socket connections and subprocesses refused, so a test that needs an
emulator or a program run belongs in tests/integration (and fails here, saying so).
"""
import socket
import subprocess

import pytest
from socstack_core import http


class NotAUnitTest(AssertionError):
    """Raised when a unit test reaches for the network or a subprocess."""


def _refuse(what):
    def refuse(*_args, **_kwargs):
        raise NotAUnitTest(f"a unit test tried to {what}; move it to tests/integration")
    return refuse


@pytest.fixture(autouse=True)
def no_sockets_or_subprocesses(monkeypatch):
    for cls in (socket.socket, http.Socket):
        monkeypatch.setattr(cls, "connect", _refuse("open a network connection"))
        monkeypatch.setattr(cls, "bind", _refuse("listen on a socket"))
    monkeypatch.setattr(socket, "create_connection", _refuse("open a network connection"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a subprocess"))
