#!/usr/bin/env bash
# A fresh machine runs `make check` with nothing but its distribution's packages: a container from IMAGE
# (default: the lab's Debian 13 image) gets apt's python3 python3-venv make git and a fresh clone of HEAD,
# and runs `make venv` then `make check` as root (make prereqs adds shellcheck and openssl with apt). No Docker engine inside (the image-dependent cases skip), no ../shared (its tests skip).
# Prints the time of each step; the container is removed afterwards. The host's own extra certificate
# authorities (/usr/local/share/ca-certificates/*.crt, e.g. of a TLS-inspecting proxy in front of PyPI) are
# given to the container, as that network would give them to any machine on it.
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
clone=$(mktemp -d)
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$clone"' EXIT
git clone -q --no-local "$root" "$clone/repo"  # a fresh clone of HEAD, as a new machine would have it
tar -C "$clone" -c repo | docker exec -i "$name" tar -x -C /root
for ca in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$ca" ] && docker cp "$ca" "$name:/usr/local/share/ca-certificates/"
done
docker exec "$name" bash -ec "
  step() { local name=\$1 start=\$(date +%s); echo \"==> \$name\"; shift; \"\$@\"; echo \"[fresh] \$name: \$((\$(date +%s) - start)) s\"; }
  . /etc/os-release; echo \"[fresh] \$PRETTY_NAME, image $image\"
  export DEBIAN_FRONTEND=noninteractive
  step 'apt-get install python3 python3-venv make git' \
    sh -c 'apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3 python3-venv make git ca-certificates >/dev/null'
  update-ca-certificates >/dev/null 2>&1
  export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
  echo \"[fresh] \$(python3 --version) as python3; others: \$(ls /usr/bin/python3.* 2>/dev/null | tr '\n' ' ')\"
  cd /root/repo
  step 'make venv (uv, .venv)' make --no-print-directory venv
  for target in $targets; do step \"make \$target\" make --no-print-directory \$target; done
"
