"""Pure functions of the AI worker: configuration, tags, redaction, prompt, answer parsing, dedup, rates."""

import json
import re
import time

import pytest
from iris_ai_worker import dedup, prompt, redaction, settings
from iris_ai_worker import tags as worker_tags

BASE_ENV = {"IRIS_BASE_URL": "https://iris.example:9094", "IRIS_BEARER": "k" * 64, "OLLAMA_MODEL": "phi4-mini:latest"}


def redact(text, **options):
    return redaction.Redactor(**options).text(text)


# --- configuration -------------------------------------------------------------------------------------


def test_config_defaults_run_as_the_only_instance():
    config = settings.load_config(BASE_ENV)
    assert (config.instance, config.instance_index, config.instances) == ("ai-worker", 0, 1)
    assert config.verify_tls is True
    assert config.ollama_url == "http://127.0.0.1:11434"
    assert config.lease_seconds > config.settle_seconds + config.ollama_timeout


@pytest.mark.parametrize("url", ["http://ollama:11434", "http://ollama:11434/", "http://ollama:11434/api/generate"])
def test_ollama_url_accepts_base_and_generate_url(url):
    assert settings.load_config(dict(BASE_ENV, OLLAMA_URL=url)).ollama_url == "http://ollama:11434"


def test_instance_identity_is_one_based():
    config = settings.load_config(dict(BASE_ENV, AI_WORKER_INSTANCE="3", AI_WORKER_INSTANCES="4"))
    assert (config.instance, config.instance_index, config.instances) == ("3", 2, 4)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IRIS_BEARER": ""}, "IRIS_BEARER"),
        ({"AI_WORKER_INSTANCES": "3"}, "AI_WORKER_INSTANCE is not"),
        ({"AI_WORKER_INSTANCE": "4", "AI_WORKER_INSTANCES": "3"}, "from 1 to 3"),
        ({"AI_WORKER_INSTANCE": "0", "AI_WORKER_INSTANCES": "3"}, "from 1 to 3"),
        ({"AI_WORKER_INSTANCE": "a,b"}, "AI_WORKER_INSTANCE may only"),
        ({"AI_WORKER_VERIFY_TLS": "maybe"}, "true or false"),
        ({"AI_WORKER_CLAIM_TTL": "60"}, "too short"),
        ({"AI_WORKER_REDACT_PATTERNS": '["("]'}, "AI_WORKER_REDACT_PATTERNS[0]"),
        ({"AI_WORKER_REDACT_PATTERNS": "x"}, "JSON list"),
        ({"IRIS_BASE_URL": "https://user:pw@iris"}, "credentials"),
        ({"OLLAMA_URL": "ftp://ollama"}, "OLLAMA_URL"),
        ({"AI_WORKER_OLLAMA_FORMAT": "xml"}, "schema"),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(env, message):
    with pytest.raises(settings.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings.load_config(dict(BASE_ENV, **env))


def test_config_repr_hides_the_bearer():
    assert "k" * 64 not in repr(settings.load_config(BASE_ENV))


def test_config_error_never_echoes_the_bearer():
    with pytest.raises(settings.ConfigError) as caught:
        settings.load_config(dict(BASE_ENV, AI_WORKER_CLAIM_TTL="60"))
    assert "k" * 64 not in str(caught.value)


# --- tags ------------------------------------------------------------------------------------------------


def test_tags_split_exactly_and_keep_order():
    assert worker_tags.split_tags(" wazuh, ai-pending ,,x ") == ["wazuh", "ai-pending", "x"]
    assert worker_tags.TAG_PENDING not in worker_tags.split_tags("ai-pending-x,not-ai-pending")
    assert worker_tags.join_tags(["a", "b", "a"]) == "a,b"


def test_counters_and_claim_tokens_round_trip():
    tags = worker_tags.with_tag_value(["ai-pending", "ai-attempts:1"], worker_tags.ATTEMPTS_PREFIX, 2)
    assert tags == ["ai-pending", "ai-attempts:2"]
    assert worker_tags.counter(tags, worker_tags.ATTEMPTS_PREFIX) == 2
    assert worker_tags.counter(["ai-attempts:x"], worker_tags.ATTEMPTS_PREFIX) == 0
    token = worker_tags.ClaimToken("2", 1700000000, "beef0001")
    assert worker_tags.ClaimToken.parse(token.tag()) == token
    assert worker_tags.ClaimToken.parse("ai-claim:garbage").epoch == 0  # unreadable claims count as stale
    assert worker_tags.ClaimToken.parse("wazuh") is None


# --- redaction -------------------------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq1nB3kZ0Lr9xQ2\nq2k9ZxY8c3ZlcnNlY3JldA==\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('execve a0="curl" a1="-H" a2="Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0"', "9f8e7d6c5b4a3928"),
        ("GET /api HTTP/1.1\r\nAuthorization: Basic YWRtaW46U3VwZXJTZWNyZXQx\r\n", "YWRtaW46U3VwZXJTZWNyZXQx"),
        ("X-IRIS-AUTH: B8BA5D730210B50F41E06941582D7965D57319D5685440587F98DFDC45A01594", "B8BA5D730210B50F"),
        ("mysql -u root --password=Sup3r$ecret! -h db01", "Sup3r$ecret!"),
        ("mysqldump --password Sup3r$ecret! shop", "Sup3r$ecret!"),
        ('login failed body={"username": "bob", "password": "hunter2-Xy"}', "hunter2-Xy"),
        ('"message": "{\\"user\\": \\"bob\\", \\"password\\": \\"hunter2-Xy\\"}"', "hunter2-Xy"),
        ("pwd: hunter2-Xy user=bob", "hunter2-Xy"),
        ("DB_PASSWORD=hunter2-Xy PATH=/usr/bin", "hunter2-Xy"),
        ("client_secret=4f3c2b1a09e8d7c6b5a4 grant_type=client_credentials", "4f3c2b1a09e8d7c6b5a4"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        (f"cookie jwt {JWT} from 10.0.0.5", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
        (f"key file content: {PEM} end", "MIIEpAIBAAKCAQEA7bq1nB3kZ0Lr9xQ2"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU (truncated", "b3BlbnNzaC1rZXkt"),
        ("git clone https://deploy:glpat-x1Y2z3W4v5U6t7S8@gitlab.example/app.git", "glpat-x1Y2z3W4v5U6t7S8"),
        ("token ghp_1234567890abcdefghijABCDEFGHIJ123456 pushed", "ghp_1234567890abcdefghij"),
        ("SLACK xoxb-1234567890-0987654321-AbCdEfGhIjKl", "xoxb-1234567890"),
        ("<Password>Winter2024!</Password>", "Winter2024!"),
        ("api_key: 'a1b2c3d4e5f6'", "a1b2c3d4e5f6"),
    ],
)
def test_realistic_secrets_are_redacted(text, secret):
    redacted = redact(text)
    assert secret not in redacted
    assert redaction.REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "May 11 12:29:18 localhost sshd[17584]: Failed password for invalid user paco from 172.17.1.1 port 56404",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=172.17.1.1",
        "Accepted publickey for admin from 10.1.2.3 port 50022 ssh2: RSA SHA256:abc",
        "passwordLastSet changed by DOMAIN\\admin",
        "C:\\Windows\\System32\\cmd.exe /k wscript.exe starter.vbs",
    ],
)
def test_ordinary_log_lines_survive_redaction(text):
    assert redact(text) == text


def test_structure_redaction_drops_values_under_secret_keys_whatever_their_type():
    data = {"user": "bob", "password": 123456, "nested": [{"apiKey": {"v": "x"}, "srcip": "10.0.0.1"}]}
    assert redaction.Redactor().value(data) == {
        "user": "bob",
        "password": redaction.REDACTED,
        "nested": [{"apiKey": redaction.REDACTED, "srcip": "10.0.0.1"}],
    }


def test_email_and_ip_redaction_are_opt_in():
    line = "login by alice@example.com from 203.0.113.9 and 2001:db8::1 at 12:29:18."
    assert redact(line) == line
    both = redact(line, emails=True, ips=True)
    assert "alice@example.com" not in both and "203.0.113.9" not in both and "2001:db8::1" not in both
    assert "12:29:18" in both  # a time is not an IPv6 address


def test_extra_patterns_are_applied():
    redactor = redaction.Redactor(extra_patterns=[re.compile(r"CORP-\d{6}")])
    assert redactor.text("ticket CORP-123456 opened") == f"ticket {redaction.REDACTED} opened"


@pytest.mark.parametrize("unit", ["pass_", "token=", "=", "password=\"", "a.", "eyJ-", "sk-", "a:", "<a>", "x@",
                                  "mysql -p", "mysql ", "sshpass -p ", "-u a:", "a://:", "a://:@", "userPassword=",
                                  "PGPASSWORD=", "-----BEGIN PGP PRIVATE KEY BLOCK-----"])
def test_redaction_is_linear_on_adversarial_text(unit):
    """60 KB of a repeated fragment: the quadratic patterns of old took 37 s on pass_; the bound is generous.
    The redactor's own cut is lifted (max_chars), so this times the patterns, not the cut."""
    text = unit * (60_000 // len(unit))
    redactor = redaction.Redactor(emails=True, ips=True, max_chars=len(text))
    started = time.perf_counter()
    redactor.text(text)
    assert time.perf_counter() - started < 1.0


def test_redaction_cuts_a_long_string_to_the_prompt_size_without_a_split_word():
    text = "ok " * 10 + "AKIAIOSFODNN7EXAMPLE" + "x" * 100
    cut = redaction.Redactor(max_chars=40).text(text)
    assert cut == "ok " * 10 + redaction.CUT_MARK  # the split word is dropped, not shown in part
    assert redaction.Redactor(max_chars=40).text("x" * 100) == redaction.CUT_MARK


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('token="unterminated secret', 'token="[REDACTED]"'),
        ("my_db_password=hunter2 keyboard=us", "my_db_password=[REDACTED] keyboard=us"),
        ("spring.datasource.password=hunter2", "spring.datasource.password=[REDACTED]"),
        ("password=[REDACTED] again", "password=[REDACTED] again"),
    ],
)
def test_key_value_redaction_edges(text, expected):
    assert redaction.Redactor().text(text) == expected


