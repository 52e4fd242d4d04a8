"""Routing an alert to its IRIS customer, and its identity across cluster nodes (iris_forwarder/routing.py)."""
import pytest
from iris_forwarder import routing, settings

from tests.support.forwarder import ALERT_B


def options(**changes):
    return dict(settings.default_options(), **changes)


@pytest.mark.parametrize("pattern, text, expected", [
    ("web-*", "web-07", True), ("web-*", "web-", True), ("web-*", "xweb-07", False), ("*", "", True),
    ("a?c", "abc", True), ("a?c", "ac", False), ("[ab]x", "bx", True), ("[!ab]x", "bx", False),
    ("[a-c]*z", "cabz", True), ("[a-c]*z", "dz", False), ("lab-01", "lab-01", True), ("lab-01", "Lab-01", False),
    ("*-prod-*", "eu-prod-db", True), ("a*a*a*a*b", "a" * 200, False), ("[", "[", True), ("a[", "a[", True),
])
def test_glob_match(pattern, text, expected):
    assert routing.glob_match(pattern, text) is expected


ISSUE_EXAMPLE = {"customer_field": "agent.labels.customer",
                 "customer_routes": [{"field": "agent.name", "match": "web-*", "customer": "Globex"}],
                 "customers": {"Acme": 7, "Globex": 9}, "customer_id": 1}


@pytest.mark.parametrize("agent, expected", [
    ({"name": "db-01", "labels": {"customer": "Acme"}}, "Acme"),
    ({"name": "web-07"}, "Globex"),
    ({"name": "web-07", "labels": {"customer": "Acme"}}, "Acme"),  # the field is tried before the routes
    ({"name": "lab-01"}, None),
    ({"name": "web-08", "labels": {"customer": "  "}}, "Globex"),  # an empty label routes nothing
])
def test_the_issue_example_routes_each_alert(agent, expected):
    customer, why = routing.route(dict(ALERT_B, agent=agent), options(**ISSUE_EXAMPLE))
    assert customer == expected
    assert (why == routing.NO_ROUTE) is (expected is None)


def test_a_list_field_matches_when_any_element_does():
    rules = [{"field": "rule.groups", "match": "authentication_*", "customer": "Initech"}]
    assert routing.route(ALERT_B, options(customer_routes=rules))[0] == "Initech"  # authentication_failures
    assert routing.route(dict(ALERT_B, rule={"groups": ["web"]}), options(customer_routes=rules))[0] is None


def test_missing_or_non_text_fields_route_nothing_and_the_first_rule_wins():
    rules = [{"field": "agent.labels.site", "match": "*", "customer": "A"},
             {"field": "data.srcuser", "match": "1*", "customer": "B"},
             {"field": "decoder.name", "match": "sshd", "customer": "C"},
             {"field": "decoder.name", "match": "ssh*", "customer": "D"}]
    alert = dict(ALERT_B, data={"srcuser": {"nested": "x"}}, decoder={"name": "sshd"}, agent="not an object")
    assert routing.route(alert, options(customer_routes=rules, customer_field="agent.labels.customer"))[0] == "C"
    assert routing.route(dict(alert, data={"srcuser": 123}), options(customer_routes=rules))[0] == "B"
    assert routing.route(dict(alert, data={"srcuser": True}), options(customer_routes=rules))[0] == "C"


def test_field_value_walks_dotted_paths():
    alert = {"a": {"b": {"c": 3}}, "l": [1]}
    assert routing.field_value(alert, "a.b.c") == 3
    assert routing.field_value(alert, "a.x.c") is None
    assert routing.field_value(alert, "l.0") is None


@pytest.mark.parametrize("value", [
    {}, [{"field": "a"}], [{"field": "a", "match": "b", "customer": ""}],
    [{"field": "a", "match": "b", "customer": "c", "extra": 1}], ["x"],
])
def test_bad_routes_are_refused(value):
    with pytest.raises(ValueError):
        routing.routes(value)


@pytest.mark.parametrize("value", [[], {"Acme": 0}, {"Acme": True}, {"": 3}, {"Acme": "7"}])
def test_bad_customer_maps_are_refused(value):
    with pytest.raises(ValueError):
        routing.customer_ids(value)


def test_the_reference_is_unique_across_nodes_and_old_style_without_a_node():
    same_id = dict(ALERT_B, id="1796000000.4242")
    node_a = routing.source_ref(dict(same_id, manager={"name": "node-a"}), "1796000000.4242")
    node_b = routing.source_ref(dict(same_id, manager={"name": "node-b"}), "1796000000.4242")
    assert (node_a, node_b) == ("node-a:1796000000.4242", "node-b:1796000000.4242")
    assert routing.source_ref(same_id, "1796000000.4242") == "1796000000.4242"  # 0.1's form
    assert routing.source_ref(dict(same_id, manager={"name": "n"}), "wazuh-noid-abc") == "wazuh-noid-abc"
