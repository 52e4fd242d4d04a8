"""Unit tests of the forwarder (the package files/integrations/iris_forwarder, which the launcher
custom-wazuh_iris.py runs) that need no IRIS, no socket and no subprocess: argv, options, building the
IRIS alert, time parsing, reading alert files, and the spool.

The shared core's own tests are in test_core.py; the forwarder against the IRIS emulator is in
tests/integration/test_forwarder_iris.py, and its fault proofs in tests/integration/test_forwarder_faults.py.
"""
import json
import os
from pathlib import Path

import iris_forwarder  # files/integrations is on sys.path (tests/conftest.py)
import pytest
from iris_forwarder import settings
from iris_forwarder.alert import CONTENT_MAX_CHARS
from iris_forwarder.spool import REJECTED_KEEP_BYTES
from socstack_core.log import Log

from tests.support.forwarder import ALERT_B

KEY = "K3y-" + "s" * 60
REDIRECT = "> /dev/null 2>&1"

# Small alerts in Wazuh's alerts.json shape, so these tests run without ../shared.
SSHD_ALERT = ALERT_B  # an sshd brute-force alert in Wazuh's alerts.json shape
WEB_ALERT = {
    "timestamp": "2017-03-27T13:40:41.204-0700",
    "rule": {"level": 7, "description": "SQL injection attempt.", "id": "31103",
             "mitre": {"id": ["T1190"], "tactic": ["Initial Access"],
                       "technique": ["Exploit Public-Facing Application"]},
             "groups": ["web", "accesslog", "attack", "sql_injection"]},
    "agent": {"id": "002", "name": "web01", "ip": "192.168.20.11"},
    "id": "1490647241.51877",
    "full_log": 'web01 apache: 10.11.12.13 "GET /modules.php?query=%20UNION%20SELECT%200,aid,pwd HTTP/1.0" 404',
    "location": "/var/log/apache2/access.log",
}


@pytest.fixture(scope="module")
def fw():
    return iris_forwarder


@pytest.fixture
def log(tmp_path):
    return Log("custom-wazuh_iris", str(tmp_path / "integrations.log"))


def options(fw, **changes):
    opts = fw.default_options()
    opts.update(changes)
    return opts


# ------------------------------------------------------------------------------------------ argv
def test_old_three_argument_form(fw):
    args = fw.parse_args(["integrations", "/tmp/a.alert", KEY, "https://iris/alerts/add"])
    assert (args.alert_file, args.api_key, args.hook_url) == ("/tmp/a.alert", KEY, "https://iris/alerts/add")
    assert (args.debug, args.options_file, args.timeout, args.retries, args.replay) == (False, "", 10, 3, False)


def test_wazuh_48_form_with_redirect_element(fw):
    argv = ["integrations", "/tmp/a.alert", KEY, "https://iris/alerts/add", "", "/tmp/a.options", "7", "2", REDIRECT]
    args = fw.parse_args(argv)
    assert (args.options_file, args.timeout, args.retries, args.debug) == ("/tmp/a.options", 7, 2, False)


def test_wazuh_48_form_in_debug_mode_has_no_redirect(fw):
    args = fw.parse_args(["integrations", "/tmp/a.alert", KEY, "https://iris", "debug", "", "10", "3"])
    assert args.debug is True
    assert args.options_file == ""


def test_empty_slots_take_defaults(fw):
    args = fw.parse_args(["integrations", "/tmp/a.alert", "", "", "", "", "", "", REDIRECT])
    assert (args.api_key, args.hook_url, args.timeout, args.retries) == ("", "", 10, 3)


def test_three_argument_form_with_debug_slot(fw):
    assert fw.parse_args(["integrations", "/tmp/a", KEY, "https://iris", "debug"]).debug is True


@pytest.mark.parametrize("count", [0, 1, 2, 5, 6, 9, 10])
def test_unknown_layouts_are_refused_without_echoing_values(fw, count):
    argv = ["integrations"] + [f"{KEY}{i}" for i in range(count)]
    with pytest.raises(fw.UsageError) as raised:
        fw.parse_args(argv)
    assert KEY not in str(raised.value)
    assert f"got {count} arguments" in str(raised.value)


