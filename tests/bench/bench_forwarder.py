"""Benchmark: wall time per alert of files/integrations/custom-wazuh_iris.py, run like integratord runs it.

Starts the IRIS emulator with TLS on 127.0.0.1 (a CA and a server certificate made with the openssl
CLI; the forwarder verifies the server against that CA through its ca_file option), then runs the
forwarder N times as a subprocess exactly as wazuh-integratord 4.13 does: a one-line JSON alert in
/tmp/<name>-<time>-<random>.alert, a .options file, argv
``integrations ALERT API_KEY HOOK_URL "" OPTIONS 10 3 "> /dev/null 2>&1"`` and cwd standing in for
/var/ossec. ``python3 -c pass`` is timed in the same loop, interleaved, for the ratio.

Both commands find ``python3`` through the same PATH entry (a temporary directory holding a symlink to
--python), so they start the same interpreter. Both run with the same private PYTHONPYCACHEPREFIX,
warmed up first, because some interpreters here ship part of their standard library without .pyc
files while Wazuh's packaged Python ships it compiled (pass --no-pycache to measure without it).

    .venv/bin/python tests/bench/bench_forwarder.py [-n 30] [--python /usr/bin/python3]
"""
import argparse
import json
import os
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

SCRIPT = ROOT / "files" / "integrations" / "custom-wazuh_iris.py"
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


def timed(command, **kwargs):
    """Wall time in seconds of one subprocess run; fails loudly on a non-zero exit."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False, **kwargs)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--python", default=os.path.realpath(sys.executable),
                        help="interpreter that python3 resolves to (default: this one, symlinks resolved)")
    parser.add_argument("--no-pycache", action="store_true", help="do not give the runs a private pycache")
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
            bin_dir = tmp / "bin"
            bin_dir.mkdir()
            (bin_dir / "python3").symlink_to(args.python)
            env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
            env.pop("PYTHONPYCACHEPREFIX", None)
            if not args.no_pycache:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
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
                                 executable=str(SCRIPT), cwd=home, env=env)
                finally:
                    alert_file.unlink()
                    options_file.unlink()

            def run_baseline():
                return timed(["python3", "-c", "pass"], env=env)

            for number in range(3):  # warm-up: page cache, pycache, the forwarder's lookup cache
                run_forwarder(100000 + number)
                run_baseline()
            forwarder, baseline = [], []
            for number in range(args.runs):
                forwarder.append(run_forwarder(number))
                baseline.append(run_baseline())
            delivered = len({a["alert_source_ref"] for a in emulator.alerts()})
        finally:
            emulator.stop()

    fwd_median, base_median = statistics.median(forwarder), statistics.median(baseline)
    print(f"interpreter: {args.python} ({'private pycache' if not args.no_pycache else 'no pycache'})")
    print(f"runs: {args.runs} (+3 warm-up); alerts delivered to the emulator: {delivered}")
    print(f"forwarder per alert: median {fwd_median * 1000:.1f} ms, p90 {percentile(forwarder, 0.9) * 1000:.1f} ms")
    print(f"python3 -c pass:     median {base_median * 1000:.1f} ms")
    print(f"ratio (median forwarder / median python3 -c pass): {fwd_median / base_median:.2f}")
    return 0 if delivered == args.runs + 3 else 1


if __name__ == "__main__":
    sys.exit(main())
