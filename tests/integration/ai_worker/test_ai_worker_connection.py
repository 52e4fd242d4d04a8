"""--check-connection and --pull-model against the IRIS and Ollama emulators, from the settings file
the role writes (the same file systemd gives the instances)."""
import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from iris_ai_worker import main

from tests.emulators.iris import IrisEmulator
from tests.emulators.ollama import OllamaEmulator
from tests.support.ai_worker import AI_MODEL

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = ROOT / "files" / "ai_worker" / "iris-ai-worker.py"


def env_file(tmp_path, **values):
    path = tmp_path / "ai-worker.env"
    path.write_text("".join(f'{name}="{value}"\n' for name, value in values.items()))
    return str(path)


def settings(stack, login="ai-bot", **overrides):
    values = {"IRIS_BASE_URL": stack.iris.url, "IRIS_BEARER": stack.key(login), "OLLAMA_URL": stack.ollama.url,
              "OLLAMA_MODEL": AI_MODEL, "AI_WORKER_INSTANCES": "2"}
    values.update(overrides)
    return values


def run(tmp_path, mode="--check-connection", extra=(), **values):
    out = io.StringIO()
    code = main.main(env={}, argv=[mode, "--env-file", env_file(tmp_path, **values), *extra], out=out)
    return code, out.getvalue().splitlines()


def writes(stack):
    return [entry for entry in stack.iris.request_log if entry[0] != "GET"]


def test_all_fine_gives_one_ok_line_per_check_and_changes_nothing(ai_stack, tmp_path):
    code, lines = run(tmp_path, **settings(ai_stack, AI_WORKER_CUSTOMER_IDS="1"))
    assert code == 0, lines
    assert lines and all(line.startswith("ok ") for line in lines)
    assert any("accepts the API key" in line for line in lines)
    assert any(line.startswith("ok customer: customer 1:") for line in lines)
    assert any(f"has the model {AI_MODEL}" in line for line in lines)
    assert writes(ai_stack) == [] and ai_stack.ollama.calls == [] and ai_stack.ollama.pulls == []


def test_a_wrong_key_shows_iris_own_message(ai_stack, tmp_path):
    code, lines = run(tmp_path, **settings(ai_stack, IRIS_BEARER="not-the-key"))
    assert code == 1
    problems = [line for line in lines if line.startswith("error ")]
    assert len(problems) == 1
    assert problems[0].startswith("error api_key: ")
    assert 'refused the API key (IRIS_BEARER): HTTP 401 "Authentication required"' in problems[0]
    assert "not-the-key" not in "\n".join(lines)


def test_unreachable_iris_and_ollama_each_give_their_line(ai_stack, tmp_path):
    code, lines = run(tmp_path, **settings(ai_stack, IRIS_BASE_URL="http://127.0.0.1:9",
                                           OLLAMA_URL="http://127.0.0.1:9"))
    assert code == 1
    expected = ["error iris: IRIS http://127.0.0.1:9", "error ollama: Ollama http://127.0.0.1:9"]
    assert [line.split(" is unreachable")[0] for line in lines] == expected


def test_a_missing_model_is_a_problem_unless_it_is_about_to_be_pulled(ai_stack, tmp_path):
    code, lines = run(tmp_path, **settings(ai_stack, OLLAMA_MODEL="llama3:70b"))
    assert code == 1
    assert lines[-1].startswith(f"error model: Ollama {ai_stack.ollama.url} does not have the model llama3:70b "
                                f"(it has: {AI_MODEL})")
    code, lines = run(tmp_path, extra=["--model-may-be-missing"], **settings(ai_stack, OLLAMA_MODEL="llama3:70b"))
    assert code == 0 and lines[-1].startswith("warning model: ")


def test_an_account_not_linked_to_a_customer_is_named(ai_stack, tmp_path):
    other = ai_stack.iris.add_customer("Acme")
    code, lines = run(tmp_path, **settings(ai_stack, AI_WORKER_CUSTOMER_IDS=f"1,{other}"))
    assert code == 1
    problems = [line for line in lines if line.startswith("error ")]
    assert problems == [f"error customer: customer {other}: the IRIS account is not linked to customer {other} "
                        "(it is linked "
                        "to: 1); link it (iris_provision does for socstack_tenants), or fix ai_worker_customers"]


def test_without_customers_read_the_link_is_confirmed_by_the_alerts_it_sees(ai_stack, tmp_path):
    ai_stack.iris.add_group("Triage", ["alerts_read", "alerts_write", "standard_user"])
    _user, key = ai_stack.iris.add_user("bot2", groups=["Triage"], customers=["IrisInitialClient"])
    ai_stack.alert()
    other = ai_stack.iris.add_customer("Acme")
    code, lines = run(tmp_path, **settings(ai_stack, IRIS_BEARER=key, AI_WORKER_CUSTOMER_IDS=f"1,{other}"))
    assert code == 0, lines
    assert any(line.startswith("ok customer: customer 1: the account sees its alerts") for line in lines)
    assert any(line.startswith(f"warning customer: customer {other}: not confirmed") for line in lines)


def test_an_account_that_may_not_read_alerts_is_a_problem(ai_stack, tmp_path):
    ai_stack.iris.add_group("Nothing", ["standard_user"])
    _user, key = ai_stack.iris.add_user("bot3", groups=["Nothing"], customers=["IrisInitialClient"])
    code, lines = run(tmp_path, **settings(ai_stack, IRIS_BEARER=key))
    assert code == 1
    assert any("the account may not read alerts (HTTP 403 Permission denied)" in line for line in lines)


