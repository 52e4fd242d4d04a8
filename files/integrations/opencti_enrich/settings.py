"""What a run was asked to do: the command line integratord builds, the options, exit codes and bounds.

    custom-opencti ALERT_FILE API_KEY HOOK_URL [DEBUG [OPTIONS_FILE TIMEOUT RETRIES]] ['> /dev/null 2>&1']

Every layout Wazuh 4.x uses is accepted (docs/opencti.md, "Command line"), read by
socstack_core.integratord as for the forwarder; the literal redirect element integratord appends,
whole or split, is ignored. The token comes from the file the option
api_key_file names (the role writes it; ossec.conf then has no <api_key>, so it is in no process's
command line); integratord's API_KEY argument is used only when that option is unset. The role's
preflight checks have their own command lines (preflight.py): --check-options and --check-connection.
"""
from socstack_core import integratord
from socstack_core import options as opt

PROG = "custom-opencti"
INTEGRATION = "opencti"
USER_AGENT = "socstack-wazuh-opencti/1.0"

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_ALERT = 3
EXIT_QUEUE = 4
EXIT_INTERNAL = 5
EXIT_CONFIG = 6  # preflight: the options file, the URL, the token file or ca_file is not usable
EXIT_CHECK_FAILED = 7  # preflight: OpenCTI could not be reached or refused the check query

DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 300
# After the request's deadline, a run may spend this long handing its events to the queue socket;
# so a run ends within timeout + QUEUE_GRACE seconds (docs/opencti.md, "Time bounds").
QUEUE_GRACE = 2.0


def _text_or_none(value):
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string or null")
    return value


def _any_text(value):
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


OPTIONS = {
    "max_ind_alerts": (opt.integer(0), 3),
    "max_obs_alerts": (opt.integer(0), 2),
    "max_observables": (opt.integer(1), 20),
    "cache_ttl": (opt.integer(0), 3600),
    "cache_max_entries": (opt.integer(1), 10000),
    "state_dir": (_any_text, "/var/ossec/var/opencti"),
    "ca_file": (_text_or_none, None),
    "verify_tls": (opt.boolean, True),
    "queue_socket": (_any_text, "/var/ossec/queue/sockets/queue"),
    "log_file": (_any_text, "logs/integrations.log"),
    # File holding the OpenCTI API token alone (root:wazuh 0640); wins over integratord's API_KEY argument.
    "api_key_file": (_text_or_none, None),
    # true: debug logging, as integratord's "debug" argument (either one turns it on).
    "debug": (opt.boolean, False),
}


def load_options(path):
    """(options, problems) from integratord's .options file; bad parts fall back to their defaults."""
    return opt.load(path, OPTIONS)


class LookupFailed(Exception):
    """OpenCTI could not answer usefully: the message becomes an opencti.error event."""


def graphql_url(hook_url):
    """The GraphQL endpoint: hook_url as given, with /graphql appended when missing."""
    url = hook_url.strip().rstrip("/")
    return url if url.endswith("/graphql") else url + "/graphql"


def safe_url(url):
    """The URL without user info, query or fragment, for logs and events."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return "<invalid URL>"
    netloc, slash, path = rest.partition("/")
    path = (slash + path).split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{netloc.rpartition('@')[2]}{path}"


class UsageError(Exception):
    """The command line does not carry what integratord always passes."""


def parse_argv(argv):
    """The socstack_core.integratord Call of every Wazuh 4.x layout, its timeout brought into 1..MAX_TIMEOUT;
    raises UsageError (argument values are never put in it)."""
    try:
        call = integratord.parse(argv, timeout=DEFAULT_TIMEOUT, retries=0)
    except integratord.UsageError as exc:
        raise UsageError(str(exc)) from None
    if not call.hook_url:
        raise UsageError("the integration needs <hook_url> in its ossec.conf block")
    call.timeout = min(max(call.timeout, 1), MAX_TIMEOUT)
    return call


MAX_TOKEN_BYTES = 64 * 1024


def read_token(path, stdin=None, check_mode=True):
    """(token, None) or (None, problem): the token file's text without surrounding white space.

    path "-" reads stdin (a binary stream). With check_mode, a regular file that every local user may read
    or write is refused: the role writes the api_key_file root:wazuh 0640.
    """
    import os  # noqa: PLC0415 -- loaded at start-up already
    import stat  # noqa: PLC0415

    where = "standard input" if path == "-" else f"token file {path}"
    if check_mode and path != "-":
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if stat.S_ISREG(mode) and mode & 0o007:
            return None, (f"{where} is open to every local user (mode {mode & 0o777:04o}); it must not be: chmod "
                          "o-rwx it (the role writes it root:wazuh 0640)")
    raw, problem = opt.read_bounded(path, MAX_TOKEN_BYTES, where, stdin if path == "-" else None)
    if problem:
        return None, problem
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"{where} is not UTF-8"
    if not token:
        return None, f"{where} is empty"
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in token):
        return None, f"{where} must hold the token alone, on one line (it has white space or control characters)"
    return token, None


def token_for(args, options):
    """(token, None) or (None, problem): api_key_file when set (the argv token is then ignored), else argv."""
    if options["api_key_file"]:
        return read_token(options["api_key_file"])
    if args.api_key:
        return args.api_key, None
    return None, ("no OpenCTI token: set the option api_key_file (the file holding the token), or <api_key> in "
                  "the ossec.conf block")
