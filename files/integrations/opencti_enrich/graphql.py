"""The one GraphQL request: the document, its variables, and the exchange over the shared core's transport.

The whole exchange (name lookup, connect, TLS, send, status line, headers, body) has ONE deadline,
the <timeout> integratord passes (socstack_core.http). Every failure raises LookupFailed with the
text of the error event (docs/opencti.md, "Errors").
"""
from socstack_core import http, jsonio

from .settings import USER_AGENT, LookupFailed, graphql_url, safe_url

__all__ = ["CHECK_QUERY", "GRAPHQL_DOCUMENTS", "LOOKUP_QUERY", "LookupFailed", "build_variables", "endpoint_for",
           "graphql_url", "post", "request_headers", "safe_url", "stix_patterns", "stix_quote"]

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
NESTED_FIRST = 5  # indicators / relationships fetched per observable


# The one GraphQL document this program sends. Filter keys follow OpenCTI >= 5.12 (FilterGroup,
# `hashes.SHA-256` with the hyphen); tests validate it against the 6.4 and 6.9 schemas.
LOOKUP_QUERY = """
query WazuhOpenctiLookup($indicatorFilters: FilterGroup, $observableFilters: FilterGroup, $first: Int, $nested: Int) {
  indicators(filters: $indicatorFilters, first: $first, orderBy: x_opencti_score, orderMode: desc) {
    edges { node { ...IndicatorDetails } }
  }
  stixCyberObservables(filters: $observableFilters, first: $first) {
    edges {
      node {
        id
        entity_type
        observable_value
        x_opencti_score
        x_opencti_description
        objectLabel { value }
        ... on StixFile { hashes { algorithm hash } }
        indicators(first: $nested) { edges { node { ...IndicatorDetails } } }
        relatedTo: stixCoreRelationships(
          first: $nested, toTypes: ["IPv4-Addr", "IPv6-Addr", "Domain-Name", "Hostname", "Url"]
        ) {
          edges { node { ...RelatedObservables } }
        }
        relatedFrom: stixCoreRelationships(
          first: $nested, fromTypes: ["IPv4-Addr", "IPv6-Addr", "Domain-Name", "Hostname", "Url"]
        ) {
          edges { node { ...RelatedObservables } }
        }
      }
    }
  }
}

fragment IndicatorDetails on Indicator {
  id
  name
  pattern
  pattern_type
  valid_from
  valid_until
  revoked
  confidence
  x_opencti_score
  x_opencti_detection
  indicator_types
  x_mitre_platforms
  created_at
  updated_at
  objectLabel { value }
  killChainPhases { kill_chain_name phase_name }
  createdBy { name }
  externalReferences(first: 5) { edges { node { source_name url external_id } } }
}

fragment RelatedObservables on StixCoreRelationship {
  relationship_type
  from { ...RelatedEnd }
  to { ...RelatedEnd }
}

fragment RelatedEnd on StixCyberObservable {
  id
  entity_type
  observable_value
  indicators(first: $nested) { edges { node { ...IndicatorDetails } } }
}
"""
# The preflight's document (--check-connection): the cheapest query that needs a valid token.
# Query.me: MeUser! and MeUser.name: String! (opencti-schema 6.4.5 and 6.9.8, type Query / type MeUser).
CHECK_QUERY = "query WazuhOpenctiCheck { me { name } }"
GRAPHQL_DOCUMENTS = (LOOKUP_QUERY, CHECK_QUERY)


def stix_quote(value):
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_patterns(obs):
    """The indicator patterns OpenCTI would hold for this observable."""
    if obs.kind == "sha256":
        return [f"[file:hashes.'SHA-256' = {stix_quote(v)}]" for v in dict.fromkeys((obs.value, obs.value.upper()))]
    if obs.kind == "domain":
        return [f"[domain-name:value = {stix_quote(obs.value)}]", f"[hostname:value = {stix_quote(obs.value)}]"]
    stix_type = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "url": "url"}[obs.kind]
    return [f"[{stix_type}:value = {stix_quote(obs.value)}]"]


def _filter(key, values):
    return {"key": [key], "values": values, "operator": "eq", "mode": "or"}


def build_variables(observables):
    """GraphQL variables looking up all observables: indicators by pattern, observables by value/hash."""
    patterns = [p for o in observables for p in stix_patterns(o)]
    values = [o.value for o in observables if o.kind != "sha256"]
    hashes = [h for o in observables if o.kind == "sha256" for h in dict.fromkeys((o.value, o.value.upper()))]
    observable_filters = []
    if values:
        observable_filters.append(_filter("value", values))
    if hashes:
        observable_filters.append(_filter("hashes.SHA-256", hashes))
    return {
        "indicatorFilters": {
            "mode": "and",
            "filters": [_filter("pattern_type", ["stix"]), _filter("pattern", patterns)],
            "filterGroups": [],
        },
        "observableFilters": {"mode": "or", "filters": observable_filters, "filterGroups": []},
        "first": min(50, max(10, 2 * len(observables))),
        "nested": NESTED_FIRST,
    }


def endpoint_for(hook_url, options):
    """The core Endpoint of the GraphQL URL; raises LookupFailed for a URL or a ca_file it cannot use."""
    url = graphql_url(hook_url)
    try:
        endpoint = http.Endpoint(url, ca_file=options["ca_file"] or None, verify_tls=options["verify_tls"])
    except ValueError as exc:
        raise LookupFailed(f"unsupported OpenCTI URL {safe_url(url)} ({exc})") from None
    if endpoint.scheme == "https":
        try:
            endpoint.tls_context()  # a bad ca_file is our set-up, reported before OpenCTI is contacted
        except http.TransportError as exc:
            raise LookupFailed(exc.reason) from None
    return endpoint


def _transport_failure(exc, endpoint, timeout):
    """The error-event text of a TransportError."""
    if exc.timeout:
        return f"OpenCTI API did not answer within {timeout} s"
    if exc.config:
        return exc.reason
    reason = exc.reason
    prefix = endpoint.url + ": "
    if reason.startswith(prefix):
        reason = reason[len(prefix):]
    if exc.tls_verify:
        return f"TLS error talking to the OpenCTI API: {exc.tls_verify}"
    if reason.startswith("answer larger than"):
        return f"OpenCTI API response is too large (over {MAX_RESPONSE_BYTES} bytes)"
    if "SSL" in reason or "TLS" in reason:
        return f"TLS error talking to the OpenCTI API: {reason}"
    return f"cannot reach the OpenCTI API: {reason}"


def request_headers(token):
    """The headers of every request to OpenCTI (the token as a Bearer token)."""
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def post(endpoint, token, variables, timeout, deadline=None):
    """POST the lookup; returns (HTTP status, body bytes). Raises LookupFailed."""
    body = jsonio.dumps({"query": LOOKUP_QUERY, "variables": variables}, ensure_ascii=True).encode("ascii")
    try:
        response = http.request(endpoint, "POST", "", headers=request_headers(token), body=body, timeout=timeout,
                                deadline=deadline, max_bytes=MAX_RESPONSE_BYTES)
    except http.TransportError as exc:
        raise LookupFailed(_transport_failure(exc, endpoint, timeout)) from None
    return response.status, response.body