def test_sample_alerts_keep_their_evidence_after_redaction(shared_reference):
    for path in sorted((shared_reference / "sample-alerts").glob("*.json")):
        event = json.loads(path.read_text())
        redacted = redaction.Redactor().value(event)
        assert redacted["rule"] == event["rule"], path.name
        assert redacted.get("full_log") == event.get("full_log"), path.name


# --- prompt, answer and comment -------------------------------------------------------------------------


def wazuh_alert(alert_id=7, **event_overrides):
    event = {
        "timestamp": "2024-05-11T12:29:19.905+0000",
        "rule": {"id": "5712", "level": 10, "description": "sshd: brute force", "groups": ["sshd"], "pci_dss": ["1"]},
        "agent": {"id": "001", "name": "web01"},
        "full_log": "May 11 12:29:18 web01 sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
        "data": {"srcip": "172.17.1.1", "srcuser": "paco", "srcport": "56404"},
    }
    event.update(event_overrides)
    return {"alert_id": alert_id, "alert_title": "brute force", "alert_tags": "wazuh,ai-pending,ai-claim:1:2:3",
            "alert_customer_id": 1, "alert_source_content": event, "severity": {"severity_name": "High"}}


def test_prompt_is_redacted_bounded_and_free_of_worker_tags():
    alert = wazuh_alert(full_log="sshd: password=Hunter2-Secret accepted")
    text = prompt.build_prompt(alert, redaction.Redactor(), max_chars=2000)
    assert "Hunter2-Secret" not in text
    assert "ai-claim" not in text and "ai-pending" not in text and '"wazuh"' in text
    assert "pci_dss" not in text  # compliance mappings cost tokens and say nothing about the event
    assert "untrusted" in text
    huge = wazuh_alert(full_log="x" * 50_000)
    assert len(prompt.build_prompt(huge, redaction.Redactor(), max_chars=3000)) < 4000


