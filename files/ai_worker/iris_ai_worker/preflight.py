"""The checks the role runs before it starts the instances (docs/ai-worker.md, "Checks before start").

``--check-options FILE``: the settings file (systemd's ``EnvironmentFile=``) is read as systemd reads
it and checked as the worker checks its settings; one line per problem. The role's template task
uses it as ``validate:``, so a bad value never reaches the installed file.

``--check-connection [--env-file FILE]``: with exactly the settings an instance gets (the same file,
CA file, customer ids and model), asks IRIS and Ollama whether the worker can work: IRIS reachable,
its certificate accepted, the API key accepted (IRIS's own message when not), alerts readable, the
account linked to each configured customer, Ollama reachable and the model present. Only reads
(GET requests): it changes nothing. One line per check, ``ok: ...`` or ``problem: ...``.

``--pull-model [--env-file FILE]``: when Ollama lacks the model, ``POST /api/pull`` (Ollama's status
lines streamed, all read under one deadline of ``AI_WORKER_PULL_TIMEOUT``), then ``/api/tags`` again.
Its last line starts with ``pulled`` only when it pulled.
"""
import time

from . import envfile
from .iris import IrisClient, ServiceError
from .ollama import OllamaClient
from .settings import FROM_SYSTEMD, SCHEMA, config_problems

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2


class Report:
    """Lines ``ok: ...`` / ``problem: ...`` / ``note: ...`` written as they come."""

    def __init__(self, out):
        self.out = out
        self.problems = 0

    def line(self, kind, text):
        self.out.write(f"{kind}: {text}\n")
        self.out.flush()

    def ok(self, text):
        self.line("ok", text)

    def note(self, text):
        self.line("note", text)

    def problem(self, text):
        self.problems += 1
        self.line("problem", text)


# ----------------------------------------------------------------------------------- the settings
def settings_env(env):
    """The settings as the first instance gets them: the unit sets AI_WORKER_INSTANCE (1 ... N)."""
    env = dict(env)
    if str(env.get("AI_WORKER_INSTANCES", "")).strip() and not str(env.get("AI_WORKER_INSTANCE", "")).strip():
        env["AI_WORKER_INSTANCE"] = "1"
    return env


def file_problems(path):
    """Every problem of the settings file at path, one line each (empty when it is fine)."""
    env, problems = envfile.read(path)
    for name in env:
        if name in FROM_SYSTEMD:
            problems.append(f"{name} is set by the unit, not by the settings file")
        elif name not in SCHEMA:
            problems.append(f"unknown setting {name}")
    _config, found = config_problems(settings_env({k: v for k, v in env.items() if k not in FROM_SYSTEMD}))
    return problems + found


def check_options(path, out):
    """--check-options: one line per problem; exit 0 when there is none, else EXIT_CONFIG."""
    found = file_problems(path)
    for problem in found:
        out.write(f"{path}: {problem}\n")
    return EXIT_CONFIG if found else EXIT_OK


def load(env_file, environ, out):
    """(Config, None) from the settings file (or, without one, the process environment), or (None, exit code)."""
    if env_file:
        env, problems = envfile.read(env_file)
        if problems:
            for problem in problems:
                out.write(f"problem: {problem}\n")
            return None, EXIT_CONFIG
    else:
        env = environ
    config, problems = config_problems(settings_env(env))
    for problem in problems:
        out.write(f"problem: {problem}\n")
    return config, (EXIT_CONFIG if problems else None)


# ---------------------------------------------------------------------------------------- IRIS
def _reason(transport, endpoint):
    prefix = f"{endpoint.url}: "
    return transport.reason[len(prefix):] if transport.reason.startswith(prefix) else transport.reason


def _trust(config):
    return (f"the CA in AI_WORKER_CA_FILE ({config.ca_file})" if config.ca_file
            else "a CA of the system trust store (no AI_WORKER_CA_FILE is set)")


def unreachable(what, url, exc, endpoint, config):
    """The problem line for a call that got no answer (TLS refused, CA unusable, refused, timed out)."""
    transport = exc.transport
    if transport is None:
        return f"{what} {url}: {exc}"
    reason = _reason(transport, endpoint)
    if transport.tls_verify:
        return (f"{what} {url}: its TLS certificate is not accepted ({transport.tls_verify}): the URL's host name "
                f"must be one the certificate names, and {_trust(config)} must have signed it")
    if transport.config:
        return f"{what} {url}: {reason}"
    return f"{what} {url} is unreachable: {reason}"


def check_iris(config, report, iris=None):
    """IRIS reachable, TLS accepted, key accepted, alerts readable; True when triage can go on."""
    iris = iris or IrisClient(config)
    url = config.iris_url
    try:
        iris.ping()
    except ServiceError as exc:
        if exc.transport is not None:
            report.problem(unreachable("IRIS", url, exc, iris.endpoint, config))
        elif exc.status == 401:
            message = exc.server_message or "no message"
            report.problem(f"IRIS {url} refused the API key (IRIS_BEARER): HTTP 401 \"{message}\" (a wrong or "
                           "renewed key, or a deactivated account)")
        else:
            report.problem(f"IRIS {url}: GET /api/ping answered {str(exc).split(': ', 1)[-1]} "
                           "(is IRIS_BASE_URL the IRIS API's base URL?)")
        return False
    report.ok(f"IRIS {url} is reachable{' over verified TLS' if url.startswith('https') and config.verify_tls else ''} "
              "and accepts the API key")
    try:
        iris.alerts_of_customer(0)
    except ServiceError as exc:
        report.problem(f"IRIS {url}: the account may not read alerts ({str(exc).split(': ', 1)[-1]}); its group needs "
                       "alerts_read and alerts_write")
        return False
    report.ok(f"IRIS {url}: the account may read alerts")
    return True


