"""The worker's settings: environment variables (docs/ai-worker.md, "Configuration"), read and checked.

Every variable is read through socstack_core.options against the typed schema below; what the
schema cannot say (URLs, the instance numbering, the lease arithmetic) is checked here. Any problem
is a ConfigError whose text names the variables and never holds the API key.
"""
import os
import re

from socstack_core import http
from socstack_core import options as opt

PROG = "iris-ai-worker"


class ConfigError(Exception):
    """The environment does not describe a usable configuration."""


def _one_of(*choices):
    def check(value):
        value = opt.text(value)
        if value not in choices:
            raise ValueError(f"must be {' or '.join(repr(choice) for choice in choices)}")
        return value
    return check


def _log_level(value):
    value = opt.text(value).upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def _words(value):
    return frozenset(opt.string_list(value))


def _customer_ids(value):
    """AI_WORKER_CUSTOMER_IDS: IRIS customer ids whose alerts this worker triages (empty: every customer)."""
    ids = opt.string_list(value)
    if not all(item.isascii() and item.isdigit() and int(item) >= 1 for item in ids):
        raise ValueError("must be a comma-separated list of IRIS customer ids (whole numbers >= 1)")
    return frozenset(int(item) for item in ids)


# name -> (check, default); the type of the default is how the variable's text is read.
SCHEMA = {
    "IRIS_BASE_URL": (opt.optional_text, ""),
    "IRIS_BEARER": (opt.optional_text, ""),
    "OLLAMA_URL": (opt.optional_text, "http://127.0.0.1:11434"),
    "OLLAMA_MODEL": (opt.optional_text, ""),
    "AI_WORKER_INSTANCE": (opt.optional_text, ""),
    "AI_WORKER_INSTANCES": (opt.optional_text, ""),
    "AI_WORKER_POLL_SECONDS": (opt.number(0.1), 60.0),
    "AI_WORKER_MAX_PER_CYCLE": (opt.integer(1), 5),
    "AI_WORKER_MAX_PER_MINUTE": (opt.integer(0), 20),
    "AI_WORKER_VERIFY_TLS": (opt.boolean, True),
    "AI_WORKER_CA_FILE": (opt.optional_text, ""),
    "AI_WORKER_IRIS_TIMEOUT": (opt.number(0.1), 15.0),
    "AI_WORKER_CLAIM_TIMEOUT": (opt.number(0.05), 3.0),
    "AI_WORKER_OLLAMA_TIMEOUT": (opt.number(0.1), 120.0),
    "AI_WORKER_OLLAMA_FORMAT": (_one_of("schema", "json"), "schema"),
    "AI_WORKER_PULL_TIMEOUT": (opt.number(1.0), 1800.0),
    "AI_WORKER_OLLAMA_BACKOFF_MIN": (opt.number(0.05), 5.0),
    "AI_WORKER_OLLAMA_BACKOFF_MAX": (opt.number(0.05), 300.0),
    "AI_WORKER_MAX_ATTEMPTS": (opt.integer(1), 3),
    "AI_WORKER_MAX_TAKEOVERS": (opt.integer(1), 3),
    "AI_WORKER_CLAIM_TTL": (opt.number(1.0), 900.0),
    "AI_WORKER_CLOCK_SKEW": (opt.number(0.0), 5.0),
    "AI_WORKER_TAKEOVER_GRACE": (opt.number(0.0), 300.0),
    "AI_WORKER_STOP_GRACE": (opt.number(0.0), 20.0),
    "AI_WORKER_ALLOWLIST_RULE_IDS": (_words, []),
    "AI_WORKER_ALLOWLIST_AGENTS": (_words, []),
    "AI_WORKER_ALLOWLIST_GROUPS": (_words, []),
    "AI_WORKER_CUSTOMER_IDS": (_customer_ids, []),
    "AI_WORKER_REDACT_EMAILS": (opt.boolean, False),
    "AI_WORKER_REDACT_IPS": (opt.boolean, False),
    "AI_WORKER_REDACT_PATTERNS": (opt.optional_text, ""),
    "AI_WORKER_STATE_DIR": (opt.optional_text, ""),
    "STATE_DIRECTORY": (opt.optional_text, ""),
    "AI_WORKER_DEDUP_WINDOW": (opt.number(0.0), 3600.0),
    "AI_WORKER_MAX_PROMPT_CHARS": (opt.integer(1000), 12000),
    "AI_WORKER_LOG_LEVEL": (_log_level, "INFO"),
}
REQUIRED = ("IRIS_BASE_URL", "IRIS_BEARER", "OLLAMA_MODEL")
# Set by systemd, not by the settings file: the instance (the unit's %i) and the state directory.
FROM_SYSTEMD = ("AI_WORKER_INSTANCE", "STATE_DIRECTORY")
# IRIS requests a claimed alert may need before its last write starts: read-back, comment list, the
# re-read before the comment, the comment, the comment list that heals, the re-read before the final tags.
WRITES_AFTER_CLAIM = 6


