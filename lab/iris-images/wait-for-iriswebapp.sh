#!/bin/sh
# wait-for-iriswebapp.sh HOST:PORT COMMAND...: waits until the web app answers HTTP at HOST:PORT
# (any status, as upstream's script does with curl), then runs COMMAND.
set -eu
target=$1
shift
sleep 1
until curl -s -o /dev/null "http://$target/"; do
    echo "IRISwebapp is unavailable - sleeping" >&2
    sleep 1
done
echo "IRISwebapp is up - executing command" >&2
exec "$@"
