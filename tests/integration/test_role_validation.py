"""Every validation rule of every role: values it must accept and values it must refuse, with the message.

One table per role (``TABLES``): each case starts from the role's ``base`` variables (valid together) and
changes what it tests. All cases of one role table run in one ansible-playbook run per mode (check mode or not,
tests/support/role_validation.py): one inventory host per case, one play that includes only the role's validation
tasks. Each table runs once, when its first test needs it; under pytest-xdist (``make unit``) the tests of a table
form one xdist group, so the tables run side by side on different workers and none runs twice. An accepted
case must finish without failure; a refused case must fail with the expected fragment in the name or the
message of a failed task (tasks with no_log show only their name). To cover a new rule, add rows.
"""
import getpass
import grp
import os
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tests.support.role_validation import Case, RoleTable, host_name, run

SECRET = "Abcdef123456Ghijkl"  # a valid alphanumeric secret of 18 characters
KEY32 = "A1b2-C3d4_" * 3 + "ef"  # 32 characters of letters, digits, - and _
DIGEST = "sha256:" + "0123456789abcdef" * 4


def ok(name, **variables):
    return Case(name, variables)


def no(name, refused, hidden=(), **variables):
    return Case(name, variables, refused=refused, hidden=tuple(hidden))


# --- docker: tasks/assert.yml -------------------------------------------------------------------------------
DOCKER_PLATFORM = "The docker role supports"


def platform(name, distribution, release, refused="", **variables):
    """A docker case on a platform (the facts of its host)."""
    return Case(name, {"distribution": distribution, "release": release, **variables}, refused=refused)


DOCKER = RoleTable(
    role="docker",
    tasks_from="assert",
    base={"docker_source": "auto", "docker_service_environment": {}},
    # The platform is the case's: {distribution} and {release} are variables of each case.
    facts={"distribution": "{distribution}", "distribution_release": "{release}", "distribution_version": "1"},
    cases=(
        platform("debian 12", "Debian", "bookworm"),
        platform("debian 13", "Debian", "trixie"),
        platform("ubuntu 22.04", "Ubuntu", "jammy"),
        platform("ubuntu 24.04", "Ubuntu", "noble"),
        platform("debian 11", "Debian", "bullseye", DOCKER_PLATFORM),
        platform("ubuntu 20.04", "Ubuntu", "focal", DOCKER_PLATFORM),
        platform("centos", "CentOS", "stream9", DOCKER_PLATFORM),
        platform("distribution source on trixie", "Debian", "trixie", docker_source="distribution"),
        platform("distribution source on noble", "Ubuntu", "noble", docker_source="distribution"),
        platform("docker source on bookworm", "Debian", "bookworm", docker_source="docker"),
        platform("distribution source on bookworm", "Debian", "bookworm", "ships no Compose v2 package",
                 docker_source="distribution"),
        platform("environment names", "Debian", "bookworm",
                 docker_service_environment={"HTTP_PROXY": "http://proxy:3128", "_no_proxy2": "localhost"}),
        platform("environment name starting with a digit", "Debian", "bookworm", "invalid: 1PROXY",
                 docker_service_environment={"1PROXY": "x"}),
        platform("environment name with a dash", "Debian", "bookworm", "invalid: HTTP-PROXY",
                 docker_service_environment={"HTTP-PROXY": "x"}),
    ),
)

