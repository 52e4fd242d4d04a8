"""Ollama's ``/api/generate`` (non-streaming) and ``/api/tags``, and the backoff while it is unavailable."""
import re
import time

from socstack_core import http

from .iris import ServiceError, json_request
from .prompt import ANALYSIS_SCHEMA, PROBE_PROMPT, SYSTEM_PROMPT, short

MODEL_NOT_FOUND_RE = re.compile(r"\bmodel\b.{0,300}\bnot found\b", re.IGNORECASE)


class OllamaUnavailable(ServiceError):
    """Ollama cannot answer now (down, timing out, HTTP 5xx, model not pulled): not the alert's fault."""


def ollama_error(status, payload):
    """The error for an unusable generate answer: OllamaUnavailable for HTTP 5xx and a 404 "model … not
    found" (Ollama cannot serve the model now), a plain ServiceError for anything else (a bad answer)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = f"Ollama generate: HTTP {status} {short(error or 'unexpected answer', 200)}"
    if status >= 500 or (status == 404 and MODEL_NOT_FOUND_RE.search(str(error or "")[:500])):
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

    def has_model(self):
        status, payload = self._request("GET", "/api/tags", None, 10.0, "Ollama tags")
        if status != 200 or not isinstance(payload, dict):
            raise ServiceError(f"Ollama tags: HTTP {status}", status=status)
        models = [m for m in payload.get("models") or [] if isinstance(m, dict)]
        names = {m.get("name") for m in models} | {m.get("model") for m in models}
        return self.model in names or (":" not in self.model and f"{self.model}:latest" in names)


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
