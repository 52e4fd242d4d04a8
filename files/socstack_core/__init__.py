"""socstack_core: the standard-library core shared by the host programs in files/.

The programs (the IRIS forwarder, the OpenCTI enrichment, the AI triage worker) run on hosts with
nothing but a Python standard library, and the two integrations are started once per alert, so the
core is written for a short start-up: it imports the C layers of the standard library (``_json``,
``_socket``, ``_ssl``) directly where the public modules would cost milliseconds in enum and regex
set-up, and it falls back to the public modules when a C layer is missing.

Modules, one concern each:

- ``jsonio``: JSON reading and writing, and making any parsed value encodable.
- ``tls``: client TLS contexts (a CA file, the system store, OpenSSL's hashed directory read lazily).
- ``http``: one HTTP/1.1 request with one hard deadline (name lookup, connect, TLS, send, answer).
- ``log``: masking of secrets, and the one-line-per-event log every program writes.
- ``files``: atomic writes that never leave a temp file behind, and ``flock`` locks.
- ``options``: an options file read against a typed schema.
- ``faults``: named points where tests stop or kill a program; inert otherwise.
- ``clock``: step-proof timers (the boot clock, stamped with the boot id), wall values clamped.
- ``iris_client``: one client for the IRIS REST API (request, envelope, failure kinds, masking).
- ``preflight``: the report of a --check-connection program (line format, exit codes).
- ``integratord``: the command line wazuh-integratord gives an integration (every 4.x layout).

Nothing here is imported by the package itself: a program imports only the modules it uses.
"""
