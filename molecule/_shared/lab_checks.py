"""Helpers the testinfra checks of the Wazuh-side scenarios share (wazuh_manager, stack).

Imported by the scenarios' tests through sys.path (molecule/_shared is not a package).
"""

import base64
import json
import time

ALERTS_JSON = "/var/ossec/logs/alerts/alerts.json"


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
