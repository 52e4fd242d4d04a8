#!/usr/bin/env bash
# Builds the offline container lab's images: no registry is used.
#
#   1. makes sure a Docker engine answers (installs Debian's docker.io and starts dockerd when none
#      does; a running engine is left alone),
#   2. builds a minimal Debian root file system per release with debootstrap and imports it,
#   3. builds a systemd image on top (lab/Dockerfile.systemd).
#
# Images are tagged socstack-lab/<release>-systemd:latest and labelled with a hash of their
# recipe; an image whose label matches the current recipe is not built again.
#
# Usage: lab/build-images.sh [release ...]      (default: bookworm trixie)
# Sourced (`. lab/build-images.sh`), it only defines its functions (lab/iris-images/build.sh reuses
# ensure_engine and import_base).
# Environment: LAB_MIRROR (Debian mirror; default: the one apt uses here),
#              LAB_WORKDIR (scratch space; default lab/build), LAB_MIN_FREE_MB (default 3000).
set -euo pipefail

lab_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
workdir=${LAB_WORKDIR:-$lab_dir/build}
min_free_mb=${LAB_MIN_FREE_MB:-3000}
# Packages a systemd test host needs (README.md, "Lab containers"): systemd as PID 1, python for
# Ansible, sudo, ss (iproute2) and ps (procps) for testinfra, CA certificates for TLS checks.
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg

say() { printf '[lab] %s\n' "$*"; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (run as root or with sudo)"
}

apt_install() {
  need_root "installing $*"
  say "installing Debian packages: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$workdir/apt.log" 2>&1; then
    apt-get update -q >>"$workdir/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$workdir/apt.log" 2>&1 \
      || die "could not install $* (see $workdir/apt.log)"
  fi
}

ensure_engine() {
  if timeout 20 docker info >/dev/null 2>&1; then
    say "Docker engine answers; leaving it as it is"
    return
  fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  command -v docker >/dev/null 2>&1 || die "docker CLI missing after installing docker.io"
  need_root "starting dockerd"
  say "starting dockerd (log: $workdir/dockerd.log)"
  nohup dockerd >"$workdir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && { say "dockerd is up"; return; }
    sleep 1
  done
  tail -n 20 "$workdir/dockerd.log" >&2 || true
  die "dockerd did not start within 60 s (last lines of $workdir/dockerd.log above)"
}

check_disk() {
  local free_mb
  free_mb=$(df -Pm "$workdir" | awk 'NR==2 {print $4}')
  [ "${free_mb:-0}" -ge "$min_free_mb" ] \
    || die "only ${free_mb} MB free under $workdir; the lab needs ${min_free_mb} MB (set LAB_MIN_FREE_MB to override)"
}

default_mirror() {
  local uri
  uri=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list 2>/dev/null | grep -v security | head -n 1 \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}')
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

base_recipe() {  # base_recipe RELEASE [PACKAGES]: hash of what decides a base root file system's content
  printf '%s\n' "$1" "${2:-$packages}" | sha256sum | cut -c1-16
}

image_recipe() {  # hash of the base recipe plus the systemd layer's Dockerfile
  { printf '%s\n' "$(base_recipe "$1")"; cat "$lab_dir/Dockerfile.systemd"; } | sha256sum | cut -c1-16
}

# import_base RELEASE PACKAGES TAG: unless TAG exists, debootstrap a minbase RELEASE with PACKAGES
# (comma-separated) from $mirror and import it as TAG.
import_base() {
  local release=$1 include=$2 base=$3 rootfs
  docker image inspect "$base" >/dev/null 2>&1 && return
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  [ -e "/usr/share/debootstrap/scripts/$release" ] \
    || die "this debootstrap does not know '$release' (upgrade debootstrap)"
  check_disk
  rootfs="$workdir/rootfs-$release"
  rm -rf "$rootfs"
  say "debootstrap $release from $mirror (about 1 minute)"
  if ! debootstrap --variant=minbase --include="$include" "$release" "$rootfs" "$mirror" \
      >"$workdir/debootstrap-$release.log" 2>&1; then
    tail -n 15 "$workdir/debootstrap-$release.log" >&2 || true
    die "debootstrap $release failed (log: $workdir/debootstrap-$release.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  say "importing $base"
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null || die "docker import of $release failed"
  rm -rf "$rootfs"
}

build_release() {
  local release=$1 recipe tag base current
  recipe=$(image_recipe "$release")
  tag="socstack-lab/${release}-systemd:latest"
  base="socstack-lab/${release}-base:$(base_recipe "$release")"
  current=$(docker image inspect -f '{{ index .Config.Labels "socstack.recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$current" = "$recipe" ]; then
    say "$tag is up to date (recipe $recipe); skipping"
    return
  fi
  import_base "$release" "$packages" "$base"
  say "building $tag"
  docker build -q -f "$lab_dir/Dockerfile.systemd" --build-arg "BASE=$base" \
    --label "socstack.recipe=$recipe" -t "$tag" "$lab_dir" >"$workdir/build-$release.log" 2>&1 \
    || { tail -n 15 "$workdir/build-$release.log" >&2; die "docker build of $tag failed"; }
}

mkdir -p "$workdir"
mirror=${LAB_MIRROR:-$(default_mirror)}

main() {
  local releases=("$@") release
  [ ${#releases[@]} -gt 0 ] || releases=(bookworm trixie)
  ensure_engine
  for release in "${releases[@]}"; do
    build_release "$release"
  done
  say "images ready: $(docker images --format '{{.Repository}}:{{.Tag}}' 'socstack-lab/*-systemd' | tr '\n' ' ')"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
