#!/usr/bin/env bash
# Loads the IRIS images (built by build.sh on the host engine) into the Docker engine that runs
# inside the container CONTAINER: `docker save | docker exec -i CONTAINER docker load`. Images whose
# recipe label already matches inside are skipped. Prints LOADED <tag> for each image it loads.
#
# Usage: lab/standin-images/load.sh CONTAINER
set -euo pipefail

container=${1:?usage: load.sh CONTAINER}
tags=(socstack-lab/iris-db:standin socstack-lab/iris-rabbitmq:standin socstack-lab/iris-nginx:standin
      "${IRIS_APP_IMAGE:-socstack-lab/iris-app:v2.4.20}")
format='{{ index .Config.Labels "socstack.recipe" }}'

stale=()
for tag in "${tags[@]}"; do
  want=$(docker image inspect -f "$format" "$tag" 2>/dev/null) \
    || { echo "[standin] ERROR: $tag is missing on the host: run lab/standin-images/build.sh" >&2; exit 1; }
  have=$(docker exec "$container" docker image inspect -f "$format" "$tag" 2>/dev/null || true)
  [ "$have" = "$want" ] || stale+=("$tag")
done
[ ${#stale[@]} -gt 0 ] || exit 0
docker save "${stale[@]}" | docker exec -i "$container" docker load >/dev/null
printf 'LOADED %s\n' "${stale[@]}"
