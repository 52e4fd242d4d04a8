#!/usr/bin/env bash
# Lets `ansible-test sanity --venv` run without its download host: puts the pip wheel it pins and
# our bootstrap stand-in where ansible-test looks for a cached bootstrap script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${VENV_BIN:-$here/../.venv/bin}
version=$("$bin/python" - <<'PY'
import inspect
from ansible_test._internal import python_requirements as pr
src = inspect.getsource(pr)
import re
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
if ! ls "$cache"/pip-"$version"-py3-none-any.whl >/dev/null 2>&1; then
  "$bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$cache" "pip==$version" \
    || { echo "ERROR: could not fetch pip $version from PyPI for ansible-test's virtualenvs" >&2; exit 1; }
fi
cp "$here/ansible-test-get-pip.py" "$cache/get_pip_${version//./_}.py"
echo "[sanity] ansible-test will bootstrap pip $version offline from $cache"
