"""Redaction: every string of an alert passes through here before it can reach the model.

Linear time, whatever the text (docs/ai-worker.md, "Redaction"):
- Each string is first cut to the prompt's size (``max_chars``): nothing past it could reach the
  prompt, so no pattern ever runs on more. The cut also drops a word it splits, so the head of a
  token that the cut made too short to recognise never reaches the model.
- Every pattern starts only at the beginning of a run of the characters it repeats (a look-behind
  excludes them), and every repeat that a later part of the pattern could make it give back is
  either bounded or over a class that the next part cannot match. A failed attempt therefore costs
  at most the run it started on, or a constant, and no run is scanned from more than one start.
- ``key=value`` secrets are found in two steps: a bounded regex finds a key candidate, plain Python
  decides whether the key looks secret and finds the end of its value; the value is consumed, so
  nothing is scanned twice.
Extra patterns from AI_WORKER_REDACT_PATTERNS are the operator's own; they run on the cut text only.
"""
import ipaddress
import re

REDACTED = "[REDACTED]"
CUT_MARK = "…[cut]"
MAX_KEY = 64  # longer "keys" are not keys
MAX_QUOTED_VALUE = 4096  # an unterminated quote redacts this much and goes on

_SENSITIVE_WORDS = (
    r"password|passwd|passphrase|pass|pwd|secret|client[_-]?secret|secret[_-]?key|private[_-]?key|"
    r"api[_-]?key|access[_-]?key|token|(?:access|refresh|session|auth|id)[_-]?token|auth|credentials?|cookie"
)
# A key is secret when one of its '_'/'-'-separated words (or a pair of them) is a sensitive word:
# db_password, X-API-Key, aws_secret_access_key, client_secret; not passwordLastSet or keyboard.
_SECRET_WORD_RE = re.compile(rf"(?<![A-Za-z0-9])(?:{_SENSITIVE_WORDS})(?![A-Za-z0-9])", re.IGNORECASE)

_TOKEN_PATTERNS = [
    # PEM private keys, with or without their END line (a truncated log still hides the key).
    # PGP's armour says "PRIVATE KEY BLOCK".
    re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
               r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL),
    re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JSON Web Tokens
    re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}|(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,}"),  # GitHub
    re.compile(r"(?<![A-Za-z0-9_-])xox[abprs]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe keys
               r"|(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}"),  # OpenAI keys
]
_AUTH_HEADER_RE = re.compile(
    r"((?:proxy-)?authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)([^\"'\r\n\\]+)", re.IGNORECASE
)
_BEARER_RE = re.compile(r"\b(bearer)[ \t]+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_BASIC_RE = re.compile(r"\b(basic)[ \t]+(?=[A-Za-z0-9+/]{0,1024}[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}", re.IGNORECASE)
# user:password@ in a URL; the user may be empty (redis://:pw@host) and the password may hold '@' and ':'
# (the last '@' before the host ends it). Each repeat stops at '/', so no run is scanned from two starts.
_URL_CREDENTIALS_RE = re.compile(
    r"(?<![A-Za-z0-9+.-])([a-z][a-z0-9+.-]{0,30}://[^\s/:@'\"]{0,256}:)[^\s/'\"]{1,256}@", re.IGNORECASE
)
# Command lines that take a password right after -p: the mysql family (-pSECRET, never "-p SECRET": that
# prompts) and sshpass (-p SECRET or -pSECRET). The command word starts a bounded segment of its line,
# searched once for the flag: linear, whatever the text.
_PASSWORD_COMMAND_RE = re.compile(r"(?<![\w.-])(mysql[\w-]{0,16}|mariadb[\w-]{0,16}|sshpass)(?![\w-])"
                                  r"[^\n|;&]{0,512}", re.IGNORECASE)
_QUOTED_OR_WORD = r"(?:'[^'\n]{0,256}'|\"[^\"\n]{0,256}\"|[^\s'\"]+)"
_MYSQL_P_RE = re.compile(r"((?<!\S)-p)(?=\S)" + _QUOTED_OR_WORD)
_SSHPASS_P_RE = re.compile(r"((?<!\S)-p[ \t]*)" + _QUOTED_OR_WORD)
# curl -u user:password, --user, --proxy-user (the user part is kept).
_USER_PASSWORD_RE = re.compile(r"((?<!\S)(?:-u|-U|--user|--proxy-user)(?:[ \t]{1,8}|=)?['\"]?[^\s:'\"]{1,128}:)"
                               r"[^\s'\"]{1,256}")
_XML_ELEMENT_RE = re.compile(r"<([A-Za-z0-9_-]{1,64})>([^<]*)</\1>")
_CLI_SECRET_RE = re.compile(r"((?<!\S)--?(?:password|passwd|pass|token|api-?key|secret)[ \t]+)(\S+)", re.IGNORECASE)
# A key candidate: a whole run of key characters (never a piece of one), then an optional quote and ':' or '='.
# The look-ahead (bounded) skips keys that hold none of the sensitive words' stems before any Python runs.
_KEY_RE = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]{0,%d}?(?:pass|pwd|secret|key|token|auth|cred|cookie))"
    r"([A-Za-z0-9_-]{1,%d})(\\?[\"'])?[ \t]*[:=][ \t]*" % (MAX_KEY, MAX_KEY), re.IGNORECASE)
