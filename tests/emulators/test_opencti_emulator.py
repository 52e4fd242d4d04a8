"""tests/emulators/opencti.py answers like OpenCTI where the reference says how (opencti.md §1-§3)."""

import json
import os
import signal
import subprocess
import sys
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.emulators.opencti import OpenCTIEmulator

TOKEN = "emulator-token-1234"
QUERY = """query Q($f: FilterGroup) {
  stixCyberObservables(filters: $f, first: 5) {
    edges { node { id entity_type observable_value ... on StixFile { hashes { algorithm hash } } } }
    pageInfo { globalCount hasNextPage }
  }
}"""
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture(scope="module")
def emu():
    emulator = OpenCTIEmulator(token=TOKEN).start()
    emulator.load_sample_data()
    yield emulator
    emulator.stop()


def post(emu, query, variables=None, token=TOKEN):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(emu.graphql_url, body, {"Authorization": f"Bearer {token}"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def group(*filters, mode="or"):
    return {"mode": mode, "filters": list(filters), "filterGroups": []}


def test_hash_filter_with_the_hyphenated_key_finds_the_file(emu):
    status, answer = post(emu, QUERY, {"f": group({"key": ["hashes.SHA-256"], "values": [SHA]})})
    assert status == 200
    [edge] = answer["data"]["stixCyberObservables"]["edges"]
    assert edge["node"]["entity_type"] == "StixFile"
    assert {"algorithm": "SHA-256", "hash": SHA} in edge["node"]["hashes"]
    assert answer["data"]["stixCyberObservables"]["pageInfo"] == {"globalCount": 1, "hasNextPage": False}


def test_the_old_hash_key_gets_the_missing_mapping_error(emu):
    status, answer = post(emu, QUERY, {"f": group({"key": ["hashes.SHA256"], "values": [SHA]})})
    assert status == 200 and answer["data"] is None
    expected = "Schema definition named [hashes] is missing mapping for attribute [SHA256]"
    assert answer["errors"][0]["message"] == expected


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"mode": "or", "filters": []}, "Incorrect filters format"),
        (group({"key": ["nonsense"], "values": ["x"]}), "incorrect filter keys not existing in any schema definition"),
    ],
)
def test_malformed_filters_are_refused(emu, filters, message):
    assert post(emu, QUERY, {"f": filters})[1]["errors"][0]["message"] == message


def test_unknown_field_is_a_validation_error(emu):
    status, answer = post(emu, "{ indicators { edges { node { nope } } } }")
    assert status == 400
    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_value_filter_without_operator_defaults_to_eq_and_or(emu):
    filters = group({"key": ["value"], "values": ["45.155.205.233", "update-check.example.net"]})
    answer = post(emu, QUERY, {"f": filters})[1]
    assert sorted(e["node"]["observable_value"] for e in answer["data"]["stixCyberObservables"]["edges"]) == [
        "45.155.205.233",
        "update-check.example.net",
    ]


def test_bad_token_and_request_counting(emu):
    before = emu.request_count
    answer = post(emu, QUERY, token="nope")[1]
    assert answer["errors"][0]["extensions"]["code"] == "AUTH_REQUIRED"
    assert emu.request_count == before + 1
    assert emu.requests[-1]["authorized"] is False


def test_command_line_serves_sample_data_logs_requests_and_stops_on_sigterm(tmp_path):
    """The CLI the molecule scenarios run as a service: --request-log gets one JSON line per request."""
    log = tmp_path / "requests.jsonl"
    program = Path(__file__).resolve().parents[1] / "emulators" / "opencti.py"
    env = dict(os.environ, OPENCTI_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, str(program), "--port", "0", "--request-log", str(log)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        served = types.SimpleNamespace(graphql_url=url)
        assert post(served, QUERY, {"f": group({"key": ["value"], "values": ["45.155.205.233"]})})[0] == 200
        assert post(served, QUERY, token="nope")[0] == 200
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert [entry["authorized"] for entry in logged] == [True, False]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)
