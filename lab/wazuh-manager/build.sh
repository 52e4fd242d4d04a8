#!/usr/bin/env bash
# A real Wazuh manager core for the lab, built from a source tarball in ../shared/wazuh/ (never from
# a copy in this repository): analysisd (with logtest), integratord, logcollector, modulesd, execd,
# monitord. Not wazuh-db, remoted, the API or the embedded Python: they do not build offline (see
# ../shared/wazuh/README.md, the facts this script follows).
#
#   lab/wazuh-manager/build.sh compile VERSION      compile on this host (Debian/Ubuntu, root for apt)
#                                                   into .cache/wazuh/src/wazuh-VERSION (cached)
#   lab/wazuh-manager/build.sh install SRC PREFIX   minimal install of a compiled tree into PREFIX
#                                                   (a directory ending in var/ossec; root: owners)
#   lab/wazuh-manager/build.sh host VERSION         compile + install into .cache/wazuh/VERSION/var/ossec
#                                                   (what the pytest rule and -t tests use)
#   lab/wazuh-manager/build.sh image VERSION        the lab image socstack-lab/wazuh-manager:VERSION
#                                                   (bookworm systemd image + the compiled tree,
#                                                   installed in /var/ossec, unit wazuh-manager)
#
# Everything is cached by a recipe hash (tarball sha256 + this script + the Dockerfile): a second
# run with the same recipe does nothing. Environment: WAZUH_SRC_DIR (default ../shared/wazuh next to
# the repository), WAZUH_CACHE (default: as root /var/cache/socstack-lab/wazuh, shared by every clone on
# the machine like the lab images in Docker's storage - the recipe hash and the lock make that safe -
# else .cache/wazuh of the repository).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src_dir=${WAZUH_SRC_DIR:-$repo/../shared/wazuh}
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/socstack-lab/wazuh; else default_cache=$repo/.cache/wazuh; fi
cache=${WAZUH_CACHE:-$default_cache}
# Debian packages of the build (../shared/wazuh/README.md section 2) and of the run.
build_pkgs=(build-essential libssl-dev libcjson-dev libcurl4-openssl-dev libyaml-dev libsqlite3-dev zlib1g-dev
  libpcre2-dev libmsgpack-dev libbz2-dev libjemalloc-dev)
# The daemons this core has; wazuh-control starts these (its stock list names daemons not built here).
daemons="wazuh-modulesd wazuh-monitord wazuh-logcollector wazuh-analysisd wazuh-execd wazuh-integratord"

say() { printf '[wazuh] %s\n' "$*"; }
die() { printf '[wazuh] ERROR: %s\n' "$*" >&2; exit 1; }

tarball() {
  local file="$src_dir/wazuh-$1-src-min.tar.gz"
  [ -f "$file" ] || die "no source tarball $file (the lab's Wazuh manager is built from ../shared/wazuh/;" \
    "set WAZUH_SRC_DIR to the folder that holds wazuh-$1-src-min.tar.gz)"
  printf '%s' "$file"
}

check_sum() {  # the tarball against SHA256SUMS beside it
  local file=$1
  [ -f "$src_dir/SHA256SUMS" ] || return 0
  (cd "$src_dir" && grep " $(basename "$file")\$" SHA256SUMS | sha256sum -c --quiet -) \
    || die "$file does not match $src_dir/SHA256SUMS"
}

recipe() {  # hash of what decides the compiled tree
  { sha256sum <"$(tarball "$1")"; sed -n '/^compile()/,/^}/p' "$0"; } | sha256sum | cut -c1-16
}

apt_ensure() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (install them as root)"
  say "installing Debian packages: ${missing[*]}"
  mkdir -p "$cache"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$cache/apt.log" 2>&1 || {
    apt-get update -q >>"$cache/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$cache/apt.log" 2>&1 \
      || die "could not install ${missing[*]} (see $cache/apt.log)"
  }
}