@pytest.fixture
def tls_iris(certificates):
    emulator = IrisEmulator(admin_api_key="A" * 64, tls_cert=str(certificates / "srv.pem"),
                            tls_key=str(certificates / "srv.key")).start()
    ollama = OllamaEmulator(models=[AI_MODEL]).start()
    _user, key = emulator.add_user("ai-bot", groups=["Analysts"], customers=["IrisInitialClient"])
    yield emulator, ollama, key
    emulator.stop()
    ollama.stop()


def tls_values(tls_iris, certificates, **overrides):
    emulator, ollama, key = tls_iris
    values = {"IRIS_BASE_URL": emulator.url, "IRIS_BEARER": key, "OLLAMA_URL": ollama.url, "OLLAMA_MODEL": AI_MODEL,
              "AI_WORKER_CA_FILE": str(certificates / "ca.pem")}
    values.update(overrides)
    return values


def test_tls_with_the_right_ca_passes(tls_iris, certificates, tmp_path):
    code, lines = run(tmp_path, **tls_values(tls_iris, certificates))
    assert code == 0, lines
    assert "over verified TLS" in lines[0]


def test_tls_with_another_ca_or_another_host_name_is_named(tls_iris, certificates, tls_files, tmp_path):
    code, lines = run(tmp_path, **tls_values(tls_iris, certificates, AI_WORKER_CA_FILE=str(tls_files[0])))
    assert code == 1
    assert "its TLS certificate is not accepted" in lines[0] and str(tls_files[0]) in lines[0]
    by_name = tls_iris[0].url.replace("127.0.0.1", "localhost")
    code, lines = run(tmp_path, **tls_values(tls_iris, certificates, IRIS_BASE_URL=by_name))
    assert code == 1
    assert lines[0].startswith(f"error iris: IRIS {by_name}: its TLS certificate is not accepted (")
    assert "host name" in lines[0]


def test_the_launcher_runs_the_check_as_the_role_does(ai_stack, tmp_path):
    path = env_file(tmp_path, **settings(ai_stack, IRIS_BEARER="wrong"))
    result = subprocess.run([sys.executable, "-I", str(LAUNCHER), "--check-connection", "--env-file", path],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert 'HTTP 401 "Authentication required"' in result.stdout


# ------------------------------------------------------------------------------------------ pull
def test_a_missing_model_is_pulled_and_then_listed(ai_stack, tmp_path):
    code, lines = run(tmp_path, "--pull-model", **settings(ai_stack, OLLAMA_MODEL="qwen2.5:3b"))
    assert code == 0, lines
    assert lines[0] == "ok pull: pulling manifest"
    assert "ok pull: success" in lines
    assert lines[-1].startswith(f"ok model: pulled qwen2.5:3b on {ai_stack.ollama.url} in ")
    assert "qwen2.5:3b" in ai_stack.ollama.models and ai_stack.ollama.pulls == ["qwen2.5:3b"]


def test_a_present_model_is_not_pulled(ai_stack, tmp_path):
    code, lines = run(tmp_path, "--pull-model", **settings(ai_stack))
    assert code == 0
    assert lines == [f"ok model: Ollama {ai_stack.ollama.url} has the model {AI_MODEL}; nothing to pull"]
    assert ai_stack.ollama.pulls == []


def test_a_model_the_library_lacks_gives_ollama_error(ai_stack, tmp_path):
    ai_stack.ollama.library = {AI_MODEL}
    code, lines = run(tmp_path, "--pull-model", **settings(ai_stack, OLLAMA_MODEL="nope:1b"))
    assert code == 1
    assert lines == [f"error model: Ollama {ai_stack.ollama.url} could not pull nope:1b: HTTP 200 "
                     "pull model manifest: file does not exist"]


def test_the_pull_deadline_is_one_hard_bound(ai_stack, tmp_path):
    """Status lines keep coming (each read gets an answer), yet the pull ends at AI_WORKER_PULL_TIMEOUT."""
    ai_stack.ollama.pull_delay = 0.4
    done = threading.Event()
    result = {}

    def pull():
        result["answer"] = run(tmp_path, "--pull-model", **settings(ai_stack, OLLAMA_MODEL="slow:1b",
                                                                    AI_WORKER_PULL_TIMEOUT="1"))
        done.set()

    threading.Thread(target=pull, daemon=True).start()
    assert done.wait(30), "the pull did not end"
    code, lines = result["answer"]
    assert code == 1
    assert lines == [f"error model: Ollama {ai_stack.ollama.url} did not finish pulling slow:1b within "
                     "AI_WORKER_PULL_TIMEOUT=1s; a later pull resumes the download (run the role again, or raise "
                     "ai_worker_ollama_pull_timeout)"]
    assert "slow:1b" not in ai_stack.ollama.models


def test_an_unreachable_ollama_names_the_url(ai_stack, tmp_path):
    code, lines = run(tmp_path, "--pull-model", **settings(ai_stack, OLLAMA_URL="http://127.0.0.1:9/api/generate"))
    assert code == 1
    assert lines[0].startswith("error model: cannot pull phi4-mini:latest: Ollama http://127.0.0.1:9 is unreachable: ")
