"""Checks of the iris scenario: roles docker, iris and iris_provision on a Debian 13 host with Docker.

Requests to IRIS run inside the container (python3 urllib), read their keys from files there, and
verify TLS with the CA the iris role exported; no secret appears in a command line.
"""

import json

import pytest

PROJECT = "/opt/iris"
ENV_FILE = f"{PROJECT}/.env"
CA_FILE = f"{PROJECT}/certificates/rootCA/irisRootCACert.pem"
KEY_FILE = f"{PROJECT}/wazuh-service.api-key"
FIRST_ENV = "/root/molecule-first.env"
FIRST_KEY = "/root/molecule-first.api-key"
KEY_BEFORE_ROTATION = "/root/molecule-before-rotation.api-key"
URL = "https://127.0.0.1:9094"
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "POSTGRES_ADMIN_PASSWORD",
    "RABBITMQ_DEFAULT_PASS",
    "IRIS_SECRET_KEY",
    "IRIS_SECURITY_PASSWORD_SALT",
    "IRIS_ADM_PASSWORD",
    "IRIS_ADM_API_KEY",
)

# GET URL with the key found in a file (KEY_SPEC "file:PATH" or "env:NAME" for a line of .env);
# prints {"status": int, "body": parsed JSON or null}. CA "-" means the system trust store.
REQUEST = r"""
import json, ssl, sys, urllib.error, urllib.request
url, key_spec, ca = sys.argv[1:4]
kind, _, where = key_spec.partition(":")
if kind == "file":
    key = open(where).read().strip()
else:
    lines = open("/opt/iris/.env").read().splitlines()
    key = [line.split("=", 1)[1] for line in lines if line.startswith(where + "=")][0]
context = ssl.create_default_context(cafile=None if ca == "-" else ca)
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + key})
try:
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        status, raw = answer.status, answer.read()
except urllib.error.HTTPError as err:
    status, raw = err.code, err.read()
except urllib.error.URLError as err:
    print(json.dumps({"status": None, "error": type(err.reason).__name__}))
    sys.exit(0)
try:
    body = json.loads(raw)
except ValueError:
    body = None
print(json.dumps({"status": status, "body": body}))
"""


def api(host, path, key_spec="env:IRIS_ADM_API_KEY", ca=CA_FILE):
    """GET an IRIS API path through nginx from inside the container."""
    result = host.run("python3 -c %s %s %s %s", REQUEST, URL + path, key_spec, ca)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def env_values(host, path):
    """The KEY=VALUE lines of an env file as a dict."""
    lines = host.file(path).content_string.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_docker_engine_runs_with_lab_settings(host):
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["storage-driver"] == "vfs"
    assert daemon["log-opts"]["max-size"] == "10m"
    assert host.run("docker compose version --short").rc == 0
    info = host.check_output("docker info --format '{{.Driver}}'")
    assert info == "vfs"


def test_five_services_running_without_fixed_names(host):
    states = host.check_output(
        "docker compose --project-directory %s ps --all --format '{{.Service}} {{.Name}} {{.State}}'", PROJECT
    ).splitlines()
    services = {line.split()[0]: line.split()[1:] for line in states}
    assert sorted(services) == ["app", "db", "nginx", "rabbitmq", "worker"]
    for service, (name, state) in services.items():
        assert state == "running", service
        assert name.startswith("iris-"), name  # named by the project, not by a fixed container_name


def test_port_listens_on_loopback_only(host):
    listeners = host.check_output("ss -Hltn 'sport = :9094'").splitlines()
    addresses = {line.split()[3] for line in listeners}
    assert addresses == {"127.0.0.1:9094"}


def test_ping_over_tls_with_exported_ca(host):
    answer = api(host, "/api/ping")
    assert answer["status"] == 200
    assert answer["body"]["message"] == "pong"


def test_tls_verification_is_real(host):
    # Without the exported CA the self-signed chain must be refused.
    answer = api(host, "/api/ping", ca="-")
    assert answer["status"] is None
    assert answer["error"] == "SSLCertVerificationError"


