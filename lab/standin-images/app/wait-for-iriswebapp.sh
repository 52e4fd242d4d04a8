#!/bin/sh
# Waits until HOST:PORT ($1) accepts a TCP connection, then runs the rest of the arguments.
set -eu
target=$1
shift
until python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 2).close()' "$target" 2>/dev/null; do
    echo "waiting for $target" >&2
    sleep 1
done
exec "$@"
