"""Stdlib emulator of the OpenCTI GraphQL API, as far as the Wazuh enrichment program uses it.

Copied behaviour (facts from /work/shared/reference/opencti.md, section numbers in brackets):
- `POST <base>/graphql`, `Authorization: Bearer <token>`, JSON body `{"query", "variables"}` [§1].
- Errors come in `errors[]`; a document the emulator cannot run is answered like a GraphQL
  validation failure (HTTP 400, `extensions.code = GRAPHQL_VALIDATION_FAILED`) [§1].
- FilterGroup: `mode`, `filters` and `filterGroups` are all required, else "Incorrect filters
  format"; a Filter defaults to `operator = eq`, `mode = or`; only the key's part before the first
  dot is checked against the attributes ("incorrect filter keys not existing in any schema
  definition"); `hashes.<name>` must be one of the hash mappings, else "Schema definition named
  [hashes] is missing mapping for attribute [<name>]" (what `hashes.SHA256` gets) [§2].
- `Query.indicators(filters, first, orderBy, orderMode)` and `Query.stixCyberObservables(types,
  filters, first)` returning connections `{edges {node}, pageInfo}` [§3].
- `StixCyberObservable` fields, `indicators(first)` through `based-on` relationships from
  indicators, `stixCoreRelationships(first, toTypes, fromTypes, relationship_type)` [§3, §6];
  `hashes` only on StixFile (inline fragment) [§3]; entity types and GraphQL type names [§4].
- Indicator fields with `confidence`, `x_opencti_score` and `valid_until` allowed to be null [§5].
- `Query.me: MeUser!` with `MeUser.name: String!` (opencti-schema 6.4.5 and 6.9.8, `type Query`,
  `type MeUser`): the preflight's query; `user_name` is the name answered.

Assumptions (not in the reference): a wrong token is answered with HTTP 200 and an
`AUTH_REQUIRED` error in `errors[]` ("You must be logged in to do this.", the answer OpenCTI issue
#1653 shows for `me` without a session); filter operators other than `eq` are refused by the emulator.

The emulator runs the GraphQL document it receives with a small executor (operation with
variables, aliases, arguments, fragments and inline fragments); it does not validate against the
schema (the tests do that with graphql-core).

Fault injection, each copying a real behaviour:
- `fault = "graphql_errors"`: HTTP 200, `errors[]` with `error_message` and `extensions.code`
  FUNCTIONAL_ERROR, `data: null`: how OpenCTI reports business errors [§1].
- `fault = "http_401"`, `"http_403"`: that status with `error_message` as a text/plain body, as a
  reverse proxy or gateway in front of OpenCTI refuses a request (assumption: the reference has no
  capture of such an answer; OpenCTI itself answers a bad token as above);
- `fault = "http_500"`, `"not_json"` (an HTML page, as a proxy's error page), `"null_data"`,
  `"null_fields"` (the resolvers' fields null, as GraphQL nulls a failed field): the answers a client must
  check before reading `data` [§1: "Always check `errors` before reading `data`"].
- `answer_hook(document) -> document | bytes`: rewrites the answer before it is sent, for answers of the
  wrong shape (a number where a string belongs, `1e999`, `NaN`); nullable fields and their types are
  those of the schema snapshots [§3, §5, `opencti-schema/`].
- `delay` seconds before answering.
- `tls_cert`, `tls_key`: serve HTTPS with that certificate (handshake in the connection's thread; a
  client that refuses the certificate just gets the connection closed).

Transport (`transport`), the HTTP framings a client meets in front of OpenCTI. The reference has no
capture of OpenCTI's own transport; these copy HTTP/1.1 (RFC 9112) framing as issue 13 reports it
from proxies in front of the GraphQL server (HTTP/1.0 and `Connection: close` answers):
- "keep-alive" (default): HTTP/1.1, Content-Length, the connection left open even when the client
  asked for `Connection: close` (a server that ignores it; the client must stop at Content-Length);
- "close": HTTP/1.1 with `Connection: close` and no Content-Length: the body ends when the server closes;
- "http1.0": an `HTTP/1.0` status line, no Content-Length, closed after the body;
- "chunked": HTTP/1.1 `Transfer-Encoding: chunked`, the body in several chunks (one with an extension);
- "trickle": Content-Length framing, but every byte (status line and headers included) sent on its own,
  `trickle_interval` seconds apart; `trickle_stopped` is set when the server stops (the client went
  away, or everything was sent), with `trickle_sent` bytes out of `trickle_total`.

    emu = OpenCTIEmulator(token="T" * 36).start()
    ind = emu.add_indicator("C2 server", "[ipv4-addr:value = '45.155.205.233']", x_opencti_score=80)
    obs = emu.add_observable("IPv4-Addr", "45.155.205.233")
    emu.add_relationship("based-on", ind["id"], obs["id"])
    emu.graphql_url, emu.request_count, emu.requests, emu.stop()
"""

