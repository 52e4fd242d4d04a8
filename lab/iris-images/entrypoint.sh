#!/bin/sh
# Entry point of the lab's DFIR-IRIS image, called like upstream's iris-entrypoint.sh:
# "iris-worker" runs the Celery worker (with beat), anything else the web app under gunicorn on 8000.
# Unlike upstream's script (which backgrounds the process and loops on sleep), the server replaces this
# shell, so `docker stop` reaches it and a crash stops the container (restart: unless-stopped).
set -eu
cd /iriswebapp
target=${1:-iriswebapp}
echo "Running ${target} ..."
if [ "$target" = iris-worker ]; then
    exec celery -A app.celery worker -E -B -l INFO
fi
exec gunicorn app:app --worker-class eventlet --bind 0.0.0.0:8000 --timeout 180 \
    --worker-connections 1000 --log-level=info