# --- iris: tasks/validate.yml -------------------------------------------------------------------------------
PINNED = "give a pinned tag or digest"
NAMES = "iris_project_name must be lower-case letters"
ADMIN_PASSWORD = "iris_admin_password must pass the IRIS password policy"
IRIS = RoleTable(
    role="iris",
    tasks_from="validate",
    # Check mode and no Docker engine (DOCKER_HOST below): the run needs none and sees none of this machine's.
    base={"iris_port": "{free_port}", "iris_bind_address": "127.0.0.1"},
    cases=tuple(
        Case(case.name, case.variables, case.refused, case.hidden, case.check_mode,
             {"DOCKER_HOST": "unix://{tmp}/no-docker.sock"})
        for case in (
            ok("defaults"),
            ok("images by tag and by digest", iris_app_image="registry.example.org:5000/iris/app:v2.4.20",
               iris_db_image="ghcr.io/dfir-iris/iriswebapp_db@" + DIGEST, iris_rabbitmq_image="rabbitmq:3.13"),
            no("app image latest", "iris_app_image=ghcr.io/dfir-iris/iriswebapp_app:latest: " + PINNED,
               iris_app_image="ghcr.io/dfir-iris/iriswebapp_app:latest"),
            no("db image without tag", "iris_db_image=ghcr.io/dfir-iris/iriswebapp_db: " + PINNED,
               iris_db_image="ghcr.io/dfir-iris/iriswebapp_db"),
            no("nginx image with a space", "iris_nginx_image=", iris_nginx_image="ghcr.io/dfir-iris/nginx :v1"),
            no("rabbitmq image latest", "iris_rabbitmq_image=rabbitmq:latest: " + PINNED,
               iris_rabbitmq_image="rabbitmq:latest"),
            no("short digest", "iris_app_image=", iris_app_image="ghcr.io/x/app@sha256:0123"),
            ok("project name", iris_project_name="iris-2_b"),
            no("project name upper-case", NAMES, iris_project_name="Iris"),
            no("project name leading dash", NAMES, iris_project_name="-iris"),
            ok("port 1024", iris_port="{free_port}"),
            no("port 0", NAMES, iris_port=0),
            no("port 65536", NAMES, iris_port=65536),
            no("port not a number", NAMES, iris_port="https"),
            ok("database users", iris_db_user="iris_db", iris_db_admin_user="_admin2"),
            no("db user upper-case", NAMES, iris_db_user="Postgres"),
            no("db user with dash", NAMES, iris_db_user="db-user"),
            no("db admin user leading digit", NAMES, iris_db_admin_user="1admin"),
            ok("rabbitmq user", iris_rabbitmq_user="Iris_MQ1"),
            no("rabbitmq user with dash", NAMES, iris_rabbitmq_user="iris-mq"),
            no("relative project dir", NAMES, iris_project_dir="opt/iris"),
            ok("all secrets supplied", iris_db_password=SECRET, iris_db_admin_password=SECRET,
               iris_rabbitmq_password=SECRET, iris_secret_key=KEY32, iris_security_password_salt=KEY32[:16],
               iris_admin_password="MyPassword2026", iris_admin_api_key=KEY32),
            no("db password with a quote", "iris_db_password must be alphanumeric", ["pass'word;DROP"],
               iris_db_password="pass'word;DROP"),
            no("db password of 11", "iris_db_password must be alphanumeric", [SECRET[:11]],
               iris_db_password=SECRET[:11]),
            no("db admin password with a dash", "iris_db_admin_password must be alphanumeric", ["Abcdef-123456"],
               iris_db_admin_password="Abcdef-123456"),
            no("rabbitmq password with @", "iris_rabbitmq_password must be alphanumeric", ["Abcdef@123456"],
               iris_rabbitmq_password="Abcdef@123456"),
            no("secret key of 31", "iris_secret_key must be 32 characters", [KEY32[:31]], iris_secret_key=KEY32[:31]),
            no("secret key with a dot", "iris_secret_key must be 32 characters", [KEY32[:31] + "."],
               iris_secret_key=KEY32[:31] + "."),
            no("salt of 15", "iris_security_password_salt must be 16", [KEY32[:15]],
               iris_security_password_salt=KEY32[:15]),
            ok("admin password with an s", iris_admin_password="MyPassword2026"),
            ok("admin password of 12", iris_admin_password="Abcdefghijk1"),
            ok("admin password with punctuation", iris_admin_password="Pass-word_2026!@%&*()"),
            no("admin password with a space", ADMIN_PASSWORD, ["Abcdefgh ijk1"], iris_admin_password="Abcdefgh ijk1"),
            no("admin password with a tab", ADMIN_PASSWORD, iris_admin_password="Abcdefgh\tijk1"),
            no("admin password with $", ADMIN_PASSWORD, ["MyPass$word2026"], iris_admin_password="MyPass$word2026"),
            no("admin password with #", ADMIN_PASSWORD, iris_admin_password="MyPass#word2026"),
            no("admin password with a quote", ADMIN_PASSWORD, iris_admin_password="MyPass'word2026"),
            no("admin password with a double quote", ADMIN_PASSWORD, iris_admin_password='MyPass"word2026'),
            no("admin password with a backquote", ADMIN_PASSWORD, iris_admin_password="MyPass`word2026"),
            no("admin password with a backslash", ADMIN_PASSWORD, iris_admin_password="MyPass\\word2026"),
            no("admin password without upper-case", ADMIN_PASSWORD, iris_admin_password="mypassword2026"),
            no("admin password without lower-case", ADMIN_PASSWORD, iris_admin_password="MYPASSWORD2026"),
            no("admin password without digit", ADMIN_PASSWORD, iris_admin_password="MyPasswordAbc"),
            no("admin password of 11", ADMIN_PASSWORD, iris_admin_password="MyPasswor26"),
            no("admin api key of 31", "iris_admin_api_key must be 32 characters or more", [KEY32[:31]],
               iris_admin_api_key=KEY32[:31]),
            no("admin api key with a dot", "iris_admin_api_key must be 32 characters or more", [KEY32 + "."],
               iris_admin_api_key=KEY32 + "."),
            ok("certificate, key and CA", iris_tls_cert_path="{tmp}/cert.pem", iris_tls_key_path="{tmp}/key.pem",
               iris_tls_ca_path="{tmp}/ca.pem"),
            no("certificate without key", "iris_tls_cert_path and iris_tls_key_path go together",
               iris_tls_cert_path="{tmp}/cert.pem"),
            no("key without certificate", "iris_tls_cert_path and iris_tls_key_path go together",
               iris_tls_key_path="{tmp}/key.pem"),
            no("missing certificate", "iris_tls_cert_path: {tmp}/missing.pem does not exist",
               iris_tls_cert_path="{tmp}/missing.pem", iris_tls_key_path="{tmp}/key.pem"),
            no("key is a directory", "iris_tls_key_path: {tmp} does not exist",
               iris_tls_cert_path="{tmp}/cert.pem", iris_tls_key_path="{tmp}"),
            no("missing CA", "iris_tls_ca_path: {tmp}/missing-ca.pem does not exist",
               iris_tls_cert_path="{tmp}/cert.pem", iris_tls_key_path="{tmp}/key.pem",
               iris_tls_ca_path="{tmp}/missing-ca.pem"),
            no("port in use", "iris_port: 127.0.0.1:{busy_port} is already in use", iris_port="{busy_port}"),
            Case("no docker engine outside check mode", {}, "docker does not answer", check_mode=False),
        )
    ),
)