import argparse
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# entity_type -> GraphQL type name [§4]
OBSERVABLE_TYPES = {
    "IPv4-Addr": "IPv4Addr",
    "IPv6-Addr": "IPv6Addr",
    "Domain-Name": "DomainName",
    "Hostname": "Hostname",
    "Url": "Url",
    "StixFile": "StixFile",
}
_OBSERVABLE_INTERFACES = {"BasicObject", "StixObject", "StixCoreObject", "StixCyberObservable"}
_DOMAIN_INTERFACES = {"BasicObject", "StixObject", "StixCoreObject", "StixDomainObject"}
IMPLEMENTS = {
    **{name: _OBSERVABLE_INTERFACES | {name} for name in OBSERVABLE_TYPES.values()},
    "StixFile": _OBSERVABLE_INTERFACES | {"StixFile", "HashedObservable"},
    "Indicator": _DOMAIN_INTERFACES | {"Indicator"},
    "Organization": _DOMAIN_INTERFACES | {"Organization", "Identity"},
    "StixCoreRelationship": {"StixCoreRelationship", "BasicRelationship", "StixRelationship"},
}
HASH_MAPPINGS = {"MD5", "SHA-1", "SHA-256", "SHA-512", "SHA3-256", "SHA3-512", "SSDEEP", "SDHASH", "TLSH", "LZJD"}
FILTER_KEYS = {"value", "hashes", "pattern", "pattern_type", "entity_type", "revoked", "name", "x_opencti_score"}


class GraphQLRequestError(Exception):
    """Answered as `errors[]`; `status` is the HTTP status used."""

    def __init__(self, message, code, status=200):
        super().__init__(message)
        self.code = code
        self.status = status


def _invalid(message):
    return GraphQLRequestError(message, "GRAPHQL_VALIDATION_FAILED", 400)


# --------------------------------------------------------------------------- GraphQL document parsing

_TOKEN = re.compile(
    r"""(?P<skip>[\s,]+|\#[^\n]*)
      |(?P<spread>\.\.\.)
      |(?P<punct>[{}()\[\]:!$=@|&])
      |(?P<string>"(?:[^"\\]|\\.)*")
      |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<name>[_A-Za-z][_0-9A-Za-z]*)""",
    re.VERBOSE,
)


class _Var:
    """A `$name` reference inside an argument value."""

    def __init__(self, name):
        self.name = name


