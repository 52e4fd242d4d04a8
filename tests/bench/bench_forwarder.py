"""Benchmark: wall time per alert of the Wazuh -> IRIS forwarder, installed and run the way integratord runs it.

Starts the IRIS emulator with TLS on 127.0.0.1 (a CA and a server certificate made with the openssl
CLI; the forwarder verifies the server against that CA through its ca_file option). It then installs
the forwarder the way the role does (see ``install``): the launcher custom-wazuh_iris.py with the
shebang ``#!<python> -IS``, iris_forwarder.py beside it, and its bytecode made with
``<python> -m compileall --invalidation-mode checked-hash``. It runs the launcher N times by its path,
through that shebang, exactly as wazuh-integratord 4.13 does: a one-line JSON alert in
/tmp/<name>-<time>-<random>.alert, a .options file, argv
``integrations ALERT API_KEY HOOK_URL "" OPTIONS 10 3 "> /dev/null 2>&1"`` and cwd standing in for
/var/ossec. Plain ``python3 -c pass`` is timed in the same loop, interleaved, for the ratio; it finds
``python3`` through a PATH entry holding a symlink to --python, so both start the same interpreter.
No PYTHON* variable is passed to either.

    .venv/bin/python tests/bench/bench_forwarder.py [-n 30] [--python /usr/bin/python3]
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.emulators.iris import IrisEmulator  # noqa: E402

SOURCES = ROOT / "files" / "integrations"
LAUNCHER = "custom-wazuh_iris.py"
MODULE = "iris_forwarder.py"
SHEBANG_FLAGS = "-IS"
ALERT = {
    "timestamp": "2025-06-03T10:02:11.730+0000",
    "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system.", "id": "5712",
             "mitre": {"id": ["T1110"], "tactic": ["Credential Access"], "technique": ["Brute Force"]},
             "groups": ["syslog", "sshd", "authentication_failures"]},
    "agent": {"id": "004", "name": "app01", "ip": "192.168.20.14"},
    "manager": {"name": "wazuh-manager"},
    "full_log": "May 11 12:29:18 app01 sshd[17584]: Invalid user paco from 172.17.1.1 port 56404",
    "location": "/var/log/secure",
}


# Extensions Python 3.13's strict X.509 checks want in a leaf certificate.
LEAF_EXTENSIONS = """subjectAltName=IP:127.0.0.1
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it; returns (ca, cert, key) paths."""
    ca_key, ca, key, csr, cert = (directory / name for name in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = directory / "san.ext"
    ext.write_text(LEAF_EXTENSIONS)
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext],
    ]
    for step in steps:
        subprocess.run(["openssl", *map(str, step)], check=True, capture_output=True)
    return ca, cert, key


def install(integrations, python):
    """Install the forwarder into integrations/ as the role does; returns the launcher's path.

    The launcher's first line becomes ``#!<python> -IS``; the module's bytecode is made with the same
    interpreter, hash-checked, so a stale .pyc can never be used.
    """
    integrations.mkdir(mode=0o750)
    launcher = integrations / LAUNCHER
    body = (SOURCES / LAUNCHER).read_text().split("\n", 1)[1]
    launcher.write_text(f"#!{python} {SHEBANG_FLAGS}\n{body}")
    launcher.chmod(0o750)
    module = integrations / MODULE
    shutil.copyfile(SOURCES / MODULE, module)
    module.chmod(0o640)
    subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(module)],
                   check=True)
    return launcher


def loads_precompiled(launcher, python, home):
    """True when the launcher imports the module from its __pycache__ rather than compiling it."""
    verbose = subprocess.run([python, f"{SHEBANG_FLAGS}v", str(launcher)], cwd=home, capture_output=True,
                             text=True, check=False)
    return f"code object from '{launcher.parent / '__pycache__'}{os.sep}iris_forwarder." in verbose.stderr


def timed(command, **kwargs):
    """(wall, CPU) seconds of one subprocess run; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False, **kwargs)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--python", default=os.path.realpath(sys.executable),
                        help="interpreter of the shebang and of python3 (default: this one, symlinks resolved)")
    args = parser.parse_args()
    if not shutil.which("openssl"):
        raise SystemExit("openssl CLI not found: it is needed to make the TLS certificates")

    with tempfile.TemporaryDirectory(prefix="bench-forwarder-") as tmp:
        tmp = Path(tmp)
        ca, cert, key = make_certificates(tmp)
        emulator = IrisEmulator(admin_api_key="A" * 64, tls_cert=str(cert), tls_key=str(key)).start()
        try:
            _user_id, api_key = emulator.add_user("wazuh-bench", groups=["Analysts"], customers=["IrisInitialClient"])
            home = tmp / "ossec"
            (home / "logs").mkdir(parents=True)
            launcher = install(home / "integrations", args.python)
            if not loads_precompiled(launcher, args.python, home):
                raise SystemExit("the launcher did not load iris_forwarder from its __pycache__")
            bin_dir = tmp / "bin"
            bin_dir.mkdir()
            (bin_dir / "python3").symlink_to(args.python)
            env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
            env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
            options = json.dumps({"ca_file": str(ca), "state_dir": str(home / "var" / "iris-forwarder")})

            def run_forwarder(number):
                stamp = f"{int(time.time())}-{os.getpid()}{number:04d}"
                alert_file = Path(f"/tmp/custom-wazuh_iris-{stamp}.alert")
                options_file = Path(f"/tmp/custom-wazuh_iris-{stamp}.options")
                alert_file.write_text(json.dumps(dict(ALERT, id=f"1748944931.{number}")) + "\n")
                options_file.write_text(options + "\n")
                try:
                    return timed(["integrations", str(alert_file), api_key, f"{emulator.url}/alerts/add", "",
                                  str(options_file), "10", "3", "> /dev/null 2>&1"],
                                 executable=str(launcher), cwd=home, env=env)
                finally:
                    alert_file.unlink()
                    options_file.unlink()

            def run_baseline():
                return timed(["python3", "-c", "pass"], env=env)

            for number in range(3):  # warm-up: page cache and the forwarder's lookup cache
                run_forwarder(100000 + number)
                run_baseline()
            forwarder, baseline = [], []
            for number in range(args.runs):
                forwarder.append(run_forwarder(number))
                baseline.append(run_baseline())
            delivered = len({a["alert_source_ref"] for a in emulator.alerts()})
        finally:
            emulator.stop()

    fwd_wall, base_wall = ([wall for wall, _cpu in runs] for runs in (forwarder, baseline))
    fwd_cpu, base_cpu = (statistics.median(cpu for _wall, cpu in runs) for runs in (forwarder, baseline))
    fwd_median, base_median = statistics.median(fwd_wall), statistics.median(base_wall)
    print(f"interpreter: {args.python}; launcher shebang: #!{args.python} {SHEBANG_FLAGS}; "
          "iris_forwarder loaded from __pycache__")
    print(f"runs: {args.runs} (+3 warm-up); alerts delivered to the emulator: {delivered}")
    print(f"forwarder per alert: median {fwd_median * 1000:.1f} ms, p90 {percentile(fwd_wall, 0.9) * 1000:.1f} ms "
          f"(CPU median {fwd_cpu * 1000:.1f} ms)")
    print(f"python3 -c pass:     median {base_median * 1000:.1f} ms (CPU median {base_cpu * 1000:.1f} ms)")
    print(f"ratio (median forwarder / median python3 -c pass): {fwd_median / base_median:.2f} "
          f"(CPU: {fwd_cpu / base_cpu:.2f})")
    return 0 if delivered == args.runs + 3 else 1


if __name__ == "__main__":
    sys.exit(main())
