"""Issue 23: one customer's data never reaches another, and one bad alert never stops the queue."""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.ai_worker import SSH_EVENT

DEDUP = {"AI_WORKER_DEDUP_WINDOW": 3600}


@pytest.fixture
def stack(ai_stack):
    return ai_stack


def two_customer_worker(stack, **overrides):
    """A worker whose account is linked to IrisInitialClient (1) and a second customer; (worker, customer 2)."""
    second = stack.iris.add_customer("Beta Corp")
    _user, key = stack.iris.add_user("mssp-bot", groups=["Analysts"], customers=["IrisInitialClient", "Beta Corp"])
    stack.keys["mssp-bot"] = key
    return stack.worker("mssp-bot", **overrides), second


def test_identical_alerts_of_two_customers_are_never_deduplicated_across_them(stack):
    """Agent 001 and the same data at two customers (one scanner, two managers): each customer's alert is
    analysed on its own; nothing of customer 1's alert (its id, its analysis) reaches customer 2's."""
    worker, second = two_customer_worker(stack, AI_WORKER_MAX_PER_CYCLE=1, **DEDUP)
    event = dict(SSH_EVENT, agent={"id": "001", "name": "web01.alpha.example"})
    first = stack.alert(event=event, alert_title="alpha: sshd")
    other = stack.alert(event=event, alert_title="beta: sshd", alert_customer_id=second)
    repeat = stack.alert(event=event, alert_title="alpha: sshd again")
    for _round in range(3):
        worker.run_cycle()
    assert [call["prompt"].count("alpha:") for call in stack.ollama.calls] == [1, 0]
    assert "beta: sshd" in stack.ollama.calls[1]["prompt"]
    beta_comment = stack.comment_texts(other)[0]
    assert "REUSED" not in beta_comment and f"#{first}" not in beta_comment
    assert f"copied from alert #{first}" in stack.comment_texts(repeat)[0]  # within customer 1 it still works
    assert all("ai-reviewed" in stack.tags(i) for i in (first, other, repeat))


# --- poison isolation ------------------------------------------------------------------------------------


