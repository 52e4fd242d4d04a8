"""Which IRIS customer an alert belongs to, and the alert's identity across the nodes of a cluster.

Routing (docs/forwarder.md, "Customers"): ``customer_field`` is tried first (a dotted path into the
alert whose value is an IRIS customer name, such as ``agent.labels.customer``), then the ordered
``customer_routes`` rules ``{"field", "match", "customer"}``; the first match wins. ``match`` is an
exact value or a shell-style glob (``*``, ``?``, ``[abc]``, ``[a-z]``, ``[!x]``); for a list field
(``rule.groups``) a rule matches when any element does. Nothing matched: ``customer_id``.

The name is kept in the spool item and turned into an id only when the alert is sent (from
``customers``, else one cached lookup), like the severity and status names, so routing needs no
network before the alert is safe on disk.

Identity: the Wazuh alert id is ``<epoch>.<byte offset in that node's alerts file>``, so two nodes of
a cluster can produce the same id for different alerts. ``source_ref`` is ``<manager.name>:<id>``,
unique across nodes; an alert without ``manager.name`` keeps the bare id, as version 0.1 sent it.
"""

NO_ROUTE = "no route matched; customer_id"


def field_value(alert, path):
    """The value at a dotted path in the alert, or None when any step is missing or not an object."""
    value = alert
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _class_end(pattern, start):
    """Index just past the ']' closing the class that opens at start, or -1."""
    index = start + 1
    if index < len(pattern) and pattern[index] == "!":
        index += 1
    if index < len(pattern) and pattern[index] == "]":
        index += 1
    while index < len(pattern) and pattern[index] != "]":
        index += 1
    return index + 1 if index < len(pattern) else -1


def _class_matches(spec, char):
    negate = spec[:1] == "!"
    spec = spec[1:] if negate else spec
    found = False
    index = 0
    while index < len(spec):
        if index + 2 < len(spec) and spec[index + 1] == "-":
            found = found or spec[index] <= char <= spec[index + 2]
            index += 3
        else:
            found = found or spec[index] == char
            index += 1
    return found != negate


def _one(pattern, index, char):
    """(matches, width of the pattern element at index) for one text character."""
    element = pattern[index]
    if element == "?":
        return True, 1
    if element == "[":
        end = _class_end(pattern, index)
        if end != -1:
            return _class_matches(pattern[index + 1:end - 1], char), end - index
    return element == char, 1


def glob_match(pattern, text):
    """Shell-style match of the whole text, case-sensitive, in O(len(pattern) x len(text)) at worst.

    The usual two-pointer wildcard walk: on a mismatch it goes back to the last '*' only, so there is no
    exponential backtracking whatever the pattern. (fnmatch would compile a regular expression, and
    importing re costs start-up time on every run.)
    """
    p = t = 0
    star = mark = -1
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
            continue
        if p < len(pattern):
            ok, width = _one(pattern, p, text[t])
            if ok:
                p += width
                t += 1
                continue
        if star == -1:
            return False
        p = star + 1
        mark += 1
        t = mark
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _candidates(value):
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items
            if isinstance(item, (str, int, float)) and not isinstance(item, bool) and str(item) != ""]


def route(alert, options):
    """(customer name or None, why) for an alert: customer_field, then customer_routes, else None."""
    field = options["customer_field"]
    if field:
        value = field_value(alert, field)
        if isinstance(value, str) and value.strip():
            return value.strip(), f"{field} = {_clip(value.strip())!r}"
    for number, rule in enumerate(options["customer_routes"], 1):
        for candidate in _candidates(field_value(alert, rule["field"])):
            if glob_match(rule["match"], candidate):
                matched = f"{rule['field']} {rule['match']!r} matched {_clip(candidate)!r}"
                return rule["customer"], f"route {number} ({matched})"
    return None, NO_ROUTE


def _clip(text, limit=200):
    """An agent-controlled value bounded for a log line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def source_ref(alert, wazuh_ref):
    """The alert's reference in IRIS: unique across cluster nodes (see the module docstring).

    ``%`` and ``:`` in the node name are percent-encoded, so the first ``:`` always ends the node name:
    node ``a:1`` with id ``2`` (``a%3A1:2``) and node ``a`` with id ``1:2`` (``a:1:2``) stay apart. A name
    without them is unchanged (references of earlier versions still match).
    """
    node = field_value(alert, "manager.name")
    if isinstance(node, str) and node.strip() and not wazuh_ref.startswith("wazuh-noid-"):
        node = node.strip().replace("%", "%25").replace(":", "%3A")
        return f"{node}:{wazuh_ref}"
    return wazuh_ref


# ------------------------------------------------------------------------------------ options
def routes(value):
    """Check the customer_routes option: a list of {"field", "match", "customer"} objects."""
    if not isinstance(value, list):
        raise ValueError('must be a list of {"field": ..., "match": ..., "customer": ...} objects')
    checked = []
    for number, rule in enumerate(value, 1):
        if not isinstance(rule, dict) or set(rule) != {"field", "match", "customer"} or not all(
                isinstance(rule[key], str) and rule[key].strip() for key in ("field", "match", "customer")):
            raise ValueError(f'rule {number} must be {{"field": ..., "match": ..., "customer": ...}} with '
                             "non-empty strings")
        checked.append({key: rule[key].strip() for key in ("field", "match", "customer")})
    return checked


def customer_ids(value):
    """Check the customers option: an object of customer name -> IRIS customer id."""
    if not isinstance(value, dict) or not all(
            isinstance(name, str) and name.strip() and isinstance(ident, int) and not isinstance(ident, bool)
            and ident >= 1 for name, ident in value.items()):
        raise ValueError('must be an object of customer name -> id, such as {"Acme": 7}')
    return {name.strip(): ident for name, ident in value.items()}