def test_parse_analysis_normalises_a_model_answer():
    text = "Here you go:\n```json\n" + json.dumps({
        "summary": "Brute force.", "verdict": "Likely True Positive", "reasons": "many failures",
        "severity": "HIGH", "next_steps": ["block"], "mitre": [{"technique_id": "t1110"}, {"technique_id": "bogus"}],
    }) + "\n```"
    analysis = prompt.parse_analysis(text)
    assert analysis["verdict"] == "likely_true_positive"
    assert analysis["severity"] == "high"
    assert analysis["reasons"] == ["many failures"]
    assert [m["technique_id"] for m in analysis["mitre"]] == ["T1110"]


@pytest.mark.parametrize("text", ["no json here", "{not json}", '{"verdict": "likely_true_positive"}', "[1, 2]"])
def test_parse_analysis_rejects_unusable_answers(text):
    with pytest.raises(prompt.AnalysisError):
        prompt.parse_analysis(text)


def test_comment_carries_round_marker_and_reuse_notice():
    answer = {"summary": "S", "verdict": "likely_false_positive", "severity": "low"}
    analysis = prompt.parse_analysis(json.dumps(answer))
    fresh = prompt.render_comment(analysis, "abcd0123", "phi4-mini:latest")
    assert worker_tags.COMMENT_HEADER_RE.match(fresh).group(1) == "abcd0123"
    assert "likely FALSE positive" in fresh and "REUSED" not in fresh
    reused = prompt.render_comment(analysis, "abcd0123", "m", reused_from={"alert_id": 3, "time": 0})
    assert "REUSED ANALYSIS" in reused and "alert #3" in reused


