#!/bin/sh
# Runs inside the throw-away bullseye container of build.sh: installs DFIR-IRIS 2.4.20 from the
# tarballs in /src (read-only) the way ../shared/iris/README.md says it installs and runs, and lays out
# the image like upstream's docker/webApp/Dockerfile (/iriswebapp, /home/iris/..., /opt/venv).
set -eu
python3 -m venv /opt/venv
PATH=/opt/venv/bin:$PATH
pip install -q --upgrade pip 'setuptools~=70.3.0' wheel

mkdir -p /tmp/iris /tmp/splunk
tar -xzf /src/iris-web-2.4.20-src.tar.gz -C /tmp/iris --strip-components=1
tar -xzf /src/splunk-hec-src.tar.gz -C /tmp/splunk
# evtx2splunk declares splunk-hec from a git URL nobody reaches: splunk-hec from its tarball first,
# the requirements without evtx2splunk (with the pins that then resolve), evtx2splunk without deps.
pip install -q "$(find /tmp/splunk -mindepth 1 -maxdepth 1 -type d | head -n 1)"
cd /tmp/iris/source  # the requirement file's wheel paths are relative to source/
grep -v '^dependencies/evtx2splunk' requirements.txt > /tmp/requirements.txt
pip install -q -r /tmp/requirements.txt chardet==4.0.0 idna==3.3 semantic-version==2.8.5 python-dotenv certifi
pip install -q --no-deps dependencies/evtx2splunk-2.0.1-py3-none-any.whl
pip check || true

mv /tmp/iris/source /iriswebapp
cp /tmp/iris/LICENSE.txt /iriswebapp/LICENSE.txt
cp /src/entrypoint.sh /iriswebapp/iris-entrypoint.sh
cp /src/wait-for-iriswebapp.sh /iriswebapp/wait-for-iriswebapp.sh
chmod 0755 /iriswebapp/iris-entrypoint.sh /iriswebapp/wait-for-iriswebapp.sh
mkdir -p /home/iris/certificates/rootCA /home/iris/certificates/web_certificates /home/iris/user_templates \
    /home/iris/downloads /home/iris/server_data/backup /home/iris/server_data/updates \
    /home/iris/server_data/custom_assets /home/iris/server_data/datastore /iriswebapp/certificates/ldap

# What the image does not need at run time: the compiler (pyminizip is built) and the caches.
apt-get purge -y -q --auto-remove gcc libc6-dev python3-dev >/dev/null
rm -rf /tmp/iris /tmp/splunk /tmp/requirements.txt /iriswebapp/spectaql /root/.cache/pip/* \
    /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
    /usr/share/locale/*
python3 -m compileall -q -j 0 /iriswebapp >/dev/null 2>&1 || true
