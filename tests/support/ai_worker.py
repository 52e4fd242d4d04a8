"""The AI worker against the IRIS and Ollama emulators: the stack the integration tests and benchmarks share.

``AiStack`` hands out workers (each with its own IRIS service account, so an emulator hook can tell
whose request it sees), alerts and the views the tests assert on. Every worker of a stack logs into
one in-memory list (``AiStack.log_lines``).
"""
import threading

from iris_ai_worker import loop, settings, tags

AI_MODEL = "phi4-mini:latest"
AI_BASE_ENV = {
    "OLLAMA_MODEL": AI_MODEL,
    "AI_WORKER_CLAIM_TIMEOUT": "0.5",
    "AI_WORKER_IRIS_TIMEOUT": "2",
    "AI_WORKER_OLLAMA_TIMEOUT": "3",
    "AI_WORKER_CLAIM_TTL": "30",
    "AI_WORKER_CLOCK_SKEW": "3",
    "AI_WORKER_POLL_SECONDS": "0.2",
    "AI_WORKER_MAX_PER_MINUTE": "0",
    "AI_WORKER_DEDUP_WINDOW": "0",
}
SSH_EVENT = {
    "rule": {"id": "5710", "level": 5, "description": "sshd: Attempt to login using a non-existent user",
             "groups": ["syslog", "sshd", "authentication_failed"]},
    "agent": {"id": "001", "name": "web01"},
    "full_log": "May 11 12:29:18 web01 sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
    "data": {"srcip": "172.17.1.1", "srcuser": "paco"},
}


class LogLines:
    """A stream for socstack_core's Log: keeps the lines."""

    def __init__(self):
        self.lines = []
        self.lock = threading.Lock()

    def write(self, text):
        with self.lock:
            self.lines.extend(line for line in text.splitlines() if line)

    def flush(self):
        pass


class AiStack:
    """The IRIS and Ollama emulators, worker accounts and helpers."""

    def __init__(self, iris, ollama, state_dir):
        self.iris = iris
        self.ollama = ollama
        self.state_dir = state_dir
        self.log_lines = LogLines()
        self.keys = {}
        self.analyst_id, _key = iris.add_user("alice", service_account=False, groups=["Analysts"],
                                              customers=["IrisInitialClient"])

    def key(self, login):
        if login not in self.keys:
            self.keys[login] = self.iris.add_user(login, groups=["Analysts"], customers=["IrisInitialClient"])[1]
        return self.keys[login]

    def env(self, login="ai-bot", **overrides):
        env = dict(AI_BASE_ENV, IRIS_BASE_URL=self.iris.url, IRIS_BEARER=self.key(login), OLLAMA_URL=self.ollama.url,
                   AI_WORKER_STATE_DIR=str(self.state_dir))
        env.update({name: str(value) for name, value in overrides.items()})
        return env

    def worker(self, login="ai-bot", **overrides):
        config = settings.load_config(self.env(login, **overrides))
        log = loop.LevelLog("DEBUG", stderr=self.log_lines)
        log.prog = f"iris-ai-worker[{login}]"
        return loop.Worker.from_config(config, log=log)

    def alert(self, tags="wazuh,ai-pending", event=None, **fields):
        fields.setdefault("alert_title", "sshd: non-existent user")
        fields.setdefault("alert_customer_id", 1)
        return self.iris.create_alert(alert_severity_id=4, alert_status_id=2, alert_tags=tags,
                                      alert_source_content=SSH_EVENT if event is None else event, **fields)["alert_id"]

    def get(self, alert_id):
        return next(a for a in self.iris.alerts() if a["alert_id"] == alert_id)

    def tags(self, alert_id):
        return tags.split_tags(self.get(alert_id)["alert_tags"])

    def comment_texts(self, alert_id):
        return [c["comment_text"] for c in self.iris.comments(alert_id)]

    def analyses(self, alert_id):
        return [c for c in self.iris.comments(alert_id) if tags.comment_round(c)]

    def updates_by(self, login="ai-bot"):
        return [entry for entry in self.iris.request_log if entry[0] == "POST" and entry[2] == login
                and entry[1].startswith("/alerts/update/")]

    def paths_by(self, login="ai-bot"):
        return [(method, path) for method, path, who, _status in self.iris.request_log if who == login]

    def messages(self, start):
        """Log lines whose message starts with ``start``."""
        return [line for line in self.log_lines.lines if line.split(": ", 2)[-1].startswith(start)]

    def log_text(self):
        return "\n".join(self.log_lines.lines)

    def plant_comment(self, alert_id, text, login="dead-worker"):
        """A comment as if another worker had posted it (its id is the next one)."""
        self.key(login)
        user_id = next(u["id"] for u in self.iris.state["users"] if u["login"] == login)
        with self.iris.lock:
            comment_id = self.iris._next_id("comment")
            self.iris.state["comments"].append({
                "comment_id": comment_id, "comment_uuid": f"planted-{comment_id}", "comment_text": text,
                "comment_date": "", "comment_update_date": "", "comment_user_id": user_id, "comment_case_id": None,
                "comment_alert_id": alert_id})
        return comment_id


def run_together(*workers):
    """One run_cycle of each worker, in threads, started together; returns when all are done."""
    threads = [threading.Thread(target=worker.run_cycle) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker cycle did not end within 60 s"