class _Parser:
    """Recursive-descent reader for the executable subset of GraphQL the emulator supports."""

    def __init__(self, text):
        self.tokens = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                raise _invalid(f"Syntax Error: unexpected character {text[pos]!r}")
            pos = match.end()
            if match.lastgroup != "skip":
                self.tokens.append((match.lastgroup, match.group(0)))
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected=None):
        if self.pos >= len(self.tokens):
            raise _invalid("Syntax Error: unexpected end of document")
        kind, text = self.tokens[self.pos]
        if expected is not None and text != expected:
            raise _invalid(f"Syntax Error: expected {expected!r}, found {text!r}")
        self.pos += 1
        return kind, text

    def name(self):
        kind, text = self.take()
        if kind != "name":
            raise _invalid(f"Syntax Error: expected a name, found {text!r}")
        return text

    def document(self):
        operations, fragments = [], {}
        while self.peek() is not None:
            if self.peek() == "{":
                operations.append({"variables": {}, "selections": self.selection_set()})
                continue
            keyword = self.name()
            if keyword == "fragment":
                name = self.name()
                self.take("on")
                fragments[name] = (self.name(), self.selection_set())
            elif keyword == "query":
                if self.peek() not in ("(", "{"):
                    self.name()
                variables = self.variable_definitions() if self.peek() == "(" else {}
                operations.append({"variables": variables, "selections": self.selection_set()})
            else:
                raise _invalid(f"emulator supports queries only, not {keyword!r}")
        if len(operations) != 1:
            raise _invalid("the document must hold exactly one operation")
        return operations[0], fragments

    def variable_definitions(self):
        defaults = {}
        self.take("(")
        while self.peek() != ")":
            self.take("$")
            name = self.name()
            self.take(":")
            while self.peek() not in ("$", ")", "="):
                self.take()
            defaults[name] = None
            if self.peek() == "=":
                self.take("=")
                defaults[name] = self.value()
        self.take(")")
        return defaults

    def selection_set(self):
        selections = []
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "...":
                self.take("...")
                if self.peek() == "on":
                    self.take("on")
                    selections.append(("inline", self.name(), self.selection_set()))
                elif self.peek() == "{":
                    selections.append(("inline", None, self.selection_set()))
                else:
                    selections.append(("spread", self.name()))
                continue
            alias = name = self.name()
            if self.peek() == ":":
                self.take(":")
                name = self.name()
            arguments = {}
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    arg = self.name()
                    self.take(":")
                    arguments[arg] = self.value()
                self.take(")")
            children = self.selection_set() if self.peek() == "{" else None
            selections.append(("field", alias, name, arguments, children))
        self.take("}")
        return selections

    def value(self):
        kind, text = self.take()
        if text == "$":
            return _Var(self.name())
        if text == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if text == "{":
            fields = {}
            while self.peek() != "}":
                key = self.name()
                self.take(":")
                fields[key] = self.value()
            self.take("}")
            return fields
        if kind == "string":
            return json.loads(text)
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        return {"true": True, "false": False, "null": None}.get(text, text)


