"""The AI worker's settings file as systemd reads it, and --check-options (the role's validate step)."""
import io

import pytest
from iris_ai_worker import envfile, main, preflight

GOOD = """# written by the role
IRIS_BASE_URL="https://iris.example.org:9094"
IRIS_BEARER="k\\"ey\\$1"
OLLAMA_MODEL="phi4-mini:latest"
AI_WORKER_INSTANCES="2"
AI_WORKER_REDACT_PATTERNS="[\\"cost \\\\\\\\$[0-9]+\\"]"
AI_WORKER_POLL_SECONDS=30
"""


def write(tmp_path, text):
    path = tmp_path / "ai-worker.env"
    path.write_text(text)
    return str(path)


def test_values_are_unquoted_as_systemd_does():
    env, problems = envfile.parse('A="x \\" \\\\ \\` \\$ \\n"\nB=\'lit \\ "\'\nC=bare\\ word  \n; comment\n')
    assert problems == []
    assert env == {"A": 'x " \\ ` $ \\n', "B": 'lit \\ "', "C": "bare word"}


def test_unreadable_lines_are_problems_with_their_line_number():
    _env, problems = envfile.parse('ok=1\nno equals sign\nQ="open\n', "f")
    assert problems == ["f line 2: not a NAME=value line",
                        "f line 3: Q has an unterminated or trailing-text quoted value"]


def test_a_good_file_passes(tmp_path):
    out = io.StringIO()
    assert main.main(argv=["--check-options", write(tmp_path, GOOD)], out=out) == 0
    assert out.getvalue() == ""


@pytest.mark.parametrize(("line", "expected"), [
    ("AI_WORKER_POLL_SECONDS=0", "AI_WORKER_POLL_SECONDS must be >= 0.1"),
    ("AI_WORKER_VERIFY_TLS=maybe", "AI_WORKER_VERIFY_TLS must be true or false, got 'maybe'"),
    ("AI_WORKER_PULL_TIMEOUT=0.5", "AI_WORKER_PULL_TIMEOUT must be >= 1.0"),
    ("AI_WORKER_CLAIM_TTL=60", "AI_WORKER_CLAIM_TTL (60s) is too short"),
    ("AI_WORKER_CUSTOMER_IDS=1,acme", "AI_WORKER_CUSTOMER_IDS must be a comma-separated list"),
    ("AI_WORKER_CA_FILE=/nonexistent/ca.pem", "AI_WORKER_CA_FILE /nonexistent/ca.pem does not exist"),
    ("OLLAMA_URL=ftp://x", "OLLAMA_URL must be an http(s) URL"),
    ("AI_WORKER_MAX_TAKEOVER=5", "unknown setting AI_WORKER_MAX_TAKEOVER"),
    ("AI_WORKER_INSTANCE=1", "AI_WORKER_INSTANCE is set by the unit, not by the settings file"),
    ("OLLAMA_MODEL=", "missing required setting OLLAMA_MODEL"),
])
def test_each_bad_value_gives_its_line(tmp_path, line, expected):
    path = write(tmp_path, GOOD + line + "\n")
    out = io.StringIO()
    assert main.main(argv=["--check-options", path], out=out) == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {expected}")
    assert "k\"ey$1" not in out.getvalue()


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    found = preflight.file_problems(write(tmp_path, GOOD + "AI_WORKER_POLL_SECONDS=0\nAI_WORKER_LOG_LEVEL=LOUD\nX=1\n"))
    assert len(found) == 3


def test_a_missing_file_is_one_problem(tmp_path):
    out = io.StringIO()
    assert main.main(argv=["--check-options", str(tmp_path / "none.env")], out=out) == 2
    assert "cannot read settings file" in out.getvalue()


@pytest.mark.parametrize("argv", [["--check-options"], ["--bogus"], ["--pull-model", "--model-may-be-missing"],
                                  ["--check-connection", "--env-file"]])
def test_bad_command_lines_exit_2(argv):
    assert main.main(argv=argv, out=io.StringIO()) == 2
