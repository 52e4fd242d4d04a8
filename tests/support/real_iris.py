"""A real DFIR-IRIS 2.4.20 for the tests (``pytest --real-iris``): the lab's app image on the host's engine.

Three containers on a network of their own: the db stand-in (PostgreSQL with what upstream's
create_user.sh makes), the RabbitMQ stand-in and the real app (gunicorn on 8000, published on
127.0.0.1 only, plain HTTP: no nginx in front). The images are the ones lab/standin-images/build.sh
and lab/iris-images/build.sh make from ../shared/iris; the first boot (schema, reference data,
administrator with the preset key) takes about 30 s on an idle machine. Standard library and the
docker CLI only.
"""

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request

APP_IMAGE = "socstack-lab/iris-app:v2.4.20"
DB_IMAGE = "socstack-lab/iris-db:standin"
RABBITMQ_IMAGE = "socstack-lab/iris-rabbitmq:standin"
# Seconds for the first boot: about 20 s idle; on a loaded 2-core machine it outlasted gunicorn's 180 s
# worker timeout and a second worker finished it (measured 2026-12-07). SOCSTACK_REAL_IRIS_BOOT_TIMEOUT sets it.
BOOT_TIMEOUT = int(os.environ.get("SOCSTACK_REAL_IRIS_BOOT_TIMEOUT", "600"))


class Unavailable(Exception):
    """Why no real IRIS can be started here (the caller skips with this text)."""


def _docker(*args, check=True, timeout=120):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()[-500:]}")
    return result


class RealIris:
    """A started real IRIS: ``url`` (http://127.0.0.1:PORT), ``admin_api_key``; ``stop()`` removes it."""

    def __init__(self, admin_api_key, *, app_image=APP_IMAGE):
        self.admin_api_key = admin_api_key
        self.app_image = app_image
        self.prefix = "socstack-test-iris-" + secrets.token_hex(4)
        self.url = None
        self.containers = []
        self.first_boot_state = None

    def check(self):
        """Raise Unavailable when docker or one of the images is missing."""
        if not shutil.which("docker"):
            raise Unavailable("no docker CLI on PATH")
        if _docker("info", check=False, timeout=30).returncode != 0:
            raise Unavailable("the Docker engine does not answer (docker info)")
        for image in (self.app_image, DB_IMAGE, RABBITMQ_IMAGE):
            if _docker("image", "inspect", image, check=False).returncode != 0:
                raise Unavailable(f"image {image} is missing: run lab/standin-images/build.sh "
                                  "(it builds the real app from ../shared/iris)")

    def _run(self, name, image, env, *args):
        argv = ["run", "-d", "--name", f"{self.prefix}-{name}", "--network", self.prefix,
                "--network-alias", name]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        _docker(*argv, *args, image)
        self.containers.append(f"{self.prefix}-{name}")

    def start(self):
        self.check()
        db_password, admin_password = secrets.token_hex(12), secrets.token_hex(12)
        broker_password = secrets.token_hex(12)
        _docker("network", "create", self.prefix)
        self.containers = []
        try:
            db = {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": db_password,
                  "POSTGRES_ADMIN_USER": "iris_admin", "POSTGRES_ADMIN_PASSWORD": admin_password,
                  "POSTGRES_DB": "iris_db"}
            self._run("db", DB_IMAGE, db)
            self._run("rabbitmq", RABBITMQ_IMAGE,
                      {"RABBITMQ_DEFAULT_USER": "iris", "RABBITMQ_DEFAULT_PASS": broker_password})
            app = dict(db, POSTGRES_SERVER="db", POSTGRES_PORT="5432", DOCKERIZED="1",
                       IRIS_SECRET_KEY=secrets.token_hex(24), IRIS_SECURITY_PASSWORD_SALT=secrets.token_hex(16),
                       CELERY_BROKER=f"amqp://iris:{broker_password}@rabbitmq:5672//",
                       IRIS_AUTHENTICATION_TYPE="local", IRIS_ADM_USERNAME="administrator",
                       IRIS_ADM_EMAIL="admin@localhost", IRIS_ADM_PASSWORD="Adm1n" + secrets.token_hex(8),
                       IRIS_ADM_API_KEY=self.admin_api_key)
            self._run("app", self.app_image, app, "-p", "127.0.0.1::8000")
            self._wait()
            self.first_boot_state = self._state()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self):
        # the host port is chosen again at each container start
        port = _docker("port", f"{self.prefix}-app", "8000/tcp").stdout.split("\n")[0].rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + BOOT_TIMEOUT
        request = urllib.request.Request(self.url + "/api/ping",
                                         headers={"Authorization": "Bearer " + self.admin_api_key})
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    if answer.status == 200 and json.loads(answer.read()).get("message") == "pong":
                        return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            state = _docker("inspect", "-f", "{{.State.Running}}", f"{self.prefix}-app", check=False).stdout
            if state.strip() != "true":
                break
            time.sleep(1)
        logs = _docker("logs", "--tail", "30", f"{self.prefix}-app", check=False)
        raise RuntimeError(f"the real IRIS did not answer /api/ping within {BOOT_TIMEOUT} s; "
                           f"last app log lines:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")

    def _get(self, path):
        request = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + self.admin_api_key})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["data"]

    def _state(self):
        """Counts of customers, users, groups and alerts: equal to the first boot's when nothing was made."""
        return ([len(self._get(f"/manage/{kind}/list")) for kind in ("customers", "users", "groups")]
                + [self._get("/alerts/filter?per_page=1&page=1&fields=alert_id")["total"]])

    def reset(self):
        """Back to the first-boot state: drop iris_db and iris_tasks, recreate iris_db with pgcrypto (as the db
        image's create_user.sh does), restart the app (a fresh first boot takes about 15 s idle, minutes on a
        loaded machine). Nothing is done while the server still holds only what its first boot made."""
        if self._state() == self.first_boot_state:
            return self
        app, db = f"{self.prefix}-app", f"{self.prefix}-db"
        _docker("stop", "-t", "5", app)
        sql = ("DROP DATABASE IF EXISTS iris_tasks;", "DROP DATABASE IF EXISTS iris_db;", "CREATE DATABASE iris_db;")
        for statement in sql:
            _docker("exec", db, "psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-c", statement)
        _docker("exec", db, "psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "iris_db", "-c",
                "CREATE EXTENSION IF NOT EXISTS pgcrypto CASCADE;")
        _docker("start", app)
        self._wait()
        return self

    def logs(self, service="app", tail=50):
        result = _docker("logs", "--tail", str(tail), f"{self.prefix}-{service}", check=False)
        return result.stdout + result.stderr

    def stop(self):
        for name in reversed(self.containers):
            _docker("rm", "-f", "-v", name, check=False)
        self.containers = []
        _docker("network", "rm", self.prefix, check=False)