# --- dedup key, dedup store, allowlist, rate limiter --------------------------------------------------


def test_dedup_key_ignores_timestamps_pids_and_ports_but_not_the_source():
    first = dedup.dedup_key(wazuh_alert(1))
    again = dedup.dedup_key(wazuh_alert(
        2, timestamp="2024-05-11T13:00:00.000+0000",
        full_log="May 11 13:00:01 web01 sshd[999]: Invalid user paco from 172.17.1.1 port 40000",
        data={"srcip": "172.17.1.1", "srcuser": "paco", "srcport": "40000"}))
    other_source = dedup.dedup_key(wazuh_alert(3, data={"srcip": "172.17.9.9", "srcuser": "paco"}))
    other_agent = dedup.dedup_key(wazuh_alert(4, agent={"id": "002", "name": "web02"}))
    assert first == again
    assert first.startswith("c1|5712|001|")
    assert len({first, other_source, other_agent}) == 3
    assert dedup.dedup_key({"alert_id": 5, "alert_source_content": {"no": "rule"}}) is None


def test_dedup_store_window_and_sharing(tmp_path):
    one = dedup.DedupStore(str(tmp_path), window=100)
    two = dedup.DedupStore(str(tmp_path), window=100)
    one.record("c1|k", 7, {"summary": "s"}, now=1000)
    assert two.lookup("c1|k", now=1050)["alert_id"] == 7  # another instance on the same host sees it
    assert two.lookup("c1|k", now=1101) is None  # outside the window
    two.record("c1|k2", 8, {}, now=1200)  # pruning keeps the file bounded
    assert json.loads((tmp_path / "dedup.json").read_text()).keys() == {"c1|k2"}
    assert (tmp_path / "dedup.json").stat().st_mode & 0o077 == 0
    memory = dedup.DedupStore(None, window=0)
    memory.record("c1|k", 1, {}, now=0)
    assert memory.lookup("c1|k", now=0) is None  # window 0 disables dedup