@pytest.mark.parametrize("argv", [
    # integratord cuts at most 8 times, so the last piece keeps the rest of its command line
    ["integrations", "/tmp/a", "half", "key", "https://iris", "", "/tmp/o", "10", "3 > /dev/null 2>&1"],
    ["integrations", "/tmp/a", "half", "key", "https://iris", "debug", "/tmp/o", "10", "3"],
    ["integrations", "/tmp/a", "half", "key", "https://iris", "", "", "10", "3 > /dev/null 2>&1"],
])
def test_a_space_in_the_key_shifts_arguments_and_is_explained(fw, argv):
    with pytest.raises(fw.UsageError, match="shifts every later argument") as raised:
        fw.parse_args(argv)
    assert "half" not in str(raised.value)


def test_bad_debug_slot_is_refused(fw):
    with pytest.raises(fw.UsageError, match="debug"):
        fw.parse_args(["integrations", "/tmp/a", KEY, "https://iris", "verbose", "", "10", "3"])


def test_replay_arguments(fw):
    args = fw.parse_args(["x", "--replay", "--options", "/etc/o.json", "--debug"])
    assert (args.replay, args.options_file, args.debug) == (True, "/etc/o.json", True)
    assert fw.parse_args(["x", "--replay", "--options=/etc/o.json"]).options_file == "/etc/o.json"
    for bad in (["x", "--replay"], ["x", "--replay", "--options"], ["x", "--replay", "--options", "f", "--what"]):
        with pytest.raises(fw.UsageError):
            fw.parse_args(bad)


# --------------------------------------------------------------------------------------- options
def write(path, text):
    path.write_text(text)
    return str(path)


def test_no_options_file_gives_the_documented_defaults(fw):
    opts, problems = fw.load_options("")
    assert problems == []
    assert opts["customer_id"] == 1
    assert opts["status"] == "New"
    assert opts["verify_tls"] is True
    assert opts["ai_pending"] is False
    assert opts["tags"] == []
    assert opts["cache_ttl"] == 3600
    assert opts["severity_by_level"] == [(0, 3, "Informational"), (4, 6, "Low"), (7, 9, "Medium"),
                                         (10, 12, "High"), (13, 15, "Critical")]


def test_valid_options_are_used(fw, tmp_path):
    given = {"customer_id": 3, "status": "Assigned", "tags": ["soc", " prod "], "ai_pending": True,
             "verify_tls": False, "severity_by_level": {"0-9": "Low", "10": "High", "11-16": "Critical"},
             "dashboard_url": "https://dash/{id}", "spool_max_files": 5}
    opts, problems = fw.load_options(write(tmp_path / "o", json.dumps(given) + "\n"))
    assert problems == []
    assert (opts["customer_id"], opts["status"], opts["tags"], opts["ai_pending"]) == (3, "Assigned", ["soc", "prod"],
                                                                                       True)
    assert opts["severity_by_level"] == [(0, 9, "Low"), (10, 10, "High"), (11, 16, "Critical")]
    assert opts["spool_max_files"] == 5


def test_unknown_keys_and_wrong_types_fall_back_to_defaults(fw, tmp_path):
    given = {"customer": 2, "customer_id": "2", "verify_tls": "no", "tags": "soc", "spool_max_files": 0,
             "severity_by_level": {"high": "High"}, "cache_ttl": True, "status": ""}
    opts, problems = fw.load_options(write(tmp_path / "o", json.dumps(given)))
    defaults = fw.default_options()
    for name in ("customer_id", "verify_tls", "tags", "spool_max_files", "severity_by_level", "cache_ttl", "status"):
        assert opts[name] == defaults[name], name
    text = "\n".join(problems)
    assert "unknown option 'customer' ignored" in text
    assert "option 'customer_id' must be an integer" in text
    assert "option 'verify_tls' must be true or false" in text
    assert "option 'spool_max_files' must be >= 1" in text
    assert len(problems) == len(given)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
    (b"\xff\xfe{}", "cannot read options file"),
])
def test_unusable_options_file_gives_defaults_and_a_reason(fw, tmp_path, content, message):
    path = tmp_path / "o"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    opts, problems = fw.load_options(str(path))
    assert opts == fw.default_options()
    assert len(problems) == 1
    assert message in problems[0]


def test_missing_options_file(fw, tmp_path):
    opts, problems = fw.load_options(str(tmp_path / "absent"))
    assert opts == fw.default_options()
    assert "cannot read options file" in problems[0]