def _substitute(value, variables):
    if isinstance(value, _Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- the emulator


class OpenCTIEmulator:
    """In-memory OpenCTI with indicators, observables and relationships, served over HTTP."""

    def __init__(self, token="opencti-test-token", host="127.0.0.1", port=0, *, tls_cert=None, tls_key=None):
        if host != "127.0.0.1":
            raise ValueError("the emulator binds to 127.0.0.1 only")
        self.token = token
        self.user_name = "wazuh-enrichment"
        self.ssl_context = None
        if tls_cert or tls_key:
            import ssl  # only for HTTPS emulators

            self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_context.load_cert_chain(tls_cert, tls_key)
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.indicators = {}
        self.observables = {}
        self.relationships = []
        self.requests = []  # one dict per request: {"path", "authorized", "body"}
        self.request_log = None  # optional JSON-lines file that also gets every request (CLI --request-log)
        self.fault = None
        self.error_message = "Something went wrong"
        self.answer_hook = None
        self.delay = 0.0
        self.transport = "keep-alive"
        self.trickle_interval = 0.02
        self.trickle_sent = 0
        self.trickle_total = 0
        self.trickle_stopped = threading.Event()
        self._wake = threading.Event()  # set by reset() and stop(): ends a delay early
        self._server = None
        self._thread = None
        self._clock = itertools.count(1)

    # -- lifecycle

    def start(self):
        """Serve in a daemon thread; returns self."""
        self._server = _Server((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self):
        """Forget all data, requests and faults (one emulator can serve a whole test module)."""
        with self.lock:
            self.indicators.clear()
            self.observables.clear()
            self.relationships.clear()
            self.requests.clear()
            self.fault = None
            self.error_message = "Something went wrong"
            self.answer_hook = None
            self.delay = 0.0
            self.transport = "keep-alive"
            self.trickle_interval = 0.02
            self.trickle_sent = self.trickle_total = 0
            self.trickle_stopped.clear()
            self._wake.set()
            self._wake = threading.Event()

    @property
    def url(self):
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    @property
    def graphql_url(self):
        return self.url + "/graphql"

    @property
    def request_count(self):
        with self.lock:
            return len(self.requests)

    def record(self, request):
        """Keep one received request (and append it to the request log when one is set)."""
        with self.lock:
            self.requests.append(request)
            if self.request_log:
                with open(self.request_log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(request) + "\n")

    # -- data

    def _stamp(self):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1700000000 + next(self._clock))) + ".000Z"

    def add_indicator(self, name, pattern, **fields):
        """Store an Indicator; `fields` override its attributes, plus labels=[names],
        kill_chain_phases=[(chain, phase)], created_by=name, external_references=[(source, url)]."""
        now = self._stamp()
        indicator = {
            "__typename": "Indicator",
            "id": str(uuid.uuid4()),
            "standard_id": f"indicator--{uuid.uuid4()}",
            "entity_type": "Indicator",
            "name": name,
            "pattern": pattern,
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": now,
            "valid_until": None,
            "revoked": False,
            "confidence": None,
            "x_opencti_score": None,
            "x_opencti_detection": False,
            "x_opencti_main_observable_type": None,
            "indicator_types": [],
            "x_mitre_platforms": [],
            "description": None,
            "created_at": now,
            "updated_at": now,
            "created": now,
            "modified": now,
            "labels": [],
            "kill_chain_phases": [],
            "created_by": None,
            "external_references": [],
        }
        indicator.update(fields)
        with self.lock:
            self.indicators[indicator["id"]] = indicator
        return indicator

    def add_observable(self, entity_type, value=None, *, hashes=None, name=None, **fields):
        """Store an observable of an entity type from OBSERVABLE_TYPES (StixFile takes hashes/name)."""
        observable = {
            "__typename": OBSERVABLE_TYPES[entity_type],
            "id": str(uuid.uuid4()),
            "standard_id": f"{entity_type.lower()}--{uuid.uuid4()}",
            "entity_type": entity_type,
            "x_opencti_score": None,
            "x_opencti_description": None,
            "created_at": self._stamp(),
            "labels": [],
        }
        if entity_type == "StixFile":
            observable.update(hashes=dict(hashes or {}), name=name)
        else:
            observable["value"] = value
        observable.update(fields)
        with self.lock:
            self.observables[observable["id"]] = observable
        return observable

    def add_relationship(self, relationship_type, from_id, to_id):
        """Store a StixCoreRelationship (`based-on` ties an indicator to its observable) [§6]."""
        relationship = {
            "__typename": "StixCoreRelationship",
            "id": str(uuid.uuid4()),
            "entity_type": "stix-core-relationship",
            "relationship_type": relationship_type,
            "from_id": from_id,
            "to_id": to_id,
        }
        with self.lock:
            self.relationships.append(relationship)
        return relationship

    def load_sample_data(self):
        """A small realistic intel set: IP, IPv6, domain, URL and file indicators with observables."""
        c2 = self.add_indicator(
            "Cobalt Strike C2 45.155.205.233",
            "[ipv4-addr:value = '45.155.205.233']",
            confidence=85, x_opencti_score=90, x_opencti_detection=True,
            indicator_types=["malicious-activity"], labels=["c2", "cobalt-strike"],
            kill_chain_phases=[("mitre-attack", "command-and-control")], created_by="CERT Example",
            external_references=[("abuse.ch", "https://threatfox.abuse.ch/ioc/1234/")],
        )  # fmt: skip
        ip = self.add_observable("IPv4-Addr", "45.155.205.233", x_opencti_score=90, labels=["c2"])
        self.add_relationship("based-on", c2["id"], ip["id"])
        ip6 = self.add_observable("IPv6-Addr", "2a03:2880:f12f:83:face:b00c:0:25de", x_opencti_score=40)
        ip6_ind = self.add_indicator(
            "Scanner 2a03:2880:f12f:83:face:b00c:0:25de", "[ipv6-addr:value = '2a03:2880:f12f:83:face:b00c:0:25de']",
            confidence=40, x_opencti_score=40,
        )  # fmt: skip
        self.add_relationship("based-on", ip6_ind["id"], ip6["id"])
        domain = self.add_observable("Domain-Name", "update-check.example.net", x_opencti_score=60)
        self.add_relationship("resolves-to", domain["id"], ip["id"])
        url_ind = self.add_indicator(
            "Payload URL", "[url:value = 'http://update-check.example.net/stage2.ps1']",
            confidence=70, x_opencti_score=75, x_opencti_detection=True, valid_until="2099-01-01T00:00:00.000Z",
        )  # fmt: skip
        url = self.add_observable("Url", "http://update-check.example.net/stage2.ps1")
        self.add_relationship("based-on", url_ind["id"], url["id"])
        sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        file_ind = self.add_indicator(
            "Emotet loader", f"[file:hashes.'SHA-256' = '{sha}']", confidence=None, x_opencti_score=None,
        )  # fmt: skip
        stix_file = self.add_observable("StixFile", hashes={"SHA-256": sha, "MD5": "0" * 32}, name="loader.dll")
        self.add_relationship("based-on", file_ind["id"], stix_file["id"])

    # -- GraphQL execution

    def execute(self, query, variables):
        """Run one GraphQL document; returns the `data` object."""
        operation, fragments = _Parser(query).document()
        values = dict(operation["variables"])
        values.update(variables or {})
        with self.lock:
            return _Execution(self, fragments, values).select(None, "Query", operation["selections"])

    def _entity(self, entity_id):
        return self.indicators.get(entity_id) or self.observables.get(entity_id)


