#!/usr/bin/env bash
# Builds the images of the DFIR-IRIS services for the offline molecule scenarios that bring IRIS up, on
# the host's Docker engine: no registry is used (apt inside the build reaches the Debian archive).
#
#   socstack-lab/iris-db:standin        real PostgreSQL, env contract of iriswebapp_db (create_user.sh)
#   socstack-lab/iris-rabbitmq:standin  real RabbitMQ
#   socstack-lab/iris-nginx:standin     real nginx, TLS on 443, env contract of iriswebapp_nginx
#   socstack-lab/iris-app:v2.4.20       the real DFIR-IRIS 2.4.20 app and worker, built from
#                                       ../shared/iris by lab/iris-images/build.sh (stops without it)
#
# Each image is labelled with a hash of its recipe (base image id + build context); an image whose
# label matches is not built again.
#
# Usage: lab/standin-images/build.sh           Environment: STANDIN_BASE (default socstack-lab/trixie-systemd:latest)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
base=${STANDIN_BASE:-socstack-lab/trixie-systemd:latest}
services=(db rabbitmq nginx)

say() { printf '[standin] %s\n' "$*"; }
die() { printf '[standin] ERROR: %s\n' "$*" >&2; exit 1; }

base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) \
  || die "base image $base is missing: run 'make images' (lab/build-images.sh) first"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

for service in "${services[@]}"; do
  context="$workdir/$service"
  cp -a "$here/$service" "$context"
  recipe=$({ echo "$base_id"; (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
           | sha256sum | cut -c1-16)
  tag="socstack-lab/iris-$service:standin"
  current=$(docker image inspect -f '{{ index .Config.Labels "socstack.recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$current" = "$recipe" ]; then
    say "$tag is up to date (recipe $recipe)"
    continue
  fi
  say "building $tag (recipe $recipe)"
  log="$workdir/build-$service.log"
  if ! docker build --build-arg "BASE=$base" --label "socstack.recipe=$recipe" -t "$tag" "$context" \
      >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "docker build of $tag failed"
  fi
  echo "BUILT $tag"
done

"$repo/lab/iris-images/build.sh"
