"""socstack_core.integratord: the one reader of integratord's command line, on the shapes real integratords pass.

The shapes are those tests/integration/wazuh/test_manager_checks.py records from the real daemons (4.14.7 and
4.8.2: ``integrations/<name> /tmp/<name>-<t>-<r>.alert KEY URL "" /tmp/<name>-<t>-<r>.options 7 2 "> /dev/null
2>&1"``), those tests/emulators/integratord.py passes, the debug form (no redirect) and the old 3/4-argument
forms; a key or URL with a space (integratord cuts at most 8 times) must be refused, never misread.
"""
import pytest
from socstack_core import integratord

KEY = "k3y-0123456789abcdef0123456789abcdef"
ALERT = "/tmp/custom-wazuh_iris-1765101600--1061582579.alert"
OPTIONS = "/tmp/custom-wazuh_iris-1765101600--1061582579.options"
URL = "https://iris.example:9094/alerts/add"


@pytest.mark.parametrize(("tail", "expected"), [
    ([], (False, "", 10, 3)),
    (["debug"], (True, "", 10, 3)),
    ([""], (False, "", 10, 3)),
    (["", OPTIONS, "7", "2", "> /dev/null 2>&1"], (False, OPTIONS, 7, 2)),  # the real daemons, debug off
    (["debug", OPTIONS, "10", "3"], (True, OPTIONS, 10, 3)),  # debug on: no redirect
    (["", "", "10", "3", ">", "/dev/null", "2>&1"], (False, "", 10, 3)),  # a shell wrapper split the redirect
    (["", "", "", "", "> /dev/null 2>&1"], (False, "", 10, 3)),  # empty slots: the defaults
    (["", OPTIONS, "0", "0", "> /dev/null 2>&1"], (False, OPTIONS, 0, 0)),
], ids=["3-args", "4-args-debug", "4-args-empty", "4.8+", "4.8+-debug", "split-redirect", "empty-slots", "zeros"])
def test_every_layout_integratord_passes(tail, expected):
    call = integratord.parse(["integrations/custom-wazuh_iris.py", ALERT, KEY, URL, *tail])
    assert (call.alert_file, call.api_key, call.hook_url) == (ALERT, KEY, URL)
    assert (call.debug, call.options_file, call.timeout, call.retries) == expected


def test_empty_alert_file_key_and_url_are_kept_empty():
    """integratord passes an empty alert file when it could not create one, and empty key/URL when unset."""
    call = integratord.parse(["integrations", "", "", "", "", OPTIONS, "10", "3", "> /dev/null 2>&1"])
    assert (call.alert_file, call.api_key, call.hook_url, call.options_file) == ("", "", "", OPTIONS)


def test_defaults_of_empty_slots_are_the_callers():
    call = integratord.parse(["x", ALERT, KEY, URL, "", "", "", "", integratord.REDIRECT], timeout=5, retries=0)
    assert (call.timeout, call.retries) == (5, 0)


@pytest.mark.parametrize("argv", [
    # integratord cuts at most 8 times: the ninth piece keeps the rest of the string
    ["integrations", ALERT, "half", KEY, URL, "", OPTIONS, "10", "3 > /dev/null 2>&1"],
    ["integrations", ALERT, "half", KEY, URL, "debug", OPTIONS, "10", "3"],
    ["integrations", ALERT, KEY, "https://iris", "x", "", OPTIONS, "10", "3 > /dev/null 2>&1"],
    ["integrations", ALERT, KEY, URL, "", OPTIONS, "ten", "3", "> /dev/null 2>&1"],
    ["integrations", ALERT, KEY, URL, "", OPTIONS, "10", "-1", "> /dev/null 2>&1"],
    ["integrations", ALERT, KEY, URL, "verbose"],
    ["integrations", ALERT, KEY, URL, "", OPTIONS],
    ["integrations", ALERT, KEY],
    ["integrations"],
], ids=["space-in-key", "space-in-key-debug", "space-in-url", "bad-timeout", "bad-retries", "bad-debug",
        "5-args", "2-args", "none"])
def test_other_layouts_are_refused_without_any_value(argv):
    with pytest.raises(integratord.UsageError) as raised:
        integratord.parse(argv)
    text = str(raised.value)
    assert KEY not in text and "half" not in text and ALERT not in text and URL not in text
    if len(argv) > 3:
        assert "shifts every later argument" in text


@pytest.mark.parametrize("debug", [0, 1])
@pytest.mark.parametrize(("api_key", "hook_url", "readable"), [
    (KEY, URL, True), (None, URL, True), (None, None, True),
    ("half " + KEY, URL, False), (KEY, URL + " x", False), ("a b c", URL, False),
], ids=["key-url", "no-key", "nothing", "space-in-key", "space-in-url", "two-spaces"])
def test_what_the_emulated_daemon_builds_is_read_or_refused(debug, api_key, hook_url, readable):
    """The emulator's command string (integrator.c's format, its redirect), cut as OS_StrBreak cuts it."""
    from types import SimpleNamespace

    from tests.emulators import integratord as emulator

    block = SimpleNamespace(api_key=api_key, hook_url=hook_url, timeout=7, retries=2)
    argv = emulator.build_argv(emulator.build_command(block, ALERT, OPTIONS, debug))
    argv[0] = "integrations/custom-wazuh_iris.py"  # what a #! script sees as argv[0]
    if not readable:
        with pytest.raises(integratord.UsageError, match="shifts every later argument"):
            integratord.parse(argv)
        return
    call = integratord.parse(argv)
    assert (call.alert_file, call.api_key, call.hook_url) == (ALERT, api_key or "", hook_url or "")
    assert (call.debug, call.options_file, call.timeout, call.retries) == (debug > 0, OPTIONS, 7, 2)


def test_both_integrations_read_argv_with_the_core_parser():
    """The forwarder and OpenCTI have no argv reader of their own: both call socstack_core.integratord."""
    from pathlib import Path

    files = Path(__file__).resolve().parents[2] / "files" / "integrations"
    for settings in ("iris_forwarder/settings.py", "opencti_enrich/settings.py"):
        text = (files / settings).read_text(encoding="utf-8")
        assert "integratord.parse(" in text, settings
        assert "/dev/null" not in text.split('"""', 2)[2] and "isdigit" not in text.split("def parse_", 1)[1][:800]
