"""Client TLS for the host programs: verification on by default, a CA file or the system store.

``client_context`` returns a context whose ``wrap(sock, hostname)`` gives a connection with
``handshake()``, ``write(data)``, ``read(size)`` and ``close()``; every call honours the timeout set
on the plain socket, which is how http.py enforces its deadline.

The context is built on the C layer ``_ssl`` exactly as ``ssl.create_default_context()`` builds
it (PROTOCOL_TLS_CLIENT: certificate and host name checked by OpenSSL, TLS 1.2 at least, Python's
default ciphers; on 3.13 and later also VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN), because
importing the public ``ssl`` module builds dozens of enums and imports ``re``: several milliseconds
on every run of a per-alert program. tests/unit/test_core_tls.py checks that both contexts agree.
Where ``_ssl`` lacks what is used here, the public module is used instead.

System trust: where OpenSSL has a hashed CA directory (Debian, Ubuntu) and SSL_CERT_FILE is not set,
the directory is handed to OpenSSL, which reads one CA file per lookup; parsing the whole bundle
costs ~25 ms per run. SSL_CERT_FILE and SSL_CERT_DIR are honoured as OpenSSL honours them.
"""
import os
import sys

try:
    import _ssl

    _FAST = hasattr(_ssl, "_SSLContext") and hasattr(_ssl._SSLContext, "_wrap_socket")
except ImportError:  # pragma: no cover -- a Python built without OpenSSL
    _ssl = None
    _FAST = False

force_public_module = False  # tests set it to run the public-ssl path


class TlsConfigError(ValueError):
    """The TLS set-up itself is wrong (an unreadable or invalid CA file)."""


def default_verify_paths():
    """(cafile, capath) OpenSSL uses by default, environment applied (as ssl.get_default_verify_paths)."""
    env_file, cafile, env_dir, capath = _ssl.get_default_verify_paths()
    cafile = os.environ.get(env_file, cafile)
    capath = os.environ.get(env_dir, capath)
    return (cafile if cafile and os.path.isfile(cafile) else None,
            capath if capath and os.path.isdir(capath) else None)


def _hashed_dir():
    """OpenSSL's hashed CA directory when it should be used instead of the bundle, else None."""
    if "SSL_CERT_FILE" in os.environ:
        return None
    _cafile, capath = default_verify_paths()
    try:
        return capath if capath and any(name.endswith(".0") for name in os.listdir(capath)) else None
    except OSError:
        return None


class _FastConnection:
    """A TLS connection on _ssl._SSLSocket; the plain socket's timeout bounds every call."""

    def __init__(self, context, sock, hostname):
        self.sock = sock  # _SSLSocket only keeps a weak reference to it
        self.tls = context._wrap_socket(sock, False, hostname)

    def handshake(self):
        self.tls.do_handshake()

    def write(self, data):
        return self.tls.write(data)

    def read(self, size):
        try:
            return self.tls.read(size)
        except (_ssl.SSLZeroReturnError, _ssl.SSLEOFError):
            return b""  # close_notify, or a peer that closed without one: the framing tells

    def close(self):
        self.sock.close()


class _PublicConnection:
    """The same over the public ssl module (fallback)."""

    def __init__(self, context, sock, hostname):
        import socket  # noqa: PLC0415
        import ssl  # noqa: PLC0415

        self._ssl = ssl
        plain = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.tls = context.wrap_socket(plain, server_hostname=hostname, do_handshake_on_connect=False)
        self.sock = self.tls

    def handshake(self):
        self.tls.do_handshake()

    def write(self, data):
        return self.tls.send(data)

    def read(self, size):
        try:
            return self.tls.recv(size)
        except (self._ssl.SSLZeroReturnError, self._ssl.SSLEOFError):
            return b""

    def close(self):
        self.tls.close()


class ClientContext:
    """A verifying (or, when asked, non-verifying) client context; see the module docstring."""

    def __init__(self, ca_file=None, verify=True):
        self.verify = verify
        self.fast = _FAST and not force_public_module
        try:
            self.context = self._fast_context(ca_file, verify) if self.fast else self._public_context(ca_file, verify)
        except (OSError, ValueError) as exc:  # SSLError is an OSError
            where = f"ca_file {ca_file}" if ca_file else "the system CA store"
            raise TlsConfigError(f"cannot load {where}: {getattr(exc, 'strerror', None) or exc}") from None

    @staticmethod
    def _fast_context(ca_file, verify):
        context = _ssl._SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            context.check_hostname = False
            context.verify_mode = _ssl.CERT_NONE
            return context
        if sys.version_info >= (3, 13):
            context.verify_flags |= _ssl.VERIFY_X509_STRICT | _ssl.VERIFY_X509_PARTIAL_CHAIN
        if ca_file:
            context.load_verify_locations(ca_file)
        else:
            hashed = _hashed_dir()
            if hashed:
                context.load_verify_locations(None, hashed)
            else:
                context.set_default_verify_paths()
        return context

    @staticmethod
    def _public_context(ca_file, verify):
        import ssl  # noqa: PLC0415

        if not verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if ca_file:
            return ssl.create_default_context(cafile=ca_file)
        hashed = _hashed_dir()
        return ssl.create_default_context(capath=hashed) if hashed else ssl.create_default_context()

    def wrap(self, sock, hostname):
        """A TLS connection over the connected plain socket sock (a _socket.socket), not yet shaken."""
        return (_FastConnection if self.fast else _PublicConnection)(self.context, sock, hostname)


def client_context(ca_file=None, verify=True):
    """A ClientContext; raises TlsConfigError when the CA file or store cannot be loaded."""
    return ClientContext(ca_file, verify)


def verify_message(exc):
    """OpenSSL's reason when exc is a certificate verification failure, else None."""
    return getattr(exc, "verify_message", None) or None
