"""A real DFIR-IRIS 2.4.20 for the tests (``pytest --real-iris``): the lab's app image on the host's engine.

Three containers on a network of their own: the db stand-in (PostgreSQL with what upstream's
create_user.sh makes), the RabbitMQ stand-in and the real app (gunicorn on 8000, published on
127.0.0.1 only, plain HTTP: no nginx in front). The images are the ones lab/standin-images/build.sh
and lab/iris-images/build.sh make from ../shared/iris; the first boot (schema, reference data,
administrator with the preset key) takes about 30 s on an idle machine. Standard library and the
docker CLI only.

The molecule scenarios whose IRIS host is a plain container (wazuh_iris, tenants, ai_worker) start the
same three containers through the command line below, plus the nginx image in front of the app with the
scenario's TLS certificate, sharing the network namespace of the scenario's IRIS host: inside that
container IRIS answers on https://127.0.0.1:PORT, and other containers reach it by the host's name, as
when IRIS runs on that host. The host is connected to the IRIS network so that nginx finds the app:

    python3 tests/support/real_iris.py up --prefix P --host CONTAINER --port 8443 --tls-dir DIR
    python3 tests/support/real_iris.py down --prefix P --host CONTAINER

``up`` reads the administrator's key from the environment (IRIS_ADM_API_KEY), never from argv; DIR holds
server.pem and server.key. ``down`` removes what ``up`` made and is a no-op when nothing is there.
"""
import argparse
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
NGINX_IMAGE = "socstack-lab/iris-nginx:standin"
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

    def __init__(self, admin_api_key, *, app_image=APP_IMAGE, prefix=None):
        self.admin_api_key = admin_api_key
        self.app_image = app_image
        self.prefix = prefix or "socstack-test-iris-" + secrets.token_hex(4)
        self.url = None
        self.containers = []
        self.first_boot_state = None

    def check(self):
        """Raise Unavailable when docker or one of the images is missing."""
        if not shutil.which("docker"):
            raise Unavailable("no docker CLI on PATH")
        if _docker("info", check=False, timeout=30).returncode != 0:
            raise Unavailable("the Docker engine does not answer (docker info)")
        for image in (self.app_image, DB_IMAGE, RABBITMQ_IMAGE, NGINX_IMAGE):
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

    def start(self, *, publish=True):
        """Network, db, RabbitMQ and app; wait for the app's /api/ping (through the published port, else
        from inside the app container)."""
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
            self._run("app", self.app_image, app, *(["-p", "127.0.0.1::8000"] if publish else []))
            if publish:
                self._wait()
                self.first_boot_state = self._state()
            else:
                self._wait_inside()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self):
        """Wait for /api/ping through the published port (chosen again at each container start)."""
        port = _docker("port", f"{self.prefix}-app", "8000/tcp").stdout.split("\n")[0].rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(self.url + "/api/ping",
                                         headers={"Authorization": "Bearer " + self.admin_api_key})

        def answers():
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status == 200 and json.loads(answer.read()).get("message") == "pong"
            except (OSError, ValueError, urllib.error.URLError):
                return False

        self._wait_for(answers, pause=1)

    def _wait_inside(self):
        """Wait for /api/ping asked from inside the app container (no port published)."""
        probe = ("import json, os, sys, urllib.request as u\n"
                 "r = u.Request('http://127.0.0.1:8000/api/ping', headers={'Authorization': 'Bearer '"
                 " + os.environ['IRIS_ADM_API_KEY']})\n"
                 "sys.exit(json.loads(u.urlopen(r, timeout=10).read()).get('message') != 'pong')\n")
        self._wait_for(lambda: _docker("exec", f"{self.prefix}-app", "python3", "-c", probe, check=False,
                                       timeout=60).returncode == 0, pause=2)

    def _wait_for(self, answers, pause):
        """Until answers() is true, while the app container runs, for at most BOOT_TIMEOUT seconds; else raise
        with the app's last log lines."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if answers():
                return
            state = _docker("inspect", "-f", "{{.State.Running}}", f"{self.prefix}-app", check=False).stdout
            if state.strip() != "true":
                break
            time.sleep(pause)
        logs = _docker("logs", "--tail", "30", f"{self.prefix}-app", check=False)
        raise RuntimeError(f"the real IRIS did not answer /api/ping within {BOOT_TIMEOUT} s; "
                           f"last app log lines:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")

    def front(self, host, port, tls_dir):
        """nginx with TLS in front of the app, in the network namespace of container ``host``, which is
        connected to the IRIS network first (nginx resolves the app there)."""
        _docker("network", "connect", self.prefix, host)
        name = f"{self.prefix}-nginx"
        _docker("create", "--name", name, "--network", f"container:{host}",
                "-e", f"INTERFACE_HTTPS_PORT={port}", "-e", "IRIS_UPSTREAM_SERVER=app",
                "-e", "IRIS_UPSTREAM_PORT=8000", "-e", f"SERVER_NAME={host}",
                "-e", "CERT_FILENAME=server.pem", "-e", "KEY_FILENAME=server.key", NGINX_IMAGE)
        self.containers.append(name)
        for filename in ("server.pem", "server.key"):
            _docker("cp", os.path.join(tls_dir, filename), f"{name}:/www/certs/{filename}")
        _docker("start", name)
        return self

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

    def stop(self, host=None):
        """Remove the containers and the network (``host`` is disconnected from it first)."""
        for name in reversed(self.containers):
            _docker("rm", "-f", "-v", name, check=False)
        self.containers = []
        if host:
            _docker("network", "disconnect", "-f", self.prefix, host, check=False)
        _docker("network", "rm", self.prefix, check=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description="A real IRIS for a molecule scenario (see the module docstring).")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--prefix", required=True, help="names of the containers and the network")
    parser.add_argument("--host", required=True, help="the scenario's IRIS host container")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port inside the host (up)")
    parser.add_argument("--tls-dir", help="directory with server.pem and server.key (up)")
    args = parser.parse_args(argv)
    server = RealIris(os.environ.get("IRIS_ADM_API_KEY", ""), prefix=args.prefix)
    # down, and up's clean start: whatever an earlier run of this prefix left
    server.containers = [f"{args.prefix}-{name}" for name in ("db", "rabbitmq", "app", "nginx")]
    server.stop(host=args.host)
    if args.action == "down":
        return 0
    if not server.admin_api_key or not args.tls_dir:
        parser.error("up needs IRIS_ADM_API_KEY in the environment and --tls-dir")
    try:
        server.start(publish=False)
        server.front(args.host, args.port, args.tls_dir)
    except BaseException:
        server.stop(host=args.host)
        raise
    print(f"real IRIS {args.prefix}: app, db, RabbitMQ; nginx on port {args.port} of {args.host}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
