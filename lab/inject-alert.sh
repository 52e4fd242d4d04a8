#!/usr/bin/env bash
# Appends one test alert to alerts.json on the lab's Wazuh manager (container lab-wazuh); the
# integratord stand-in hands it to the forwarder, which creates an IRIS alert (and the AI worker
# then comments on it). Usage: lab/inject-alert.sh [LEVEL]   (default 10)
set -euo pipefail
level=${1:-10}
id="lab-$(date +%s).$RANDOM"
alert=$(printf '{"timestamp":"%s","rule":{"level":%d,"description":"socstack lab test alert","id":"100100","groups":["local","socstack_test"],"mitre":{"id":["T1110"]}},"agent":{"id":"000","name":"lab-wazuh"},"manager":{"name":"lab-wazuh"},"id":"%s","full_log":"socstack wazuh_iris test event","location":"lab"}' \
  "$(date -u +%Y-%m-%dT%H:%M:%S.000+0000)" "$level" "$id")
docker exec -i lab-wazuh sh -c 'cat >> /var/ossec/logs/alerts/alerts.json' <<<"$alert"
echo "injected Wazuh alert $id (level $level); find it in IRIS by source reference lab-wazuh:$id"
