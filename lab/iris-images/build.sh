#!/usr/bin/env bash
# Builds the real DFIR-IRIS 2.4.20 web app image (one image: `app` runs the web app, `worker` the
# Celery worker, as upstream) from the sources in ../shared/iris/, on the host's Docker engine. No
# container registry is used; pip reaches PyPI.
#
#   1. a Debian 11 (bullseye, Python 3.9 as upstream's python:3.9) minbase root file system made with
#      debootstrap and imported (lab/build-images.sh's import_base),
#   2. a throw-away container of it installs the requirements into /opt/venv the way the facts of
#      ../shared/iris/README.md say (splunk-hec from its tarball; the requirements without evtx2splunk
#      plus the pins chardet, idna, semantic-version, python-dotenv, certifi; evtx2splunk --no-deps),
#      copies source/ to /iriswebapp and adds our entry points (entrypoint.sh, wait-for-iriswebapp.sh),
#   3. the container is exported and imported as one layer (vfs engines copy every layer).
#
# The tarballs are read at build time from a temporary directory; nothing of them enters the repo.
# The image is labelled with a hash of its recipe (this directory, the tarballs, the base) and not built
# again while the label matches. Without the sources it stops and says so: the lab has no other app
# image (the IRIS emulator image left the lab with issue 25).
#
# Usage: lab/iris-images/build.sh
# Environment: IRIS_SOURCES (default <repo>/../shared/iris), IRIS_APP_IMAGE (default
#              socstack-lab/iris-app:v2.4.20), LAB_PIP_CACHE (default lab/build/pip-cache), and those
#              of lab/build-images.sh (LAB_MIRROR, LAB_WORKDIR, LAB_MIN_FREE_MB).
set -euo pipefail

iris_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/build-images.sh
. "$iris_dir/../build-images.sh"
repo=$(cd "$iris_dir/../.." && pwd)
sources=${IRIS_SOURCES:-$repo/../shared/iris}
tag=${IRIS_APP_IMAGE:-socstack-lab/iris-app:v2.4.20}
pip_cache=${LAB_PIP_CACHE:-$workdir/pip-cache}
tarball="iris-web-2.4.20-src.tar.gz"
splunk="splunk-hec-src.tar.gz"
# Debian 11 packages: Python 3.9 and venv; curl (wait-for-iriswebapp.sh, health checks); what the
# upstream image adds (p7zip-full, gpg, rsync, postgresql-client for the backups); gcc, libc6-dev and
# python3-dev build pyminizip (no wheel for 3.9 on PyPI) and are purged by install.sh.
bullseye_packages=python3,python3-venv,ca-certificates,curl,p7zip-full,gpg,rsync,postgresql-client
bullseye_packages=$bullseye_packages,gcc,libc6-dev,python3-dev

say() { printf '[iris-image] %s\n' "$*"; }

for file in "$tarball" "$splunk"; do
  [ -r "$sources/$file" ] || die "no DFIR-IRIS sources: $sources/$file is missing. The lab's IRIS app and
  worker are built from ../shared/iris/ (iris-web-2.4.20-src.tar.gz, splunk-hec-src.tar.gz); put them there
  or set IRIS_SOURCES to their folder. There is no other app image in the lab."
done

ensure_engine
base="socstack-lab/bullseye-base:$(base_recipe bullseye "$bullseye_packages")"
recipe=$({ echo "$base"; sha256sum "$sources/$tarball" "$sources/$splunk" | cut -d' ' -f1
           (cd "$iris_dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-16)
current=$(docker image inspect -f '{{ index .Config.Labels "socstack.recipe" }}' "$tag" 2>/dev/null || true)
if [ "$current" = "$recipe" ]; then
  say "$tag is up to date (recipe $recipe)"
  exit 0
fi

start=$(date +%s)
import_base bullseye "$bullseye_packages" "$base"
context=$(mktemp -d "$workdir/iris-context.XXXXXX")
name="socstack-iris-build-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$context"' EXIT
cp "$sources/$tarball" "$sources/$splunk" "$iris_dir/install.sh" "$iris_dir/entrypoint.sh" \
   "$iris_dir/wait-for-iriswebapp.sh" "$context/"
mkdir -p "$pip_cache"
# pip verifies PyPI with the host's CA bundle (a TLS-intercepting proxy's CA is in it); mounted, not copied.
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
ca_args=()
[ -r "$ca_bundle" ] && ca_args=(-v "$ca_bundle:/run/host-ca.pem:ro" -e PIP_CERT=/run/host-ca.pem)
say "installing IRIS 2.4.20 and its requirements into $base (log: $workdir/iris-install.log)"
if ! docker run --name "$name" -v "$context:/src:ro" -v "$pip_cache:/root/.cache/pip" "${ca_args[@]}" \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e PIP_DEFAULT_TIMEOUT=120 "$base" /bin/sh /src/install.sh \
    >"$workdir/iris-install.log" 2>&1; then
  tail -n 25 "$workdir/iris-install.log" >&2
  die "installing IRIS into the image failed (log: $workdir/iris-install.log)"
fi
say "importing $tag as one layer"
docker export "$name" | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PYTHONUNBUFFERED=1 DOCKERIZED=1' \
  --change 'ENV IRIS_RELEASE_URL=http://127.0.0.1:9/' \
  --change 'WORKDIR /iriswebapp' \
  --change 'CMD ["./iris-entrypoint.sh", "iriswebapp"]' \
  --change "LABEL socstack.recipe=$recipe" \
  --change 'LABEL org.opencontainers.image.version=2.4.20' \
  - "$tag" >/dev/null || die "docker import of $tag failed"
say "BUILT $tag in $(( $(date +%s) - start )) s"
