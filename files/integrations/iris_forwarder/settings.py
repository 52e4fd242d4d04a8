"""What a run was asked to do: the command line integratord builds, and the options file.

Alert mode (run by wazuh-integratord, cwd = the Wazuh home, e.g. /var/ossec):
    custom-wazuh_iris.py ALERT_FILE API_KEY HOOK_URL
    custom-wazuh_iris.py ALERT_FILE API_KEY HOOK_URL DEBUG OPTIONS_FILE TIMEOUT RETRIES ['> /dev/null 2>&1']
Replay mode (run by a systemd timer: drains the spool when no alert comes):
    custom-wazuh_iris.py --replay --options OPTIONS_FILE [--debug]
Options check (the role's validate step): custom-wazuh_iris.py --check-options OPTIONS_FILE
Connection check (preflight, changes nothing): custom-wazuh_iris.py --check-connection --options OPTIONS_FILE [--debug]

The API key comes from the file the option api_key_file names, in every mode; integratord's API_KEY
argument is used only when that option is unset (configurations written before the option existed).
The same goes for hook_url: the option wins, the HOOK_URL argument is the fallback.
"""
from socstack_core import integratord
from socstack_core import options as opt

from .routing import customer_ids, routes

PROG = "custom-wazuh_iris"

# Exit codes (docs/forwarder.md, "Exit codes").
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_SPOOLED = 2
EXIT_BAD_INPUT = 3
EXIT_REJECTED = 4
EXIT_CONFIG = 5
EXIT_LOST = 6
EXIT_STORAGE = 7

DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 3

DEFAULT_SEVERITY_BY_LEVEL = {"0-3": "Informational", "4-6": "Low", "7-9": "Medium", "10-12": "High",
                             "13-15": "Critical"}


def level_ranges(value):
    """Turn {"0-3": "Informational", "13": "Critical", ...} into sorted (low, high, name) tuples."""
    if not isinstance(value, dict) or not value:
        raise ValueError('must be an object such as {"0-3": "Informational", "4-6": "Low"}')
    ranges = []
    for key, name in value.items():
        low, _dash, high = str(key).partition("-")
        high = high or low
        if not (low.strip().isdigit() and high.strip().isdigit()) or int(low) > int(high):
            raise ValueError(f'key "{key}" is not a level or a range like "4-6"')
        ranges.append((int(low), int(high), opt.text(name)))
    return sorted(ranges)


OPTIONS = {
    "customer_id": (opt.integer(1), 1),
    "customer_field": (opt.optional_text, None),
    "customer_routes": (routes, []),
    "customers": (customer_ids, {}),
    "severity_by_level": (level_ranges, DEFAULT_SEVERITY_BY_LEVEL),
    "status": (opt.text, "New"),
    "tags": (opt.string_list, []),
    "ai_pending": (opt.boolean, False),
    "dashboard_url": (opt.optional_text, None),
    "ca_file": (opt.optional_text, None),
    "verify_tls": (opt.boolean, True),
    "state_dir": (opt.text, "var/iris-forwarder"),
    "log_file": (opt.text, "logs/integrations.log"),
    "hook_url": (opt.optional_text, None),
    "api_key_file": (opt.optional_text, None),
    "debug": (opt.boolean, False),
    "cache_ttl": (opt.integer(0), 3600),
    "outage_backoff": (opt.integer(0), 30),
    "spool_max_files": (opt.integer(1), 2000),
    "rejected_max_files": (opt.integer(1), 500),
    "replay_max_per_run": (opt.integer(1), 100),
    "replay_max_seconds": (opt.integer(1), 15),
    "ambiguity_window": (opt.integer(0), 120),
    "retry_backoff": (opt.integer(0), 60),
    "poison_max_attempts": (opt.integer(1), 5),
    "poison_max_age": (opt.integer(1), 86400),
}


def default_options():
    """Every option at its default value (already validated)."""
    return opt.defaults(OPTIONS)


def load_options(path):
    """Read Wazuh's <options> JSON file; return (options, problems). Bad parts fall back to defaults."""
    return opt.load(path, OPTIONS)


