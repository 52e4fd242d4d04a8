"""The command line wazuh-integratord gives an integration, read once for every program that integratord runs.

integratord (Wazuh 4.8 to 4.14, identical on 4.8.2 and 4.14.7) builds the string
``integrations ALERT_FILE API_KEY HOOK_URL DEBUG OPTIONS_FILE TIMEOUT RETRIES`` (empty slots stay empty),
appends `` > /dev/null 2>&1`` when its debug level is 0, and cuts it at spaces at most 8 times, with no
shell: the redirect arrives as ONE literal argument. Older integratords, and Wazuh's own scripts, pass
the first three (optionally ``debug``). So the arguments after argv[0] are, once the redirect is taken
off the end (whole, or split into ``>``, ``/dev/null``, ``2>&1`` by a shell wrapper):

- 3: ALERT_FILE API_KEY HOOK_URL
- 4: ALERT_FILE API_KEY HOOK_URL DEBUG
- 7: ALERT_FILE API_KEY HOOK_URL DEBUG OPTIONS_FILE TIMEOUT RETRIES

An API key or hook URL holding a space shifts every later argument (and the ninth piece keeps the rest
of the string, such as ``3 > /dev/null 2>&1``): any other count, a DEBUG slot other than ``debug`` or
empty, or a TIMEOUT/RETRIES slot that is not digits is refused with UsageError, whose message never
holds an argument's value (one of them is a secret). Empty TIMEOUT/RETRIES slots give the defaults.
"""

REDIRECT = "> /dev/null 2>&1"
REDIRECT_PIECES = REDIRECT.split()
SHIFT_HINT = " (an api_key or hook_url containing a space shifts every later argument)"
LAYOUTS = "ALERT_FILE API_KEY HOOK_URL, optionally followed by DEBUG, or by DEBUG OPTIONS_FILE TIMEOUT RETRIES"


class UsageError(Exception):
    """The command line is none of integratord's layouts (the message names no argument value)."""


class Call:
    """What integratord passed: alert_file, api_key, hook_url, debug (bool), options_file, timeout, retries."""

    __slots__ = ("alert_file", "api_key", "debug", "hook_url", "options_file", "retries", "timeout")

    def __init__(self, alert_file, api_key, hook_url, *, debug, options_file, timeout, retries):
        self.alert_file = alert_file
        self.api_key = api_key
        self.hook_url = hook_url
        self.debug = debug
        self.options_file = options_file
        self.timeout = timeout
        self.retries = retries


def without_redirect(args):
    """args without integratord's trailing redirect (one literal argument, or its three shell words)."""
    if args and args[-1] == REDIRECT:
        return args[:-1]
    if args[-3:] == REDIRECT_PIECES:
        return args[:-3]
    return args


def _count(value, name, default):
    if value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f"the {name} argument is not a number{SHIFT_HINT}")
    return int(value)


def parse(argv, *, timeout=10, retries=3):
    """The Call of argv (argv[0] is ignored); timeout and retries are the defaults of empty slots."""
    args = without_redirect(list(argv[1:]))
    if len(args) not in (3, 4, 7):
        raise UsageError(f"got {len(argv) - 1} arguments; expected {LAYOUTS}, and integratord's "
                         f"'{REDIRECT}'{SHIFT_HINT}")
    args += [""] * (7 - len(args))
    alert_file, api_key, hook_url, debug, options_file, timeout_slot, retries_slot = args
    if debug not in ("", "debug"):
        raise UsageError(f"the debug argument must be 'debug' or empty{SHIFT_HINT}")
    return Call(alert_file, api_key, hook_url, debug=debug == "debug", options_file=options_file,
                timeout=_count(timeout_slot, "timeout", timeout), retries=_count(retries_slot, "retries", retries))
