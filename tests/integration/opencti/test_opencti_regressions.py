"""Regressions of issue 22 in the OpenCTI enrichment: each test failed on the code before the fix."""
import json
import time

from opencti_enrich import cache as cache_module
from opencti_enrich.addresses import Observable
from socstack_core.log import Log

from tests.support.opencti import IP_A, IP_B, ids_alert


def leaked(text, secret, width=16):
    return next((secret[i:i + width] for i in range(len(secret) - width + 1) if secret[i:i + width] in text), None)


def test_a_token_straddling_the_cut_of_an_error_message_is_masked(opencti_run, opencti_emulator, opencti_token):
    """Was: the server's message was cut (300 characters) before masking: the error event, which analysisd
    turns into an alert, carried the token minus its tail."""
    from opencti_enrich.answer import MAX_ERROR_TEXT

    opencti_emulator.fault = "graphql_errors"
    opencti_emulator.error_message = "e" * (MAX_ERROR_TEXT - len(opencti_token) // 2) + opencti_token
    assert opencti_run.run(ids_alert(src_ip=IP_A), debug="debug") == 0
    (event,) = opencti_run.events()
    assert event["event_type"] == "error"
    assert leaked(json.dumps(event), opencti_token) is None
    assert leaked(opencti_run.log(), opencti_token) is None


def cache_in(tmp_path, ttl=3600):
    return cache_module.ResultCache(str(tmp_path), ttl, 10000, Log("t", str(tmp_path / "log")))


RESULT = {"indicators": [], "observables": []}


def test_concurrent_runs_keep_each_others_cache_entries(tmp_path):
    """Was: each run wrote the entries it had read plus its own: of 20 concurrent runs, 1 entry was kept."""
    runs = [cache_in(tmp_path) for _number in range(20)]  # all read the (empty) file before any writes
    for number, run in enumerate(runs):
        run.put(Observable("ipv4", f"45.155.205.{number}"), RESULT)
    for run in runs:
        run.save()
    again = cache_in(tmp_path)
    assert all(again.get(Observable("ipv4", f"45.155.205.{number}")) == RESULT for number in range(20))


def test_an_entry_stored_in_the_future_is_not_trusted(tmp_path):
    """Was: an entry with a 'stored' time ahead of now was trusted forever (now - stored < ttl always)."""
    path = tmp_path / cache_module.CACHE_FILE
    entries = {f"ipv4:{IP_A}": {"stored": time.time() + 86400, "result": RESULT},
               f"ipv4:{IP_B}": {"stored": time.time() - 10, "result": RESULT}}
    path.write_text(json.dumps({"version": 1, "entries": entries}))
    cache = cache_in(tmp_path)
    assert cache.get(Observable("ipv4", IP_A)) is None
    assert cache.get(Observable("ipv4", IP_B)) == RESULT


def test_the_token_comes_from_the_token_file_not_the_command_line(
        opencti_run, opencti_emulator, opencti_token, tmp_path):
    """Was: the token could only come from <api_key>, i.e. integratord's argv, readable in /proc/<pid>/cmdline."""
    opencti_emulator.load_sample_data()
    token_file = tmp_path / "opencti.token"
    token_file.write_text(opencti_token + "\n")
    token_file.chmod(0o640)
    argv = opencti_run.argv(ids_alert(src_ip=IP_A), token="", options={"api_key_file": str(token_file)})
    assert opencti_token not in argv
    import opencti_enrich

    assert opencti_enrich.main(argv) == 0
    assert [e["event_type"] for e in opencti_run.events()] == ["indicator_pattern_match", "observable_with_indicator"]
    assert opencti_emulator.requests[0]["authorized"] is True


def test_a_token_file_every_user_can_read_is_refused(opencti_run, opencti_emulator, opencti_token, tmp_path):
    token_file = tmp_path / "opencti.token"
    token_file.write_text(opencti_token)
    token_file.chmod(0o644)
    assert opencti_run.run(ids_alert(src_ip=IP_A), token="", options={"api_key_file": str(token_file)}) == 2
    assert "is open to every local user (mode 0644)" in opencti_run.log()
    assert opencti_emulator.requests == []


def test_no_token_at_all_is_a_usage_error(opencti_run, opencti_emulator):
    assert opencti_run.run(ids_alert(src_ip=IP_A), token="") == 2
    assert "no OpenCTI token: set the option api_key_file" in opencti_run.log()