_BARE_VALUE_RE = re.compile(r"[^\s,;&\"'}\])<]+")
_DOUBLE_QUOTED_RE = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL)
_EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
# IPv4, or IPv6 as groups of up to 4 hex digits between colons (an IPv4 tail allowed): every repeat starts
# with its own ':' so a failed start costs at most the candidate's 40-odd characters (issue 23: the looser
# pattern of old cost 8 µs a character on "a://:" text).
_IP_CANDIDATE_RE = re.compile(
    r"(?<![\w:.])(?:\d{1,3}(?:\.\d{1,3}){3}"
    r"|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?::?\d{1,3}(?:\.\d{1,3}){3})?)(?![\w:]|\.\w)"
)


# Words that name a secret when they END a key written without separators: camelCase (userPassword,
# dbPassword, adminPass, refreshToken) and run-together environment names (PGPASSWORD, MYSQL_PWD).
_SECRET_LAST_WORDS = frozenset((
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "token", "credential", "credentials", "cookie",
    "apikey", "accesskey", "secretkey", "privatekey", "clientsecret", "authtoken",
))
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "pwd")
_CAMEL_WORD_RE = re.compile(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+|\d+")


def is_secret_key(key):
    """Whether a key (of a JSON object, or before ':'/'=' in text) names a secret: one of its
    '_'/'-'/'.'-separated words (or a pair) is a sensitive word, or its last camelCase word (or the last
    two) is one, or it ends with a long sensitive word (PGPASSWORD)."""
    key = key[:256]
    if _SECRET_WORD_RE.search(key):
        return True
    words = [w.lower() for w in _CAMEL_WORD_RE.findall(key[-64:])]
    if words and (words[-1] in _SECRET_LAST_WORDS or "".join(words[-2:]) in _SECRET_LAST_WORDS):
        return True
    return key.lower().rstrip("\"'").endswith(_SECRET_SUFFIXES)


def cut(text, max_chars):
    """text cut to max_chars, without the word the cut splits (see the module docstring)."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    if not text[max_chars].isspace():
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        head = head[: space + 1] if space >= 0 else ""
    return head + CUT_MARK


def _value_end(text, start):
    """(end of the value that starts at text[start], its quote or "") ; end == start when there is none."""
    if text.startswith('\\"', start):
        close = text.find('\\"', start + 2, start + 2 + MAX_QUOTED_VALUE)
        return (close + 2 if close >= 0 else min(len(text), start + 2 + MAX_QUOTED_VALUE)), '\\"'
    if text.startswith('"', start):
        match = _DOUBLE_QUOTED_RE.match(text, start + 1, min(len(text), start + 1 + MAX_QUOTED_VALUE))
        return (match.end() if match else min(len(text), start + 1 + MAX_QUOTED_VALUE)), '"'
    if text.startswith("'", start):
        close = text.find("'", start + 1, start + 1 + MAX_QUOTED_VALUE)
        return (close + 1 if close >= 0 else min(len(text), start + 1 + MAX_QUOTED_VALUE)), "'"
    if text.startswith(REDACTED, start):
        return start, ""
    match = _BARE_VALUE_RE.match(text, start)
    return (match.end() if match else start), ""


def _redact_key_values(text):
    """``key=value``, ``key: value`` and JSON ``"key": "value"`` with a secret-looking key: value redacted."""
    out, pos, search = [], 0, _KEY_RE.search
    match = search(text, 0)
    while match:
        after = match.end()
        if is_secret_key(match.group(1)):
            end, quote = _value_end(text, after)
            if end > after:
                out.append(text[pos:after])
                out.append(f"{quote}{REDACTED}{quote}")
                pos = after = end
        match = search(text, after)
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _password_command_redaction(match):
    segment, command = match.group(0), match.group(1).lower()
    flag = _SSHPASS_P_RE if command == "sshpass" else _MYSQL_P_RE
    return flag.sub(lambda m: m.group(1) + REDACTED, segment)


def _xml_redaction(match):
    return f"<{match.group(1)}>{REDACTED}</{match.group(1)}>" if is_secret_key(match.group(1)) else match.group(0)


def _email_redaction(match):
    text = match.group(0)
    label = text.rpartition(".")[2]
    return "[REDACTED-EMAIL]" if len(label) >= 2 and label.isalpha() else text


def _ip_redaction(match):
    text = match.group(0)
    if ":" in text and "::" not in text and text.count(":") < 6:  # cannot be IPv6: skip the costly parse
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return "[REDACTED-IP]"


# Per token pattern (same order), the fragments one of which every match holds.
_TOKEN_NEEDLES = (("private key",), ("eyj",), ("akia", "asia", "abia", "acca"), ("gh", "github_pat_"), ("xox",),
                  ("aiza",), ("_live_", "_test_", "sk-"))
_STEPS = [*[(needles, pattern, REDACTED) for needles, pattern in zip(_TOKEN_NEEDLES, _TOKEN_PATTERNS)],
          (("authorization",), _AUTH_HEADER_RE, lambda m: m.group(1) + REDACTED),
          (("bearer",), _BEARER_RE, lambda m: f"{m.group(1)} {REDACTED}"),
          (("basic",), _BASIC_RE, lambda m: f"{m.group(1)} {REDACTED}"),
          (("://",), _URL_CREDENTIALS_RE, lambda m: f"{m.group(1)}{REDACTED}@"),
          (("</",), _XML_ELEMENT_RE, _xml_redaction),
          (("-pass", "-token", "-api", "-secret"), _CLI_SECRET_RE, lambda m: m.group(1) + REDACTED),
          (("mysql", "mariadb", "sshpass"), _PASSWORD_COMMAND_RE, _password_command_redaction),
          (("-u", "--user", "--proxy-user"), _USER_PASSWORD_RE, lambda m: m.group(1) + REDACTED)]


class Redactor:
    """Removes credentials (and optionally e-mail and IP addresses) from text and JSON-like values."""

    def __init__(self, extra_patterns=(), emails=False, ips=False, max_chars=12000):
        self.extra_patterns = tuple(extra_patterns)
        self.emails = emails
        self.ips = ips
        self.max_chars = max_chars

    def text(self, value):
        """Redacted copy of one string, cut to max_chars first."""
        value = cut(value, self.max_chars)
        # A pattern runs only when the text holds a fragment every match of it must contain (lower-cased
        # here): one scan for "in" instead of a regex pass. Replacements only remove such fragments.
        lowered = value.lower()
        for needles, pattern, replacement in _STEPS:
            if any(needle in lowered for needle in needles):
                value = pattern.sub(replacement, value)
        if ":" in value or "=" in value:
            value = _redact_key_values(value)
        for pattern in self.extra_patterns:
            value = pattern.sub(REDACTED, value)
        if self.emails and "@" in value:
            value = _EMAIL_RE.sub(_email_redaction, value)
        if self.ips and ("." in value or ":" in value):
            value = _IP_CANDIDATE_RE.sub(_ip_redaction, value)
        return value

    def value(self, data):
        """Redacted deep copy of a JSON-like value; values under secret-looking keys are dropped whole."""
        if isinstance(data, dict):
            out = {}
            for key, item in data.items():
                # A key can be the secret itself (a token used as a JSON key): keys are redacted as text too,
                # and keys that redact to the same text stay apart.
                shown = self.text(key) if isinstance(key, str) else key
                while shown in out:
                    shown = f"{shown}#"
                out[shown] = REDACTED if isinstance(key, str) and is_secret_key(key) else self.value(item)
            return out
        if isinstance(data, list):
            return [self.value(item) for item in data]
        if isinstance(data, str):
            return self.text(data)
        return data