# --- iris: tasks/images.yml (needs a Docker engine; see test_image_cases_need_an_engine) -------------------
IRIS_IMAGES = RoleTable(
    role="iris",
    tasks_from="images",
    base={"iris_app_image": "{local_image}", "iris_db_image": "{local_image}", "iris_nginx_image": "{local_image}",
          "iris_rabbitmq_image": "{local_image}", "iris_registry_timeout": 3},
    cases=(
        ok("all on the host, no network"),
        ok("missing, registry answers 401", iris_app_image="{registry}/socstack/absent:v1"),
        no("missing, registry does not answer",
           "iris_nginx_image=127.0.0.1:{closed_port}/socstack/absent:v1 (registry 127.0.0.1:{closed_port}",
           iris_nginx_image="127.0.0.1:{closed_port}/socstack/absent:v1"),
        no("missing, pull never", "iris_db_image={registry}/socstack/absent:v1 (registry {registry})",
           iris_db_image="{registry}/socstack/absent:v1", iris_pull="never"),
        no("present but pull always, registry does not answer", "iris_app_image=", iris_pull="always",
           iris_app_image="127.0.0.1:{closed_port}/socstack/absent:v1"),
        no("two missing name both variables",
           "iris_app_image, iris_rabbitmq_image at a registry mirror",
           iris_app_image="127.0.0.1:{closed_port}/a:v1", iris_rabbitmq_image="127.0.0.1:{closed_port}/b:v1"),
    ),
)

