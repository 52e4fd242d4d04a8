#!/usr/bin/env bash
# A fresh machine runs `make check` with nothing but its distribution's packages: a container from IMAGE
# (default: the lab's Debian 13 image) gets apt's python3 python3-venv make git, a copy of the committed
# tree (git archive HEAD), and runs `make venv` then `make check` as root (make prereqs adds shellcheck and
# openssl with apt). No Docker engine inside (the image-dependent cases skip), no ../shared (its tests skip).
# Prints the time of each step; the container is removed afterwards.
#   lab/fresh-machine.sh [IMAGE] [MAKE TARGET…]
#   lab/fresh-machine.sh socstack-lab/bookworm-systemd check
set -euo pipefail
image=${1:-socstack-lab/trixie-systemd}
shift || true
targets=${*:-check}
root=$(cd "$(dirname "$0")/.." && pwd)
name=socstack-fresh-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

docker run -d --name "$name" --entrypoint sleep "$image" infinity >/dev/null
(cd "$root" && git archive --prefix=repo/ HEAD) | docker exec -i "$name" tar -x -C /root
docker exec "$name" bash -ec "
  step() { local name=\$1 start=\$(date +%s); echo \"==> \$name\"; shift; \"\$@\"; echo \"[fresh] \$name: \$((\$(date +%s) - start)) s\"; }
  . /etc/os-release; echo \"[fresh] \$PRETTY_NAME, image $image\"
  export DEBIAN_FRONTEND=noninteractive
  step 'apt-get install python3 python3-venv make git' \
    sh -c 'apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3 python3-venv make git ca-certificates >/dev/null'
  echo \"[fresh] \$(python3 --version) as python3; others: \$(ls /usr/bin/python3.* 2>/dev/null | tr '\n' ' ')\"
  cd /root/repo
  step 'make venv (uv, .venv)' make --no-print-directory venv
  for target in $targets; do step \"make \$target\" make --no-print-directory \$target; done
"
