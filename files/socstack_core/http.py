"""One HTTP/1.1 request with one hard deadline: the transport of every host program.

``request(endpoint, method, target, ...)`` opens a connection, sends one request with
``Connection: close`` and reads one answer. A single deadline covers everything: the name lookup
(in a helper thread, because the resolver has no timeout of its own), connect, the TLS handshake,
sending, the status line, the headers and the body. Every blocking call gets what is left of it, and
a server that trickles one byte at a time is cut off when it runs out, not after a read timeout per
byte. Answers may come as HTTP/1.0 or 1.1, with Content-Length, chunked, or read until the server
closes; a server that keeps the connection alive despite ``Connection: close`` is read only as far
as its framing says. No cookies are kept, no redirect is followed.

The TLS layer (socstack_core.tls, and with it libssl) is loaded only when an https endpoint first
connects: a plain-http run never pays for it.

Errors are ``TransportError``; its ``sent`` says whether any byte of the request may have reached
the server (then the server may have acted on it), ``timeout`` whether the deadline ran out, and
``refused`` whether the connection was refused or reset before anything was sent (worth an
immediate retry).
"""
import _socket
import time

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
USER_AGENT = "socstack"


class TransportError(Exception):
    """No usable answer: see the module docstring for the flags."""

    def __init__(self, reason, *, sent=False, timeout=False, refused=False, tls_verify=None, config=False):
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.timeout = timeout
        self.refused = refused
        self.tls_verify = tls_verify  # OpenSSL's reason when the server certificate was refused
        self.config = config  # our own set-up is wrong (CA file): retrying will not help


class Response:
    """status (int), headers (dict, lower-case names), body (bytes)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


class Endpoint:
    """Where requests go: scheme, host, port and path prefix of a base URL, plus its TLS context."""

    def __init__(self, url, *, ca_file=None, verify_tls=True, strip_suffix=""):
        self.scheme, self.host, self.port, self.base_path = split_url(url, strip_suffix)
        # A non-ASCII host is sent in its IDNA form; converting it imports the idna codec, so only then.
        self.host_ascii = self.host if self.host.isascii() else self.host.encode("idna").decode("ascii")
        self.url = f"{self.scheme}://{self.host}:{self.port}{self.base_path}"
        self.ca_file = ca_file
        self.verify_tls = verify_tls
        self._tls = None

    def tls_context(self):
        """The endpoint's TLS context, made on first use. Raises TransportError(config=True)."""
        if self._tls is None:
            from . import tls as _tls  # noqa: PLC0415 -- loads libssl: only for an https endpoint, when used

            try:
                self._tls = _tls.client_context(self.ca_file, self.verify_tls)
            except _tls.TlsConfigError as exc:
                raise TransportError(str(exc), config=True) from None
        return self._tls


def split_url(url, strip_suffix=""):
    """'https://iris:9094/x/alerts/add' -> ('https', 'iris', 9094, '/x') with strip_suffix '/alerts/add'.

    Raises ValueError for anything but an http(s) URL with a host (and no user:password@).
    """
    url = str(url).strip()
    if any(char.isspace() for char in url):
        raise ValueError("the URL contains white space")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    netloc, slash, path = rest.partition("/")
    path = (slash + path).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if strip_suffix and path.endswith(strip_suffix):
        path = path[: -len(strip_suffix)]
    if "@" in netloc or not netloc:
        raise ValueError("the URL must name a host (and no user:password@)")
    port = 443 if scheme == "https" else 80
    host = netloc
    if netloc.startswith("["):
        host, _bracket, tail = netloc[1:].partition("]")
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise ValueError("bad port in the URL")
            port = int(tail[1:])
    elif ":" in netloc:
        host, _colon, port_text = netloc.rpartition(":")
        if not port_text.isdigit():
            raise ValueError("bad port in the URL")
        port = int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError("bad host or port in the URL")
    return scheme, host, port, path


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text):
    """Percent-encode text for a URL query value or path segment."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in str(text).encode("utf-8"))


# ------------------------------------------------------------------------------------ connecting
class Socket(_socket.socket):
    """_socket.socket that can be weakly referenced, which _ssl needs (socket.socket is heavier to import)."""

    __slots__ = ("__weakref__",)


def _numeric(host):
    """[(family, address)] when host is an IP literal, else None."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return [family]
        except OSError:
            continue
    return None


def _resolve(host, port, end):
    """getaddrinfo results for host, within the deadline (the resolver runs in a helper thread)."""
    families = _numeric(host)
    if families is not None:
        return [(families[0], _socket.SOCK_STREAM, 0, "", (host, port))]
    import _thread  # noqa: PLC0415 -- only for names

    done = _thread.allocate_lock()
    done.acquire()
    result = []

    def lookup():
        try:
            result.append(_socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)
        finally:
            done.release()

    _thread.start_new_thread(lookup, ())
    remaining = end - time.monotonic()
    if remaining <= 0 or not done.acquire(True, remaining):
        raise TransportError(f"name lookup of {host} took longer than the deadline", timeout=True)
    if isinstance(result[0], OSError):
        raise TransportError(f"cannot resolve {host}: {result[0].strerror or result[0]}")
    return result[0]