# --- iris_provision: the connection check at the top of tasks/main.yml (check mode; IRIS does not answer) ---
PROVISION = "iris_provision_api_url"
IRIS_PROVISION = RoleTable(
    role="iris_provision",
    tasks_from="main",
    base={"iris_provision_api_url": "https://127.0.0.1:{closed_port}", "iris_provision_admin_api_key": KEY32,
          "iris_provision_ca_path": "", "iris_provision_timeout": 3, "iris_provision_key_file": "{tmp}/no.key"},
    cases=(
        ok("https url and key"),
        ok("http url", iris_provision_api_url="http://127.0.0.1:{closed_port}"),
        no("empty url", PROVISION, iris_provision_api_url=""),
        no("url without scheme", PROVISION, iris_provision_api_url="127.0.0.1:9094"),
        no("empty admin key", PROVISION, iris_provision_admin_api_key=""),
    ),
)

# --- wazuh_common: tasks/main.yml (the manager every Wazuh-side role works on; their dependency) ----------
WC_MANAGER = "Expected a Wazuh manager in wazuh_common_home"
WC_USER = "(wazuh_common_user) or group"
MANAGER = {"wazuh_common_home": "{tmp}/ossec", "wazuh_common_python": "{python}", "wazuh_common_user": "{user}",
           "wazuh_common_group": "{group}", "wazuh_common_version": "4.13.1"}
WAZUH_COMMON = RoleTable(
    role="wazuh_common",
    tasks_from="main",
    base=MANAGER,
    cases=(
        ok("manager, python, user and group"),
        ok("version asked from wazuh-control", wazuh_common_version=""),
        no("no manager", WC_MANAGER, wazuh_common_home="{tmp}/empty"),
        no("python missing", WC_MANAGER, wazuh_common_python="{tmp}/no-python"),
        no("python not executable", WC_MANAGER, wazuh_common_python="{tmp}/ossec/etc/ossec.conf"),
        no("unknown user", WC_USER, wazuh_common_user="socstack-no-such-user"),
        no("unknown group", WC_USER, wazuh_common_group="socstack-no-such-group"),
    ),
)

