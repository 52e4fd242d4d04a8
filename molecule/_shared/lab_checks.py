"""Helpers the testinfra checks of the Wazuh-side scenarios share (wazuh_iris, stack, tenants, readme).

Imported by the scenarios' tests through sys.path (molecule/_shared is not a package).
"""

import base64
import json
import time

ALERTS_JSON = "/var/ossec/logs/alerts/alerts.json"

# Runs inside a container: GET one IRIS API URL, verifying TLS with a CA file, print the JSON `data`.
IRIS_GET = """
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.stdin.read().strip()})
print(json.dumps(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["data"]))
"""


# Runs inside a manager container: one datagram on analysisd's queue socket, as logcollector sends a log
# line (`1:<location>:<line>`); the line comes base64-encoded in argv[2].
QUEUE_SEND = """
import base64, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("/var/ossec/queue/sockets/queue")
s.send(b"1:" + sys.argv[1].encode() + b":" + base64.b64decode(sys.argv[2]))
"""


def send_log_line(host, location, line):
    """A log line into the real analysisd, as if logcollector had read it from `location`."""
    encoded = base64.b64encode(line.encode()).decode()
    result = host.run(f"python3 -c '{QUEUE_SEND}' '{location}' {encoded}")
    assert result.rc == 0, result.stderr


def alerts_count(host):
    """How many alerts alerts.json holds now (new ones are read with alerts_since)."""
    return int(host.run(f"wc -l < {ALERTS_JSON}").stdout.strip() or 0)


def alerts_since(host, count):
    """The alerts analysisd wrote after the first `count` lines of alerts.json."""
    text = host.run(f"tail -n +{count + 1} {ALERTS_JSON}").stdout
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def append_alerts(host, alerts):
    """Append alerts to alerts.json the way analysisd does: one JSON object per line."""
    payload = base64.b64encode("".join(json.dumps(a) + "\n" for a in alerts).encode()).decode()
    result = host.run(f"printf %s {payload} | base64 -d >> {ALERTS_JSON}")
    assert result.rc == 0, result.stderr


def wait_for(what, predicate, timeout=90.0, pause=0.5):
    """Poll predicate until it returns something truthy (returned), or fail after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def iris_run(host, url, ca_file, key):
    """The command result of a GET on IRIS from inside the container (the API key goes on stdin)."""
    return host.run(f"printf %s '{key}' | python3 -c '{IRIS_GET}' '{url}' {ca_file}")


def iris_get(host, url, ca_file, key):
    """`data` of a GET on IRIS, asked from inside the container (the API key goes on stdin)."""
    result = iris_run(host, url, ca_file, key)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def iris_alerts(host, base_url, ca_file, key, ref_part):
    """Every IRIS alert whose alert_source_ref contains ref_part (all pages)."""
    found, page = [], 1
    while True:
        data = iris_get(host, f"{base_url}/alerts/filter?source_reference={ref_part}&per_page=100&page={page}",
                        ca_file, key)
        found += data["alerts"]
        if not data.get("next_page"):
            return found
        page += 1
