"""The API key through one file (the option api_key_file) in alert mode, where integratord's API_KEY argument
is empty because ossec.conf holds no <api_key>; precedence over the argument; key-file problems; the option
debug. Against the IRIS emulator; the harness is tests/support/forwarder.py.
"""
import pytest

from tests.support.forwarder import alert, refs, run_like_integratord


def test_an_empty_argv_key_and_the_key_file_deliver(manager, emu):
    options = {"api_key_file": str(manager.key_file)}
    assert manager.run(alert(1), key="", options=options) == 0
    assert refs(emu) == [alert(1)["id"]]


def test_the_key_file_wins_over_the_argv_key(manager, emu):
    options = {"api_key_file": str(manager.key_file)}
    assert manager.run(alert(1), key="stale-key-from-an-old-ossec-conf", options=options) == 0
    assert refs(emu) == [alert(1)["id"]]
    manager.key_file.write_text("R" * 64 + "\n")  # a renewed key that IRIS does not know: the file is what counts
    assert manager.run(alert(2), options=options) == 5
    assert emu.request_log[-1][3] == 401
    assert len(manager.spooled()) == 1


def test_the_hook_url_option_wins_over_the_argv_url(manager, emu):
    options = {"api_key_file": str(manager.key_file), "hook_url": manager.hook_url}
    assert manager.run(alert(1), key="", url="http://127.0.0.1:9/alerts/add", options=options) == 0
    assert refs(emu) == [alert(1)["id"]]


@pytest.mark.parametrize("content, message", [
    (None, "cannot read api_key_file {path}: No such file or directory"),
    ("\n", "api_key_file {path} is empty"),
    ("dir", "cannot read api_key_file {path}: Is a directory"),
    ("one\ntwo\n", "api_key_file {path} holds more than one word; it must hold the key alone"),
])
def test_key_file_problems_keep_the_alert_and_exit_5(manager, emu, content, message):
    path = manager.root / "etc" / "broken.key"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
        path.chmod(0o640)  # as the role writes it (a key file open to every user is refused)
    # the argv key is good, but a set api_key_file that gives no key must be noticed, not papered over
    assert manager.run(alert(1), options={"api_key_file": str(path)}) == 5
    expected = message.format(path=path)
    assert f"ERROR: alert {alert(1)['id']} kept in the spool: {expected}" in manager.log()
    assert len(manager.spooled()) == 1
    assert emu.request_log == []
    assert manager.api_key not in manager.log()


def test_no_key_at_all(manager, emu):
    assert manager.run(alert(1), key="") == 5
    assert "no API key or hook_url was given (set the options api_key_file and hook_url)" in manager.log()
    assert len(manager.spooled()) == 1


def test_replay_with_an_empty_key_file(manager, emu):
    emu.stop()
    assert manager.run(alert(1)) == 2
    emu.start()
    manager.key_file.write_text("")
    assert manager.replay() == 5
    assert f"ERROR: api_key_file {manager.key_file} is empty" in manager.log()
    manager.key_file.write_text(manager.api_key)
    assert manager.replay() == 0
    assert refs(emu) == [alert(1)["id"]]


def test_integratord_with_an_empty_api_key_slot(manager, emu, launcher):
    """What integratord runs once ossec.conf has no <api_key>: argv[2] is ""; the key is on no command line."""
    argv = manager.argv(alert(1), key="", options={"api_key_file": str(manager.key_file)})
    assert argv[2] == ""
    assert manager.api_key not in " ".join(argv)
    result = run_like_integratord(manager, launcher, argv)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert refs(emu) == [alert(1)["id"]]


# -------------------------------------------------------------------------------------------- debug
def test_the_debug_option_turns_on_debug_lines_and_the_key_stays_masked(manager, emu):
    secret = manager.api_key
    options = {"api_key_file": str(manager.key_file)}
    assert manager.run(alert(1), key="", options=options) == 0
    assert "DEBUG" not in manager.log()
    # the key inside the alert: the logged request body would carry it if masking failed
    assert manager.run(alert(2, full_log=f"token={secret}"), key="", options=dict(options, debug=True)) == 0
    log = manager.log()
    assert f"DEBUG: hook_url from the HOOK_URL argument; API key from api_key_file {manager.key_file}" in log
    assert "DEBUG: POST /alerts/add -> HTTP 200" in log
    assert "DEBUG: POST /alerts/add body: " in log and "token=***" in log
    assert secret not in log
    for _path, data in manager.files_written():
        assert secret.encode() not in data


def test_an_ignored_argv_key_is_masked_too(manager, emu):
    old = "old-argv-key-" + "q" * 30
    options = {"api_key_file": str(manager.key_file), "debug": True}
    assert manager.run(alert(1, full_log=old), key=old, options=options) == 0
    log = manager.log()
    assert "(the API_KEY argument is ignored)" in log
    assert old not in log
