"""opencti_enrich against the OpenCTI emulator on 127.0.0.1: one request per alert, events on the queue
socket, cache, every error path, every HTTP framing (HTTP/1.0, Connection: close, keep-alive, chunked),
the deadline against a trickling server, and answers of the wrong shape.

Most runs call the program in this process (opencti_run.run); the launcher tests start it as
integratord does. Events are read from the queue socket after the run has returned: no sleeps.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import opencti_enrich
import pytest
from opencti_enrich import graphql

from tests.support.opencti import DOMAIN, IP6, IP_A, IP_B, IP_C, ids_alert, ip_pattern, make_alert

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = ROOT / "files/integrations/custom-opencti"
TRANSPORTS = ("keep-alive", "close", "http1.0", "chunked")
# A generous bound for "ended at the deadline" that a loaded machine still meets; the deterministic
# part of the deadline tests is that the server had not finished (or not even started) answering.
SLACK = 15


@pytest.fixture
def emu(opencti_emulator):
    return opencti_emulator


@pytest.fixture
def run(opencti_run):
    return opencti_run


def error_of(run):
    [event] = run.events()
    assert event["event_type"] == "error"
    return event["error"]


# --------------------------------------------------------------------------- one request, events
def test_one_request_covers_every_observable_of_the_alert(run, emu):
    emu.load_sample_data()
    execve = {"a0": "curl", "a1": f"http://{DOMAIN}/stage2.ps1", "a2": IP_B}
    assert run.run(make_alert(["audit_command"], {"audit": {"execve": execve}})) == 0
    assert emu.request_count == 1
    request = emu.requests[0]
    assert request["authorized"] and request["path"] == "/graphql"
    variables = request["body"]["variables"]
    assert variables["observableFilters"]["filters"][0]["values"] == [f"http://{DOMAIN}/stage2.ps1", DOMAIN, IP_B]
    assert set(variables["indicatorFilters"]["filters"][1]["values"]) == {
        f"[url:value = 'http://{DOMAIN}/stage2.ps1']", f"[domain-name:value = '{DOMAIN}']",
        f"[hostname:value = '{DOMAIN}']", ip_pattern(IP_B)}
    types = [e["event_type"] for e in run.events()]
    assert types == ["indicator_pattern_match", "observable_with_indicator", "observable_with_related_indicator"]


def test_syscheck_match_uses_the_sha256_filter_key_and_carries_the_file(shared_reference, run, emu):
    alert = json.loads((shared_reference / "sample-alerts" / "syscheck_modified_550.json").read_text())
    sha = alert["syscheck"]["sha256_after"]
    indicator = emu.add_indicator("Trojanised hosts file", f"[file:hashes.'SHA-256' = '{sha}']", x_opencti_score=70)
    stix_file = emu.add_observable("StixFile", hashes={"SHA-256": sha}, name="hosts")
    emu.add_relationship("based-on", indicator["id"], stix_file["id"])
    assert run.run(alert) == 0
    hash_filter = emu.requests[0]["body"]["variables"]["observableFilters"]["filters"][0]
    assert hash_filter["key"] == ["hashes.SHA-256"] and sha in hash_filter["values"]
    messages = run.messages()
    assert [location for location, _payload in messages] == ["[006] (RHEL7) 10.0.1.214->opencti"] * 2
    first, second = (payload["opencti"] for _location, payload in messages)
    assert first["event_type"] == "indicator_pattern_match" and first["matched_value"] == sha
    assert first["source"]["file"] == "/etc/hosts" and first["source"]["sha256"] == sha
    assert first["source"]["alert_id"] == "1594577277.1029" and first["source"]["rule_id"] == "550"
    assert second["event_type"] == "observable_with_indicator" and second["observable_value"] == sha


def test_event_format_and_fields(run, emu):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip=IP_A, dest_ip="10.0.0.1", src_port="4444", proto="TCP")) == 0
    messages = run.messages()
    assert {location for location, _payload in messages} == {"[005] (ids-sensor-01) 192.168.10.5->opencti"}
    indicator_event = messages[0][1]["opencti"]
    assert indicator_event["indicator"]["link"] == (f"{emu.url}/dashboard/observations/indicators/"
                                                    f"{indicator_event['indicator']['id']}")
    source = indicator_event["source"]
    assert source["src_ip"] == IP_A and source["src_port"] == "4444" and source["proto"] == "TCP"
    assert source["agent_name"] == "ids-sensor-01" and source["rule_level"] == 5
    assert "valid_until" not in indicator_event["indicator"]  # nulls and empties are dropped
    assert messages[1][1]["opencti"]["observable_link"].startswith(f"{emu.url}/dashboard/observations/observables/")


def test_ipv6_alert_matches_the_compressed_indicator(run, emu):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip="2A03:2880:F12F:0083:FACE:B00C:0000:25DE", dest_ip="10.0.0.1")) == 0
    events = run.events()
    assert events[0]["event_type"] == "indicator_pattern_match" and events[0]["matched_value"] == IP6


def test_alert_without_observables_makes_no_request_and_needs_no_socket(run, emu):
    assert run.run(ids_alert(src_ip="10.0.0.1"), options={"queue_socket": str(run.dir / "absent")}) == 0
    assert emu.request_count == 0


# --------------------------------------------------------------------------- every HTTP framing
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_http_framing_gives_the_enrichment(run, emu, transport):
    emu.load_sample_data()
    emu.transport = transport
    assert run.run(ids_alert(src_ip=IP_A)) == 0
    assert emu.request_count == 1
    assert [e["event_type"] for e in run.events()] == ["indicator_pattern_match", "observable_with_indicator"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_empty_data_over_every_framing_gives_no_event(run, emu, transport):
    emu.transport = transport
    assert run.run(ids_alert(src_ip=IP_C)) == 0
    assert emu.request_count == 1
    assert run.messages() == []
    assert "ERROR" not in run.log()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_graphql_errors_over_every_framing_carry_the_servers_message(run, emu, transport):
    emu.transport = transport
    emu.fault = "graphql_errors"
    emu.error_message = "Schema definition named [hashes] is missing mapping for attribute [SHA256]"
    assert run.run(ids_alert(src_ip=IP_A)) == 0
    assert error_of(run) == ("OpenCTI API returned an error: Schema definition named [hashes] is missing mapping "
                             "for attribute [SHA256] (FUNCTIONAL_ERROR)")


# --------------------------------------------------------------------------- the deadline
def test_a_trickling_server_is_cut_off_at_the_deadline(run, emu):
    """One byte every 50 ms: a per-read timeout would never fire; the whole-request deadline does."""
    emu.load_sample_data()
    emu.transport = "trickle"
    emu.trickle_interval = 0.05
    started = time.monotonic()
    assert run.run(ids_alert(src_ip=IP_A), timeout="1") == 0
    elapsed = time.monotonic() - started
    assert error_of(run) == "OpenCTI API did not answer within 1 s"
    assert emu.trickle_stopped.wait(SLACK)  # the server saw the client go away...
    assert 0 < emu.trickle_sent < emu.trickle_total  # ...before its answer was complete
    assert 1 <= elapsed < 1 + SLACK


def test_a_server_that_never_answers_is_cut_off_at_the_deadline(run, emu):
    emu.delay = 600  # ended by the emulator's reset
    started = time.monotonic()
    assert run.run(ids_alert(src_ip=IP_A), timeout="1") == 0
    assert error_of(run) == "OpenCTI API did not answer within 1 s"
    assert 1 <= time.monotonic() - started < 1 + SLACK
    assert emu.request_count == 1


def test_a_full_queue_ends_the_run_with_exit_4_instead_of_blocking(run, emu):
    """analysisd's queue holds few datagrams (net.unix.max_dgram_qlen); sending waits until the run's deadline."""
    emu.load_sample_data()
    code = 0
    for _number in range(200):  # nobody reads the queue until it is full
        code = run.run(ids_alert(src_ip=IP_A, dest_ip=IP_B), timeout="1")
        if code:
            break
    assert code == 4
    assert "cannot send to the Wazuh queue socket" in run.log() and "timed out" in run.log()


# --------------------------------------------------------------------------- answers of the wrong shape
def first_indicator(document):
    return document["data"]["indicators"]["edges"][0]["node"]


def first_observable(document):
    return document["data"]["stixCyberObservables"]["edges"][0]["node"]


def setter(where, key, value):
    def hook(document):
        where(document)[key] = value
        return document
    return hook


def raw_value(where, key, text):
    def hook(document):
        where(document)[key] = "@@RAW@@"
        return json.dumps(document).replace('"@@RAW@@"', text).encode()
    return hook


MALFORMED = {
    "pattern-number": (setter(first_indicator, "pattern", 7),
                       "data.indicators.edges[0].node.pattern is a number, expected a string"),
    "objectLabel-number": (setter(first_indicator, "objectLabel", 3),
                           "data.indicators.edges[0].node.objectLabel is a number, expected a list"),
    "edges-not-a-list": (setter(lambda d: d["data"]["indicators"], "edges", {"node": {}}),
                         "data.indicators.edges is an object, expected a list"),
    "indicator_types-number": (setter(first_indicator, "indicator_types", 5),
                               "data.indicators.edges[0].node.indicator_types is a number, expected a list"),
    "score-1e999": (raw_value(first_indicator, "x_opencti_score", "1e999"),
                    "data.indicators.edges[0].node.x_opencti_score is not a finite number"),
    "confidence-NaN": (raw_value(first_indicator, "confidence", "NaN"),
                       "data.indicators.edges[0].node.confidence is not a finite number"),
    "score-fraction": (setter(first_indicator, "x_opencti_score", 80.5),
                       "data.indicators.edges[0].node.x_opencti_score is 80.5, expected an integer"),
    "revoked-string": (setter(first_indicator, "revoked", "false"),
                       "data.indicators.edges[0].node.revoked is a string, expected true or false"),
    "id-number": (setter(first_indicator, "id", 12),
                  "data.indicators.edges[0].node.id is a number, expected a string"),
    "node-string": (setter(lambda d: d["data"]["indicators"]["edges"][0], "node", "x"),
                    "data.indicators.edges[0].node is a string, expected an object"),
    "createdBy-string": (setter(first_indicator, "createdBy", "CERT"),
                         "data.indicators.edges[0].node.createdBy is a string, expected an object"),
    "label-value-list": (setter(first_indicator, "objectLabel", [{"value": ["c2"]}]),
                         "data.indicators.edges[0].node.objectLabel[0].value is a list, expected a string"),
    "hash-number": (setter(first_observable, "hashes", [{"algorithm": "SHA-256", "hash": 1}]),
                    "data.stixCyberObservables.edges[0].node.hashes[0].hash is a number, expected a string"),
    "relationship-end-string": (
        setter(first_observable, "relatedTo", {"edges": [{"node": {"relationship_type": "x", "to": "y"}}]}),
        "data.stixCyberObservables.edges[0].node.relatedTo.edges[0].node.to is a string, expected an object"),
    "observable-score-infinity": (raw_value(first_observable, "x_opencti_score", "-Infinity"),
                                  "data.stixCyberObservables.edges[0].node.x_opencti_score is not a finite number"),
    "data-list": (setter(lambda d: d, "data", []), "data is a list, expected an object"),
    "indicators-list": (setter(lambda d: d["data"], "indicators", []),
                        "data.indicators is a list, expected an object"),
    "errors-string": (setter(lambda d: d, "errors", "boom"), "errors is a string, expected a list"),
    "answer-list": (lambda document: b"[1, 2]", "the answer is a list, expected an object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_an_answer_of_the_wrong_shape_is_one_error_event_naming_the_field(run, emu, case):
    hook, what = MALFORMED[case]
    emu.load_sample_data()
    emu.answer_hook = hook
    assert run.run(ids_alert(src_ip=IP_A)) == 0
    assert error_of(run) == f"OpenCTI API response is malformed: {what}"
    assert "Traceback" not in run.log() and "unexpected error" not in run.log()
    emu.answer_hook = None  # errors are not cached: the next alert asks again and matches
    assert run.run(ids_alert(src_ip=IP_A)) == 0
    assert emu.request_count == 2
    assert run.events()[0]["event_type"] == "indicator_pattern_match"


# --------------------------------------------------------------------------- other failures
@pytest.mark.parametrize(("fault", "message"), [
    ("http_500", "OpenCTI API answered HTTP 500"),
    ("graphql_errors", "OpenCTI API returned an error: Something went wrong (FUNCTIONAL_ERROR)"),
    ("null_data", "OpenCTI API response has no data"),
    ("null_fields", "OpenCTI API response is incomplete: indicators is null"),
    ("not_json", "OpenCTI API response is not JSON"),
])
def test_api_faults_become_one_error_event(run, emu, fault, message):
    emu.load_sample_data()
    emu.fault = fault
    alert = ids_alert(src_ip=IP_A)
    assert run.run(alert) == 0
    [(location, payload)] = run.messages()
    assert location == "[005] (ids-sensor-01) 192.168.10.5->opencti"
    assert payload["opencti"]["event_type"] == "error" and payload["opencti"]["error"] == message
    assert payload["opencti"]["source"]["alert_id"] == alert["id"]
    assert message in run.log()


def test_unreachable_api(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run.run(ids_alert(src_ip=IP_A), url=f"http://127.0.0.1:{port}/graphql") == 0
    assert error_of(run).startswith("cannot reach the OpenCTI API: ")


def test_wrong_token_is_an_error_event_and_never_logged(run, emu):
    wrong = "wrong-token-0123456789abcdef"
    assert run.run(ids_alert(src_ip=IP_A), token=wrong, debug="debug") == 0
    assert error_of(run) == "OpenCTI API returned an error: You must be logged in to do this. (AUTH_REQUIRED)"
    assert emu.requests[0]["authorized"] is False
    assert wrong not in run.log()


@pytest.mark.parametrize(("url", "options", "message"), [
    ("ftp://opencti.example/graphql", {}, "unsupported OpenCTI URL ftp://opencti.example/graphql"),
    ("https://127.0.0.1:9/graphql", {"ca_file": "/nonexistent/ca.pem"}, "cannot load ca_file /nonexistent/ca.pem"),
], ids=["scheme", "ca_file"])
def test_configuration_errors_become_error_events(run, url, options, message):
    assert run.run(ids_alert(src_ip=IP_A), url=url, options=options) == 0
    assert error_of(run).startswith(message)


def test_tls_against_a_plain_http_server(run, emu):
    assert run.run(ids_alert(src_ip=IP_A), url=f"https://127.0.0.1:{emu.port}/graphql") == 0
    assert error_of(run).startswith("TLS error talking to the OpenCTI API")


def test_token_is_masked_in_error_events_and_logs(run, opencti_token, monkeypatch):
    def leaky(*_args, **_kwargs):
        raise graphql.LookupFailed(f"proxy said: bad header Bearer {opencti_token}")

    monkeypatch.setattr(graphql, "post", leaky)
    assert run.run(ids_alert(src_ip=IP_A), debug="debug") == 0
    assert error_of(run) == "proxy said: bad header Bearer ***"
    assert "Bearer ***" in run.log() and opencti_token not in run.log()


def test_debug_log_shows_the_work_but_not_the_token(run, emu, opencti_token):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip=IP_A), debug="debug") == 0
    log = run.log()
    assert "custom-opencti: DEBUG: alert 1748942062.8845211 (rule 100100): observables [('ipv4', '45.155.205.233')]" \
        in log
    assert "OpenCTI request variables" in log and opencti_token not in log


def test_hook_url_without_graphql_path_is_completed(run, emu):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip=IP_A), url=emu.url + "/") == 0
    assert emu.requests[0]["path"] == "/graphql"
    assert run.events()[0]["indicator"]["link"].startswith(f"{emu.url}/dashboard/")


def test_long_alert_fields_are_clipped(run, emu):
    sha = "ab" * 32
    emu.add_indicator("Huge", f"[file:hashes.'SHA-256' = '{sha}']")
    eventdata = {"hashes": f"SHA256={sha}", "commandLine": "x" * 300000, "image": "C:\\a.exe"}
    assert run.run(make_alert(["sysmon", "sysmon_eid1_detections"], {"win": {"eventdata": eventdata}})) == 0
    [(_location, payload)] = run.messages()
    assert len(payload["opencti"]["source"]["command_line"]) == 1024


def test_option_problems_reach_the_log(run, emu):
    assert run.run(ids_alert(src_ip=IP_C), options={"max_obs_alert": 1, "verify_tls": "no"}) == 0
    log = run.log()
    assert "WARNING: unknown option 'max_obs_alert' ignored" in log
    assert "WARNING: option 'verify_tls' must be true or false; using the default True" in log
    assert emu.request_count == 1


# --------------------------------------------------------------------------- cache
def test_cache_hit_makes_no_request_and_gives_the_same_events(run, emu):
    emu.load_sample_data()
    alert = ids_alert(src_ip=IP_A)
    assert run.run(alert) == 0
    first = run.events()
    assert run.run(alert) == 0
    assert emu.request_count == 1
    assert run.events() == first and first


def test_misses_are_cached_and_only_uncached_observables_are_requested(run, emu):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip=IP_C)) == 0
    assert run.run(ids_alert(src_ip=IP_C)) == 0
    assert emu.request_count == 1
    assert run.run(ids_alert(src_ip=IP_C, dest_ip=IP_A)) == 0
    assert emu.request_count == 2
    assert emu.requests[1]["body"]["variables"]["observableFilters"]["filters"][0]["values"] == [IP_A]


def test_cache_ttl_zero_disables_the_cache(run, emu):
    for _unused in range(2):
        assert run.run(ids_alert(src_ip=IP_C), options={"cache_ttl": 0}) == 0
    assert emu.request_count == 2
    assert not (run.state_dir / "opencti-cache.json").exists()


def test_unwritable_state_dir_costs_requests_not_events(run, emu):
    emu.load_sample_data()
    (run.dir / "file").write_text("")
    options = {"state_dir": str(run.dir / "file" / "state")}
    for _unused in range(2):
        assert run.run(ids_alert(src_ip=IP_A), options=options) == 0
    assert emu.request_count == 2
    assert len(run.events()) == 4
    assert "cannot write cache file" in run.log()


# --------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize("content", [None, "missing", "alertdate='2025'\nruleid='5710'\n", "[1, 2]"],
                         ids=["no-file-argument", "missing-file", "not-json-format", "not-an-object"])
def test_unreadable_alert_exits_3(run, emu, content):
    argv = run.argv({})
    if content is None:
        argv[1] = ""
    elif content == "missing":
        argv[1] = str(run.dir / "gone.alert")
    else:
        run.write_alert(content)
    assert opencti_enrich.main(argv) == 3
    assert emu.request_count == 0
    assert "ERROR:" in run.log()


def test_queue_socket_failure_exits_4(run, emu):
    emu.load_sample_data()
    assert run.run(ids_alert(src_ip=IP_A), options={"queue_socket": str(run.dir / "absent")}) == 4
    assert "cannot send to the Wazuh queue socket" in run.log()


def test_unexpected_failure_exits_5_with_a_masked_traceback(run, opencti_token, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError(f"boom {opencti_token}")

    monkeypatch.setattr(opencti_enrich, "extract_observables", broken)
    assert run.run(ids_alert(src_ip=IP_A)) == 5
    assert "RuntimeError: boom ***" in run.log() and opencti_token not in run.log()


def test_bad_command_line_exits_2(run, monkeypatch):
    monkeypatch.chdir(run.dir)
    (run.dir / "logs").mkdir()
    assert opencti_enrich.main(["integrations", "/tmp/a.alert", "TOKEN-123"]) == 2
    log = (run.dir / "logs" / "integrations.log").read_text()
    assert "ERROR: got 2 arguments; expected ALERT_FILE API_KEY HOOK_URL" in log


# --------------------------------------------------------------------------- the launcher
@pytest.fixture
def installed(run, tmp_path):
    """The launcher with this interpreter's path in its shebang and the packages beside it (as the role)."""
    from tests.bench.bench_forwarder import install

    return install(tmp_path / "integrations", os.path.realpath(sys.executable), "custom-opencti",
                   ("integrations/opencti_enrich", "socstack_core"))


