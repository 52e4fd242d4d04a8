"""The host programs share one IRIS client (issues 22 and 23): the AI worker's IRIS failures are the shared
client's, classified by socstack_core.iris_client's kinds with IRIS's text masked BEFORE it is cut, and neither
the worker's iris.py nor the forwarder holds transport, envelope or masking code of its own. No socket: the
HTTP exchange is canned (IrisClient._send). The one preflight report: tests/integration/test_preflight_report.py.
"""
import json
from pathlib import Path

import pytest
from iris_ai_worker import iris as worker_iris
from iris_ai_worker import settings as worker_settings
from socstack_core import http
from socstack_core import iris_client as core

ROOT = Path(__file__).resolve().parents[2]
KEY = "wk-" + "0123456789abcdef" * 4


# ----------------------------------------------------------------------------- the worker on the shared client
class CannedIris(worker_iris.IrisClient):
    """The worker's client with one canned HTTP exchange (everything above the transport is the real one)."""

    def __init__(self, answer):
        super().__init__(worker_settings.load_config({"IRIS_BASE_URL": "http://iris.invalid", "IRIS_BEARER": KEY,
                                                      "OLLAMA_MODEL": "m"}))
        self.canned = answer
        self.sent = []

    def _send(self, method, target, **request):
        self.sent.append((method, target, request))
        if isinstance(self.canned, Exception):
            raise self.canned
        return self.canned


def key_pieces(text):
    return [KEY[i:i + 16] for i in range(len(KEY) - 15) if KEY[i:i + 16] in text]


@pytest.mark.parametrize(("status", "body", "kind"), [
    (500, {"status": "error", "message": "x" * (core.MESSAGE_CHARS - 8) + KEY}, core.SERVER_ERROR),
    (503, b"<html>" + b"y" * (core.PAGE_CHARS - 12) + KEY.encode() + b"</html>", core.OUTAGE),
    (200, b"<html>" + b"z" * (core.PAGE_CHARS - 12) + KEY.encode() + b"</html>", core.OUTAGE),
    (401, {"status": "error", "message": f"Authentication required {KEY}"}, core.AUTH),
    (404, b"<html>not found</html>", core.CONFIG),
], ids=["500-key-at-the-cut", "503-page", "200-html", "401", "404"])
def test_worker_iris_failures_are_the_shared_clients_kinds_masked_before_the_cut(status, body, kind):
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    client = CannedIris(http.Response(status, {}, raw))
    with pytest.raises(worker_iris.ServiceError) as raised:
        client.pending_page(1)
    failure = raised.value
    assert isinstance(failure, worker_iris.IrisFailure)
    assert (failure.kind, failure.status) == (kind, status)
    for text in (str(failure), failure.server_message or ""):
        assert key_pieces(text) == [], text
    assert f"HTTP {status}" in str(failure)


def test_worker_transport_failures_are_outages_that_keep_the_transport_error():
    client = CannedIris(http.TransportError(f"http://iris.invalid: answer larger than 10 bytes {KEY}", sent=True))
    with pytest.raises(worker_iris.IrisFailure) as raised:
        client.alert(7)
    assert raised.value.kind == core.OUTAGE and raised.value.ambiguous
    assert "larger than" in raised.value.transport.reason
    assert key_pieces(str(raised.value)) == []
    assert client.sent[0][2]["max_bytes"] == worker_iris.ALERT_MAX_BYTES  # the bounded fetch of one alert


def test_worker_success_and_its_requests_go_through_the_shared_client():
    client = CannedIris(http.Response(200, {"date": "Fri, 04 Dec 2026 07:29:24 GMT"},
                                      json.dumps({"status": "success", "data": {"total": 0, "alerts": []}}).encode()))
    assert client.pending_page(1) == {"total": 0, "alerts": []}
    method, target, request = client.sent[0]
    assert method == "GET" and target.startswith("/alerts/filter?alert_tags=ai-pending")
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert client.clock_sample[2] == 1796369364.0
    client.canned = http.Response(400, {}, json.dumps({"status": "error",
                                                       "message": worker_iris.ALREADY_DELETED}).encode())
    assert client.delete_comment(1, 2) is False  # IRIS's own message, as the shared client read it
    assert client.sent[-1][2]["body"] == b""  # a POST without a payload still carries Content-Length: 0


def test_the_worker_has_no_transport_envelope_or_masking_code_of_its_own():
    source = (ROOT / "files/ai_worker/iris_ai_worker/iris.py").read_text(encoding="utf-8")
    assert "core.IrisClient" in source
    for own in ("http.request(", "loads(", "Masker", "mask(", '"success"', "Authorization"):
        assert own not in source, own
    forwarder = "".join(path.read_text(encoding="utf-8")
                        for path in (ROOT / "files/integrations/iris_forwarder").glob("*.py"))
    for own in ('get("status") == "success"', "http.request(", "def _succeeded"):
        assert own not in forwarder, own
