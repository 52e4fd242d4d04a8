"""AI triage worker for DFIR-IRIS alerts, backed by a local Ollama model (docs/ai-worker.md).

Polls IRIS for alerts tagged ``ai-pending``, claims each one with a lease that two workers cannot
both win, asks Ollama for a triage opinion on a redacted copy of the alert and posts it as ONE
alert comment (healing duplicates that a paused worker can still cause). It only ever writes
comments and the alert's tag string; every update repeats the alert's current owner so IRIS never
reassigns it. Standard library and socstack_core only; settings from the environment; logs to stderr.

Modules, one concern each: settings, tags, redaction, prompt, dedup, iris (client), ollama (client
and backoff), clock (skew against IRIS), claims (the claim protocol and healing), loop (the
worker), main (the entry point: ``python3 -m iris_ai_worker`` or the launcher iris-ai-worker.py).
"""
