"""One preflight report for the three --check-connection programs (issue 22): the forwarder, the OpenCTI
enrichment and the AI worker write every line through socstack_core.preflight.Report (``<status> <check>:
<text>``, masked) and exit with the codes their docs state, for a server that cannot be reached and for a
configuration that cannot be used.
"""
import io
import json
from pathlib import Path

import pytest
from iris_ai_worker import main as worker_main
from iris_forwarder import preflight as forwarder_preflight
from opencti_enrich import preflight as opencti_preflight
from socstack_core import preflight as core_preflight

ROOT = Path(__file__).resolve().parents[2]
KEY = "wk-" + "0123456789abcdef" * 4
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there on a test machine


# ------------------------------------------------------------------------------------- one preflight report
@pytest.fixture
def report_lines(monkeypatch):
    """Every line socstack_core.preflight.Report writes, as written."""
    written = []
    original = core_preflight.Report.line

    def line(self, status, check, text):
        before = self.out.tell() if hasattr(self.out, "tell") else None
        original(self, status, check, text)
        if before is not None:
            written.append(self.out.getvalue()[before:].rstrip("\n"))

    monkeypatch.setattr(core_preflight.Report, "line", line)
    return written


def run_forwarder(tmp_path, hook_url, key_mode=0o640):
    key = tmp_path / "iris.key"
    key.write_text(KEY)
    key.chmod(key_mode)
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"hook_url": hook_url, "api_key_file": str(key)}))
    out = io.StringIO()
    from socstack_core.log import Log, Masker

    log = Log("t", None, masker=Masker())
    log.set_path(None)
    code = forwarder_preflight.check_connection(str(options), debug=False, log=log, out=out)
    return code, out.getvalue().splitlines()


def run_opencti(tmp_path, url, token="tok-" + "9" * 30):
    path = tmp_path / "token"
    path.write_text(token)
    out = io.StringIO()
    code = opencti_preflight.main(["custom-opencti", "--check-connection", "--url", url, "--token-file", str(path),
                                   "--timeout", "2"], out, io.StringIO())
    return code, out.getvalue().splitlines()


def run_worker(tmp_path, **values):
    env = {"IRIS_BASE_URL": CLOSED, "IRIS_BEARER": KEY, "OLLAMA_URL": CLOSED, "OLLAMA_MODEL": "m", **values}
    path = tmp_path / "ai.env"
    path.write_text("".join(f'{name}="{value}"\n' for name, value in env.items()))
    out = io.StringIO()
    code = worker_main.main(env={}, argv=["--check-connection", "--env-file", str(path)], out=out)
    return code, out.getvalue().splitlines()


@pytest.mark.parametrize(("program", "unreachable", "config"), [
    ("forwarder", 2, 5), ("opencti", 7, 6), ("ai_worker", 1, 2),
])
def test_each_check_connection_writes_only_report_lines_with_its_documented_codes(
        tmp_path, report_lines, program, unreachable, config):
    if program == "forwarder":
        assert forwarder_preflight.Report.__mro__[1] is core_preflight.Report
        down, bad = run_forwarder(tmp_path, CLOSED), run_forwarder(tmp_path, "ftp://iris.example")
    elif program == "opencti":
        down, bad = run_opencti(tmp_path, CLOSED), run_opencti(tmp_path, "ftp://opencti.example")
    else:
        down, bad = run_worker(tmp_path), run_worker(tmp_path, AI_WORKER_POLL_SECONDS="0")
    for _code, lines in (down, bad):
        assert lines and lines == report_lines[:len(lines)], (program, lines)
        del report_lines[:len(lines)]
        assert all(line.split(" ", 1)[0] in ("ok", "warning", "error") and ": " in line for line in lines)
        assert KEY not in "\n".join(lines)
    assert (down[0], bad[0]) == (unreachable, config), (down, bad)
    docs = (ROOT / "docs" / {"forwarder": "forwarder.md", "opencti": "opencti.md",
                             "ai_worker": "ai-worker.md"}[program]).read_text(encoding="utf-8")
    assert "socstack_core.preflight" in docs


def test_no_program_keeps_a_line_writer_of_its_own():
    for path in ("files/integrations/iris_forwarder/preflight.py", "files/integrations/opencti_enrich/preflight.py",
                 "files/ai_worker/iris_ai_worker/preflight.py"):
        source = (ROOT / path).read_text(encoding="utf-8")
        check = source.split("def check_connection", 1)[1]
        assert "out.write(" not in check.split("\ndef ", 1)[0], path
        assert "core_preflight.Report" in source or "socstack_core.preflight import Report" in source, path
