"""Test double of analysisd's queue socket: binds a UNIX datagram socket and records what it gets.

Wazuh's analysisd reads events from /var/ossec/queue/sockets/queue, a UNIX datagram socket
(reference wazuh-4.13.md section 2). This listener binds that path (replacing a stale socket file)
and appends every datagram, as received, as one line to the record file, so that the verifier can
check what the integration sent. Run it as user wazuh, as analysisd's socket belongs to wazuh:
``python3 queue_recorder.py --socket /var/ossec/queue/sockets/queue --record /var/lib/queue-recorder/queue.log``
Standard library only; runs until killed.
"""

import argparse
import contextlib
import os
import socket
import sys

MAX_DATAGRAM = 65536  # OS_MAXSTR: analysisd's limit for one message


def main(argv=None):
    """Bind the socket and record datagrams forever."""
    parser = argparse.ArgumentParser(description="record the datagrams sent to a UNIX datagram socket")
    parser.add_argument("--socket", required=True, help="path to bind")
    parser.add_argument("--record", required=True, help="file that gets one line per datagram")
    args = parser.parse_args(argv)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(args.socket)
    os.chmod(args.socket, 0o660)
    print(f"recording datagrams sent to {args.socket} in {args.record}", flush=True)
    while True:
        data = sock.recv(MAX_DATAGRAM)
        with open(args.record, "ab") as handle:
            handle.write(data.replace(b"\n", b"\\n") + b"\n")


if __name__ == "__main__":
    sys.exit(main())