class Config:
    """Everything the worker reads from the environment, checked (see load_config)."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __repr__(self):
        shown = {k: v for k, v in sorted(self.__dict__.items()) if k != "iris_bearer"}
        return f"Config({shown})"

    @property
    def settle_seconds(self):
        """Wait between a claim write and its read-back: longer than any claimant's read-to-write gap."""
        return 2.2 * self.claim_timeout

    @property
    def lease_seconds(self):
        """How long after sending its claim a worker may still START a write to the alert."""
        return self.claim_ttl - self.clock_skew - self.iris_timeout

    @property
    def own_skew_limit(self):
        """How far this host's clock may be from IRIS's: half the skew allowed between two workers."""
        return self.clock_skew / 2


def _http_url(name, raw):
    try:
        http.split_url(raw)
    except ValueError as exc:
        credentials = "user:password" in str(exc) and "@" in raw
        reason = "must not carry credentials" if credentials else "must be an http(s) URL"
        raise ConfigError(f"{name} {reason}") from None
    return raw.strip().rstrip("/")


def ollama_base_url(raw):
    """Accept both ``http://host:11434`` and ``http://host:11434/api/generate``."""
    url = _http_url("OLLAMA_URL", raw)
    for suffix in ("/api/generate", "/api/chat", "/api"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _instance_identity(name, count_raw):
    """(name, index, count) from AI_WORKER_INSTANCE (1-based) and AI_WORKER_INSTANCES."""
    name, count_raw = name or "", count_raw or ""
    if not name and not count_raw:
        return "ai-worker", 0, 1
    if not name:
        raise ConfigError("AI_WORKER_INSTANCES is set but AI_WORKER_INSTANCE is not")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ConfigError("AI_WORKER_INSTANCE may only hold letters, digits, '_', '.', '-' (at most 40)")
    count = 1
    if count_raw:
        if not count_raw.isdigit() or int(count_raw) < 1:
            raise ConfigError("AI_WORKER_INSTANCES must be a whole number >= 1")
        count = int(count_raw)
    if count == 1:
        return name, 0, 1
    if not name.isdigit() or not 1 <= int(name) <= count:
        raise ConfigError(f"with AI_WORKER_INSTANCES={count}, AI_WORKER_INSTANCE must be a number from 1 to {count}")
    return name, int(name) - 1, count


def _redact_patterns(raw):
    if not raw:
        return ()
    from socstack_core.jsonio import loads  # noqa: PLC0415

    try:
        listed = loads(raw)
    except ValueError:
        raise ConfigError("AI_WORKER_REDACT_PATTERNS must be a JSON list of regular expressions") from None
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise ConfigError("AI_WORKER_REDACT_PATTERNS must be a JSON list of strings")
    patterns = []
    for position, pattern in enumerate(listed):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"AI_WORKER_REDACT_PATTERNS[{position}] is not a valid regex: {exc}") from None
    return tuple(patterns)


def _checked(problems, check, *args):
    """check(*args), or None with its ConfigError added to problems."""
    try:
        return check(*args)
    except ConfigError as exc:
        problems.append(str(exc))
        return None


