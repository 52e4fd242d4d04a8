"""What the roles rely on from `wazuh-analysisd -t`, `wazuh-integratord -t` and integratord itself, checked
on the newest and the oldest Wazuh the collection supports (4.14.7 and 4.8.2, real daemons):

- -t exits 0 with the collection's files, and names a rule it drops only in a warning: a clashing rule
  id (7612) and an if_sid naming no rule (7617, 7619) - the codes roles/wazuh_common/vars/main.yml lists
  and the configure block turns into a refusal (molecule wazuh_opencti side_effect proves the role);
- the role's two OpenCTI blocks (same program, different filters) pass integratord -t;
- integratord runs a custom integration with the argv layout the programs parse (socstack_core /
  the programs' argv readers): alert file, api_key, hook_url, debug, options file, timeout, retries and
  the literal redirect argument (the temp files are /tmp/<name>-<epoch>-<random>.*, where the random
  part may be negative: `-1061582579`).
"""
import json
import re
import textwrap
from pathlib import Path

import yaml

from tests.support import wazuh

ROOT = wazuh.REPO
DROP_CODES = yaml.safe_load((ROOT / "roles" / "wazuh_common" / "vars" / "main.yml").read_text())[
    "wazuh_common_drop_codes"]


def dropped(output, owned):
    """The lines configure refuses: a drop code and one of the caller's rule ids or decoder names quoted."""
    pattern = re.compile(r"\((" + "|".join(DROP_CODES) + r")\)")
    return [line for line in output.splitlines()
            if pattern.search(line) and set(re.findall(r"'([^']*)'", line)) & set(owned)]


def test_the_collections_rules_load_without_a_drop_warning(manager):
    manager.put("etc/rules/opencti_rules.xml", (ROOT / "files" / "rules" / "opencti_rules.xml").read_text())
    manager.put("etc/decoders/opencti_decoder.xml", (ROOT / "files" / "decoders" / "opencti_decoder.xml").read_text())
    rc, output = manager.test_config()
    assert rc == 0, output
    assert dropped(output, [str(n) for n in range(110200, 110206)] + ["socstack-opencti-placeholder"]) == []


def test_a_clashing_rule_id_is_only_a_warning_that_names_it(manager):
    clash = (ROOT / "files" / "rules" / "opencti_rules.xml").read_text().replace("110200", "100001")
    manager.put("etc/rules/opencti_rules.xml", clash)  # the stock local_rules.xml has rule 100001
    rc, output = manager.test_config()
    assert rc == 0, output
    assert "(7612): Rule ID '100001' is duplicated. Only the first occurrence will be considered." in output
    assert dropped(output, ["100001"])


def test_an_if_sid_naming_no_rule_is_only_a_warning_that_names_the_rule(manager):
    manager.put("etc/rules/dangling_rules.xml", textwrap.dedent("""\
        <group name="local,">
          <rule id="100990" level="10">
            <if_sid>999999</if_sid>
            <description>child of a rule that does not exist</description>
          </rule>
          <rule id="100991" level="10">
            <if_matched_sid>999998</if_matched_sid>
            <description>frequency child of a rule that does not exist</description>
          </rule>
        </group>
        """))
    rc, output = manager.test_config()
    assert rc == 0, output
    assert "(7617): Signature ID '999999' was not found and will be ignored in the 'if_sid' option of rule " \
           "'100990'." in output
    assert "(7619): Empty 'if_sid' value. Rule '100990' will be ignored." in output
    assert "(7620): Signature ID '999998' was not found. Invalid 'if_matched_sid'.Rule '100991' will be ignored." \
        in output
    assert len(dropped(output, ["100990", "100991"])) == 3
    assert dropped(output, ["100992"]) == []  # a rule of someone else's is not the caller's business


def test_two_blocks_of_one_program_pass_integratord_t(manager):
    manager.put("integrations/custom-opencti", "#!/bin/sh\nexit 0\n", owner="root", mode=0o750)
    block = ("<integration><name>custom-opencti</name><hook_url>http://127.0.0.1:9/graphql</hook_url>"
             "<api_key>t</api_key>{}<alert_format>json</alert_format></integration>")
    manager.add_to_ossec_conf(block.format("<group>ids,audit_command</group><level>5</level>")
                              + block.format("<rule_id>86601,80792</rule_id><level>3</level>"))
    for daemon in ("wazuh-integratord", "wazuh-analysisd"):
        rc, output = manager.test_config(daemon)
        assert rc == 0, output


def test_integratord_runs_a_custom_integration_with_the_documented_argv(manager):
    record = manager.home / "tmp" / "argv.json"
    manager.put("integrations/custom-argv", textwrap.dedent(f"""\
        #!/usr/bin/python3
        import json, sys
        files = {{n: open(sys.argv[n]).read() for n in (1, 5) if len(sys.argv) > n and sys.argv[n]}}
        with open({str(record)!r}, "w") as out:
            json.dump({{"argv": sys.argv, "files": files}}, out)
        """), owner="root", mode=0o750)
    manager.add_to_ossec_conf("<integration><name>custom-argv</name><hook_url>https://iris.example:9094/alerts/add"
                              "</hook_url><api_key>k3y</api_key><level>3</level><alert_format>json</alert_format>"
                              "<options>{\"a\": 1}</options><timeout>7</timeout><retries>2</retries></integration>")
    manager.put("logs/alerts/alerts.json", "", mode=0o640)  # analysisd's file; integratord reads it from its end
    manager.start("wazuh-integratord")
    manager.wait_for(lambda: "Enabling integration for: 'custom-argv'." in manager.log(), "integratord to start",
                     wazuh.START_TIMEOUT)
    alert = {"timestamp": "2026-12-07T10:00:00.000+0000", "rule": {"level": 5, "id": "5710", "groups": ["sshd"]},
             "agent": {"id": "000", "name": "m"}, "id": "1765101600.1", "location": "x"}
    with open(manager.home / "logs" / "alerts" / "alerts.json", "a", encoding="utf-8") as alerts:
        alerts.write(json.dumps(alert) + "\n")
    manager.wait_for(record.exists, "the integration's run", 60)
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    assert argv[0] == "integrations/custom-argv"
    assert re.fullmatch(r"/tmp/custom-argv-\d+--?\d+\.alert", argv[1]), argv
    assert argv[2:5] == ["k3y", "https://iris.example:9094/alerts/add", ""]
    assert re.fullmatch(r"/tmp/custom-argv-\d+--?\d+\.options", argv[5]), argv
    assert argv[6:] == ["7", "2", "> /dev/null 2>&1"]
    assert json.loads(seen["files"]["1"]) == alert
    assert seen["files"]["5"] == '{"a": 1}\n'
    # integratord removes its temp files once the program has exited
    manager.wait_for(lambda: not Path(argv[1]).exists() and not Path(argv[5]).exists(), "the temp files' removal", 30)