# --- wazuh_iris: tasks/assert.yml (after its dependency wazuh_common) -------------------------------------
WI_CONNECTION = "Check the IRIS URL and API key"  # no_log: only the task's name is shown
WI_INTEGRATORD = "Invalid integratord settings"
WI_PATHS = "wazuh_iris_state_dir and wazuh_iris_log_file must be absolute paths"
WI_TEST_RULE = "wazuh_iris_test_rule_id must be in Wazuh's user range"
WAZUH_IRIS = RoleTable(
    role="wazuh_iris",
    tasks_from="assert",
    base={**MANAGER, "wazuh_iris_url": "https://iris.example.org:9094", "wazuh_iris_api_key": KEY32,
          "wazuh_iris_customer_id": 1},
    cases=(
        ok("defaults"),
        ok("http url with a path", wazuh_iris_url="http://10.0.0.5:8080/iris"),
        no("url ftp", WI_CONNECTION, ["ftp://iris.example.org"], wazuh_iris_url="ftp://iris.example.org"),
        no("url without host", WI_CONNECTION, wazuh_iris_url="https://"),
        no("url with a space", WI_CONNECTION, wazuh_iris_url="https://iris.example.org/a b"),
        no("url with &", WI_CONNECTION, wazuh_iris_url="https://iris.example.org/?a&b"),
        no("url with <", WI_CONNECTION, wazuh_iris_url="https://iris.example.org/<a>"),
        no("empty api key", WI_CONNECTION, wazuh_iris_api_key=""),
        no("api key with a space", WI_CONNECTION, ["secret key"], wazuh_iris_api_key="secret key"),
        no("api key with a tab", WI_CONNECTION, wazuh_iris_api_key="secret\tkey"),
        ok("filters", wazuh_iris_level=0, wazuh_iris_groups=["syscheck", "web"], wazuh_iris_rule_ids=[5710, "100100"],
           wazuh_iris_event_locations=["/var/log/auth.log"], wazuh_iris_timeout=300, wazuh_iris_retries=0),
        ok("level 16, timeout 1, retries 10", wazuh_iris_level=16, wazuh_iris_timeout=1, wazuh_iris_retries=10),
        no("level 17", WI_INTEGRATORD, wazuh_iris_level=17),
        no("level negative", WI_INTEGRATORD, wazuh_iris_level=-1),
        no("groups as text", WI_INTEGRATORD, wazuh_iris_groups="syscheck,web"),
        no("group with a space", WI_INTEGRATORD, wazuh_iris_groups=["sys check"]),
        no("group with a comma", WI_INTEGRATORD, wazuh_iris_groups=["sys,check"]),
        no("group with <", WI_INTEGRATORD, wazuh_iris_groups=["<web>"]),
        no("rule id not a number", WI_INTEGRATORD, wazuh_iris_rule_ids=["57a"]),
        no("rule ids as text", WI_INTEGRATORD, wazuh_iris_rule_ids="5710"),
        no("event locations as text", WI_INTEGRATORD, wazuh_iris_event_locations="/var/log/auth.log"),
        no("event location with |", WI_INTEGRATORD, wazuh_iris_event_locations=["a|b"]),
        no("timeout 0", WI_INTEGRATORD, wazuh_iris_timeout=0),
        no("timeout 301", WI_INTEGRATORD, wazuh_iris_timeout=301),
        no("timeout not a number", WI_INTEGRATORD, wazuh_iris_timeout="10s"),
        no("retries 11", WI_INTEGRATORD, wazuh_iris_retries=11),
        no("retries negative", WI_INTEGRATORD, wazuh_iris_retries=-1),
        ok("paths", wazuh_iris_state_dir="/srv/iris-spool", wazuh_iris_log_file="/var/log/iris.log",
           wazuh_iris_replay_max_seconds=1),
        no("relative state dir", WI_PATHS, wazuh_iris_state_dir="var/iris"),
        no("relative log file", WI_PATHS, wazuh_iris_log_file="iris.log"),
        no("replay max seconds 0", WI_PATHS, wazuh_iris_replay_max_seconds=0),
        no("replay max seconds not a number", WI_PATHS, wazuh_iris_replay_max_seconds="15s"),
        ok("test rule", wazuh_iris_test_rule=True, wazuh_iris_test_rule_id=120000, wazuh_iris_test_rule_level=0),
        ok("test rule at the bottom of the user range", wazuh_iris_test_rule=True, wazuh_iris_test_rule_id=100000,
           wazuh_iris_test_rule_level=16),
        ok("test rule off ignores its settings", wazuh_iris_test_rule=False, wazuh_iris_test_rule_id=5),
        no("test rule id below the user range", WI_TEST_RULE, wazuh_iris_test_rule=True,
           wazuh_iris_test_rule_id=99999),
        no("test rule id above the user range", WI_TEST_RULE, wazuh_iris_test_rule=True,
           wazuh_iris_test_rule_id=120001),
        no("test rule level 17", WI_TEST_RULE, wazuh_iris_test_rule=True, wazuh_iris_test_rule_level=17),
        no("test rule empty match", WI_TEST_RULE, wazuh_iris_test_rule=True, wazuh_iris_test_rule_match=""),
        no("test rule match with <", WI_TEST_RULE, wazuh_iris_test_rule=True, wazuh_iris_test_rule_match="<x>"),
    ),
)

