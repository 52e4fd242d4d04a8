#!/bin/sh
# Entry point of the nginx stand-in: fills the environment into the configuration (only the listed
# variables, so nginx's own $variables stay) and runs nginx in the foreground as www-data.
set -eu
for name in INTERFACE_HTTPS_PORT IRIS_UPSTREAM_SERVER IRIS_UPSTREAM_PORT SERVER_NAME CERT_FILENAME KEY_FILENAME; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || { echo "nginx stand-in: $name is required" >&2; exit 1; }
done
# shellcheck disable=SC2016  # envsubst takes the variable names literally
envsubst '${INTERFACE_HTTPS_PORT} ${IRIS_UPSTREAM_SERVER} ${IRIS_UPSTREAM_PORT} ${SERVER_NAME} ${CERT_FILENAME} ${KEY_FILENAME}' \
    < /etc/nginx/iris/nginx.conf.template > /tmp/nginx.conf
exec nginx -c /tmp/nginx.conf -g 'daemon off;'