class _Execution:
    """Resolves a selection set against the emulator's objects."""

    def __init__(self, emulator, fragments, variables):
        self.emu = emulator
        self.fragments = fragments
        self.variables = variables

    def select(self, obj, typename, selections):
        result = {}
        for selection in selections:
            if selection[0] == "field":
                _unused, alias, name, arguments, children = selection
                value = self.resolve(obj, typename, name, _substitute(arguments, self.variables))
                result[alias] = self.complete(value, children, f"{typename}.{name}")
            elif selection[0] == "spread":
                if selection[1] not in self.fragments:
                    raise _invalid(f'Unknown fragment "{selection[1]}".')
                condition, children = self.fragments[selection[1]]
                if condition == typename or condition in IMPLEMENTS.get(typename, ()):
                    result.update(self.select(obj, typename, children))
            elif selection[1] is None or selection[1] == typename or selection[1] in IMPLEMENTS.get(typename, ()):
                result.update(self.select(obj, typename, selection[2]))
        return result

    def complete(self, value, children, where):
        if value is None:
            return None
        if isinstance(value, list):
            return [self.complete(v, children, where) for v in value]
        if isinstance(value, dict):
            if children is None:
                raise _invalid(f'Field "{where}" must have a selection of subfields.')
            return self.select(value, value["__typename"], children)
        return value

    def resolve(self, obj, typename, name, args):
        if name == "__typename":
            return typename
        if obj is None:
            return self.resolve_query(name, args)
        computed = getattr(self, f"field_{name}", None)
        if computed is not None and (name not in obj or name in ("hashes",)):
            return computed(obj, args)
        if name in obj and not name.startswith("__"):
            return obj[name]
        raise _invalid(f'Cannot query field "{name}" on type "{typename}".')

    # -- Query root

    def resolve_query(self, name, args):
        if name == "indicators":
            found = self.filtered(self.emu.indicators.values(), args.get("filters"))
            order_by = args.get("orderBy")
            if order_by:
                present = [i for i in found if i.get(order_by) is not None]
                missing = [i for i in found if i.get(order_by) is None]
                present.sort(key=lambda i: i[order_by], reverse=args.get("orderMode") == "desc")
                found = present + missing
            return connection("Indicator", found, args.get("first"))
        if name == "stixCyberObservables":
            found = self.filtered(self.emu.observables.values(), args.get("filters"))
            if args.get("types"):
                found = [o for o in found if o["entity_type"] in args["types"]]
            return connection("StixCyberObservable", found, args.get("first"))
        if name == "me":
            return {"__typename": "MeUser", "id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f", "entity_type": "User",
                    "name": self.emu.user_name}
        raise _invalid(f'Cannot query field "{name}" on type "Query".')

    def filtered(self, entities, group):
        if group is None:
            return list(entities)
        check_filter_group(group)
        return [e for e in entities if group_matches(e, group)]

    # -- computed fields

    def field_observable_value(self, obj, _args):
        if obj["entity_type"] == "StixFile":
            return obj["hashes"].get("SHA-256") or obj.get("name") or next(iter(obj["hashes"].values()), "")
        return obj["value"]

    def field_hashes(self, obj, _args):
        if obj.get("entity_type") != "StixFile":
            raise _invalid(f'Cannot query field "hashes" on type "{obj["__typename"]}".')
        return [{"__typename": "Hash", "algorithm": k, "hash": v} for k, v in obj["hashes"].items()]

    def field_objectLabel(self, obj, _args):
        return [{"__typename": "Label", "id": f"label-{v}", "value": v, "color": "#ff0000"} for v in obj["labels"]]

    def field_killChainPhases(self, obj, _args):
        return [
            {"__typename": "KillChainPhase", "kill_chain_name": chain, "phase_name": phase}
            for chain, phase in obj["kill_chain_phases"]
        ]

    def field_createdBy(self, obj, _args):
        if not obj.get("created_by"):
            return None
        return {"__typename": "Organization", "id": f"identity-{obj['created_by']}", "name": obj["created_by"]}

    def field_externalReferences(self, obj, args):
        refs = [
            {"__typename": "ExternalReference", "source_name": source, "url": url, "external_id": None}
            for source, url in obj["external_references"]
        ]
        return connection("ExternalReference", refs, args.get("first"))

    def field_indicators(self, obj, args):
        found = [
            self.emu.indicators[r["from_id"]]
            for r in self.emu.relationships
            if r["relationship_type"] == "based-on" and r["to_id"] == obj["id"] and r["from_id"] in self.emu.indicators
        ]
        return connection("Indicator", found, args.get("first"))

    def field_stixCoreRelationships(self, obj, args):
        found = []
        for rel in self.emu.relationships:
            if obj["id"] not in (rel["from_id"], rel["to_id"]):
                continue
            source, target = self.emu._entity(rel["from_id"]), self.emu._entity(rel["to_id"])
            if args.get("toTypes") and (target is None or target["entity_type"] not in args["toTypes"]):
                continue
            if args.get("fromTypes") and (source is None or source["entity_type"] not in args["fromTypes"]):
                continue
            if args.get("relationship_type") and rel["relationship_type"] != args["relationship_type"]:
                continue
            found.append(rel)
        return connection("StixCoreRelationship", found, args.get("first"))

    def field_from(self, obj, _args):
        return self.emu._entity(obj["from_id"])

    def field_to(self, obj, _args):
        return self.emu._entity(obj["to_id"])