# --- wazuh_opencti: tasks/assert.yml (after its dependency wazuh_common) ----------------------------------
WO_CONNECTION = "Check the OpenCTI endpoint and token"  # no_log: only the task's name is shown
WO_SETTINGS = "Invalid wazuh_opencti settings"
WO_RULE_BASE = "must leave ids base to"
WAZUH_OPENCTI = RoleTable(
    role="wazuh_opencti",
    tasks_from="assert",
    base={**MANAGER, "wazuh_opencti_url": "https://opencti.example.org/graphql", "wazuh_opencti_token": KEY32},
    cases=(
        ok("defaults"),
        ok("http url", wazuh_opencti_url="http://10.0.0.7:8080/graphql"),
        no("empty url", WO_CONNECTION, wazuh_opencti_url=""),
        no("url ftp", WO_CONNECTION, wazuh_opencti_url="ftp://opencti.example.org"),
        no("url with a space", WO_CONNECTION, wazuh_opencti_url="https://opencti.example.org/a b"),
        no("url with >", WO_CONNECTION, wazuh_opencti_url="https://opencti.example.org/a>"),
        no("empty token", WO_CONNECTION, wazuh_opencti_token=""),
        no("token with a space", WO_CONNECTION, ["tok en"], wazuh_opencti_token="tok en"),
        no("token with &", WO_CONNECTION, wazuh_opencti_token="tok&en"),
        ok("settings", wazuh_opencti_level=16, wazuh_opencti_groups="ids, sysmon", wazuh_opencti_rule_ids="5710,5712",
           wazuh_opencti_timeout=300, wazuh_opencti_extra_options={"max_observables": 5}),
        ok("level 0, timeout 1, rule ids as a list", wazuh_opencti_level=0, wazuh_opencti_timeout=1,
           wazuh_opencti_rule_ids=[5710, "5712"]),
        no("level 17", WO_SETTINGS, wazuh_opencti_level=17),
        no("level negative", WO_SETTINGS, wazuh_opencti_level=-1),
        no("group with a space", WO_SETTINGS, wazuh_opencti_groups=["sys check"]),
        no("group with &", WO_SETTINGS, wazuh_opencti_groups=["a&b"]),
        no("own group opencti", WO_SETTINGS, wazuh_opencti_groups=["ids", "opencti"]),
        no("own group threat_intel", WO_SETTINGS, wazuh_opencti_groups="threat_intel"),
        no("rule id not a number", WO_SETTINGS, wazuh_opencti_rule_ids=["57a"]),
        no("timeout 0", WO_SETTINGS, wazuh_opencti_timeout=0),
        no("timeout 301", WO_SETTINGS, wazuh_opencti_timeout=301),
        no("relative state dir", WO_SETTINGS, wazuh_opencti_state_dir="var/opencti"),
        no("extra options not a mapping", WO_SETTINGS, wazuh_opencti_extra_options=["max_observables"]),
        ok("rule id base at the bottom of the user range", wazuh_opencti_rule_id_base=100000),
        no("rule id base below the user range", WO_RULE_BASE, wazuh_opencti_rule_id_base=99999),
        no("rule ids past the user range", WO_RULE_BASE, wazuh_opencti_rule_id_base=120000),
    ),
)