def test_certificate_is_not_upstreams_and_key_is_private(host):
    key = host.file(f"{PROJECT}/certificates/web_certificates/iris_key.pem")
    assert key.mode == 0o640
    assert key.user == "root"
    assert key.gid == 33  # www-data in the nginx image
    assert host.file(f"{PROJECT}/ca").mode == 0o700
    subject = host.check_output(
        "python3 -c %s",
        "import ssl; print(ssl._ssl._test_decode_cert('%s/certificates/web_certificates/iris_cert.pem'))" % PROJECT,
    )
    assert "iris.app.dev" not in subject  # upstream's development certificate
    assert "127.0.0.1" in subject


def test_env_is_private_and_secrets_kept_after_second_converge(host):
    env = host.file(ENV_FILE)
    assert env.mode == 0o600
    assert env.user == "root"
    now, first = env_values(host, ENV_FILE), env_values(host, FIRST_ENV)
    for name in SECRET_NAMES:
        assert now[name], name
        assert now[name] == first[name], f"{name} changed after the second converge"
    assert now["POSTGRES_PASSWORD"].isalnum()
    assert now["POSTGRES_ADMIN_PASSWORD"].isalnum()
    assert len(now["IRIS_ADM_API_KEY"]) >= 32


def test_database_and_broker_accept_the_env_secrets(host):
    check = host.run(
        "docker compose --project-directory %s exec -T db sh -c "
        "'psql -tAc \"select 1\" "
        "\"postgresql://$POSTGRES_ADMIN_USER:$POSTGRES_ADMIN_PASSWORD@127.0.0.1/$POSTGRES_DB\"'",
        PROJECT,
    )
    assert check.rc == 0, check.stderr
    assert check.stdout.strip() == "1"
    broker = host.run(
        "docker compose --project-directory %s exec -T rabbitmq sh -c "
        "'rabbitmqctl authenticate_user \"$RABBITMQ_DEFAULT_USER\" \"$RABBITMQ_DEFAULT_PASS\"'",
        PROJECT,
    )
    assert broker.rc == 0, broker.stderr


@pytest.fixture(scope="module")
def service_account(host):
    answer = api(host, "/manage/users/lookup/login/wazuh-service")
    assert answer["status"] == 200
    return answer["body"]["data"]


def test_customer_group_and_service_account(host, service_account):
    customers = api(host, "/manage/customers/list")["body"]["data"]
    assert any(c["customer_name"] == "IrisInitialClient" for c in customers)
    groups = api(host, "/manage/groups/list")["body"]["data"]
    group = next(g for g in groups if g["group_name"] == "SIEM Integration")
    assert group["group_permissions"] == 4 + 8 + 64 + 1  # alerts_read, alerts_write, customers_read, standard_user
    assert service_account["user_active"] is True
    user = api(host, "/manage/users/%d" % service_account["user_id"])["body"]["data"]
    assert user["user_is_service_account"] is True
    assert [g["group_name"] for g in user["user_groups"]] == ["SIEM Integration"]
    assert [c["customer_name"] for c in user["user_customers"]] == ["IrisInitialClient"]


def test_key_file_is_private(host):
    key = host.file(KEY_FILE)
    assert key.mode == 0o600
    assert key.user == "root"


def test_second_converge_did_not_rotate_the_key(host):
    assert host.file(FIRST_KEY).content_string == host.file(KEY_BEFORE_ROTATION).content_string


def test_rotation_kills_the_old_key_and_the_new_one_works(host):
    assert host.file(KEY_FILE).content_string != host.file(KEY_BEFORE_ROTATION).content_string
    assert api(host, "/api/ping", key_spec=f"file:{KEY_BEFORE_ROTATION}")["status"] == 401
    assert api(host, "/api/ping", key_spec=f"file:{KEY_FILE}")["status"] == 200
