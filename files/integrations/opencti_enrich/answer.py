"""OpenCTI's answer, read field by field with its type checked, shared out per observable.

A null (or an absent field) is "unknown" wherever the schema allows it, and is skipped. Any other
value of the wrong type (a number where a string belongs, edges that are not a list, a score of
1e999 or NaN) makes the whole answer unusable: read_answer raises LookupFailed naming the field, for
example ``OpenCTI API response is malformed: indicators.edges[0].node.pattern is a number, expected
a string``, and the run sends that as its one error event.
"""
import math

from socstack_core import jsonio

from .graphql import LookupFailed, stix_patterns, stix_quote
from .observables import clip

MAX_ERROR_TEXT = 300


class Malformed(Exception):
    """A field of the answer has the wrong type; the message names it."""


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _wrong(path, value, expected):
    return Malformed(f"{path} is {_kind(value)}, expected {expected}")


_EXPECTED = {str: "a string", bool: "true or false", dict: "an object", list: "a list"}


def _field(obj, key, path, kind):
    """obj[key] when it is null, absent or of type kind; Malformed otherwise."""
    value = obj.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise _wrong(f"{path}.{key}", value, _EXPECTED[kind])


def get_str(obj, key, path):
    return _field(obj, key, path, str)


def get_bool(obj, key, path):
    return _field(obj, key, path, bool)


def get_dict(obj, key, path):
    return _field(obj, key, path, dict)


def get_list(obj, key, path):
    """A list field (null: empty)."""
    return _field(obj, key, path, list) or []


def get_int(obj, key, path):
    """An integer field; integral finite floats are taken as integers, anything else is refused."""
    value = obj.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Malformed(f"{path}.{key} is not a finite number")
        if value.is_integer():
            return int(value)
        raise Malformed(f"{path}.{key} is {value!r}, expected an integer")
    raise _wrong(f"{path}.{key}", value, "an integer")


def items(obj, key, path, kind):
    """(path, item) for the non-null items of a list field whose items must be of type kind."""
    found = []
    for index, item in enumerate(get_list(obj, key, path)):
        if item is None:
            continue
        if not isinstance(item, kind):
            raise _wrong(f"{path}.{key}[{index}]", item, _EXPECTED[kind])
        found.append((f"{path}.{key}[{index}]", item))
    return found


def objects(obj, key, path):
    """(path, item) for the non-null items of a list of objects."""
    return items(obj, key, path, dict)


def strings(obj, key, path, limit):
    """The non-null items of a list of strings, clipped, at most limit."""
    return [clip(item) for _path, item in items(obj, key, path, str)][:limit]


def nodes(obj, key, path):
    """(path, node) of a connection's non-null nodes."""
    connection = get_dict(obj, key, path)
    if connection is None:
        return []
    where = f"{path}.{key}"
    return [(f"{edge_path}.node", node) for edge_path, edge in objects(connection, "edges", where)
            for node in [get_dict(edge, "node", edge_path)] if node is not None]


def labels(node, path):
    """Label values of an object."""
    return [clip(value) for label_path, label in objects(node, "objectLabel", path)
            for value in [get_str(label, "value", label_path)] if value][:20]


# --------------------------------------------------------------------------------------- records
def indicator_record(node, path):
    """The indicator fields kept in events and in the cache; None when it has no id."""
    if not get_str(node, "id", path):
        return None
    record = {key: clip(get_str(node, key, path))
              for key in ("id", "name", "pattern", "pattern_type", "valid_from", "valid_until", "created_at",
                          "updated_at")}
    created_by = get_dict(node, "createdBy", path)
    phases = []
    for phase_path, phase in objects(node, "killChainPhases", path):
        chain, name = get_str(phase, "kill_chain_name", phase_path), get_str(phase, "phase_name", phase_path)
        phases.append(clip(f"{chain}:{name}"))
    references = []
    for ref_path, ref in nodes(node, "externalReferences", path):
        url = get_str(ref, "url", ref_path)
        if url:
            references.append(clip(url))
    record.update(
        revoked=get_bool(node, "revoked", path) is True,
        x_opencti_detection=get_bool(node, "x_opencti_detection", path) is True,
        confidence=get_int(node, "confidence", path),
        x_opencti_score=get_int(node, "x_opencti_score", path),
        indicator_types=strings(node, "indicator_types", path, 10),
        x_mitre_platforms=strings(node, "x_mitre_platforms", path, 10),
        labels=labels(node, path),
        kill_chain_phases=phases[:10],
        created_by=clip(get_str(created_by, "name", f"{path}.createdBy")) if created_by is not None else None,
        references=references[:5],
    )
    return record


def indicator_records(obj, key, path):
    """Indicator records of a connection."""
    return [record for node_path, node in nodes(obj, key, path)
            for record in [indicator_record(node, node_path)] if record]