# --- ai_worker: tasks/assert.yml ---------------------------------------------------------------------------
AW_IRIS = "Check that IRIS is known"  # no_log: only the task's name is shown
AW_CUSTOMERS = "ai_worker_customers names customers that are not IRIS ids"
AW_SETTINGS = "ai_worker_instances must be >= 0"
AI_WORKER = RoleTable(
    role="ai_worker",
    tasks_from="assert",
    base={"ai_worker_iris_url": "https://iris.example.org:9094", "ai_worker_iris_api_key": KEY32,
          "ai_worker_customers": []},
    cases=(
        ok("defaults"),
        no("iris url empty", AW_IRIS, ai_worker_iris_url=""),
        no("iris api key empty", AW_IRIS, ai_worker_iris_api_key=""),
        ok("customers by id", ai_worker_customers=[3, "4"]),
        ok("customers by name from the IRIS host's result", ai_worker_customers=["acme", 2],
           socstack_iris_host="iris_facts"),
        no("unknown customer name", AW_CUSTOMERS + " and not in iris_provision_result.customer_ids of iris_facts",
           ai_worker_customers=["globex"], socstack_iris_host="iris_facts"),
        no("customer name without IRIS host", AW_CUSTOMERS, ai_worker_customers=["acme"]),
        ok("settings", ai_worker_instances=0, ai_worker_max_exposure=0.1,
           ai_worker_extra_env={"AI_WORKER_LOG_FORMAT": "json"}),
        no("instances negative", AW_SETTINGS, ai_worker_instances=-1),
        no("max exposure 0", AW_SETTINGS, ai_worker_max_exposure=0),
        no("extra env not AI_WORKER_", AW_SETTINGS, ai_worker_extra_env={"HTTP_PROXY": "x"}),
        no("extra env lower-case", AW_SETTINGS, ai_worker_extra_env={"AI_WORKER_debug": "1"}),
        no("extra env instances", AW_SETTINGS, ai_worker_extra_env={"AI_WORKER_INSTANCES": "2"}),
        no("extra env instance", AW_SETTINGS, ai_worker_extra_env={"AI_WORKER_INSTANCE": "2"}),
    ),
)
# Hosts that are no case: the IRIS host whose published result ai_worker reads.
EXTRA_HOSTS = {"iris_facts": {"iris_provision_result": {"customer_ids": {"acme": 7}}, "ansible_connection": "local"}}

TABLES = (DOCKER, IRIS, IRIS_PROVISION, WAZUH_COMMON, WAZUH_IRIS, WAZUH_OPENCTI, AI_WORKER)
ALL_CASES = [(table, case) for table in (*TABLES, IRIS_IMAGES) for case in table.cases]


def engine_answers():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def local_image():
    """A tagged image present on this machine's engine, or ''."""
    done = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                          text=True, timeout=30, check=False)
    return next((line for line in done.stdout.split() if not line.endswith(":<none>")), "")


class RegistryHandler(BaseHTTPRequestHandler):
    """Answers as a registry does to an anonymous GET /v2/ (401 with a challenge)."""

    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="https://127.0.0.1/token"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry(tls_files):
    """An HTTPS server on 127.0.0.1 answering 401 to GET /v2/; yields its host:port."""
    server = HTTPServer(("127.0.0.1", 0), RegistryHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, tls_files))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Validation:
    """The runs of one test process: each role table runs once, when the first of its tests needs it (under
    pytest-xdist all tests of a table go to one worker, the tables to different workers: see ``test_rule``)."""

    def __init__(self, tmp, collections_path, context, skip_images):
        self.tmp, self.collections_path, self.context, self.skip_images = tmp, collections_path, context, skip_images
        self.results, self.seconds = {}, {}

    def of(self, table):
        """({host: Outcome} of the table's run, seconds it took)."""
        key = table_id(table)
        if key not in self.results:
            started = time.monotonic()
            self.results[key] = run([table], self.context, self.tmp, self.collections_path, EXTRA_HOSTS)
            self.seconds[key] = time.monotonic() - started
        return self.results[key], self.seconds[key]


