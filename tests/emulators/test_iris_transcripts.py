"""Replay every recorded DFIR-IRIS 2.4.20 exchange against the emulator and compare the answers.

The transcripts (../shared/reference/iris-transcripts/) were recorded against ONE freshly reset server,
file by file in the README's order; the last 11 exchanges of users.json and the last 2 of alerts.json
are extra probes sent to the same server after the main run. Replaying in that order on one fresh
emulator reproduces the recorded ids (group 4, user 6, burnt alert id 1, alert 8, ...).

Compared: status code, content type, HTML title, envelope status and message, and the whole ``data``
except volatile values (UUIDs, timestamps of the recording day, real keys and password hashes, elided
texts, the epoch keys of ``modification_history``). ``<API_KEY>`` placeholders in requests are replaced
by the keys the emulator issued to the identity named in ``auth_as``; ``<PASSWORD>`` by a weak or a
strong password, as the recorded answer shows it was.
"""

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest

from tests.emulators.iris import IrisEmulator

ADMIN_KEY = "A" * 64
FILES = ["auth_versions", "lookups", "customers", "groups", "users", "alerts", "permissions"]
EXTRA_PROBES = {"users": 11, "alerts": 2}  # README: sent after the main run, to the same server
RECORDING_DAY = "2026-11-25T"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Exchanges the emulator does not reproduce: title -> reason. Printed by the test; the test fails if one
# of them is an exchange the collection depends on, or if one of them is reproduced after all.
ALLOWLIST = {}

# Exchanges the collection depends on (beyond every exchange of auth_versions.json).
CRITICAL_PATHS = [
    re.compile(r"^/api/(ping|versions)$"),
    re.compile(r"^/manage/(customers|groups|users)/"),
    re.compile(r"^/manage/(severities|alert-status)/list$"),
    re.compile(r"^/alerts/(add|filter|update/\d+|\d+/comments/(add|list))$"),
]


def is_critical(file_name, exchange):
    path = urlsplit(exchange["path"]).path
    return file_name == "auth_versions" or any(p.match(path) for p in CRITICAL_PATHS)


def recorded_sequence(transcripts):
    """(file, index, exchange) in the order the exchanges were sent to the real server."""
    main, extra = [], []
    for name in FILES:
        exchanges = json.loads((transcripts / f"{name}.json").read_text(encoding="utf-8"))
        split = len(exchanges) - EXTRA_PROBES.get(name, 0)
        main += [(name, index, exchange) for index, exchange in enumerate(exchanges[:split])]
        extra += [(name, split + index, exchange) for index, exchange in enumerate(exchanges[split:])]
    return main + extra


class KeyRing:
    """The API keys the emulator issued, per login, oldest first."""

    def __init__(self):
        self.keys = {"administrator": [ADMIN_KEY]}

    def key_for(self, auth_as):
        login, _unused, variant = auth_as.partition(" (")
        history = self.keys.get(login, [])
        if not history:
            return None
        return history[-2] if variant.startswith("OLD key") else history[-1]

    def learn(self, body):
        data = (body or {}).get("data")
        if isinstance(data, dict) and data.get("user_api_key"):
            self.keys.setdefault(data["user_login"], []).append(data["user_api_key"])
        if isinstance(data, dict) and data.get("api_key") and data.get("user"):
            self.keys.setdefault(data["user"], []).append(data["api_key"])


def password_for(exchange):
    """The recorded responses show which <PASSWORD> was weak (lower case only, too short) and which passed."""
    return "weakpass" if "weak" in exchange["title"] else "Str0ngPassw0rd"


def send(emulator, exchange, keys):
    """Send one recorded request; returns (status, content type, body text, set-cookie header)."""
    key = keys.key_for(exchange["auth_as"])
    headers = {}
    for name, value in exchange["request_headers"].items():
        if "<API_KEY>" in value:
            assert key, f"no key known for {exchange['auth_as']}"
            value = value.replace("<API_KEY>", key)
        headers[name] = value
    body = None
    if exchange["request_json"] is not None:
        body = json.dumps(exchange["request_json"]).replace('"<PASSWORD>"', json.dumps(password_for(exchange)))
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    try:
        connection.request(exchange["method"], exchange["path"], body=body, headers=headers)
        response = connection.getresponse()
        return (response.status, response.getheader("Content-Type"), response.read().decode(),
                response.getheader("Set-Cookie") or "")
    finally:
        connection.close()


