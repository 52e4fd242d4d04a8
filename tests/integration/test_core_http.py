"""The shared transport (files/socstack_core/http.py and tls.py) against real servers on 127.0.0.1.

Each server mode copies a way real HTTP servers and proxies answer: HTTP/1.0 read-to-close (old proxies),
``Connection: close`` with Content-Length, keep-alive that ignores the client's ``Connection: close``,
chunked keep-alive (gunicorn, nginx), TLS peers that close without close_notify, a server that trickles
one byte at a time, and one that accepts and never answers. The deadline is asserted as a bound with a
wide margin: the test fails only when the client keeps going long past its deadline.
"""
import socket
import ssl
import threading
import time

import pytest
from socstack_core import http, tls

BODY = b'{"status":"success","message":"","data":[]}'
ANSWERS = {
    "http10": b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY,
    "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "keepalive": b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % 10 + BODY[:10] + b"\r\n" + b"%x\r\n" % (len(BODY) - 10) + BODY[10:] + b"\r\n0\r\n\r\n",
}


class Server:
    """A raw HTTP server on 127.0.0.1 answering every request in one mode (see the module docstring)."""

    def __init__(self, mode, tls_context=None):
        self.mode = mode
        self.tls_context = tls_context
        self.stop = threading.Event()
        self.requests = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"{'https' if self.tls_context else 'http'}://127.0.0.1:{self.port}"

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _address = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(30)
            if self.tls_context is not None:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests.append(request)
            if self.mode == "silent":
                self.stop.wait(60)
            elif self.mode == "trickle":
                for byte in ANSWERS["close"]:
                    conn.sendall(bytes([byte]))
                    if self.stop.wait(0.05):
                        return
                self.stop.wait(60)
            else:
                conn.sendall(ANSWERS[self.mode])
                if self.mode in ("keepalive", "chunked"):
                    self.stop.wait(60)  # keeps the connection open: the client must stop at the framing
        except OSError:
            return
        finally:
            conn.close()  # an SSLSocket closes without close_notify, as many TLS servers do

    def close(self):
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    servers = []

    def start(mode, tls_context=None):
        servers.append(Server(mode, tls_context))
        return servers[-1]
    yield start
    for each in servers:
        each.close()


@pytest.mark.parametrize("mode", ["http10", "close", "keepalive", "chunked"])
def test_every_framing_is_read_and_the_call_returns_at_once(server, mode):
    srv = server(mode)
    started = time.monotonic()
    answer = http.request(http.Endpoint(srv.url), "POST", "/x?y=1", headers={"Authorization": "Bearer k"},
                          body=b"{}", timeout=20)
    assert (answer.status, answer.body) == (200, BODY)
    assert time.monotonic() - started < 10  # not waiting for a keep-alive server to close
    (request,) = srv.requests
    assert request.startswith(b"POST /x?y=1 HTTP/1.1\r\n")
    assert b"\r\nConnection: close\r\n" in request
    assert b"\r\nContent-Length: 2\r\n" in request


@pytest.mark.parametrize("public", [False, True], ids=["_ssl", "ssl-module"])
@pytest.mark.parametrize("mode", ["http10", "keepalive", "chunked"])
def test_tls_with_the_ca_file_and_every_framing(server, certificates, mode, public, monkeypatch):
    monkeypatch.setattr(tls, "force_public_module", public)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificates / "srv.pem"), str(certificates / "srv.key"))
    srv = server(mode, context)
    endpoint = http.Endpoint(srv.url, ca_file=str(certificates / "ca.pem"))
    assert http.request(endpoint, "GET", "/", timeout=20).body == BODY
    with pytest.raises(http.TransportError) as raised:  # the system store does not know the test CA
        http.request(http.Endpoint(srv.url), "GET", "/", timeout=20)
    assert raised.value.tls_verify
    assert not raised.value.sent


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_one_deadline_bounds_the_whole_exchange(server, mode):
    """A server trickling one byte every 50 ms would keep a per-read timeout alive for ever."""
    srv = server(mode)
    started = time.monotonic()
    with pytest.raises(http.TransportError) as raised:
        http.request(http.Endpoint(srv.url), "GET", "/", timeout=1)
    elapsed = time.monotonic() - started
    assert raised.value.timeout and raised.value.sent
    assert elapsed < 6, f"the 1 s deadline let the call run {elapsed:.1f} s"


def test_a_refused_connection_is_marked_as_such_and_nothing_was_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(http.TransportError) as raised:
        http.request(http.Endpoint(f"http://127.0.0.1:{port}"), "GET", "/", timeout=5)
    assert raised.value.refused and not raised.value.sent


def test_a_name_is_resolved_within_the_deadline(server):
    srv = server("close")
    assert http.request(http.Endpoint(f"http://localhost:{srv.port}"), "GET", "/", timeout=10).status == 200


def test_the_deadline_caps_the_timeout(server):
    srv = server("silent")
    started = time.monotonic()
    with pytest.raises(http.TransportError):
        http.request(http.Endpoint(srv.url), "GET", "/", timeout=30, deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 6