def test_launcher_runs_the_program_as_integratord_would(run, emu, installed):
    assert LAUNCHER.read_text().splitlines()[0] == "#!/usr/bin/env -S python3 -IS" and os.access(LAUNCHER, os.X_OK)
    emu.load_sample_data()
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(installed), *run.argv(ids_alert(src_ip=IP_A))[1:]], cwd=run.dir, env=env,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert [e["event_type"] for e in run.events()] == ["indicator_pattern_match", "observable_with_indicator"]
    done = subprocess.run([str(installed), "only-one"], cwd=run.dir, env=env, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 2


@pytest.mark.parametrize(("alert", "cached", "absent"), [
    (ids_alert(src_ip="10.0.0.1"), False, {"opencti_enrich.cache", "opencti_enrich.graphql", "socstack_core.http",
                                           "_ssl", "opencti_enrich.wazuh_queue"}),
    (ids_alert(src_ip=IP_C), True, {"opencti_enrich.graphql", "opencti_enrich.answer", "socstack_core.http"}),
    # the emulator speaks plain http: libssl is loaded only for an https URL (socstack_core.http loads tls lazily)
    (ids_alert(src_ip=IP_A), False, {"_ssl", "socstack_core.tls"}),
], ids=["nothing-to-look-up", "all-cached", "request-over-http"])
def test_a_run_imports_only_what_it_needs(run, emu, installed, alert, cached, absent):
    emu.load_sample_data()
    if cached:
        assert run.run(alert) == 0
    done = subprocess.run([sys.executable, "-X", "importtime", "-IS", str(installed), *run.argv(alert)[1:]],
                          cwd=run.dir, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "opencti_enrich" in imported
    slow = {"re", "ipaddress", "json", "datetime", "logging", "socket", "ssl", "http.client", "urllib.parse",
            "tempfile", "typing", "collections", "enum", "email", "traceback"}
    assert not imported & (slow | absent)
    shutil.rmtree(run.state_dir, ignore_errors=True)