def differences(expected, actual, where="data"):
    """Human-readable differences between a recorded value and the emulator's, volatile values aside."""
    if isinstance(expected, str):
        if expected in ("<API_KEY>", "<PASSWORD>") or expected.startswith("<elided"):
            ok = isinstance(actual, str) and actual != ""
        elif UUID.match(expected):
            ok = isinstance(actual, str) and bool(UUID.match(actual))
        elif expected.startswith(RECORDING_DAY):
            ok = isinstance(actual, str) and bool(re.match(r"^\d{4}-\d\d-\d\dT", actual))
        else:
            ok = expected == actual
        return [] if ok else [f"{where}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        problems = []
        if set(expected) != set(actual):
            problems.append(f"{where}: keys missing {sorted(set(expected) - set(actual))}, "
                            f"unexpected {sorted(set(actual) - set(expected))}")
        for key in expected.keys() & actual.keys():
            if key == "modification_history" and isinstance(expected[key], dict) and isinstance(actual[key], dict):
                # keys are epoch times: compare the entries in order
                problems += differences(list(expected[key].values()), list(actual[key].values()), f"{where}.{key}")
            else:
                problems += differences(expected[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {actual!r}"[:300]]
        problems = []
        for index, (left, right) in enumerate(zip(expected, actual)):
            problems += differences(left, right, f"{where}[{index}]")
        return problems
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def stable_message(message):
    """A psycopg2 error text without its per-request parameters (uuid, time)."""
    return message.split("\n[parameters:")[0]


def compare(exchange, status, content_type, text, cookie):
    problems = []
    if status != exchange["status"]:
        problems.append(f"status: expected {exchange['status']}, got {status}")
    if content_type != exchange["response_content_type"]:
        problems.append(f"content type: expected {exchange['response_content_type']}, got {content_type}")
    if not cookie.startswith("session="):
        problems.append("no session cookie set")
    if exchange["response_json"] is None:
        title = re.search(r"<title>(.*?)</title>", text)
        if not title or title.group(1) != exchange.get("response_html_title"):
            problems.append(f"HTML title: expected {exchange.get('response_html_title')!r}, got {text[:80]!r}")
        return problems, None
    try:
        body = json.loads(text)
    except ValueError:
        return [*problems, f"not JSON: {text[:80]!r}"], None
    expected = exchange["response_json"]
    if body.get("status") != expected["status"]:
        problems.append(f"envelope status: expected {expected['status']!r}, got {body.get('status')!r}")
    if stable_message(body.get("message", "")) != stable_message(expected["message"]):
        problems.append(f"message: expected {expected['message'][:200]!r}, got {body.get('message', '')[:200]!r}")
    problems += differences(expected["data"], body.get("data"))
    return problems, body


@pytest.fixture
def transcripts(shared_reference):
    folder = shared_reference / "iris-transcripts"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def test_every_recorded_exchange_is_reproduced(transcripts):
    sequence = recorded_sequence(transcripts)
    titles = [exchange["title"] for _name, _index, exchange in sequence]
    assert len(titles) == len(set(titles)), "transcript titles are not unique: the allowlist needs another key"
    unknown = set(ALLOWLIST) - set(titles)
    assert not unknown, f"allowlist names exchanges that are not in the transcripts: {sorted(unknown)}"
    critical_allowed = [t for n, _i, e in sequence for t in [e["title"]] if t in ALLOWLIST and is_critical(n, e)]
    assert not critical_allowed, f"the collection depends on these allowlisted exchanges: {critical_allowed}"

    emulator = IrisEmulator(admin_api_key=ADMIN_KEY).start()
    keys = KeyRing()
    failures, still_allowed, reproduced_anyway = [], [], []
    try:
        for name, index, exchange in sequence:
            status, content_type, text, cookie = send(emulator, exchange, keys)
            problems, body = compare(exchange, status, content_type, text, cookie)
            keys.learn(body)
            label = f"{name}.json[{index}] {exchange['title']}"
            if exchange["title"] in ALLOWLIST:
                (still_allowed if problems else reproduced_anyway).append(label)
            elif problems:
                failures.append(label + "\n    " + "\n    ".join(problems[:8]))
    finally:
        emulator.stop()

    print(f"\nreplayed {len(sequence)} exchanges; not reproduced (allowlisted): {len(ALLOWLIST)}")
    for title, reason in ALLOWLIST.items():
        print(f"  - {title}: {reason}")
    assert not failures, "exchanges not reproduced:\n" + "\n".join(failures)
    assert not reproduced_anyway, f"allowlisted but reproduced now, drop them from ALLOWLIST: {reproduced_anyway}"
    assert len(still_allowed) == len(ALLOWLIST)


def test_critical_classification_covers_what_the_collection_uses():
    """The allowlist guard must recognise the exchanges the collection depends on, and only those."""
    def exchange(path):
        return {"path": path}

    for path in ("/manage/users/renew-api-key/2", "/manage/users/2/groups/update", "/manage/customers/add",
                 "/manage/groups/delete/6", "/manage/users/lookup/login/x", "/manage/severities/list",
                 "/manage/alert-status/list", "/alerts/add", "/alerts/filter?alert_tags=x", "/alerts/update/3",
                 "/alerts/3/comments/add", "/alerts/3/comments/list", "/api/ping"):
        assert is_critical("any", exchange(path)), path
    for path in ("/manage/tlp/list", "/manage/case-states/list", "/alerts/3", "/alerts/delete/2"):
        assert not is_critical("any", exchange(path)), path
    assert is_critical("auth_versions", exchange("/api/does-not-exist"))