def connection(node_type, items, first):
    """A Relay connection over `items`, cut to `first`."""
    items = list(items)
    shown = items[:first] if isinstance(first, int) else items
    return {
        "__typename": f"{node_type}Connection",
        "edges": [{"__typename": f"{node_type}Edge", "cursor": str(i), "node": n} for i, n in enumerate(shown)],
        "pageInfo": {
            "__typename": "PageInfo",
            "startCursor": "0" if shown else None,
            "endCursor": str(len(shown) - 1) if shown else None,
            "hasNextPage": len(items) > len(shown),
            "hasPreviousPage": False,
            "globalCount": len(items),
        },
    }


# --------------------------------------------------------------------------- filters [§2]


def check_filter_group(group):
    """Reject what OpenCTI rejects: malformed groups, unknown keys, unknown hash mappings."""
    if not isinstance(group, dict) or any(k not in group for k in ("mode", "filters", "filterGroups")):
        raise GraphQLRequestError("Incorrect filters format", "UNSUPPORTED_ERROR")
    if group["mode"] not in ("and", "or"):
        raise _invalid(f"Value {group['mode']!r} does not exist in \"FilterMode\" enum.")
    for item in group["filters"]:
        keys = item.get("key") if isinstance(item.get("key"), list) else [item.get("key")]
        for key in keys:
            head, _unused, tail = str(key).partition(".")
            if head not in FILTER_KEYS:
                raise GraphQLRequestError(
                    "incorrect filter keys not existing in any schema definition", "UNSUPPORTED_ERROR"
                )
            if head == "hashes" and tail not in HASH_MAPPINGS:
                raise GraphQLRequestError(
                    f"Schema definition named [hashes] is missing mapping for attribute [{tail}]", "FUNCTIONAL_ERROR"
                )
        if (item.get("operator") or "eq") != "eq":
            message = f"emulator supports operator eq only, got {item['operator']}"
            raise GraphQLRequestError(message, "UNSUPPORTED_ERROR")
    for sub in group["filterGroups"]:
        check_filter_group(sub)