@pytest.fixture(scope="module")
def validation(tmp_path_factory, collection_root, registry):
    """A Validation with the files, ports and registry the cases name ({tmp}, {busy_port}, …)."""
    tmp = tmp_path_factory.mktemp("validation")
    (tmp / "ossec" / "etc").mkdir(parents=True)
    (tmp / "ossec" / "etc" / "ossec.conf").write_text("<ossec_config/>\n")
    (tmp / "empty").mkdir()
    (tmp / "tmp").mkdir()
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp / name).write_text("not read by the validation\n")
    skip_images, image = "no Docker engine answers on this machine (docker info)", ""
    if engine_answers():
        image = local_image()
        skip_images = "" if image else "the Docker engine has no tagged image"
    # {free_port} and {closed_port}: bound and never listening, so nothing answers there (the role's port check
    # connects) and no other test process (pytest-xdist workers, emulators) can take them while the module runs
    with socket.socket() as listener, socket.socket() as closed, socket.socket() as free:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))
        free.bind(("127.0.0.1", 0))
        context = {
            "tmp": str(tmp), "python": sys.executable, "user": getpass.getuser(),
            "group": grp.getgrgid(os.getgid()).gr_name, "free_port": free.getsockname()[1],
            "busy_port": listener.getsockname()[1], "closed_port": closed.getsockname()[1], "registry": registry,
            "local_image": image,
        }
        yield Validation(tmp, f"{collection_root}:{sysconfig.get_paths()['purelib']}", context, skip_images)


def table_id(table):
    return f"{table.role}:{table.tasks_from}"


def by_table(table, *values, name=None):
    """A pytest.param of one table's test: in the xdist group of that table, so the table runs on one worker."""
    return pytest.param(table, *values, id=name or table_id(table), marks=pytest.mark.xdist_group(table_id(table)))


@pytest.mark.parametrize(("table", "case"), [by_table(table, case, name=f"{table_id(table)}:{case.name}")
                                             for table, case in ALL_CASES])
def test_rule(validation, table, case):
    if table is IRIS_IMAGES and validation.skip_images:
        pytest.skip(f"the image check needs a Docker engine with an image: {validation.skip_images}")
    results, _seconds = validation.of(table)
    context = validation.context
    outcome = results.get(host_name(table, case))
    assert outcome is not None, "the case is missing from the runs"
    assert outcome.ran, outcome.describe()
    if case.refused:
        expected = case.refused.format(**context)
        assert outcome.failed, f"accepted, but must be refused with {expected!r}"
        assert any(expected in message for message in outcome.messages), outcome.describe()
    else:
        assert not outcome.failed, outcome.describe()
    for secret in case.hidden:
        assert secret not in outcome.dump, "a refused secret is shown in the output"


def test_every_role_with_validation_has_a_table():
    """A role whose tasks hold a validation file (assert.yml or validate.yml) is in TABLES."""
    roles = {path.parent.parent.name for pattern in ("roles/*/tasks/assert.yml", "roles/*/tasks/validate.yml")
             for path in Path(__file__).resolve().parents[2].glob(pattern)}
    assert roles <= {table.role for table in TABLES}


def test_the_host_names_are_unique():
    """Every case has a host name of its own, in all tables together."""
    names = [host_name(table, case) for table, case in ALL_CASES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("table", [by_table(table) for table in (*TABLES, IRIS_IMAGES)])
def test_the_runs_report_exactly_the_cases(validation, table):
    """Every case of the table ran as a host of its own, and nothing else did (the IRIS host of EXTRA_HOSTS is
    no case)."""
    if table is IRIS_IMAGES and validation.skip_images:
        pytest.skip(f"the image check needs a Docker engine with an image: {validation.skip_images}")
    results, seconds = validation.of(table)
    expected = [host_name(table, case) for case in table.cases]
    print(f"{len(expected)} cases of {table_id(table)} validated in {seconds:.1f} s")
    assert set(results) == set(expected)


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


@pytest.mark.parametrize("path", sorted({f"roles/{table.role}/tasks/{table.tasks_from}.yml"
                                         for table in (*TABLES, IRIS_IMAGES)}))
def test_no_doubled_backslash_reaches_jinja(path):
    """A doubled backslash in a Jinja string literal is one backslash for ansible-core 2.16 (Jinja decodes the
    literal) and two for 2.19 (it does not): a pattern like '[^\\\\s]' then refuses every 's' on one of them. A
    pattern that needs a backslash is kept in a variable (YAML, read the same by both), not in a Jinja literal."""
    tasks = yaml.safe_load((Path(__file__).resolve().parents[2] / path).read_text())
    assert not [text for text in strings(tasks) if "\\\\" in text]