# Flatbuffers schema headers as CMake would write them: the .fbs text as one C string.
flatbuffer_headers() {
  local fb=$1/shared_modules/utils/flatbuffers fbs name
  mkdir -p "$fb/include"
  find "$fb/schemas" -name '*.fbs' | while read -r fbs; do
    name=$(basename "$fbs" .fbs)
    {
      printf '// Generated from %s by lab/wazuh-manager/build.sh\n' "$fbs"
      printf '#ifndef %s_HEADER\n#define %s_HEADER\n' "$name" "$name"
      printf '#define %s_SCHEMA "%s"\n' "$name" "$(tr '\n' ' ' <"$fbs" | tr -s ' ' | sed 's/\\/\\\\/g; s/"/\\"/g')"
      printf '#endif // %s_HEADER\n' "$name"
    } >"$fb/include/${name}_schema.h"
  done
}

# External headers the sources include by relative path, pointed at Debian's.
external_links() {
  local s=$1 multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  mkdir -p "$s"/external/{cJSON,curl/include,libpcre2/include,libyaml/include,sqlite,zlib}
  ln -sfn /usr/include/cjson/cJSON.h "$s/external/cJSON/cJSON.h"
  ln -sfn "/usr/include/$multiarch/curl" "$s/external/curl/include/curl"
  ln -sfn /usr/include/pcre2.h "$s/external/libpcre2/include/pcre2.h"
  ln -sfn /usr/include/yaml.h "$s/external/libyaml/include/yaml.h"
  ln -sfn /usr/include/sqlite3.h "$s/external/sqlite/sqlite3.h"
  ln -sfn /usr/include/sqlite3ext.h "$s/external/sqlite/sqlite3ext.h"
  ln -sfn /usr/include/zlib.h "$s/external/zlib/zlib.h"
  ln -sfn /usr/include/zconf.h "$s/external/zlib/zconf.h"
}

compile() {
  local version=$1 file out stamp want start
  file=$(tarball "$version")
  out="$cache/src/wazuh-$version"
  stamp="$out/.socstack-recipe"
  want=$(recipe "$version")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "wazuh $version is compiled (recipe $want)"
    return
  fi
  check_sum "$file"
  apt_ensure "${build_pkgs[@]}"
  rm -rf "$out" && mkdir -p "$cache/src"
  tar -C "$cache/src" -xzf "$file"
  [ -d "$out/src" ] || die "$file did not unpack into wazuh-$version/"
  external_links "$out/src"
  flatbuffer_headers "$out/src"
  say "compiling wazuh $version (make -j$(nproc), about a minute; log $cache/make-$version.log)"
  start=$(date +%s)
  local vars=(TARGET=server INSTALLDIR=/var/ossec USE_AUDIT=no EXTERNAL_LIBS=
    "LIBS=-lssl -lcrypto -lcjson -lcurl -lyaml -lsqlite3 -lz -lpcre2-8 -lmsgpackc -lbz2 -lpthread")
  {
    make -C "$out/src" -j"$(nproc)" "${vars[@]}" libwazuh.a libwazuhext.so \
      && make -C "$out/src" -j"$(nproc)" "${vars[@]}" wazuh-analysisd wazuh-logtest-legacy wazuh-integratord \
        wazuh-modulesd wazuh-execd wazuh-maild wazuh-csyslogd wazuh-agentlessd wazuh-monitord wazuh-reportd \
        wazuh-authd manage_agents wazuh-logcollector utils active-responses
  } >"$cache/make-$version.log" 2>&1 || { tail -n 30 "$cache/make-$version.log" >&2; die "make of wazuh $version failed"; }
  find "$out/src" -name '*.o' -delete
  say "wazuh $version compiled in $(( $(date +%s) - start )) s"
  echo "$want" >"$stamp"
}

# --- minimal install (../shared/wazuh/README.md section 6) -------------------------------------------
d() {  # d OWNER:GROUP MODE DIR...
  local own=$1 mode=$2; shift 2
  local p; for p in "$@"; do mkdir -p "$prefix/$p"; chown "$own" "$prefix/$p"; chmod "$mode" "$prefix/$p"; done
}
f() {  # f OWNER:GROUP MODE SOURCE DEST (DEST relative to the prefix)
  install -o "${1%%:*}" -g "${1##*:}" -m "$2" "$3" "$prefix/$4"
}