# -------------------------------------------------------------------------------------- severity
@pytest.mark.parametrize("level, name", [
    (0, "Informational"), (3, "Informational"), (4, "Low"), (6, "Low"), (7, "Medium"), (9, "Medium"),
    (10, "High"), (12, "High"), (13, "Critical"), (15, "Critical"), (16, "Critical"), (None, "Informational"),
])
def test_default_severity_by_level(fw, level, name):
    assert fw.severity_for_level(level, fw.default_options()["severity_by_level"]) == name


def test_levels_outside_a_custom_mapping_take_the_nearest_range(fw):
    ranges = settings.level_ranges({"5-8": "Low", "12-14": "High"})
    assert [fw.severity_for_level(level, ranges) for level in (0, 5, 9, 11, 15)] == ["Low", "Low", "Low", "High",
                                                                                     "High"]


# ---------------------------------------------------------------------------------- build_alert
def test_payload_from_an_inline_alert(fw):
    payload = fw.build_alert(SSHD_ALERT, options(fw, customer_id=4))
    assert payload["alert_title"] == "sshd: brute force trying to get access to the system. (wazuh-manager)"
    assert payload["alert_source"] == "Wazuh"
    assert payload["alert_source_ref"] == "1652272159.1549653"
    assert payload["alert_source_event_time"] == "2022-05-11T12:29:19"
    assert payload["alert_tags"] == "wazuh,agent:wazuh-manager,rule:5712,T1110"
    assert payload["alert_customer_id"] == 4
    assert payload["alert_source_content"] == SSHD_ALERT
    assert "alert_source_link" not in payload
    assert "alert_severity_id" not in payload
    description = payload["alert_description"]
    for expected in ("**Rule:** 5712 (level 10)", "syslog, sshd, authentication\\_failures", "id 000",
                     "ip n/a", "**MITRE ids:** T1110", "Credential Access", "Brute Force", "/var/log/secure",
                     "```\nMay 11 12:29:18 localhost sshd[17584]: Invalid user paco"):
        assert expected in description


def test_payload_converts_the_event_time_to_utc_and_links_the_dashboard(fw):
    payload = fw.build_alert(WEB_ALERT, options(fw, dashboard_url="https://dash.example/app/x?q=id:{id}",
                                                tags=["dmz", "web,tier"], ai_pending=True))
    assert payload["alert_source_event_time"] == "2017-03-27T20:40:41"
    assert payload["alert_source_link"] == "https://dash.example/app/x?q=id:1490647241.51877"
    assert payload["alert_tags"] == "wazuh,agent:web01,rule:31103,T1190,dmz,web tier,ai-pending"
    assert "ip 192.168.20.11" in payload["alert_description"]


def test_dashboard_url_without_placeholder_is_used_as_is(fw):
    payload = fw.build_alert(WEB_ALERT, options(fw, dashboard_url="https://dash.example"))
    assert payload["alert_source_link"] == "https://dash.example"


def test_every_sample_alert_builds(fw, shared_reference):
    samples = sorted((shared_reference / "sample-alerts").glob("*.json"))
    assert len(samples) >= 7
    for sample in samples:
        alert = json.loads(sample.read_text())
        payload = fw.build_alert(alert, fw.default_options())
        rule, agent = alert["rule"], alert["agent"]
        assert payload["alert_source_ref"] == f"{alert['manager']['name']}:{alert['id']}", sample.name
        assert payload["alert_title"].startswith(rule["description"][:40]), sample.name
        tags = payload["alert_tags"].split(",")
        assert tags[:3] == ["wazuh", f"agent:{agent['name']}", f"rule:{rule['id']}"], sample.name
        assert set(rule.get("mitre", {}).get("id", [])) <= set(tags), sample.name
        assert payload["alert_source_content"] == alert, sample.name
        assert payload["alert_source_event_time"][:10] == alert["timestamp"][:10], sample.name
        assert f"level {rule['level']}" in payload["alert_description"], sample.name
        if "full_log" in alert:
            assert alert["full_log"][:60] in payload["alert_description"], sample.name
        else:
            assert "**Full log**" not in payload["alert_description"], sample.name


def test_missing_rule_and_agent_use_placeholders_and_warn(fw, log):
    payload = fw.build_alert({"timestamp": "2024-01-01T00:00:00.000+0000", "full_log": "x"}, fw.default_options(),
                             log)
    assert payload["alert_title"] == "Wazuh rule unknown (unknown)"
    assert payload["alert_tags"] == "wazuh,agent:unknown,rule:unknown"
    assert payload["alert_source_ref"].startswith("wazuh-noid-")
    assert "lacks rule, agent, rule.description, id" in Path(log.path).read_text()