def test_dedup_never_crosses_customers(tmp_path):
    """Issue 23: two customers, identical alerts (agent 001, same data): different keys, and an entry is only
    ever returned for its own customer, even when a file holds an entry under another tenant's key."""
    first, second = wazuh_alert(1), dict(wazuh_alert(2), alert_customer_id=2)
    key_a, key_b = dedup.dedup_key(first), dedup.dedup_key(second)
    assert key_a != key_b and key_a.startswith("c1|") and key_b.startswith("c2|")
    assert dedup.dedup_key(dict(first, alert_customer_id=None)) is None  # no customer: never deduplicated
    store = dedup.DedupStore(str(tmp_path), window=100)
    store.record(key_a, 1, {"summary": "host web01 of customer A"}, now=1000)
    assert store.lookup(key_a, now=1001)["alert_id"] == 1
    assert store.lookup(key_b, now=1001) is None
    forged = json.loads((tmp_path / "dedup.json").read_text())
    forged[key_b] = dict(forged[key_a])  # an entry of customer 1 stored under customer 2's key
    (tmp_path / "dedup.json").write_text(json.dumps(forged))
    assert store.lookup(key_b, now=1001) is None
    legacy = dedup.DedupStore(None, window=100)
    legacy.memory["c1|x"] = {"alert_id": 3, "time": 1000, "analysis": {}}  # written before keys were scoped
    assert legacy.lookup("c1|x", now=1001) is None


def test_allowlist_by_rule_agent_and_group():
    env = dict(BASE_ENV, AI_WORKER_ALLOWLIST_RULE_IDS="5712, 1002", AI_WORKER_ALLOWLIST_AGENTS="backup01",
               AI_WORKER_ALLOWLIST_GROUPS="ossec")
    config = settings.load_config(env)
    assert "rule 5712" in prompt.allowlist_reason(wazuh_alert(), config)
    assert prompt.allowlist_reason(wazuh_alert(rule={"id": "1", "groups": []}, agent={"name": "backup01"}), config)
    assert prompt.allowlist_reason(wazuh_alert(rule={"id": "1", "groups": ["ossec"]}), config)
    assert prompt.allowlist_reason(wazuh_alert(rule={"id": "1", "groups": ["sshd"]}), config) is None


def test_rate_limiter_counts_a_sliding_minute():
    now = [0.0]
    limiter = dedup.RateLimiter(3, clock=lambda: now[0])
    for _unused in range(3):
        limiter.spend()
    assert limiter.available() == 0
    now[0] = 59.9
    assert limiter.available() == 0
    now[0] = 60.0
    assert limiter.available() == 3
    assert dedup.RateLimiter(0).available() > 10**6  # 0 means no limit


def test_at_the_rate_limit_the_wait_is_the_rest_of_the_window_not_a_poll_interval():
    """Issue 23: the worker slept a whole poll interval at the limit (15/min where the limit was 20)."""
    now = [100.0]
    limiter = dedup.RateLimiter(2, clock=lambda: now[0])
    assert limiter.wait_seconds() == 0
    limiter.spend()
    now[0] = 130.0
    limiter.spend()
    assert limiter.wait_seconds() == 30.0  # the first event leaves the window at 160
    now[0] = 160.0
    assert limiter.wait_seconds() == 0


def test_at_the_rate_limit_the_wait_is_for_a_whole_batch():
    """A batch claimed together leaves the window together: waiting for the first slot alone made batches of one,
    each paying the settle time, and the configured rate was not reached (bench_ai_worker --max-per-minute)."""
    now = [100.0]
    limiter = dedup.RateLimiter(4, clock=lambda: now[0])
    for moment in (100.0, 100.2, 100.4, 130.0):
        now[0] = moment
        limiter.spend()
    now[0] = 131.0
    assert limiter.wait_seconds() == 29.0  # one slot: when the first claim leaves
    assert limiter.wait_seconds(3) == pytest.approx(29.4)  # a batch of three: when the third leaves
    assert limiter.wait_seconds(9) == 59.0  # capped at the limit: the whole window