install_tree() {
  local s=$1 top prefix b
  prefix=$2
  top=$(cd "$s" && pwd)
  [ -x "$top/src/wazuh-analysisd" ] || die "$top is not a compiled tree (run: $0 compile VERSION)"
  case "$prefix" in */var/ossec) ;; *) die "the prefix must end in var/ossec (Wazuh finds its home there): $prefix";; esac
  case "$prefix" in */bin/*|*/bin) die "the prefix must not contain /bin (Wazuh cuts its home there): $prefix";; esac
  [ "$(id -u)" -eq 0 ] || die "installing a Wazuh manager needs root (owners wazuh and root)"
  getent group wazuh >/dev/null || groupadd --system wazuh
  getent passwd wazuh >/dev/null || useradd --system -g wazuh -d "$prefix" -s /usr/sbin/nologin wazuh
  mkdir -p "$prefix"
  d root:wazuh 0750 .
  d wazuh:wazuh 0770 logs logs/wazuh logs/alerts logs/archives logs/firewall stats queue/alerts queue/sockets \
    queue/diff queue/fts queue/agentless queue/db queue/logcollector queue/tasks queue/fim queue/fim/db \
    queue/syscollector queue/syscollector/db queue/indexer etc var/multigroups
  d root:wazuh 0770 queue etc/decoders etc/rules etc/lists etc/shared etc/rootcheck var var/run var/db var/upgrade \
    var/download var/wodles
  d root:wazuh 1770 tmp
  d root:wazuh 0750 bin lib ruleset ruleset/decoders ruleset/rules ruleset/sca integrations active-response \
    active-response/bin agentless wodles backup
  for b in "$top"/src/wazuh-* "$top"/src/manage_agents "$top"/src/verify-agent-conf "$top"/src/clear_stats \
      "$top"/src/wazuh-regex "$top"/src/agent_control; do
    [ -f "$b" ] && [ -x "$b" ] && f root:wazuh 0750 "$b" "bin/$(basename "$b")"
  done
  f root:wazuh 0750 "$top/src/libwazuhext.so" lib/libwazuhext.so
  # wazuh-control: the stock script, its daemon list cut to the daemons this core has.
  sed -e "s/^DAEMONS=.*/DAEMONS=\"$daemons\"/" -e 's/^OP_DAEMONS=.*/OP_DAEMONS="wazuh-integratord"/' \
    "$top/src/init/wazuh-server.sh" >"$prefix/bin/wazuh-control"
  chown root:wazuh "$prefix/bin/wazuh-control" && chmod 0750 "$prefix/bin/wazuh-control"
  for b in "$top"/src/active-response/*; do
    [ -f "$b" ] && [ -x "$b" ] && f root:wazuh 0750 "$b" "active-response/bin/$(basename "$b")"
  done
  for b in "$top"/ruleset/rules/*.xml; do f root:wazuh 0640 "$b" "ruleset/rules/$(basename "$b")"; done
  for b in "$top"/ruleset/decoders/*.xml; do f root:wazuh 0640 "$b" "ruleset/decoders/$(basename "$b")"; done
  for b in "$top"/ruleset/rootcheck/db/*.txt; do f root:wazuh 0660 "$b" "etc/rootcheck/$(basename "$b")"; done
  f wazuh:wazuh 0660 "$top/etc/local_decoder.xml" etc/decoders/local_decoder.xml
  f wazuh:wazuh 0660 "$top/etc/local_rules.xml" etc/rules/local_rules.xml
  cp -r "$top/ruleset/lists/." "$prefix/etc/lists/"
  chown -R wazuh:wazuh "$prefix/etc/lists"
  find "$prefix/etc/lists" -type d -exec chmod 0770 {} + && find "$prefix/etc/lists" -type f -exec chmod 0660 {} +
  f root:wazuh 0640 "$top/etc/internal_options.conf" etc/internal_options.conf
  f root:wazuh 0640 "$top/etc/local_internal_options.conf" etc/local_internal_options.conf
  # analysisd asks for more file descriptors than a container's hard limit allows (README section 10).
  grep -q '^analysisd.rlimit_nofile=' "$prefix/etc/local_internal_options.conf" \
    || echo 'analysisd.rlimit_nofile=16384' >>"$prefix/etc/local_internal_options.conf"
  [ -f "$top/VERSION.json" ] && f wazuh:wazuh 0440 "$top/VERSION.json" VERSION.json
  for b in "$top"/integrations/*; do [ -f "$b" ] && f root:wazuh 0750 "$b" "integrations/$(basename "$b")"; done
  for b in ossec.log ossec.json active-responses.log integrations.log; do
    : >"$prefix/logs/$b"; chown wazuh:wazuh "$prefix/logs/$b"; chmod 0660 "$prefix/logs/$b"
  done
  : >"$prefix/etc/client.keys"; chown wazuh:wazuh "$prefix/etc/client.keys"; chmod 0640 "$prefix/etc/client.keys"
  # The stock manager configuration, as Wazuh's installer generates it.
  (cd "$top" && ./gen_ossec.sh conf manager debian 12 "$prefix") >"$prefix/etc/ossec.conf"
  chown root:wazuh "$prefix/etc/ossec.conf" && chmod 0660 "$prefix/etc/ossec.conf"
  say "installed $(basename "$top") into $prefix"
}

image() {
  local version=$1 tag base_id want current ctx
  tag="socstack-lab/wazuh-manager:$version"
  base_id=$(docker image inspect -f '{{.Id}}' socstack-lab/bookworm-systemd:latest 2>/dev/null) \
    || die "base image socstack-lab/bookworm-systemd:latest is missing: run 'make images' first"
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] || die "the manager image reuses binaries compiled on this host, which" \
    "must be Debian 12 (bookworm) like the image; this host is ${PRETTY_NAME:-unknown}"
  want=$({ recipe "$version"; echo "$base_id"; sha256sum <"$0"; cat "$here/Dockerfile" "$here/wazuh-manager.service"; } \
    | sha256sum | cut -c1-16)
  current=$(docker image inspect -f '{{ index .Config.Labels "socstack.recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$current" = "$want" ]; then say "$tag is up to date (recipe $want)"; return; fi
  compile "$version"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  say "building $tag"
  cp "$here/Dockerfile" "$here/wazuh-manager.service" "$0" "$ctx/"
  mkdir -p "$ctx/tree"
  # Only what the install reads: binaries, init scripts, etc/, ruleset, integrations, gen_ossec.sh.
  (cd "$cache/src/wazuh-$version" && tar -c --exclude='*.o' --exclude='*.a' --exclude=src/external \
    --exclude=src/shared_modules --exclude=src/data_provider --exclude=src/syscheckd . ) | tar -C "$ctx/tree" -x
  docker build -q --label "socstack.recipe=$want" --label "socstack.wazuh.version=$version" -t "$tag" "$ctx" \
    >"$cache/image-$version.log" 2>&1 || { tail -n 20 "$cache/image-$version.log" >&2; die "docker build of $tag failed"; }
  say "built $tag"
}

host() {
  local version=$1 prefix stamp want
  compile "$version"
  prefix="$cache/$version/var/ossec"
  stamp="$cache/$version/.socstack-recipe"
  want=$(recipe "$version")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$prefix/bin/wazuh-analysisd" ]; then
    say "wazuh $version is installed in $prefix"
    return
  fi
  rm -rf "${cache:?}/$version"
  install_tree "$cache/src/wazuh-$version" "$prefix"
  echo "$want" >"$stamp"
}

cmd=${1:-}
# One build at a time per cache (two runs of make in one tree break each other).
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
case "$cmd" in
  compile) [ $# -eq 2 ] || die "usage: $0 compile VERSION"; compile "$2" ;;
  install) [ $# -eq 3 ] || die "usage: $0 install SRC PREFIX"; install_tree "$2" "$3" ;;
  host) [ $# -eq 2 ] || die "usage: $0 host VERSION"; host "$2" ;;
  image) [ $# -eq 2 ] || die "usage: $0 image VERSION"; image "$2" ;;
  *) die "usage: $0 {compile VERSION|install SRC PREFIX|host VERSION|image VERSION}" ;;
esac
