"""The checks the role runs before it starts the instances (docs/ai-worker.md, "Checks before start").

``--check-options FILE``: the settings file (systemd's ``EnvironmentFile=``) is read as systemd reads
it and checked as the worker checks its settings; one line per problem. The role's template task
uses it as ``validate:``, so a bad value never reaches the installed file.

``--check-connection [--env-file FILE]``: with exactly the settings an instance gets (the same file,
CA file, customer ids and model), asks IRIS and Ollama whether the worker can work: IRIS reachable,
its certificate accepted, the API key accepted (IRIS's own message when not), alerts readable, the
account linked to each configured customer, Ollama reachable and the model present. Only reads
(GET requests): it changes nothing.

``--pull-model [--env-file FILE]``: when Ollama lacks the model, ``POST /api/pull`` (Ollama's status
lines streamed, all read under one deadline of ``AI_WORKER_PULL_TIMEOUT``), then ``/api/tags`` again.
Its last line starts with ``ok model: pulled`` only when it pulled.

Both write the host programs' one preflight report (socstack_core.preflight: ``<status> <check>: <text>``,
status ok / warning / error, every line masked); exit 0 when no line says error, 1 otherwise, 2 when the
settings themselves are unusable.
"""
import time

from socstack_core import preflight as core_preflight
from socstack_core.iris_client import CONFIG
from socstack_core.log import Masker

from . import envfile
from .iris import IrisClient, ServiceError
from .ollama import OllamaClient
from .settings import FROM_SYSTEMD, SCHEMA, config_problems

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2


class Report(core_preflight.Report):
    """The shared report with the worker's exit codes (1 for every problem found), flushed line by line."""

    def __init__(self, out, secrets=(), code_error=EXIT_PROBLEMS):
        super().__init__(Masker([secret for secret in secrets if secret]), out, code_error=code_error,
                         code_unavailable=code_error)

    def line(self, status, check, text):
        super().line(status, check, text)
        self.out.flush()


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
    else:
        env, problems = environ, []
    if not problems:
        config, problems = config_problems(settings_env(env))
    report = Report(out, [env.get("IRIS_BEARER")], code_error=EXIT_CONFIG)
    for problem in problems:
        report.error("settings", problem)
    return (None, report.exit_code()) if problems else (config, None)


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
    iris = iris or IrisClient(config, masker=report.masker)
    url = config.iris_url
    try:
        iris.ping()
    except ServiceError as exc:
        if exc.transport is not None:
            report.error("iris", unreachable("IRIS", url, exc, iris.endpoint, config))
        elif exc.status == 401:
            message = exc.server_message or "no message"
            report.error("api_key", f"IRIS {url} refused the API key (IRIS_BEARER): HTTP 401 \"{message}\" (a wrong or "
                                    "renewed key, or a deactivated account)")
        else:
            hint = " (is IRIS_BASE_URL the IRIS API's base URL?)" if getattr(exc, "kind", None) == CONFIG else ""
            report.error("iris", f"IRIS {url}: GET /api/ping answered {answered(exc)}{hint}")
        return False
    verified = " over verified TLS" if url.startswith("https") and config.verify_tls else ""
    report.ok("iris", f"IRIS {url} is reachable{verified} and accepts the API key")
    try:
        iris.alerts_of_customer(0)
    except ServiceError as exc:
        report.error("alerts_read", f"IRIS {url}: the account may not read alerts ({answered(exc)}); its group needs "
                                    "alerts_read and alerts_write")
        return False
    report.ok("alerts_read", f"IRIS {url}: the account may read alerts")
    return True


def answered(exc):
    """``HTTP 403 Permission denied`` of an answer that is not a success, or the reason no answer came."""
    if exc.status is None:
        return str(exc).split(": ", 1)[-1]
    return f"HTTP {exc.status} {exc.server_message or 'with no message'}"


