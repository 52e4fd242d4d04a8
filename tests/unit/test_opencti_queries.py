"""Every GraphQL document opencti_enrich can send is valid on OpenCTI 6.4.5 and 6.9.8.

Uses the platform's own printed schemas from ../shared/reference/opencti-schema (skipped when that
folder is absent) and graphql-core from the dev venv.
"""

import pytest
from opencti_enrich import graphql as oc
from opencti_enrich.addresses import Observable

graphql = pytest.importorskip("graphql", reason="graphql-core is in requirements/dev.txt")
from graphql.execution.values import get_variable_values  # noqa: E402

SCHEMA_VERSIONS = ("6.4.5", "6.9.8")

# Observable mixes covering every kind the program builds filters and patterns for.
OBSERVABLE_SETS = {
    "ip-only": [Observable("ipv4", "45.155.205.233")],
    "hash-only": [Observable("sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")],
    "everything": [
        Observable("ipv4", "45.155.205.233"),
        Observable("ipv6", "2a03:2880:f12f:83:face:b00c:0:25de"),
        Observable("domain", "update-check.example.net"),
        Observable("url", "http://update-check.example.net/it's"),
        Observable("sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ],
}


# each schema is parsed once (seconds each), also under pytest-xdist: one worker runs the module
pytestmark = pytest.mark.xdist_group("opencti_queries")


@pytest.fixture(scope="module", params=SCHEMA_VERSIONS)
def schema(request, shared_reference):
    path = shared_reference / "opencti-schema" / f"opencti-{request.param}.full.graphql"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return graphql.build_schema(path.read_text(encoding="utf-8"))


def test_the_program_declares_its_documents():
    assert oc.GRAPHQL_DOCUMENTS == (oc.LOOKUP_QUERY, oc.CHECK_QUERY)


@pytest.mark.parametrize("document", oc.GRAPHQL_DOCUMENTS, ids=["lookup", "check"])
def test_every_document_validates(schema, document):
    errors = graphql.validate(schema, graphql.parse(document))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("name", sorted(OBSERVABLE_SETS))
def test_variables_coerce_to_the_declared_types(schema, name):
    document = graphql.parse(oc.LOOKUP_QUERY)
    operation = next(d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode))
    result = get_variable_values(schema, operation.variable_definitions, oc.build_variables(OBSERVABLE_SETS[name]))
    assert not isinstance(result, list), [e.message for e in result]


def test_validation_really_checks(schema):
    """Control: the same machinery rejects the pre-5.12 filter type, an upper-case FilterMode and a field
    MeUser does not have."""
    old = "query { stixCyberObservables(filters: [{key: value, values: [\"x\"]}]) { edges { node { id } } } }"
    bad_enum = "query { indicators(filters: {mode: AND, filters: [], filterGroups: []}) { edges { node { id } } } }"
    assert graphql.validate(schema, graphql.parse(old))
    assert graphql.validate(schema, graphql.parse(bad_enum))
    assert graphql.validate(schema, graphql.parse("query { me { username } }"))


def test_hash_filter_key_is_the_one_opencti_maps():
    variables = oc.build_variables(OBSERVABLE_SETS["hash-only"])
    keys = [f["key"] for f in variables["observableFilters"]["filters"]]
    assert keys == [["hashes.SHA-256"]]
    assert "hashes.SHA256" not in str(variables)
    patterns = variables["indicatorFilters"]["filters"][1]["values"]
    assert "[file:hashes.'SHA-256' = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08']" in patterns


def test_filter_groups_carry_all_three_fields():
    variables = oc.build_variables(OBSERVABLE_SETS["everything"])
    for name in ("indicatorFilters", "observableFilters"):
        assert set(variables[name]) == {"mode", "filters", "filterGroups"}
    patterns = variables["indicatorFilters"]["filters"][1]["values"]
    assert "[url:value = 'http://update-check.example.net/it\\'s']" in patterns  # STIX quote escaped