def test_alert_without_id_gets_a_stable_reference(fw):
    alert = {"rule": {"id": "1"}, "agent": {"name": "a"}}
    assert fw.source_ref_for(alert) == fw.source_ref_for(json.loads(json.dumps(alert)))
    assert fw.source_ref_for(alert) != fw.source_ref_for({"rule": {"id": "2"}})


def test_a_10_mb_full_log_gives_a_bounded_payload(fw, log):
    alert = dict(SSHD_ALERT, full_log="A" * (10 * 1024 * 1024))
    payload = fw.build_alert(alert, fw.default_options(), log)
    size = len(json.dumps(payload))
    assert size < CONTENT_MAX_CHARS + 20000
    assert "first 4096 of 10485760 characters" in payload["alert_description"]
    assert "Source content truncated" in payload["alert_description"]
    assert payload["alert_source_content"]["full_log"].endswith("10485760 characters, first 65536 kept]")
    assert payload["alert_source_content"]["rule"] == SSHD_ALERT["rule"]
    assert "source content truncated" in Path(log.path).read_text()


def test_many_medium_strings_are_cut_harder(fw):
    alert = dict(SSHD_ALERT, data={f"f{i}": "x" * 20000 for i in range(40)})
    content, note = fw.bound_content(alert)
    assert len(json.dumps(content)) <= CONTENT_MAX_CHARS
    assert "longer than 4096 characters" in note


def test_a_huge_list_keeps_only_the_main_fields(fw):
    alert = dict(SSHD_ALERT, data={"items": ["y" * 10] * 100000})
    content, note = fw.bound_content(alert)
    assert "data" not in content
    assert content["rule"] == SSHD_ALERT["rule"]
    assert "only its main fields" in note


def test_full_log_with_backticks_cannot_escape_its_code_block(fw):
    payload = fw.build_alert(dict(SSHD_ALERT, full_log="a ```` b"), fw.default_options())
    assert "`````\na ```` b\n`````" in payload["alert_description"]


def test_markdown_in_fields_is_neutralised(fw):
    alert = dict(SSHD_ALERT, rule=dict(SSHD_ALERT["rule"], description="<img src=x> *bold* [link](x)"))
    description = fw.build_alert(alert, fw.default_options())["alert_description"]
    assert "\\<img src=x\\> \\*bold\\* \\[link\\](x)" in description


@pytest.mark.parametrize("stamp, expected", [
    ("2022-05-11T12:29:19.905+0000", "2022-05-11T12:29:19"),
    ("2017-03-27T13:40:40.204-0700", "2017-03-27T20:40:40"),
    ("2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00"),
    ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59"),
    ("2024-03-01 10:00:00", "2024-03-01T10:00:00"),
    ("2023-02-29T00:00:00+0000", None),
    ("2024-01-01T24:00:00+0000", None),
    (" 2024-03-01T10:00:00,123456-01:30 ", "2024-03-01T11:30:00"),
    ("2024-03-01T10:00:00.+0000", None),
    ("2024-03-01T10:00:00.5+01", None),
    ("2024-03-01T10:00:00+05:3", None),
    ("2024-03-01T10:00:00z", None),
    ("2024-03-01X10:00:00", None),
    ("2024-03-01T10:0a:00", None),
    ("2024-03-01T10:00", None),
    ("yesterday", None),
    ("", None),
    (1717400000, None),
])
def test_iris_event_time(fw, stamp, expected):
    assert fw.iris_event_time(stamp) == expected


# --------------------------------------------------------------------------------------- client
def test_the_host_is_kept_ascii_and_idn_names_are_converted(fw, log):
    """A str host with non-ASCII makes socket and ssl import the idna codec; the client converts it once."""
    def client(url):
        return fw.Iris(url, KEY, timeout=1, retries=0, deadline=0, options=fw.default_options(), log=log)

    assert client("https://IRIS.example:9094/alerts/add").endpoint.host_ascii == "IRIS.example"
    assert client("https://proxy.example/iris/alerts/add").url == "https://proxy.example:443/iris"
    assert client("https://[::1]:8443").endpoint.host_ascii == "::1"
    assert client("https://b\u00fccher.example").endpoint.host_ascii == "xn--bcher-kva.example"
    with pytest.raises(ValueError):  # a label too long for IDNA
        client("https://" + "\u00fc" * 64 + ".example")