def check_customers(config, report, iris=None):
    """The account is linked to every customer of AI_WORKER_CUSTOMER_IDS (only reads)."""
    iris = iris or IrisClient(config, masker=report.masker)
    wanted = sorted(config.customer_ids)
    if not wanted:
        report.ok("customer", "every customer the account is linked to (AI_WORKER_CUSTOMER_IDS is empty)")
        return
    try:
        rows = iris.customers()
    except ServiceError as exc:
        if exc.status != 403:
            report.error("customer", f"IRIS {config.iris_url}: cannot list the account's customers: {exc}")
            return
        rows = None  # no customers_read: what the account sees of the alerts is all there is to go on
    if rows is not None:
        linked = {row.get("customer_id") for row in rows if isinstance(row, dict)}
        for customer_id in wanted:
            if customer_id in linked:
                report.ok("customer", f"customer {customer_id}: the account is linked to it")
            else:
                report.error("customer", f"customer {customer_id}: the IRIS account is not linked to customer "
                                         f"{customer_id} (it is linked to: "
                                         f"{', '.join(str(c) for c in sorted(linked, key=str)) or 'none'}); link it "
                                         "(iris_provision does for socstack_tenants), or fix ai_worker_customers")
        return
    for customer_id in wanted:
        try:
            seen = iris.alerts_of_customer(customer_id).get("total") or 0
        except ServiceError as exc:
            report.error("customer", f"customer {customer_id}: cannot read its alerts: {exc}")
            continue
        if seen:
            report.ok("customer", f"customer {customer_id}: the account sees its alerts, so it is linked to it")
        else:
            report.warning("customer", f"customer {customer_id}: not confirmed - the account may not list customers "
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
            report.error("ollama", unreachable("Ollama", url, exc, ollama.endpoint, config))
        else:
            report.error("ollama", f"Ollama {url}: GET /api/tags answered {str(exc).split(': ', 1)[-1]} "
                                   "(is OLLAMA_URL Ollama's base URL?)")
        return
    report.ok("ollama", f"Ollama {url} is reachable")
    if ollama.has_model(names):
        report.ok("model", f"Ollama {url} has the model {config.ollama_model}")
    elif allow_missing:
        report.warning("model", f"Ollama {url} does not have the model {config.ollama_model} yet; it is pulled "
                                "before the workers start")
    else:
        report.error("model", f"Ollama {url} does not have the model {config.ollama_model} (it has: "
                              f"{', '.join(names) or 'no model'}); pull it (ai_worker_ollama_pull, or `ollama pull "
                              f"{config.ollama_model}` there), or fix OLLAMA_MODEL")


def check_connection(config, out, allow_missing_model=False):
    """--check-connection: every check, one line each; the exit code (0, or 1 when a line says error)."""
    report = Report(out, [config.iris_bearer])
    iris = IrisClient(config, masker=report.masker)
    if check_iris(config, report, iris):
        check_customers(config, report, iris)
    check_ollama(config, report, allow_missing_model)
    return report.exit_code()


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
    report = Report(out, [config.iris_bearer])
    ollama = OllamaClient(config)
    url, model = config.ollama_url, config.ollama_model
    try:
        present = ollama.has_model()
    except ServiceError as exc:
        report.error("model", f"cannot pull {model}: " + unreachable("Ollama", url, exc, ollama.endpoint, config))
        return report.exit_code()
    if present:
        report.ok("model", f"Ollama {url} has the model {model}; nothing to pull")
        return report.exit_code()
    started = clock()
    try:
        statuses = ollama.pull(config.pull_timeout)
    except ServiceError as exc:
        if exc.transport is not None and exc.transport.timeout:
            report.error("model", f"Ollama {url} did not finish pulling {model} within AI_WORKER_PULL_TIMEOUT="
                                  f"{config.pull_timeout:g}s; a later pull resumes the download (run the role again, "
                                  "or raise ai_worker_ollama_pull_timeout)")
        elif exc.transport is not None:
            report.error("model", f"cannot pull {model}: " + unreachable("Ollama", url, exc, ollama.endpoint, config))
        else:
            report.error("model", f"Ollama {url} could not pull {model}: {str(exc).split(': ', 1)[-1]}")
        return report.exit_code()
    for line in _progress(statuses):
        report.ok("pull", line)
    try:
        present = ollama.has_model()
    except ServiceError as exc:
        present = False
        report.error("model", f"Ollama {url}: cannot list its models after the pull: {exc}")
    if not present:
        report.error("model", f"Ollama {url} reported success but does not list {model}")
        return report.exit_code()
    report.ok("model", f"pulled {model} on {url} in {clock() - started:.0f}s")
    return report.exit_code()
