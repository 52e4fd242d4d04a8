"""The repository's own check tools: tests/timings_report.py (the end of make check / make test) and
tests/list_checks.py (every check, for a before/after diff)."""
import io
import textwrap

from tests import list_checks, timings_report

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.unit.test_a" name="test_fast" time="0.010"/>
<testcase classname="tests.integration.test_b" name="test_slow[x]" time="12.5"/>
<testcase classname="tests.integration.test_b" name="test_middle" time="3.25"/>
</testsuite></testsuites>"""


def test_report_gives_stages_total_slowest_scenarios_and_tests(tmp_path):
    timings, junit = tmp_path / "timings.txt", tmp_path / "pytest.xml"
    timings.write_text("ruff: 1 s\npytest: 90 s\nmolecule default: 41 s\nmolecule stack: 406 s\nmolecule: 447 s\n")
    junit.write_text(JUNIT)
    out = io.StringIO()
    timings_report.report(timings, junit, 2, out)
    text = out.getvalue()
    assert "total" in text and "8 min 58 s" in text  # 1 + 90 + 447: the scenarios are inside the molecule stage
    scenarios = text.split("slowest molecule scenarios\n")[1].split("==>")[0].splitlines()
    assert [line.split()[-1] for line in scenarios] == ["stack", "default"]
    tests = text.split("slowest tests")[1].splitlines()[1:]
    assert [line.split()[-1] for line in tests] == [
        "tests.integration.test_b::test_slow[x]", "tests.integration.test_b::test_middle"]


def test_report_says_what_is_missing_instead_of_failing(tmp_path):
    out = io.StringIO()
    (tmp_path / "broken.xml").write_text("<testsuites>")
    timings_report.report(tmp_path / "none.txt", tmp_path / "broken.xml", 5, out)
    assert "no stage times" in out.getvalue() and "unreadable" in out.getvalue()
    out = io.StringIO()
    timings_report.report(tmp_path / "none.txt", tmp_path / "none.xml", 5, out)
    assert "no pytest report" in out.getvalue()


def test_list_checks_finds_testinfra_functions_asserts_and_assert_tasks(tmp_path):
    tests = tmp_path / "molecule" / "stack" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_stack.py").write_text(textwrap.dedent("""
        def helper(x):
            assert x  ,  'message'
        def test_one(host):
            assert host.file('/etc').is_directory
            def inner():
                assert 1 == 1
        class TestGroup:
            def test_two(self):
                assert  True
        """))
    (tmp_path / "molecule" / "stack" / "side_effect.yml").write_text(textwrap.dedent("""
        - name: Play
          hosts: all
          tasks:
            - name: A block
              block:
                - name: Check it
                  ansible.builtin.assert:
                    that:
                      - a   ==   1
                      - b
              rescue:
                - name: Not reached
                  ansible.builtin.fail:
                  when: [c, d]
        """))
    (tmp_path / "molecule" / "stack" / "molecule.yml").write_text("{}\n")
    rows = list_checks.molecule_checks(tmp_path)
    where = "stack molecule/stack/"
    assert rows == [
        ("yml-assert", where + "side_effect.yml: Check it", "a == 1"),
        ("yml-assert", where + "side_effect.yml: Check it", "b"),
        ("yml-fail", where + "side_effect.yml: Not reached", "c and d"),
        ("py-assert", where + "tests/test_stack.py::helper", "x"),
        ("testinfra", where + "tests/test_stack.py::test_one", ""),
        ("py-assert", where + "tests/test_stack.py::test_one", "host.file('/etc').is_directory"),
        ("py-assert", where + "tests/test_stack.py::test_one.inner", "1 == 1"),
        ("py-assert", where + "tests/test_stack.py::TestGroup.test_two", "True"),
    ]
