"""The AI worker's clock check, stale-claim rules and healing, on fake clocks and a fake IRIS (no sockets)."""

import io

import pytest
from iris_ai_worker import claims, clock, loop, ollama, settings
from iris_ai_worker import tags as worker_tags
from iris_ai_worker.iris import ServiceError, server_time

ENV = {"IRIS_BASE_URL": "https://iris.example:9094", "IRIS_BEARER": "k" * 64, "OLLAMA_MODEL": "m",
       "AI_WORKER_CLAIM_TTL": "900", "AI_WORKER_CLOCK_SKEW": "4"}
NOW = 1_800_000_000.0


def log():
    stream = io.StringIO()
    return loop.LevelLog("DEBUG", stderr=stream), stream


class FakeIris:
    """Comments of one alert; delete answers as IRIS 2.4.20 does (a repeat: 'not allowed')."""

    def __init__(self, comments):
        self.rows = comments
        self.deleted = []

    def comments(self, alert_id):
        return list(self.rows)

    def delete_comment(self, alert_id, comment_id):
        self.deleted.append(comment_id)
        before = len(self.rows)
        self.rows = [c for c in self.rows if c["comment_id"] != comment_id]
        return len(self.rows) < before


def test_the_date_header_is_read_to_the_second():
    assert server_time("Fri, 04 Dec 2026 07:29:24 GMT") == 1796369364.0
    assert server_time("") is None and server_time("yesterday") is None


@pytest.mark.parametrize(
    ("offset", "ok"), [(0.0, True), (1.9, True), (-1.5, True), (3.5, False), (-3.5, False), (600, False)]
)
def test_a_worker_whose_clock_is_off_iris_by_more_than_half_the_skew_refuses(offset, ok):
    """The Date header has one-second resolution: only an offset the measurement proves counts."""
    sink, stream = log()
    check = clock.ClockCheck(2.0, sink, wall=lambda: NOW + offset)
    sent = NOW + offset
    check.update((sent, sent + 0.05, float(int(NOW))))
    assert check.ok is ok
    assert ("claiming nothing" in stream.getvalue()) is not ok
    assert abs(check.iris_now() - NOW) <= 1.05  # IRIS's clock, known to within the Date resolution


def test_the_clock_state_is_logged_once_per_change():
    sink, stream = log()
    check = clock.ClockCheck(2.0, sink)
    for step, offset in enumerate((10, 10, 10, 0, 0, 10)):
        check.update((NOW + offset, NOW + offset + 0.01 + step * 1e-3, NOW))
    text = stream.getvalue()
    assert text.count("claiming nothing") == 2 and text.count("claiming again") == 1


def protocol(wall):
    config = settings.load_config(ENV)
    sink, stream = log()
    check = clock.ClockCheck(config.own_skew_limit, sink, wall=lambda: wall[0])
    return claims.Claims(config, None, sink, check), stream


def test_claims_are_stale_after_the_ttl():
    wall = [NOW]
    protocol_, _stream = protocol(wall)
    fresh = worker_tags.ClaimToken("1", int(NOW) - 100, "aa").tag()
    old = worker_tags.ClaimToken("1", int(NOW) - 901, "aa").tag()
    assert not protocol_.is_stale(fresh) and protocol_.is_stale(old)
    assert protocol_.is_stale("ai-claim:garbage")


def test_a_claim_stamped_in_the_future_is_stale_once_seen_for_the_ttl_by_iris_clock():
    wall = [NOW]
    protocol_, stream = protocol(wall)
    within_skew = worker_tags.ClaimToken("1", int(NOW) + 4, "aa").tag()
    future = worker_tags.ClaimToken("fast", int(NOW) + 86400, "bb").tag()
    assert not protocol_.is_stale(within_skew) and not protocol_.is_stale(future)
    wall[0] += 899
    assert not protocol_.is_stale(future)
    wall[0] += 2
    assert protocol_.is_stale(future)
    assert stream.getvalue().count("in the future") == 1


def comment(comment_id, round_id, text="analysis"):
    return {"comment_id": comment_id, "comment_text": f"[ai-triage round={round_id}] {text}"}


def test_healing_keeps_the_lowest_comment_id_of_the_round_and_deletes_the_rest():
    iris = FakeIris([comment(7, "ab12"), comment(3, "ab12"), comment(5, "ffff"), {"comment_id": 4, "comment_text": "x"},
                     comment(9, "ab12")])
    protocol_, stream = protocol([NOW])
    protocol_.iris = iris
    kept = protocol_.round_comments(1, "ab12")
    assert [c["comment_id"] for c in kept] == [3]
    assert iris.deleted == [7, 9]
    assert sorted(c["comment_id"] for c in iris.rows) == [3, 4, 5]  # other rounds and other comments stay
    assert stream.getvalue().count("had 3 analyses") == 2


