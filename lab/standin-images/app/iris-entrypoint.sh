#!/bin/sh
# Entry point of the app stand-in, called like the real one: "iriswebapp" serves the IRIS API emulator
# on port 8000 (state kept in the server_data volume); "iris-worker" idles, as there is no Celery here.
set -eu
case "${1:-iriswebapp}" in
    iris-worker)
        trap 'exit 0' TERM INT
        while :; do sleep 5 & wait $!; done
        ;;
    *)
        exec python3 /iriswebapp/iris_emulator.py --host 0.0.0.0 --port 8000 \
            --state-file /home/iris/server_data/iris-emulator-state.json
        ;;
esac
