#!/usr/bin/env bash
# Hands one log line holding the IRIS test rule's text to the lab manager's real analysisd (container
# lab-wazuh), as logcollector would: rule 100100 (wazuh_iris_test_rule, level 10) fires, integratord
# runs the forwarder, which creates an IRIS alert, and the AI worker then comments on it.
# Usage: lab/inject-alert.sh
set -euo pipefail
marker="lab-$(date +%s)-$RANDOM"
line="$(date '+%b %e %H:%M:%S') lab-wazuh socstack: socstack wazuh_iris test event $marker"
docker exec -i lab-wazuh python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("/var/ossec/queue/sockets/queue")
s.send(b"1:/var/log/syslog:" + sys.stdin.buffer.read().rstrip(b"\n"))
' <<<"$line"
for _ in $(seq 1 30); do
  alert=$(docker exec lab-wazuh grep -F "$marker" /var/ossec/logs/alerts/alerts.json 2>/dev/null | head -n 1 || true)
  [ -n "$alert" ] && break
  sleep 1
done
[ -n "$alert" ] || { echo "no alert for the test line after 30 s (is wazuh_iris_test_rule on?)" >&2; exit 1; }
id=$(python3 -c 'import json, sys; a = json.loads(sys.stdin.read()); print(a["manager"]["name"] + ":" + a["id"])' <<<"$alert")
echo "analysisd raised rule 100100 for '$marker'; find it in IRIS by source reference $id"