class UsageError(Exception):
    """The command line matches none of the supported layouts."""


class Args(integratord.Call):
    """What the command line asked for: integratord's call (socstack_core.integratord.Call) and the modes."""

    __slots__ = ("check_connection", "check_options", "replay")

    def __init__(self, *, alert_file="", api_key="", hook_url="", debug=False, options_file="",
                 timeout=DEFAULT_TIMEOUT, retries=DEFAULT_RETRIES, replay=False, check_options=False,
                 check_connection=False):
        super().__init__(alert_file, api_key, hook_url, debug=debug, options_file=options_file, timeout=timeout,
                         retries=retries)
        self.replay = replay
        self.check_options = check_options
        self.check_connection = check_connection


def parse_args(argv):
    """Return Args for every layout Wazuh 4.x uses, or raise UsageError (argv values never logged).

    integratord's layouts are read by socstack_core.integratord, shared with the OpenCTI enrichment.
    """
    rest = list(argv[1:])
    if rest and rest[0] in ("--replay", "--check-connection"):
        return _parse_option_args(rest[0], rest[1:])
    if rest and rest[0] == "--check-options":
        if len(rest) != 2:
            raise UsageError("--check-options takes one options file")
        return Args(options_file=rest[1], check_options=True)
    try:
        call = integratord.parse(argv, timeout=DEFAULT_TIMEOUT, retries=DEFAULT_RETRIES)
    except integratord.UsageError as exc:
        raise UsageError(f"{exc}, or --replay --options FILE") from None
    return Args(alert_file=call.alert_file, api_key=call.api_key, hook_url=call.hook_url, debug=call.debug,
                options_file=call.options_file, timeout=call.timeout or DEFAULT_TIMEOUT, retries=call.retries)


def _parse_option_args(mode, rest):
    """Parse the arguments that follow --replay or --check-connection."""
    args = Args(replay=mode == "--replay", check_connection=mode == "--check-connection")
    name = "replay mode" if args.replay else mode
    while rest:
        word = rest.pop(0)
        if word == "--debug":
            args.debug = True
        elif word == "--options" and rest:
            args.options_file = rest.pop(0)
        elif word.startswith("--options="):
            args.options_file = word.split("=", 1)[1]
        else:
            raise UsageError(f"{name} takes --options FILE and optionally --debug")
    if not args.options_file:
        raise UsageError(f"{name} needs --options FILE")
    return args


MAX_KEY_FILE_BYTES = 4096


class KeyFileError(ValueError):
    """The API key file cannot give a key; the message names the file, never its content."""


def read_head(path, limit, error, where):
    """At most limit + 1 bytes of the file path (one more than allowed: the caller sees a file that is too large).

    Raises ``error("cannot read <where>: <reason>")`` when the file cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {where}: {exc.strerror or type(exc).__name__}") from None


def check_key_file_mode(path, error, where):
    """Raise error when every local user may read or write the key file (the role writes it root:wazuh 0640)."""
    import os  # noqa: PLC0415 -- loaded at start-up already
    import stat  # noqa: PLC0415 -- loaded by os already

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the read that follows names the reason
    if stat.S_ISREG(mode) and mode & 0o007:
        raise error(f"{where} is open to every local user (mode {mode & 0o777:04o}); it must not be: "
                    "chmod o-rwx it (the role writes it root:wazuh 0640)")


def read_api_key(path):
    """The API key held by the file path (surrounding white space removed). Raises KeyFileError."""
    check_key_file_mode(path, KeyFileError, f"api_key_file {path}")
    raw = read_head(path, MAX_KEY_FILE_BYTES, KeyFileError, f"api_key_file {path}")
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"api_key_file {path} is larger than {MAX_KEY_FILE_BYTES} bytes; it must hold the key alone")
    try:
        key = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"api_key_file {path} is not UTF-8 text") from None
    if not key:
        raise KeyFileError(f"api_key_file {path} is empty")
    if any(char.isspace() for char in key):
        raise KeyFileError(f"api_key_file {path} holds more than one word; it must hold the key alone")
    return key