def _attribute(entity, key):
    head, _unused, tail = key.partition(".")
    value = entity.get("hashes", {}).get(tail) if head == "hashes" else entity.get(head)
    return None if value is None else _text(value)


def _text(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def filter_matches(entity, item):
    """`eq` on every value, combined with the filter's mode (default `or`)."""
    keys = item["key"] if isinstance(item["key"], list) else [item["key"]]
    hits = [_attribute(entity, k) == _text(v) for k in keys for v in item["values"]]
    return all(hits) if (item.get("mode") or "or") == "and" else any(hits)


def group_matches(entity, group):
    results = [filter_matches(entity, f) for f in group["filters"]]
    results += [group_matches(entity, g) for g in group["filterGroups"]]
    if not results:
        return True
    return all(results) if group["mode"] == "and" else any(results)


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server; with the emulator's TLS context, the handshake runs in the connection's thread."""

    def finish_request(self, request, client_address):
        context = self.emulator.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            request = context.wrap_socket(request, server_side=True)
        except OSError:  # the client refused the certificate (ssl.SSLError is an OSError)
            return
        try:
            super().finish_request(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """Quiet when a client hangs up; anything else is reported."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenCTI-emulator"

    def log_message(self, *args):
        """Quiet: tests read `emulator.requests` instead."""

    def _send(self, status, body, content_type="application/json"):
        """Answer in the emulator's transport mode (see the module docstring)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        emu = self.server.emulator
        transport = emu.transport if self.command == "POST" else "keep-alive"
        reason = self.responses.get(status, ("",))[0]
        head = [f"Content-Type: {content_type}", f"Server: {self.server_version}"]
        if transport == "http1.0":
            lines = [f"HTTP/1.0 {status} {reason}", *head]
        elif transport == "close":
            lines = [f"HTTP/1.1 {status} {reason}", *head, "Connection: close"]
        elif transport == "chunked":
            lines = [f"HTTP/1.1 {status} {reason}", *head, "Transfer-Encoding: chunked"]
            third = max(1, len(raw) // 3)
            pieces = [raw[:third], raw[third:2 * third], raw[2 * third:]]
            raw = b"".join(b"%x%s\r\n%s\r\n" % (len(piece), b";ext=1" if index == 1 else b"", piece)
                           for index, piece in enumerate(pieces) if piece) + b"0\r\n\r\n"
        else:  # keep-alive and trickle: Content-Length framing
            lines = [f"HTTP/1.1 {status} {reason}", *head, f"Content-Length: {len(raw)}"]
            if transport == "keep-alive":
                lines.append("Connection: keep-alive")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw
        # keep-alive ignores the client's "Connection: close" and waits for another request
        self.close_connection = transport != "keep-alive"
        try:
            if transport == "trickle":
                self._trickle(emu, data)
            else:
                self.wfile.write(data)
                self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (timeout tests)

    def _trickle(self, emu, data):
        """Send data one byte at a time; trickle_stopped tells when the server stopped, and why."""
        emu.trickle_total = len(data)
        emu.trickle_sent = 0
        try:
            for index in range(len(data)):
                self.connection.sendall(data[index:index + 1])
                emu.trickle_sent = index + 1
                time.sleep(emu.trickle_interval)
        finally:
            emu.trickle_stopped.set()

    def do_GET(self):
        self._send(404, {"errors": [{"message": "Not found"}]})

    def do_POST(self):
        emu = self.server.emulator
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        authorized = self.headers.get("Authorization") == f"Bearer {emu.token}"
        with emu.lock:
            emu.record({"path": self.path, "authorized": authorized, "body": body})
            fault, delay, wake = emu.fault, emu.delay, emu._wake
        if delay:
            wake.wait(delay)
        if self.path.split("?")[0] != "/graphql":
            return self._send(404, {"errors": [{"message": "Not found"}]})
        if not authorized:
            error = {"message": "You must be logged in to do this.", "extensions": {"code": "AUTH_REQUIRED"}}
            return self._send(200, {"errors": [error], "data": None})
        if fault in ("http_401", "http_403"):
            return self._send(int(fault[5:]), emu.error_message.encode(), "text/plain")
        if fault == "http_500":
            return self._send(500, b"Internal Server Error", "text/plain")
        if fault == "not_json":
            return self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
        if fault == "graphql_errors":
            error = {"message": emu.error_message, "extensions": {"code": "FUNCTIONAL_ERROR"}}
            return self._send(200, {"errors": [error], "data": None})
        if fault == "null_data":
            return self._send(200, {"data": None})
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._send(400, {"errors": [{"message": "Must provide query string."}]})
        try:
            data = emu.execute(body["query"], body.get("variables"))
        except GraphQLRequestError as exc:
            answer = {"errors": [{"message": str(exc), "extensions": {"code": exc.code}}]}
            if exc.status == 200:
                answer["data"] = None
            return self._send(exc.status, answer)
        if fault == "null_fields":
            data = {key: None for key in data}
        answer = {"data": data}
        if emu.answer_hook is not None:
            answer = emu.answer_hook(answer)
        return self._send(200, answer)


def main(argv=None):
    """Serve the sample data set until SIGTERM/SIGINT (token from OPENCTI_TOKEN):
    `python3 tests/emulators/opencti.py --port 8080 [--request-log FILE]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"], help="emulators bind to 127.0.0.1 only")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--request-log", help="JSON-lines file that gets every request received")
    options = parser.parse_args(argv)
    emulator = OpenCTIEmulator(os.environ.get("OPENCTI_TOKEN", "opencti-test-token"), options.host, options.port)
    emulator.request_log = options.request_log
    emulator.load_sample_data()
    emulator.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    print(f"OpenCTI emulator on {emulator.graphql_url}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
