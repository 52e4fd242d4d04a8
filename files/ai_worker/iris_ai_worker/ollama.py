"""Ollama's ``/api/generate`` (non-streaming), ``/api/tags`` and ``/api/pull``; the backoff while Ollama is down."""
import re
import time

from socstack_core import http
from socstack_core.jsonio import dumps, loads

from .iris import ServiceError
from .prompt import ANALYSIS_SCHEMA, PROBE_PROMPT, SYSTEM_PROMPT, short

PULL_MAX_BYTES = 64 * 1024 * 1024  # status lines of a long pull (about 100 bytes each)
MODEL_NOT_FOUND_RE = re.compile(r"\bmodel\b.{0,300}\bnot found\b", re.IGNORECASE)


def json_request(endpoint, method, path, *, body, timeout, what):
    """(Response, its JSON body or None) of one request to Ollama; no answer at all is a ServiceError naming
    ``what``. A POST always carries a Content-Length (0 without a body)."""
    headers = {"Accept": "application/json"}
    data = b"" if method == "POST" else None
    if body is not None:
        data = dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    try:
        response = http.request(endpoint, method, path, headers=headers, body=data, timeout=timeout)
    except http.TransportError as exc:
        raise ServiceError(f"{what}: {exc.reason}", transport=exc) from None
    try:
        return response, (loads(response.body) if response.body else None)
    except (ValueError, RecursionError):
        return response, None


class OllamaUnavailable(ServiceError):
    """Ollama cannot answer now (down, timing out, HTTP 5xx, model not pulled): not the alert's fault."""


# Answers that say nothing about the alert: rate limited (429), refused credentials of a proxy or gateway in
# front of Ollama (401, 403, 407), a request timeout (408). They back the whole worker off.
NOT_THE_MODELS_FAULT = (401, 403, 407, 408, 429)