def check_customers(config, report, iris=None):
    """The account is linked to every customer of AI_WORKER_CUSTOMER_IDS (only reads)."""
    iris = iris or IrisClient(config)
    wanted = sorted(config.customer_ids)
    if not wanted:
        report.ok("customers: every customer the account is linked to (AI_WORKER_CUSTOMER_IDS is empty)")
        return
    try:
        rows = iris.customers()
    except ServiceError as exc:
        if exc.status != 403:
            report.problem(f"IRIS {config.iris_url}: cannot list the account's customers: {exc}")
            return
        rows = None  # no customers_read: what the account sees of the alerts is all there is to go on
    if rows is not None:
        linked = {row.get("customer_id") for row in rows if isinstance(row, dict)}
        for customer_id in wanted:
            if customer_id in linked:
                report.ok(f"customer {customer_id}: the account is linked to it")
            else:
                report.problem(f"customer {customer_id}: the IRIS account is not linked to customer {customer_id} "
                               f"(it is linked to: {', '.join(str(c) for c in sorted(linked, key=str)) or 'none'}); "
                               "link it (iris_provision does for socstack_tenants), or fix ai_worker_customers")
        return
    for customer_id in wanted:
        try:
            seen = iris.alerts_of_customer(customer_id).get("total") or 0
        except ServiceError as exc:
            report.problem(f"customer {customer_id}: cannot read its alerts: {exc}")
            continue
        if seen:
            report.ok(f"customer {customer_id}: the account sees its alerts, so it is linked to it")
        else:
            report.note(f"customer {customer_id}: not confirmed - the account may not list customers "
                        "(no customers_read) and sees no alert of this customer yet")


# -------------------------------------------------------------------------------------- Ollama
def check_ollama(config, report, allow_missing=False, ollama=None):
    """Ollama reachable and the model present (or, with allow_missing, about to be pulled)."""
    ollama = ollama or OllamaClient(config)
    url = config.ollama_url
    try:
        names = ollama.model_names()
    except ServiceError as exc:
        if exc.transport is not None:
            report.problem(unreachable("Ollama", url, exc, ollama.endpoint, config))
        else:
            report.problem(f"Ollama {url}: GET /api/tags answered {str(exc).split(': ', 1)[-1]} "
                           "(is OLLAMA_URL Ollama's base URL?)")
        return
    report.ok(f"Ollama {url} is reachable")
    if ollama.has_model(names):
        report.ok(f"Ollama {url} has the model {config.ollama_model}")
    elif allow_missing:
        report.note(f"Ollama {url} does not have the model {config.ollama_model} yet; it is pulled before the "
                    "workers start")
    else:
        report.problem(f"Ollama {url} does not have the model {config.ollama_model} (it has: "
                       f"{', '.join(names) or 'no model'}); pull it (ai_worker_ollama_pull, or `ollama pull "
                       f"{config.ollama_model}` there), or fix OLLAMA_MODEL")


def check_connection(config, out, allow_missing_model=False):
    report = Report(out)
    iris = IrisClient(config)
    if check_iris(config, report, iris):
        check_customers(config, report, iris)
    check_ollama(config, report, allow_missing_model)
    return EXIT_PROBLEMS if report.problems else EXIT_OK


def _progress(statuses):
    """One line per step of a pull (the download of each layer once, with its size)."""
    lines, seen = [], set()
    for item in statuses:
        status = str(item.get("status") or "")
        key = item.get("digest") or status
        if not status or key in seen:
            continue
        seen.add(key)
        total = item.get("total")
        lines.append(f"{status} ({total} bytes)" if isinstance(total, int) else status)
    return lines


def pull_model(config, out, clock=time.monotonic):
    """--pull-model: pull the model when Ollama lacks it. 0 present or pulled, 1 failed."""
    report = Report(out)
    ollama = OllamaClient(config)
    url, model = config.ollama_url, config.ollama_model
    try:
        present = ollama.has_model()
    except ServiceError as exc:
        report.problem(f"cannot pull {model}: " + unreachable("Ollama", url, exc, ollama.endpoint, config))
        return EXIT_PROBLEMS
    if present:
        report.ok(f"Ollama {url} has the model {model}; nothing to pull")
        return EXIT_OK
    started = clock()
    try:
        statuses = ollama.pull(config.pull_timeout)
    except ServiceError as exc:
        if exc.transport is not None and exc.transport.timeout:
            report.problem(f"Ollama {url} did not finish pulling {model} within AI_WORKER_PULL_TIMEOUT="
                           f"{config.pull_timeout:g}s; a later pull resumes the download (run the role again, or "
                           "raise ai_worker_ollama_pull_timeout)")
        elif exc.transport is not None:
            report.problem(f"cannot pull {model}: " + unreachable("Ollama", url, exc, ollama.endpoint, config))
        else:
            report.problem(f"Ollama {url} could not pull {model}: {str(exc).split(': ', 1)[-1]}")
        return EXIT_PROBLEMS
    for line in _progress(statuses):
        report.line("pull", line)
    try:
        present = ollama.has_model()
    except ServiceError as exc:
        present = False
        report.problem(f"Ollama {url}: cannot list its models after the pull: {exc}")
    if not present:
        report.problem(f"Ollama {url} reported success but does not list {model}")
        return EXIT_PROBLEMS
    out.write(f"pulled {model} on {url} in {clock() - started:.0f}s\n")
    return EXIT_OK
