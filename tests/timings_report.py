"""The end of `make check` and `make test`: the time of each stage and the slowest tests and scenarios.

    python tests/timings_report.py --timings .cache/timings.txt --junit .cache/pytest.xml [--top 5]

The stage times are the lines `make` wrote to .cache/timings.txt ("NAME: SECONDS s"); the lines of molecule
scenarios ("molecule SCENARIO: SECONDS s", each scenario or group of scenarios the molecule stage ran) are
also ranked. The slowest tests come from pytest's JUnit report (a test's time there is its setup, call and
teardown). A missing file is said, not an error: the report must never fail the run it ends.
"""
import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

LINE = re.compile(r"^(?P<name>.+): (?P<seconds>\d+(?:\.\d+)?) s$")


def stage_times(path):
    """[(name, seconds)] in the order of the file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LINE.match(line.strip())
        if match:
            rows.append((match["name"], float(match["seconds"])))
    return rows


def slowest_tests(path, top):
    """[(seconds, test id)] of the ``top`` slowest test cases of a JUnit XML report."""
    cases = []
    for case in ET.parse(path).iter("testcase"):
        cases.append((float(case.get("time") or 0), f"{case.get('classname', '')}::{case.get('name', '')}"))
    return sorted(cases, reverse=True)[:top]


def minutes(seconds):
    return f"{int(seconds) // 60} min {int(seconds) % 60:02d} s" if seconds >= 60 else f"{seconds:.0f} s"


def report(timings, junit, top, out=sys.stdout):
    write = out.write
    write("==> stage times (.cache/timings.txt)\n")
    stages = stage_times(timings) if timings.is_file() else []
    if not stages:
        write(f"  (no stage times in {timings})\n")
    for name, seconds in stages:
        write(f"  {name:<45} {minutes(seconds):>12}\n")
    scenarios = sorted(((seconds, name) for name, seconds in stages if name.startswith("molecule ")), reverse=True)
    whole = sum(seconds for name, seconds in stages if not name.startswith("molecule "))  # the molecule stage
    if stages:                                                                          # holds its scenarios
        write(f"  {'total':<45} {minutes(whole):>12}\n")
    if scenarios:
        write(f"==> the {min(top, len(scenarios))} slowest molecule scenarios\n")
        for seconds, name in scenarios[:top]:
            write(f"  {minutes(seconds):>12}  {name.removeprefix('molecule ')}\n")
    write(f"==> the {top} slowest tests (pytest, setup + call + teardown)\n")
    if not junit.is_file():
        write(f"  (no pytest report at {junit})\n")
        return
    try:
        tests = slowest_tests(junit, top)
    except ET.ParseError as error:
        write(f"  (pytest report {junit} unreadable: {error})\n")
        return
    for seconds, test in tests:
        write(f"  {seconds:>8.1f} s  {test}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--timings", type=Path, default=Path(".cache/timings.txt"))
    parser.add_argument("--junit", type=Path, default=Path(".cache/pytest.xml"))
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    report(args.timings, args.junit, args.top)


if __name__ == "__main__":
    main()