def test_healing_treats_an_already_deleted_comment_as_done_and_survives_a_failed_list():
    iris = FakeIris([comment(3, "ab12"), comment(8, "ab12")])
    iris.delete_comment = lambda alert_id, comment_id: False  # another worker deleted it first
    protocol_, stream = protocol([NOW])
    protocol_.iris = iris
    assert [c["comment_id"] for c in protocol_.round_comments(1, "ab12")] == [3]
    assert "comment 8 was already deleted" in stream.getvalue()

    def broken(alert_id):
        raise ServiceError("IRIS GET /alerts/1/comments/list: HTTP 500 oops")

    iris.comments = broken
    protocol_.heal(1, "ab12")  # after our own post: logged, never raised
    assert "could not check round ab12" in stream.getvalue()


def test_the_ttl_must_cover_every_request_after_the_claim():
    with pytest.raises(settings.ConfigError, match="7 IRIS timeouts"):
        settings.load_config(dict(ENV, AI_WORKER_CLAIM_TTL="200"))
    config = settings.load_config(ENV)
    assert config.own_skew_limit == 2.0
    assert config.lease_seconds > config.settle_seconds + config.ollama_timeout + 6 * config.iris_timeout


# --- Ollama: what counts as unavailable, and the backoff -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payload", "unavailable"),
    [
        (500, {"error": "emulated failure"}, True),
        (503, None, True),
        (404, {"error": "model 'phi4-mini:latest' not found"}, True),
        # Issue 23: answers that are not the model's fault back the worker off instead of failing alerts.
        (404, None, True),  # not JSON: a wrong URL or a proxy page (was counted as a bad answer)
        (200, None, True),  # an HTML page with 200 from a proxy
        (429, {"error": "rate limited"}, True),
        (401, {"error": "unauthorized"}, True),
        (403, None, True),
        (407, None, True),
        (400, {"error": "invalid format"}, False),
        (422, {"error": "bad request"}, False),
        (200, {"done": True}, False),  # Ollama's JSON without response text: a bad answer
    ],
)
def test_only_failures_that_are_not_the_models_fault_mean_unavailable(status, payload, unavailable):
    error = ollama.ollama_error(status, payload)
    assert isinstance(error, ServiceError)
    assert isinstance(error, ollama.OllamaUnavailable) is unavailable
    assert f"HTTP {status}" in str(error)


def test_the_backoff_doubles_up_to_its_bound_and_logs_each_change_of_state_once():
    now = [100.0]
    sink, stream = log()
    sink.threshold = 20  # INFO
    outage = ollama.OllamaOutage(1.0, 10.0, sink, clock=lambda: now[0])
    delays = []
    for _unused in range(6):
        outage.failed("connection refused")
        delays.append(outage.delay)
    assert outage.retry_at == now[0] + 10.0
    now[0] += 42
    outage.answered(probe=True)
    outage.answered(probe=True)
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    messages = [line.split(": ", 2)[2] for line in stream.getvalue().splitlines()]
    assert [m[:22] for m in messages] == ["Ollama unavailable (co", "Ollama answers again a"]
    assert "after 42s" in messages[1]
    outage.failed("HTTP 500")  # a probe's answer keeps the delay: a flapping Ollama is not hammered
    assert outage.delay == 10.0
    outage.answered()  # a real analysis call got an answer: start over
    outage.failed("HTTP 500")
    assert outage.delay == 1.0


def test_backoff_settings_are_checked():
    env = dict(ENV, AI_WORKER_OLLAMA_BACKOFF_MIN="10", AI_WORKER_OLLAMA_BACKOFF_MAX="5")
    with pytest.raises(settings.ConfigError, match="BACKOFF_MAX must not be below"):
        settings.load_config(env)
    config = settings.load_config(dict(env, AI_WORKER_OLLAMA_BACKOFF_MIN="", AI_WORKER_OLLAMA_BACKOFF_MAX=""))
    assert (config.backoff_min, config.backoff_max) == (5.0, 300.0)


def test_log_level_drops_lower_lines_and_the_log_masks_the_key():
    stream = io.StringIO()
    sink = loop.LevelLog("WARNING", stderr=stream, masker=loop.Masker(["k" * 64]))
    sink.info("not shown")
    sink.warning("key " + "k" * 64)
    assert stream.getvalue().endswith("iris-ai-worker: WARNING: key ***\n")