def test_a_key_with_a_line_break_cannot_inject_headers(fw, log):
    with pytest.raises(ValueError, match="line break") as raised:
        fw.Iris("https://iris", KEY + "\r\nX-Evil: 1", timeout=1, retries=0, deadline=0,
                options=fw.default_options(), log=log)
    assert KEY not in str(raised.value)


# ------------------------------------------------------------------------------------- read_alert
@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b'{"rule": ', "is not JSON"),
    (b"[1, 2]", "holds a JSON list"),
    (b"alertdate='x'\nalertlocation='y'\n", "<alert_format>json</alert_format>"),
])
def test_read_alert_refuses_bad_input(fw, tmp_path, content, message):
    path = tmp_path / "a.alert"
    path.write_bytes(content)
    with pytest.raises(fw.BadInput) as raised:
        fw.read_alert(str(path))
    assert message in raised.value.args[0]


def test_read_alert_without_a_file(fw, tmp_path):
    with pytest.raises(fw.BadInput, match="no alert file"):
        fw.read_alert("")
    with pytest.raises(fw.BadInput, match="cannot read alert file"):
        fw.read_alert(str(tmp_path / "gone.alert"))


def test_read_alert_replaces_bytes_that_are_not_utf8(fw, tmp_path):
    path = tmp_path / "a.alert"
    path.write_bytes(b'{"id": "1.2", "full_log": "caf\xe9"}\n')
    alert, notes = fw.read_alert(str(path))
    assert alert["full_log"] == "caf\ufffd"
    assert len(notes) == 1
    assert "not valid UTF-8" in notes[0]
    assert "offset 30" in notes[0]


def test_read_alert_makes_lone_surrogates_and_deep_nesting_encodable(fw, tmp_path):
    """Valid JSON that cannot be encoded back as UTF-8 (a lone surrogate) or is nested past what an
    encoder walks is made deliverable, and the notes say what was replaced."""
    path = tmp_path / "a.alert"
    deep = "[" * 400 + "]" * 400
    path.write_text('{"id": "1.3", "full_log": "x\\ud800y", "data": {"deep": ' + deep + "}}")
    alert, notes = fw.read_alert(str(path))
    assert alert["full_log"] == "x\ufffdy"
    assert any("lone surrogates" in note for note in notes)
    assert any("nested deeper than" in note for note in notes)
    payload = fw.build_alert(alert, fw.default_options(), notes=notes)
    json.dumps(payload, ensure_ascii=False).encode("utf-8")  # encodable: no exception
    assert "lone surrogates" in payload["alert_description"]


def test_read_alert_keeps_json_too_deep_to_parse_as_bad_input(fw, tmp_path):
    path = tmp_path / "a.alert"
    path.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(fw.BadInput) as raised:
        fw.read_alert(str(path))
    assert "nested too deeply" in raised.value.args[0]
    assert raised.value.args[1].startswith(b'{"a": [[[')  # the raw bytes, for rejected/


# ------------------------------------------------------------------------------------------ spool
def spool_for(fw, tmp_path, log, **changes):
    return fw.Spool(options(fw, state_dir=str(tmp_path / "state"), **changes), log)


def item_for(fw, ref):
    return fw.new_item(fw.build_alert(dict(SSHD_ALERT, id=ref), fw.default_options()), "High", "New")


def refs(spool):
    out = []
    for path in spool.pending():
        held = spool.claim(path)
        out.append(spool.load(held)["source_ref"])
        held.close()
    return out