def related_records(node, path):
    """Observables linked to node by a relationship, with the indicators they carry."""
    related = []
    own_id = get_str(node, "id", path)
    for field in ("relatedTo", "relatedFrom"):
        for rel_path, rel in nodes(node, field, path):
            kind = get_str(rel, "relationship_type", rel_path)
            other = other_path = None
            for end in ("from", "to"):
                candidate = get_dict(rel, end, rel_path)
                if candidate is None:
                    continue
                candidate_id = get_str(candidate, "id", f"{rel_path}.{end}")
                if other is None and candidate_id and candidate_id != own_id:
                    other, other_path = candidate, f"{rel_path}.{end}"
            if other is None:
                continue
            inds = indicator_records(other, "indicators", other_path)
            if inds:
                related.append({
                    "id": clip(get_str(other, "id", other_path)),
                    "entity_type": clip(get_str(other, "entity_type", other_path)),
                    "observable_value": clip(get_str(other, "observable_value", other_path)),
                    "relationship_type": clip(kind),
                    "indicators": inds,
                })
    return related


def observable_record(node, path):
    """The observable fields kept in events and in the cache; None when it has no id."""
    if not get_str(node, "id", path):
        return None
    hashes = []
    for hash_path, item in objects(node, "hashes", path):
        value = get_str(item, "hash", hash_path)
        if value is not None:
            hashes.append(value.lower())
    return {
        "id": clip(get_str(node, "id", path)),
        "entity_type": clip(get_str(node, "entity_type", path)),
        "observable_value": clip(get_str(node, "observable_value", path)),
        "x_opencti_score": get_int(node, "x_opencti_score", path),
        "x_opencti_description": clip(get_str(node, "x_opencti_description", path)),
        "labels": labels(node, path),
        "hashes": hashes,
        "indicators": indicator_records(node, "indicators", path),
        "related": related_records(node, path),
    }


def attribute_results(data, observables):
    """Share the answer's data out per observable, so each one can be cached on its own. Raises Malformed."""
    results = {o: {"indicators": [], "observables": []} for o in observables}
    patterns = {o: set(stix_patterns(o)) for o in observables}
    for record in indicator_records(data, "indicators", "data"):
        pattern = record.get("pattern") or ""
        exact = [o for o in observables if pattern in patterns[o]]
        owners = exact or [o for o in observables if stix_quote(o.value).lower() in pattern.lower()] or observables
        for obs in owners:
            results[obs]["indicators"].append(dict(record, exact=bool(exact)))
    for node_path, node in nodes(data, "stixCyberObservables", "data"):
        record = observable_record(node, node_path)
        if record is None:
            continue
        value = (record.get("observable_value") or "").lower()
        owners = [o for o in observables if o.value.lower() == value or o.value in record["hashes"]]
        for obs in owners or observables:
            results[obs]["observables"].append(record)
    return results


# -------------------------------------------------------------------------------------- document
def _first_error(errors):
    """'message (CODE)' of the first GraphQL error, as the server wrote it."""
    first = errors[0] if isinstance(errors[0], dict) else {}
    message = first.get("message")
    message = message if isinstance(message, str) and message else "unknown error"
    extensions = first.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return clip(message, MAX_ERROR_TEXT) + (f" ({clip(code, 60)})" if isinstance(code, str) and code else "")


def read_document(status, raw):
    """The data object of a GraphQL answer (its two lists present); raises LookupFailed otherwise."""
    try:
        document = jsonio.loads(raw)
    except (ValueError, RecursionError):
        document = None
    errors = document.get("errors") if isinstance(document, dict) else None
    first_error = _first_error(errors) if isinstance(errors, list) and errors else ""
    if status != 200:
        raise LookupFailed(f"OpenCTI API answered HTTP {status}" + (f": {first_error}" if first_error else ""))
    if document is None:
        raise LookupFailed("OpenCTI API response is not JSON")
    if not isinstance(document, dict):
        raise LookupFailed(f"OpenCTI API response is malformed: the answer is {_kind(document)}, expected an object")
    if errors is not None and not isinstance(errors, list):
        raise LookupFailed(f"OpenCTI API response is malformed: errors is {_kind(errors)}, expected a list")
    if first_error:
        raise LookupFailed(f"OpenCTI API returned an error: {first_error}")
    data = document.get("data")
    if data is None:
        raise LookupFailed("OpenCTI API response has no data")
    if not isinstance(data, dict):
        raise LookupFailed(f"OpenCTI API response is malformed: data is {_kind(data)}, expected an object")
    for field in ("indicators", "stixCyberObservables"):
        value = data.get(field)
        if value is None:
            raise LookupFailed(f"OpenCTI API response is incomplete: {field} is null")
        if not isinstance(value, dict):
            raise LookupFailed(f"OpenCTI API response is malformed: data.{field} is {_kind(value)}, "
                               "expected an object")
    return data


def read_answer(status, raw, observables):
    """{observable: result} from one answer; raises LookupFailed (one error event) for anything unusable."""
    data = read_document(status, raw)
    try:
        return attribute_results(data, observables)
    except Malformed as exc:
        raise LookupFailed(f"OpenCTI API response is malformed: {exc}") from None