@pytest.fixture
def deep_emulator():
    """The emulator copies alerts with copy.deepcopy, which needs more than the default recursion limit for
    600 levels (a real IRIS stores and serves them). The worker itself must cope with the default limit:
    it only ever walks such a value iteratively (socstack_core.jsonio.encodable)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(4000)
    yield
    sys.setrecursionlimit(limit)


def nested(depth):
    value = "leaf"
    for _unused in range(depth):
        value = {"x": value}
    return value


def test_a_lone_surrogate_and_600_deep_nesting_neither_crash_the_worker_nor_fail_their_batch(stack, deep_emulator):
    """Issue 23: a lone surrogate in full_log raised UnicodeEncodeError, 600-deep nesting RecursionError, and
    the process crash-looped, failing its 4 healthy batch-mates. Now every alert of the batch is triaged."""
    surrogate = stack.alert(event=dict(SSH_EVENT, full_log="sshd: Invalid user \ud800x from 10.0.0.1"))
    deep = stack.alert(event=dict(SSH_EVENT, data=nested(600)))
    healthy = [stack.alert(event=dict(SSH_EVENT, data={"srcip": f"10.9.9.{n}"})) for n in range(3)]
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=5)
    worker.run_cycle()
    for alert_id in (surrogate, deep, *healthy):
        assert stack.tags(alert_id) == ["wazuh", "ai-reviewed"], (alert_id, stack.tags(alert_id))
        assert len(stack.analyses(alert_id)) == 1
    assert "\ud800" not in "".join(call["prompt"] for call in stack.ollama.calls)
    assert stack.messages(f"alert {surrogate}: 1 string(s) held text that is not valid Unicode")
    assert stack.messages(f"alert {deep}: 1 value(s) nested deeper than")


def test_any_exception_while_handling_one_alert_is_that_alerts_failed_attempt(stack, monkeypatch):
    from iris_ai_worker import loop

    bad = stack.alert(alert_title="poison")
    good = [stack.alert() for _unused in range(2)]
    original = loop.build_prompt

    def build_prompt(alert, redactor, max_chars):
        if alert.get("alert_title") == "poison":
            raise KeyError("some content-derived key")
        return original(alert, redactor, max_chars)

    monkeypatch.setattr(loop, "build_prompt", build_prompt)
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=3, AI_WORKER_MAX_ATTEMPTS=2)
    worker.run_cycle()
    assert "ai-attempts:1" in stack.tags(bad) and "ai-error:internal-keyerror" in stack.tags(bad)
    assert "ai-pending" in stack.tags(bad)
    assert all(stack.tags(alert_id) == ["wazuh", "ai-reviewed"] for alert_id in good)
    line = stack.messages(f"alert {bad}: attempt 1 failed (internal error KeyError at test_ai_worker_isolation.py:")
    assert line and "some content-derived key" not in stack.log_text()  # the type and place, never the message
    worker.run_cycle()
    assert "ai-failed" in stack.tags(bad) and "ai-attempts:2" in stack.tags(bad)


def test_limits_are_checked_before_any_work(stack, monkeypatch, deep_emulator):
    """An alert past its takeover limit ends ai-failed without its content being read or parsed."""
    from iris_ai_worker import loop

    alert_id = stack.alert(tags="wazuh,ai-pending,ai-takeovers:4", event=dict(SSH_EVENT, data=nested(600)))
    monkeypatch.setattr(loop, "dedup_key", lambda alert: pytest.fail("dedup_key ran on an alert past its limit"))
    monkeypatch.setattr(loop, "build_prompt", lambda *a: pytest.fail("build_prompt ran on an alert past its limit"))
    stack.worker().run_cycle()
    assert stack.tags(alert_id) == ["wazuh", "ai-takeovers:4", "ai-error:limit-reached", "ai-failed"]
    assert stack.ollama.calls == []


def test_alerts_iris_cannot_serve_are_counted_to_ai_failed_and_never_hold_the_queue(stack):
    """10 alerts IRIS answers with HTTP 500 at the head of the queue; a younger one is still triaged at once."""
    broken = [stack.alert(alert_source_event_time=f"2024-01-01T00:00:{n:02d}") for n in range(10)]
    younger = stack.alert(alert_source_event_time="2024-06-01T00:00:00")

    def hook(phase, method, path, query, body, login):
        if phase == "before" and method == "GET" and path in {f"/alerts/{i}" for i in broken}:
            return 500, "500 Internal Server Error"
        return None

    stack.iris.add_hook(hook)
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=5, AI_WORKER_MAX_ATTEMPTS=3)
    for _cycle in range(3):
        worker.run_cycle()
    assert stack.tags(younger) == ["wazuh", "ai-reviewed"]
    for _cycle in range(8):
        worker.run_cycle()
    for alert_id in broken:
        tags = stack.tags(alert_id)
        assert "ai-failed" in tags and "ai-attempts:3" in tags and "ai-error:iris-unservable" in tags, tags
    assert stack.messages(f"alert {broken[0]}: attempt 3 failed (IRIS answers HTTP 500 for it)")


def test_an_oversized_alert_ends_ai_failed_at_once_and_is_not_fetched_in_full_again(stack, monkeypatch):
    from iris_ai_worker import iris

    monkeypatch.setattr(iris, "ALERT_MAX_BYTES", 64 * 1024)
    big = stack.alert(event=dict(SSH_EVENT, full_log="x " * 100_000))
    after = stack.alert()
    worker = stack.worker(AI_WORKER_MAX_PER_CYCLE=5)
    for _cycle in range(3):
        worker.run_cycle()
    assert stack.tags(big) == ["wazuh", "ai-attempts:1", "ai-error:too-large", "ai-failed"]
    assert stack.tags(after) == ["wazuh", "ai-reviewed"]
    full_reads = [p for m, p in stack.paths_by("ai-bot") if m == "GET" and p == f"/alerts/{big}"]
    assert len(full_reads) == 1
    assert stack.messages(f"alert {big}: attempt 1 failed (too large to read)")


class FixedAnswer(BaseHTTPRequestHandler):
    """Whatever stands in front of Ollama: a rate limiter, an authenticating proxy, an HTML error page."""

    answer = (429, "application/json", b'{"error": "rate limited"}')

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, content_type, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.mark.parametrize("answer", [
    (429, "application/json", b'{"error": "too many requests"}'),
    (401, "application/json", b'{"error": "unauthorized"}'),
    (403, "text/html", b"<html><body>Forbidden by proxy</body></html>"),
    (200, "text/html", b"<html><body>Sign in to continue</body></html>"),
    (502, "text/html", b"<html>Bad gateway</html>"),
])
def test_errors_that_are_not_the_models_fault_back_off_and_never_fail_alerts(stack, answer):
    handler = type("Answer", (FixedAnswer,), {"answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        ids = [stack.alert(event=dict(SSH_EVENT, data={"srcip": f"10.1.1.{n}"})) for n in range(4)]
        worker = stack.worker(OLLAMA_URL=f"http://127.0.0.1:{server.server_address[1]}", AI_WORKER_MAX_ATTEMPTS=1,
                              AI_WORKER_MAX_PER_CYCLE=4, AI_WORKER_OLLAMA_BACKOFF_MIN=60)
        for _cycle in range(3):
            worker.run_cycle()
        assert worker.outage.active
        for alert_id in ids:
            tags = stack.tags(alert_id)
            counted = [t for t in tags if t.startswith("ai-attempts:")]
            assert "ai-pending" in tags and "ai-failed" not in tags and not counted, tags
        assert len(stack.messages("Ollama unavailable")) == 1
    finally:
        server.shutdown()
        server.server_close()