def test_spool_keeps_items_oldest_first_and_writes_atomically(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    for ref in ("1.1", "1.2", "1.3"):
        spool.add(item_for(fw, ref)).close()
    assert refs(spool) == ["1.1", "1.2", "1.3"]
    assert not [name for name in os.listdir(spool.dir) if name.startswith(".tmp-")]
    assert oct(os.stat(spool.pending()[0]).st_mode & 0o777) == "0o640"


def test_a_held_item_cannot_be_claimed_until_its_holder_lets_go(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    held = spool.add(item_for(fw, "1.4"))
    assert spool.claim(held.path) is None  # the writer locked it before it became visible
    spool.update(held, dict(spool.load(held), state="unknown"))
    assert spool.claim(held.path) is None  # the lock moves with the rewritten file
    held.close()
    again = spool.claim(held.path)
    assert again is not None
    assert spool.load(again)["state"] == "unknown"
    again.close()


def test_full_spool_drops_the_oldest_and_names_them(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log, spool_max_files=2)
    for ref in ("2.1", "2.2", "2.3", "2.4"):
        spool.add(item_for(fw, ref)).close()
    spool.enforce_bound()
    assert refs(spool) == ["2.3", "2.4"]
    assert "spool full (2 files): dropped the 2 oldest alert(s): 2.1, 2.2" in Path(log.path).read_text()


def test_the_bound_never_drops_an_item_in_flight(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log, spool_max_files=1)
    in_flight = spool.add(item_for(fw, "3.1"))
    spool.add(item_for(fw, "3.2")).close()
    spool.enforce_bound()
    assert refs_without(spool, in_flight) == []
    assert spool.pending() == [in_flight.path]
    in_flight.close()


def refs_without(spool, held):
    return [path for path in spool.pending() if path != held.path]


def test_drain_lock_is_exclusive(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    first = spool.drain_lock()
    assert first is not None
    assert spool.drain_lock() is None
    os.close(first)
    second = spool.drain_lock()
    assert second is not None
    os.close(second)


def test_items_of_version_1_are_read_with_their_state(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    os.makedirs(spool.dir)
    old = {"v": 1, "source_ref": "9.1", "severity": "High", "status": "New", "payload": {"a": 1}, "created": 1.0,
           "attempts": 2, "ambiguous": True, "last_error": "x"}
    path = Path(spool.dir) / "00000000000000000001-aaaaaa-9.1.json"
    path.write_text(json.dumps(old))
    held = spool.claim(str(path))
    item = spool.load(held)
    held.close()
    assert (item["state"], item["sent_at"], item["failures"], item["not_before"]) == ("unknown", None, 0, 0)


def test_rejected_items_are_bounded(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log, rejected_max_files=2)
    for ref in ("4.1", "4.2", "4.3"):
        spool.reject(item_for(fw, ref), "HTTP 400: nope")
    names = sorted(os.listdir(spool.rejected_dir))
    assert len(names) == 2
    kept = [json.loads((Path(spool.rejected_dir) / name).read_text()) for name in names]
    assert [item["source_ref"] for item in kept] == ["4.2", "4.3"]
    assert kept[0]["rejected_reason"] == "HTTP 400: nope"


def test_corrupt_spool_file_is_moved_aside(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    held = spool.add(item_for(fw, "5.1"))
    path = held.path
    Path(path).write_text("{torn")
    assert spool.load(held) is None
    held.close()
    assert spool.pending() == []
    assert os.listdir(spool.rejected_dir) == [os.path.basename(path)]
    assert "is unreadable (JSONDecodeError); moved to rejected/" in Path(log.path).read_text()


def test_unparsed_alert_bytes_are_kept_bounded(fw, tmp_path, log):
    spool = spool_for(fw, tmp_path, log)
    path = spool.keep_unparsed(b"x" * (REJECTED_KEEP_BYTES + 10))
    assert os.path.getsize(path) == REJECTED_KEEP_BYTES


def test_secrets_are_masked_in_every_spool_file(fw, tmp_path, log):
    log.masker.add(KEY)
    spool = spool_for(fw, tmp_path, log)
    item = dict(item_for(fw, "6.1"), last_error=f"HTTP 500: bad token {KEY}")
    held = spool.add(item)
    spool.update(held, dict(item, last_error=f"again {KEY}"))
    held.close()
    spool.reject(item, f"HTTP 400: {KEY}")
    spool.keep_unparsed(f"raw {KEY}".encode())
    spool.set_outage(f"unavailable: {KEY}")
    written = [p for p in Path(spool.state_dir).rglob("*") if p.is_file()]
    assert len(written) == 4
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


# -------------------------------------------------------------------------------------------- docs
def option_rows(path, heading):
    """{name: default} of the option table under heading in a Markdown file."""
    text = (Path(__file__).resolve().parents[2] / path).read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[2].startswith("`"):
            rows[cells[0].strip("`")] = json.loads(cells[2].strip("`"))
    return rows


@pytest.mark.parametrize("path, heading", [("docs/forwarder.md", "## Options")])
def test_the_documented_options_are_the_programs(fw, path, heading):
    documented = option_rows(path, heading)
    assert set(documented) == set(settings.OPTIONS)
    for name, (_check, default) in settings.OPTIONS.items():
        assert documented[name] == default, name