def _remaining(end, what):
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"deadline reached {what}")
    return remaining


def _connect(host, port, end):
    """A connected _socket.socket; the last connect error when every address failed."""
    last = None
    for family, kind, proto, _name, address in _resolve(host, port, end):
        sock = Socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(end, "while connecting"))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if isinstance(exc, TimeoutError):
                break
    raise last or OSError("no address to connect to")


class _Plain:
    """The plain-socket connection, with the same calls as the TLS ones."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        return self.sock.send(data)

    def read(self, size):
        return self.sock.recv(size)

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------------------- reading
class _Reader:
    """Buffered reads that respect the deadline and the size limit."""

    def __init__(self, conn, end, limit):
        self.conn = conn
        self.end = end
        self.limit = limit
        self.buffer = b""
        self.total = 0

    def _fill(self):
        self.conn.sock.settimeout(_remaining(self.end, "while reading the answer"))
        chunk = self.conn.read(65536)
        self.total += len(chunk)
        if self.total > self.limit:
            raise OSError(f"answer larger than {self.limit} bytes")
        self.buffer += chunk
        return bool(chunk)

    def line(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > 65536:
                raise OSError("header line too long")
            if not self._fill():
                raise ConnectionError("connection closed in the middle of the answer")
        line, _lf, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def exact(self, size):
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of the answer")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self):
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def _read_headers(reader):
    headers = {}
    while True:
        line = reader.line().decode("latin-1")
        if not line:
            return headers
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()


def read_response(reader, method="GET"):
    """One answer: (status, headers, body), framed by chunked, Content-Length or the server closing."""
    while True:
        status_line = reader.line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            # 12 characters at most: this text is cut before any masking, so it must be shorter than any key
            raise ConnectionError(f"not an HTTP answer: {status_line[:12]!r}")
        status = int(parts[1])
        headers = _read_headers(reader)
        if status >= 200:
            break  # 1xx answers are followed by the real one
    if method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = []
        while True:
            size_text = reader.line().split(b";", 1)[0].strip()
            try:
                size = int(size_text or b"0", 16)
            except ValueError:
                raise ConnectionError("bad chunk size in the answer") from None
            if size == 0:
                _read_headers(reader)  # trailers
                return status, headers, b"".join(body)
            body.append(reader.exact(size))
            reader.line()
    if "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise ConnectionError("bad Content-Length in the answer")
        return status, headers, reader.exact(int(length))
    return status, headers, reader.rest()


# -------------------------------------------------------------------------------------- the call
def request(endpoint, method, target, *, headers=None, body=None, timeout=10.0, deadline=None,
            max_bytes=MAX_RESPONSE_BYTES, on_sending=None):
    """Send one request to endpoint and return its Response. Raises TransportError.

    target is the path below the endpoint's prefix (with its query). timeout bounds the whole
    exchange; deadline (a time.monotonic() value) caps it further. on_sending() is called just
    before the first byte goes out (fault points and tests use it).
    """
    started = time.monotonic()
    end = started + timeout if deadline is None else min(started + timeout, deadline)
    host = endpoint.host_ascii
    host_header = f"[{host}]" if ":" in host else host
    headers = dict(headers or {})
    headers.setdefault("User-Agent", USER_AGENT)
    lines = [f"{method} {endpoint.base_path}{target} HTTP/1.1", f"Host: {host_header}:{endpoint.port}",
             "Connection: close"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise TransportError(f"header {name} contains a line break", config=True)
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + (body or b"")
    sent = False
    conn = None
    try:
        if end <= started:
            raise TimeoutError("the deadline had already passed")
        sock = _connect(host, endpoint.port, end)
        conn = _Plain(sock)
        if endpoint.scheme == "https":
            conn = endpoint.tls_context().wrap(sock, host)
            conn.sock.settimeout(_remaining(end, "during the TLS handshake"))
            conn.handshake()
        if on_sending is not None:
            on_sending()
        sent = True  # from here on, the server may act on the request even if no answer comes
        view = memoryview(data)
        while view:
            conn.sock.settimeout(_remaining(end, "while sending"))
            view = view[conn.write(view):]
        status, answer_headers, answer = read_response(_Reader(conn, end, max_bytes), method)
        return Response(status, answer_headers, answer)
    except TransportError as exc:
        exc.sent = exc.sent or sent
        raise
    except (OSError, ValueError) as exc:
        raise _transport_error(exc, endpoint, sent, started, end) from None
    finally:
        if conn is not None:
            conn.close()


def _transport_error(exc, endpoint, sent, started, end):
    verify = getattr(exc, "verify_message", None) or None  # OpenSSL's reason of a refused certificate
    if verify:
        return TransportError(f"{endpoint.url}: TLS certificate verification failed: {verify}", tls_verify=verify)
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return TransportError(f"{endpoint.url}: no complete answer within {end - started:.1f} s", sent=sent,
                              timeout=True)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    refused = isinstance(exc, (ConnectionRefusedError, ConnectionResetError)) and not sent
    return TransportError(f"{endpoint.url}: {reason}", sent=sent, refused=refused)