def ollama_error(status, payload):
    """The error for an unusable generate answer. OllamaUnavailable (back off, never count an attempt) for
    HTTP 5xx, 401/403/407/408/429, a 404 "model … not found" and any answer that is not a JSON object (an
    HTML page from a proxy); a plain ServiceError (a bad answer, counted) only for another JSON answer."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(payload, dict):
        return OllamaUnavailable(f"Ollama generate: HTTP {status} with an answer that is not JSON (a proxy?)",
                                 status=status)
    message = f"Ollama generate: HTTP {status} {short(error or 'unexpected answer', 200)}"
    if status >= 500 or status in NOT_THE_MODELS_FAULT or (
            status == 404 and MODEL_NOT_FOUND_RE.search(str(error or "")[:500])):
        return OllamaUnavailable(message, status=status)
    return ServiceError(message, status=status)


class OllamaClient:
    """The model calls of one worker."""

    def __init__(self, config):
        self.endpoint = http.Endpoint(config.ollama_url, ca_file=config.ca_file, verify_tls=config.verify_tls)
        self.model = config.ollama_model
        self.timeout = config.ollama_timeout
        self.format = ANALYSIS_SCHEMA if config.ollama_format == "schema" else "json"

    def _request(self, method, path, body, timeout, what):
        """(status, decoded JSON or None); no answer is a ServiceError naming ``what``."""
        response, payload = json_request(self.endpoint, method, path, body=body, timeout=timeout, what=what)
        return response.status, payload

    def generate(self, prompt):
        """The model's answer text; OllamaUnavailable when Ollama cannot serve it now, else ServiceError."""
        body = {
            "model": self.model,
            "system": SYSTEM_PROMPT,
            "prompt": prompt,
            "stream": False,
            "format": self.format,
            "options": {"temperature": 0.1},
        }
        return self._generate(body)["response"]

    def probe(self):
        """Ask for a one-token answer: raises OllamaUnavailable while Ollama cannot serve the model."""
        self._generate({"model": self.model, "prompt": PROBE_PROMPT, "stream": False, "options": {"num_predict": 1}})

    def _generate(self, body):
        try:
            status, payload = self._request("POST", "/api/generate", body, self.timeout, "Ollama generate")
        except ServiceError as exc:  # refused, reset, timed out, TLS failure: nothing usable came back
            raise OllamaUnavailable(str(exc)) from None
        if status == 200 and isinstance(payload, dict) and isinstance(payload.get("response"), str):
            return payload
        raise ollama_error(status, payload)

    def model_names(self):
        """Names of the models Ollama has (``GET /api/tags``); ServiceError when it cannot tell."""
        status, payload = self._request("GET", "/api/tags", None, 10.0, "Ollama tags")
        if status != 200 or not isinstance(payload, dict):
            raise ServiceError(f"Ollama tags: HTTP {status}", status=status)
        models = [m for m in payload.get("models") or [] if isinstance(m, dict)]
        return sorted({str(m.get(key)) for m in models for key in ("name", "model") if m.get(key)})

    def has_model(self, names=None):
        """Whether Ollama has the configured model (a name without a tag means ``:latest``)."""
        names = self.model_names() if names is None else names
        return self.model in names or (":" not in self.model and f"{self.model}:latest" in names)

    def pull(self, timeout):
        """``POST /api/pull`` with streamed status lines, all read under ONE deadline of ``timeout`` seconds.

        Returns the status objects in order; raises ServiceError (``transport`` set when no complete
        answer came, e.g. the deadline ran out) or one naming Ollama's own error line.
        """
        body = dumps({"model": self.model, "stream": True}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        try:
            response = http.request(self.endpoint, "POST", "/api/pull", headers=headers, body=body, timeout=timeout,
                                    max_bytes=PULL_MAX_BYTES)
        except http.TransportError as exc:
            raise ServiceError(f"Ollama pull: {exc.reason}", transport=exc) from None
        statuses = []
        for line in response.body.splitlines():
            try:
                item = loads(line) if line.strip() else None
            except (ValueError, RecursionError):
                item = None
            if isinstance(item, dict):
                statuses.append(item)
        error = next((str(item["error"]) for item in statuses if item.get("error")), None)
        if response.status != 200 or error:
            raise ServiceError(f"Ollama pull: HTTP {response.status} {short(error or 'unexpected answer', 300)}",
                               status=response.status, server_message=error)
        if not statuses or statuses[-1].get("status") != "success":
            last = statuses[-1].get("status") if statuses else "nothing"
            raise ServiceError(f"Ollama pull: the answer ended with {short(str(last), 120)!r}, not 'success'")
        return statuses


class OllamaOutage:
    """Bounded exponential backoff while Ollama is unavailable; each change of state is logged once."""

    def __init__(self, minimum, maximum, log, clock=time.monotonic):
        self.minimum = minimum
        self.maximum = maximum
        self.log = log
        self.clock = clock
        self.delay = 0.0  # the last wait; a probe's answer keeps it, a real analysis clears it
        self.since = None  # start of the current outage; None while Ollama answers
        self.retry_at = 0.0

    @property
    def active(self):
        return self.since is not None

    def failed(self, reason):
        """Ollama could not answer: wait twice as long as the last time (at most ``maximum``)."""
        now = self.clock()
        self.delay = min(self.maximum, 2 * self.delay if self.delay else self.minimum)
        self.retry_at = now + self.delay
        if self.since is None:
            self.since = now
            self.log.warning(f"Ollama unavailable ({reason}): alerts go back to ai-pending without counting an "
                             f"attempt; retrying after {self.delay:g}s, backing off up to {self.maximum:g}s")
        else:
            self.log.debug(f"Ollama still unavailable ({reason}); next try in {self.delay:g}s")

    def answered(self, probe=False):
        """Ollama answered. After a real analysis call (not a probe) the next outage starts at ``minimum``."""
        if self.since is not None:
            self.log.info(f"Ollama answers again after {self.clock() - self.since:.0f}s; resuming")
            self.since = None
        if not probe:
            self.delay = 0.0
