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

    .venv/bin/python tests/bench/bench_forwarder.py [-n 30] [--python /usr/bin/python3] [--burst 200]

--burst N then starts N alert runs at once (N processes, as integratord would if alerts came faster than
they end) and reports the wall time until the last ended and how many alerts IRIS holds exactly once.
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

FILES = ROOT / "files"
SOURCES = FILES / "integrations"
LAUNCHER = "custom-wazuh_iris.py"
# The packages the role installs beside the launcher (roles/host_program), relative to files/.
PACKAGES = ("integrations/iris_forwarder", "socstack_core")
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


def install(integrations, python, launcher_name=LAUNCHER, packages=PACKAGES):
    """Install a host program into integrations/ as the role does; returns the launcher's path.

    The launcher's first line becomes ``#!<python> -IS``; each package directory is copied beside it
    (root-owned in production) and its bytecode made with the same interpreter, hash-checked, so a
    stale .pyc can never be used.
    """
    integrations.mkdir(mode=0o750, exist_ok=True)
    launcher = integrations / launcher_name
    body = (SOURCES / launcher_name).read_text().split("\n", 1)[1]
    launcher.write_text(f"#!{python} {SHEBANG_FLAGS}\n{body}")
    launcher.chmod(0o750)
    for package in packages:
        target = integrations / Path(package).name
        target.mkdir(mode=0o750, exist_ok=True)
        for module in sorted((FILES / package).glob("*.py")):
            shutil.copyfile(module, target / module.name)
            (target / module.name).chmod(0o640)
        subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(target)],
                       check=True)
    return launcher


def loads_precompiled(launcher, python, home, package="iris_forwarder"):
    """True when the launcher imports the package and the core from their __pycache__ rather than compiling."""
    verbose = subprocess.run([python, f"{SHEBANG_FLAGS}v", str(launcher), "--check-options", os.devnull],
                             cwd=home, capture_output=True, text=True, check=False)
    return all(f"code object from '{launcher.parent / name / '__pycache__'}{os.sep}__init__." in verbose.stderr
               for name in (package, "socstack_core"))


def peak_rss_kib(command, **kwargs):
    """Peak RSS (KiB) of one run, through GNU time, or None without it.

    A child's ru_maxrss as wait4() reports it also counts the parent's pages it had before exec (the
    kernel keeps the high-water mark across exec), so the command is started by /usr/bin/time, whose own
    memory is small, and time reports the command's peak."""
    if not os.path.exists("/usr/bin/time"):
        return None
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, check=True, **kwargs)
    return int(result.stderr.decode().strip().splitlines()[-1])


def timed(command, **kwargs):
    """(wall s, CPU s) of one subprocess run; fails loudly on a non-zero exit."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    errors = process.stderr.read()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} exited {process.returncode}: {errors.decode()[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=0, help="concurrent alert runs after the timing (0: none)")
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

            def run_forwarder(number, measure=timed):
                stamp = f"{int(time.time())}-{os.getpid()}{number:04d}"
                alert_file = Path(f"/tmp/custom-wazuh_iris-{stamp}.alert")
                options_file = Path(f"/tmp/custom-wazuh_iris-{stamp}.options")
                alert_file.write_text(json.dumps(dict(ALERT, id=f"1748944931.{number}")) + "\n")
                options_file.write_text(options + "\n")
                try:
                    argv = [str(alert_file), api_key, f"{emulator.url}/alerts/add", "", str(options_file), "10",
                            "3", "> /dev/null 2>&1"]
                    if measure is peak_rss_kib:  # through time: the launcher by its path, as integratord
                        return measure([str(launcher), *argv], cwd=home, env=env)
                    return measure(["integrations", *argv], executable=str(launcher), cwd=home, env=env)
                finally:
                    alert_file.unlink()
                    options_file.unlink()

            def run_baseline(measure=timed):
                return measure(["python3", "-c", "pass"], env=env)

            for number in range(3):  # warm-up: page cache and the forwarder's lookup cache
                run_forwarder(100000 + number)
                run_baseline()
            forwarder, baseline = [], []
            for number in range(args.runs):
                forwarder.append(run_forwarder(number))
                baseline.append(run_baseline())
            rss = ([run_forwarder(200000 + number, peak_rss_kib) for number in range(3)],
                   [run_baseline(peak_rss_kib) for _number in range(3)])
            delivered = len({a["alert_source_ref"] for a in emulator.alerts()}) - (3 if rss[0][0] is not None else 0)
            burst = run_burst(args.burst, launcher, api_key, emulator, options, home, env) if args.burst else None
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
    if rss[0] is not None:
        print(f"peak RSS (GNU time): forwarder {max(rss[0]) / 1024:.1f} MiB, "
              f"python3 -c pass {max(rss[1]) / 1024:.1f} MiB")
    if burst is not None:
        count, wall, once, codes = burst
        print(f"burst: {count} concurrent alert runs ended in {wall:.2f} s; {once}/{count} in IRIS exactly once; "
              f"exit codes {codes}")
    return 0 if delivered == args.runs + 3 and (burst is None or burst[2] == burst[0]) else 1


def run_burst(count, launcher, api_key, emulator, options, home, env):
    """(count, wall s, alerts in IRIS exactly once, {exit code: runs}) of count alert runs started at once."""
    files, processes = [], []
    for number in range(count):
        alert_file = Path(f"/tmp/custom-wazuh_iris-burst-{os.getpid()}-{number:04d}.alert")
        options_file = alert_file.with_suffix(".options")
        alert_file.write_text(json.dumps(dict(ALERT, id=f"1748999999.{number}")) + "\n")
        options_file.write_text(options + "\n")
        files += [alert_file, options_file]
    started = time.perf_counter()
    try:
        for number in range(count):
            alert_file, options_file = files[2 * number], files[2 * number + 1]
            argv = ["integrations", str(alert_file), api_key, f"{emulator.url}/alerts/add", "", str(options_file),
                    "10", "3", "> /dev/null 2>&1"]
            processes.append(subprocess.Popen(argv, executable=str(launcher), cwd=home, env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        codes = {}
        for process in processes:
            code = process.wait(timeout=300)
            codes[code] = codes.get(code, 0) + 1
        wall = time.perf_counter() - started
        # a run that ended 2 (IRIS busy) leaves its alert to the replay: drain as the timer would
        subprocess.run(["x", "--replay", "--options", str(_replay_options(home, options, emulator, api_key))],
                       executable=str(launcher), cwd=home, env=env, check=False, capture_output=True)
    finally:
        for path in files:
            path.unlink(missing_ok=True)
    refs = [a["alert_source_ref"] for a in emulator.alerts()
            if a["alert_source_ref"].startswith("wazuh-manager:1748999999.")]
    once = sum(1 for number in range(count) if refs.count(f"wazuh-manager:1748999999.{number}") == 1)
    return count, wall, once, codes


def _replay_options(home, options, emulator, api_key):
    key_file = home / "bench.key"
    key_file.write_text(api_key + "\n")
    key_file.chmod(0o640)
    path = home / "replay.json"
    path.write_text(json.dumps(dict(json.loads(options), hook_url=f"{emulator.url}/alerts/add",
                                    api_key_file=str(key_file))))
    return path


if __name__ == "__main__":
    sys.exit(main())