def config_problems(env):
    """(Config or None, every problem of the settings in env, one line each): the strict check that
    ``--check-options`` prints; load_config raises the same problems as one ConfigError."""
    env = dict(env)
    problems = [f"missing required setting {key}" for key in REQUIRED if not str(env.get(key, "")).strip()]
    raw, found = opt.from_environment(env, SCHEMA)
    problems += found
    identity = _checked(problems, _instance_identity, raw["AI_WORKER_INSTANCE"], raw["AI_WORKER_INSTANCES"])
    ca_file = raw["AI_WORKER_CA_FILE"]
    if ca_file and not os.path.isfile(ca_file):
        problems.append(f"AI_WORKER_CA_FILE {ca_file} does not exist")
    iris_url = _checked(problems, _http_url, "IRIS_BASE_URL", raw["IRIS_BASE_URL"]) if raw["IRIS_BASE_URL"] else ""
    ollama_url = _checked(problems, ollama_base_url, raw["OLLAMA_URL"])
    patterns = _checked(problems, _redact_patterns, raw["AI_WORKER_REDACT_PATTERNS"])
    if raw["AI_WORKER_OLLAMA_BACKOFF_MAX"] < raw["AI_WORKER_OLLAMA_BACKOFF_MIN"]:
        problems.append("AI_WORKER_OLLAMA_BACKOFF_MAX must not be below AI_WORKER_OLLAMA_BACKOFF_MIN")
    name, index, count = identity or ("ai-worker", 0, 1)
    config = Config({
        "iris_url": iris_url,
        "iris_bearer": raw["IRIS_BEARER"],
        "ollama_url": ollama_url,
        "ollama_model": raw["OLLAMA_MODEL"],
        "instance": name,
        "instance_index": index,
        "instances": count,
        "poll_seconds": raw["AI_WORKER_POLL_SECONDS"],
        "max_per_cycle": raw["AI_WORKER_MAX_PER_CYCLE"],
        "max_per_minute": raw["AI_WORKER_MAX_PER_MINUTE"],
        "verify_tls": raw["AI_WORKER_VERIFY_TLS"],
        "ca_file": ca_file,
        "iris_timeout": raw["AI_WORKER_IRIS_TIMEOUT"],
        "claim_timeout": raw["AI_WORKER_CLAIM_TIMEOUT"],
        "ollama_timeout": raw["AI_WORKER_OLLAMA_TIMEOUT"],
        "ollama_format": raw["AI_WORKER_OLLAMA_FORMAT"],
        "pull_timeout": raw["AI_WORKER_PULL_TIMEOUT"],
        "backoff_min": raw["AI_WORKER_OLLAMA_BACKOFF_MIN"],
        "backoff_max": raw["AI_WORKER_OLLAMA_BACKOFF_MAX"],
        "max_attempts": raw["AI_WORKER_MAX_ATTEMPTS"],
        "max_takeovers": raw["AI_WORKER_MAX_TAKEOVERS"],
        "claim_ttl": raw["AI_WORKER_CLAIM_TTL"],
        "clock_skew": raw["AI_WORKER_CLOCK_SKEW"],
        "takeover_grace": raw["AI_WORKER_TAKEOVER_GRACE"],
        "stop_grace": raw["AI_WORKER_STOP_GRACE"],
        "allow_rule_ids": raw["AI_WORKER_ALLOWLIST_RULE_IDS"],
        "allow_agents": raw["AI_WORKER_ALLOWLIST_AGENTS"],
        "allow_groups": raw["AI_WORKER_ALLOWLIST_GROUPS"],
        "customer_ids": raw["AI_WORKER_CUSTOMER_IDS"],
        "redact_emails": raw["AI_WORKER_REDACT_EMAILS"],
        "redact_ips": raw["AI_WORKER_REDACT_IPS"],
        "redact_patterns": patterns or (),
        "state_dir": raw["AI_WORKER_STATE_DIR"] or raw["STATE_DIRECTORY"],
        "dedup_window": raw["AI_WORKER_DEDUP_WINDOW"],
        "max_prompt_chars": raw["AI_WORKER_MAX_PROMPT_CHARS"],
        "log_level": raw["AI_WORKER_LOG_LEVEL"],
    })
    needed = config.settle_seconds + config.ollama_timeout + WRITES_AFTER_CLAIM * config.iris_timeout
    if config.lease_seconds <= needed:
        minimum = needed + config.clock_skew + config.iris_timeout
        problems.append(
            f"AI_WORKER_CLAIM_TTL ({config.claim_ttl:g}s) is too short: it must exceed {minimum:g}s "
            f"(settle time + Ollama timeout + {WRITES_AFTER_CLAIM + 1} IRIS timeouts + clock skew)"
        )
    return (None if problems else config), problems


def load_config(env=None):
    """A Config from the environment (or a dict); ConfigError with a precise reason otherwise."""
    env = dict(os.environ if env is None else env)
    missing = [key for key in REQUIRED if not str(env.get(key, "")).strip()]
    if missing:
        raise ConfigError("missing required setting(s): " + ", ".join(missing))
    config, problems = config_problems(env)
    if problems:
        raise ConfigError("; ".join(problems))
    return config
