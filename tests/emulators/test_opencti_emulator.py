"""tests/emulators/opencti.py answers like OpenCTI where the reference says how (opencti.md §1-§3)."""

import json
import os
import signal
import socket
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
    program = Path(__file__).resolve().parent / "opencti.py"
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


# --------------------------------------------------------------------------- transport modes
def raw_exchange(emu, *, extra_requests=0):
    """Send one POST (Connection: close) on a raw socket and read until the server closes (keep-alive mode:
    until Content-Length says): the raw bytes. With extra_requests, that many requests go first."""
    body = json.dumps({"query": QUERY, "variables": {"f": group({"key": ["value"], "values": ["45.155.205.233"]})}})
    request = (f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode()
    received = b""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        for _unused in range(extra_requests):
            sock.sendall(request + b"\r\n" + body.encode())
            received += read_one_content_length_answer(sock)
        sock.sendall(request + b"Connection: close\r\n\r\n" + body.encode())
        if emu.transport == "keep-alive":  # the server ignores Connection: close
            return received + read_one_content_length_answer(sock)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def read_one_content_length_answer(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    head = data.decode("latin-1")
    length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                      if line.lower().startswith("content-length")))
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return data + body


def split_answer(raw):
    head, _sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}, body


@pytest.fixture
def modes_emu():
    emulator = OpenCTIEmulator(token=TOKEN).start()
    emulator.load_sample_data()
    yield emulator
    emulator.stop()


def test_http10_mode_answers_without_length_and_closes(modes_emu):
    modes_emu.transport = "http1.0"
    status, headers, body = split_answer(raw_exchange(modes_emu))
    assert status == "HTTP/1.0 200 OK"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert json.loads(body)["data"]["stixCyberObservables"]["edges"][0]["node"]["observable_value"] == "45.155.205.233"


def test_close_mode_says_connection_close_and_ends_the_body_by_closing(modes_emu):
    modes_emu.transport = "close"
    status, headers, body = split_answer(raw_exchange(modes_emu))
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close" and "content-length" not in headers
    assert json.loads(body)["data"]["stixCyberObservables"]["pageInfo"]["globalCount"] == 1


def test_chunked_mode_sends_several_chunks_one_with_an_extension(modes_emu):
    modes_emu.transport = "chunked"
    status, headers, body = split_answer(raw_exchange(modes_emu))
    assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    decoded, rest, sizes = b"", body, []
    while True:
        size_line, _crlf, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        sizes.append(size_line)
        if size == 0:
            assert rest == b"\r\n"
            break
        decoded, rest = decoded + rest[:size], rest[size + 2:]
    assert len(sizes) == 4 and b";ext=1" in sizes[1]
    assert json.loads(decoded)["data"]["stixCyberObservables"]["pageInfo"]["globalCount"] == 1


def test_keep_alive_mode_keeps_the_connection_for_another_request(modes_emu):
    raw = raw_exchange(modes_emu, extra_requests=1)
    assert raw.count(b"HTTP/1.1 200 OK") == 2 and b"Connection: keep-alive" in raw
    assert modes_emu.request_count == 2


def test_trickle_mode_sends_one_byte_at_a_time_and_stops_when_the_client_goes(modes_emu):
    modes_emu.transport = "trickle"
    modes_emu.trickle_interval = 0.001
    status, headers, body = split_answer(raw_exchange(modes_emu))
    assert modes_emu.trickle_stopped.wait(10)
    assert modes_emu.trickle_sent == modes_emu.trickle_total == len(body) + raw_len_of_head(status, headers)
    assert int(headers["content-length"]) == len(body)

    modes_emu.reset()
    modes_emu.load_sample_data()
    modes_emu.transport = "trickle"
    modes_emu.trickle_interval = 0.01
    body = json.dumps({"query": QUERY, "variables": {}}).encode()
    with socket.create_connection(("127.0.0.1", modes_emu.port), timeout=10) as sock:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert sock.recv(1) == b"H"  # one byte per send
    assert modes_emu.trickle_stopped.wait(10)
    assert 0 < modes_emu.trickle_sent < modes_emu.trickle_total


def raw_len_of_head(status, headers):
    return len(status) + sum(len(f"{name}: {value}\r\n") for name, value in headers.items()) + 4


def test_answer_hook_rewrites_the_answer(modes_emu):
    def infinite_count(document):
        return json.dumps(document).replace('"globalCount": 1', '"globalCount": 1e999').encode()

    modes_emu.answer_hook = infinite_count
    status, answer = post(modes_emu, QUERY, {"f": group({"key": ["value"], "values": ["45.155.205.233"]})})
    assert status == 200 and answer["data"]["stixCyberObservables"]["pageInfo"]["globalCount"] == float("inf")


def test_emulator_binds_to_127_0_0_1_only():
    with pytest.raises(ValueError):
        OpenCTIEmulator(host="0.0.0.0")


def test_me_answers_the_user_name_for_a_valid_token_only(emu):
    query = "query WazuhOpenctiCheck { me { name __typename } }"
    assert post(emu, query) == (200, {"data": {"me": {"name": "wazuh-enrichment", "__typename": "MeUser"}}})
    status, answer = post(emu, query, token="nope")
    assert status == 200 and answer["data"] is None
    assert answer["errors"] == [{"message": "You must be logged in to do this.",
                                 "extensions": {"code": "AUTH_REQUIRED"}}]
    assert post(emu, "query { me { username } }")[0] == 400  # not a MeUser field


@pytest.mark.parametrize("status", [401, 403])
def test_http_refusal_faults_answer_text(modes_emu, status):
    modes_emu.fault = f"http_{status}"
    modes_emu.error_message = "Refused by the gateway"
    request = urllib.request.Request(modes_emu.graphql_url, b"{}", {"Authorization": f"Bearer {TOKEN}"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == status
    assert caught.value.headers["Content-Type"] == "text/plain"
    assert caught.value.read() == b"Refused by the gateway"


def test_tls_mode_serves_https_with_the_given_certificate(certificates):
    import ssl

    emulator = OpenCTIEmulator(token=TOKEN, tls_cert=str(certificates / "srv.pem"),
                               tls_key=str(certificates / "srv.key")).start()
    try:
        assert emulator.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        body = json.dumps({"query": "query { me { name } }"}).encode()
        request = urllib.request.Request(emulator.graphql_url, body, {"Authorization": f"Bearer {TOKEN}"},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            assert json.loads(response.read()) == {"data": {"me": {"name": "wazuh-enrichment"}}}
        with pytest.raises(urllib.error.URLError):  # the system store does not hold the test CA
            urllib.request.urlopen(request, timeout=5, context=ssl.create_default_context())
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # still serving
            assert response.status == 200
    finally:
        emulator.stop()
