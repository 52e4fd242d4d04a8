#!/usr/bin/env bash
# Checks the collection with one ansible-core release: `ansible-test sanity`, the module tests
# (tests/integration/test_iris_modules.py and test_iris_client.py, against the IRIS emulator) and
# `ansible-doc` of every module and role. `make test` runs it for the oldest release meta/runtime.yml
# claims and for the newest on PyPI. Each runs in a virtualenv under .cache/venvs: CORE_VENV names one
# that is already made (`make core-matrix` passes the molecule virtualenv for the newest release, so it
# is built once); without it the script makes .cache/venvs/core-VERSION from PyPI when missing or when
# its pins change (with uv when UV names it, else with the interpreter's venv and pip).
#   lab/core-matrix.sh CORE_VERSION PYTHON      e.g. lab/core-matrix.sh 2.16 python3.12
#   CORE_VENV=.cache/venvs/molecule lab/core-matrix.sh 2.21 python3.13
set -euo pipefail
core=${1:?usage: core-matrix.sh CORE_VERSION PYTHON}
python=${2:?usage: core-matrix.sh CORE_VERSION PYTHON}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CORE_VENV:-$root/.cache/venvs/core-$core}
pins="ansible-core==$core.* pytest==8.* pyyaml"
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

if [ -n "${CORE_VENV:-}" ]; then
  have=$("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)' 2>/dev/null) \
    || { echo "ERROR: CORE_VENV=$venv has no ansible-core (make molecule-venv builds it)" >&2; exit 1; }
  case $have in
    "$core".*) ;;
    *) echo "ERROR: CORE_VENV=$venv has ansible-core $have, not $core" >&2; exit 1 ;;
  esac
  pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
elif [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins $pyver" ]; then
  echo "[core $core] virtualenv with $python ($pyver): $pins"
  rm -rf "$venv"
  # shellcheck disable=SC2086  # the pins are words
  if [ -n "${UV:-}" ]; then  # make core-matrix passes its uv: seconds instead of a minute
    "$UV" venv -q --seed --python "$python" "$venv"
    "$UV" pip install -q --python "$venv/bin/python" $pins
  else
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $pins
  fi
  echo "$pins $pyver" > "$venv/.pins"
fi
echo "[core $core] ansible-core $("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)') on Python $pyver"

# ansible-test wants the collection at ansible_collections/<ns>/<name>, in a git tree of its own.
copy=$root/.cache/sanity-$core/ansible_collections/socstack/wazuh_iris
rm -rf "$root/.cache/sanity-$core" && mkdir -p "$copy"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -I{} cp --parents -P {} "$copy/" 2>/dev/null) || true
(cd "$copy" && git init -q . && git add -A)
VENV_BIN=$venv/bin "$root/lab/ansible-test-offline.sh"
(cd "$copy" && "$venv/bin/ansible-test" sanity --venv --python "$pyver" --color no)

# The modules against the IRIS emulator, with this release's module_utils and AnsibleModule.
(cd "$root" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/integration/test_iris_modules.py \
  tests/integration/test_iris_client.py tests/integration/test_iris_base.py)

# Every module and role documents itself with this release.
export ANSIBLE_COLLECTIONS_PATH=$root/.cache/collections
for module in "$root"/plugins/modules/*.py; do
  name=$(basename "$module" .py)
  "$venv/bin/ansible-doc" -t module "socstack.wazuh_iris.$name" >/dev/null
done
for role in "$root"/roles/*/; do
  name=$(basename "$role")
  "$venv/bin/ansible-doc" -t role "socstack.wazuh_iris.$name" >/dev/null
done
echo "[core $core] sanity, module tests and ansible-doc passed"
