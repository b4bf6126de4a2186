"""blueconic.py - the mock's "blueconic" dialect (docs/protocols/blueconic.md).

This file owns BlueConic's REST v2 bulk writes of groups and profiles as bulkops sees
them, mounted by mock_api.py under /blueconic, so a target url is
http://127.0.0.1:PORT/blueconic:

  PUT {url}/rest/v2/groups     [{"groupId", "groupTypeId", "identifier", "strategy",
                                 "properties": [{"id", "values": ["..."], "strategy"}]}]
  PUT {url}/rest/v2/profiles   the same with "profileId" and no group type

Strategies: UPSERT (create when missing), UPDATE (the default; a missing object is
SKIPPED), DELETE (a missing object is NOTFOUND).  A group whose groupTypeId is not a
known group type is UNKNOWN_GROUP_TYPE.  Property strategies: SET (an empty values
list removes the property), ADD, SET_IF_EMPTY, REMOVE, INCREMENT.  The answer is 200,
one element per entry, in shuffled order: {"state", "groupId", "groupTypeId",
"identifier"} (profiles: "profileId"), the identifier echoed as sent.  More than
max_entries entries: only the first max_entries are applied, and answered with 413.
Test hooks under /_control/blueconic: store (?resource=groups|profiles), applied.

Entries ask for outcomes through their properties: "_state": ["X"] answers state X
without applying the entry; "_invalid": ["msg"] adds validationErrors {"_invalid":
["msg"]} to the entry's element.  Neither is stored; with no values, neither asks for
anything (a SQL source has the column on every row).
Configuration (POST /_control/config {"blueconic": {...}}), all optional:
  bearer                   token required as "Authorization: Bearer <token>"
  oauth (false)            requests must carry a live token issued by the mock's OAuth
                           endpoint (oauth.py), which answers at {url}/rest/v2/oauth/token
  group_types              the known group types (default ["company", "household"])
  max_entries (1000)       entries applied per request; more get a 413
  shuffle (true)           answer elements in an order other than the entries'
  omit_identifiers ([])    answer no element for these entries (they are applied)
  extra_identifiers ([])   also answer a MODIFIED element for these, never sent

Assumed where the vendor is silent (kept here, in one place; see
docs/protocols/blueconic.md):
  * a request refused as a whole is {"code", "message", "errors": [{"field",
    "message"}]} (the vendor's ErrorRequestBean), 400 for a body that is not a JSON
    array of objects, an unknown strategy, or a value that is not a string;
  * a 401 is {"code": 401, "message": "Authentication failed (unauthorized)"};
  * a state is MODIFIED when the properties changed, else UNCHANGED;
  * an entry without an id is created with a new one by UPSERT;
  * entries are applied in array order, duplicates included, each answered.
"""

import collections
import json
import random
import re

from dialect_tests import (BAD_CLEAN, BASE, DELETE, UPSERT, bad_refusal_case,
                           bad_text_case, hex_of, quote, seed_header)
from mock_api import MockDialect, Response, json_response, shuffle_answer

NAME = "blueconic"

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    "target": {"resource": "profiles", "options": {"create_missing": True}},
    "crash": {"one_step": True, "options": {"batch_size": 1000}},
    "bench": {"resource": "groups", "options": {"group_type_id": "company"},
              "auth": {"type": "bearer", "token": "bench-token"}},
    "hostile": {
        "mock": {NAME: {"shuffle": False}},
        # the second row is no profile, with a validation error too
        "fail_sql": "CASE WHEN i = 2 THEN 'NOTFOUND' END AS _state, "
                    "CASE WHEN i = 2 THEN 'bad row' END AS _invalid",
        "fail_msg": r"^no such profile; _invalid: bad row$",
        "kinds": [
            {"kind": "entries", "method": "PUT", "path": "/rest/v2/profiles$", "status": 200,
             "step": "submit",
             "cases": [
                 {"label": "more elements than rows, one for a row not sent",
                  "edits": [{"at": "", "dup": 2}, {"at": "-1.identifier", "set": "999"}],
                  "final": {"rows": BASE}},
                 {"label": "fewer elements than rows",
                  "edits": [{"at": "", "drop": 1}],
                  "final": {"rows": ["succeeded", "failed", "unknown"],
                            "row_msg": {"3": r"the answer had no entry with this row's "
                                             r"identifier"}}},
                 {"label": "an unknown state",
                  "edits": [{"at": "0.state", "set": "WEIRD"}],
                  "final": {"rows": ["failed", "failed", "succeeded"],
                            "row_msg": {"1": r'unrecognized state "WEIRD"'}}},
                 {"label": "an identifier that is not UTF-8",
                  "edits": [{"at": "0.identifier", "set_bytes": hex_of(b"1\xff")}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r"no entry with this row's identifier"}}},
                 bad_text_case("1.validationErrors._invalid.0", "0.profileId",
                               "^no such profile; _invalid: %s$" % quote(BAD_CLEAN)),
                 {"label": "a NUL byte inside a string",
                  "edits": [{"at": "0.profileId", "set_bytes": hex_of(b"a\0b")}],
                  "persistent": r"malformed JSON in an HTTP 200 answer"},
                 {"label": "a 413 listing nothing",
                  "status": 413,
                  "edits": [{"at": "", "set": []}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"HTTP 413 for a request of 3 entries, within the limit"}},
                 bad_refusal_case(400, {"code": 400}, None, "message"),
                 {"label": "an answer that is not an array",
                  "edits": [{"at": "", "set": {"state": "CREATED"}}],
                  "persistent": r"the 200 answer is not a JSON array"},
             ]},
        ],
    },
}

STRATEGIES = ("UPSERT", "UPDATE", "DELETE")
PROPERTY_STRATEGIES = ("SET", "ADD", "SET_IF_EMPTY", "REMOVE", "INCREMENT")
DEFAULT_GROUP_TYPES = ("company", "household")
MAX_ENTRIES = 1000
SHUFFLE_SEED = 5
RESOURCES = {"groups": "groupId", "profiles": "profileId"}

# --bench: every entry's identifier, as sent.
BENCH_IDENT_RX = re.compile(rb'"identifier":"([0-9]+)"')


def bc_error(status, message, errors=()):
    return json_response(status, {"code": status, "message": message,
                                  "errors": [{"field": f, "message": m} for f, m in errors]})


class Refused(Exception):
    """A request refused as a whole: (field, message)."""


class Dialect(MockDialect):
    COUNTERS = ("requests", "bad_requests", "operations", "requests_413",
                "requests_with_duplicates", "max_entries_per_request")

    def reset(self):
        super().reset()
        self.store = {"groups": {}, "profiles": {}}   # resource -> {store key: object}
        self.applied = collections.Counter()           # (resource, store key) -> writes
        self.next_id = 1
        self.rng = random.Random(SHUFFLE_SEED)

    def routes(self):
        return [("PUT", "/rest/v2/{resource}", self.put)]

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/applied", self.ctl_applied)]

    def stats(self):
        out = super().stats()
        for state in ("CREATED", "MODIFIED", "UNCHANGED", "DELETED", "SKIPPED",
                      "NOTFOUND", "UNKNOWN_GROUP_TYPE", "forced"):
            out[state.lower()] = self.counts[state]
        out["groups"] = len(self.store["groups"])
        out["profiles"] = len(self.store["profiles"])
        return out

    # -- the endpoint -----------------------------------------------------------

    def put(self, req, params):
        resource = params["resource"]
        if resource not in RESOURCES:
            return bc_error(404, "no such resource: %s" % resource)
        refused = self.check_auth(req)
        if refused:
            self.counts["bad_requests"] += 1
            return refused
        if self.ctx.bench:
            self.counts["requests"] += 1
            return self.bench_answer(req)
        try:
            entries = self.entries(req, resource)
        except Refused as e:
            self.counts["bad_requests"] += 1
            return bc_error(400, "invalid request", [e.args])
        self.counts["requests"] += 1
        self.counts["operations"] += len(entries)
        self.counts["max_entries_per_request"] = max(self.counts["max_entries_per_request"],
                                                     len(entries))
        id_field = RESOURCES[resource]
        ids = [json.dumps([e.get(id_field), e.get("groupTypeId")]) for e in entries]
        if len(set(ids)) != len(ids):
            self.counts["requests_with_duplicates"] += 1
        limit = int(self.config.get("max_entries", MAX_ENTRIES))
        omit = set(self.config.get("omit_identifiers") or ())
        elements = []
        for entry in entries[:limit]:
            el = self.apply(resource, entry)
            if entry.get("identifier") not in omit:
                elements.append(el)
        for ident in self.config.get("extra_identifiers") or ():
            elements.append({"state": "MODIFIED", id_field: "ghost", "identifier": ident})
        shuffle_answer(self.rng, elements, self.config.get("shuffle", True))
        if len(entries) > limit:
            self.counts["requests_413"] += 1
            return json_response(413, elements)
        return json_response(200, elements)

    def check_auth(self, req):
        return self.refuse_credentials(
            req, lambda why: bc_error(401, "Authentication failed (unauthorized)"))

    @staticmethod
    def entries(req, resource):
        """The body's entries, checked; raises Refused."""
        try:
            entries = req.json()
        except ValueError:
            raise Refused("body", "not JSON") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise Refused("body", "must be a JSON array of objects")
        for n, e in enumerate(entries):
            if e.get("strategy", "UPDATE") not in STRATEGIES:
                raise Refused("[%d].strategy" % n, "unknown strategy %r" % e.get("strategy"))
            for k in ("identifier", RESOURCES[resource], "groupTypeId"):
                if e.get(k) is not None and not isinstance(e[k], str):
                    raise Refused("[%d].%s" % (n, k), "must be a string")
            props = e.get("properties", [])
            if not isinstance(props, list):
                raise Refused("[%d].properties" % n, "must be an array")
            for p in props:
                if not isinstance(p, dict) or not isinstance(p.get("id"), str):
                    raise Refused("[%d].properties" % n, "each needs a string id")
                if p.get("strategy", "SET") not in PROPERTY_STRATEGIES:
                    raise Refused("[%d].properties.%s" % (n, p["id"]), "unknown strategy")
                values = p.get("values", [])
                if not isinstance(values, list) or \
                        not all(isinstance(v, str) for v in values):
                    raise Refused("[%d].properties.%s" % (n, p["id"]),
                                  "values must be an array of strings")
        return entries

    # -- applying one entry -------------------------------------------------------

    def apply(self, resource, entry):
        """Apply one entry; its answer element."""
        id_field = RESOURCES[resource]
        oid = entry.get(id_field) or None
        el = {id_field: oid}
        if resource == "groups":
            el["groupTypeId"] = entry.get("groupTypeId")
        if entry.get("identifier") is not None:
            el["identifier"] = entry["identifier"]
        props = {p["id"]: p for p in entry.get("properties", [])}
        forced = props.pop("_state", None)
        invalid = props.pop("_invalid", None)
        if invalid is not None and invalid.get("values"):
            el["validationErrors"] = {"_invalid": invalid["values"]}
        if forced is not None and forced.get("values"):
            self.counts["forced"] += 1
            el["state"] = forced["values"][0]
            return el
        state = self.write(resource, entry, oid, props, el)
        self.counts[state] += 1
        el["state"] = state
        return el

    def write(self, resource, entry, oid, props, el):
        strategy = entry.get("strategy", "UPDATE")
        objects = self.store[resource]
        if resource == "groups":
            types = self.config.get("group_types", DEFAULT_GROUP_TYPES)
            if entry.get("groupTypeId") not in types:
                return "UNKNOWN_GROUP_TYPE"
            key = "%s/%s" % (entry["groupTypeId"], oid)
        else:
            key = oid
        old = objects.get(key) if oid is not None else None
        if strategy == "DELETE":
            if old is None:
                return "NOTFOUND"
            del objects[key]
            self.applied[(resource, key)] += 1
            return "DELETED"
        if old is None and strategy == "UPDATE":
            return "SKIPPED"
        if oid is None:
            oid = el[RESOURCES[resource]] = "new-%d" % self.new_id()
            key = oid if resource == "profiles" else "%s/%s" % (entry["groupTypeId"], oid)
        obj = {"properties": {}} if old is None else {"properties": dict(old["properties"])}
        for pid, p in props.items():
            apply_property(obj["properties"], pid, p.get("strategy", "SET"),
                           p.get("values", []))
        objects[key] = obj
        self.applied[(resource, key)] += 1
        if old is None:
            return "CREATED"
        return "UNCHANGED" if obj == old else "MODIFIED"

    def new_id(self):
        self.next_id += 1
        return self.next_id - 1

    def bench_answer(self, req):
        # No JSON parsing: at a million rows the mock must not be the bottleneck.
        idents = BENCH_IDENT_RX.findall(req.body)
        self.counts["operations"] += len(idents)
        self.counts["MODIFIED"] += len(idents)
        one = b'{"state":"MODIFIED","identifier":"%s"}'
        return Response(200, b"[" + b",".join(one % i for i in idents) + b"]")

    # -- control ---------------------------------------------------------------

    def ctl_store(self, req, params):
        resource = req.query.get("resource")
        if resource is not None:
            return json_response(200, self.store.get(resource, {}))
        return json_response(200, self.store)

    def ctl_applied(self, req, params):
        resource = req.query.get("resource")
        return json_response(200, {k: n for (r, k), n in self.applied.items()
                                   if resource in (None, r)})


def apply_property(props, pid, strategy, values):
    """One property rule on an object's {id: [values]}."""
    have = props.get(pid, [])
    if strategy == "SET":
        new = list(values)
    elif strategy == "ADD":
        new = have + [v for v in values if v not in have]
    elif strategy == "SET_IF_EMPTY":
        new = have or list(values)
    elif strategy == "REMOVE":
        new = [v for v in have if v not in values]
    else:   # INCREMENT
        total = sum(float(v) for v in have + values if _is_number(v))
        new = ["%g" % total]
    if new:
        props[pid] = new
    else:
        props.pop(pid, None)


def _is_number(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

BC_URL = "/blueconic/rest/v2/profiles"


def bc_call(mock, op, rows):
    """Entries as blueconic.c sends them: identifier = the job's row number."""
    entries = []
    for n, (rid, data) in enumerate(rows, 1):
        e = {"identifier": str(n), "profileId": rid,
             "strategy": "DELETE" if op == DELETE else "UPSERT"}
        if op != DELETE:
            e["properties"] = [{"id": k, "values": [v], "strategy": "SET"}
                               for k, v in data.items()]
        entries.append(e)
    return mock.call("PUT", BC_URL, entries)


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock."""
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert", seed_header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    yield "upsert-states", seed_header(UPSERT, 3), [bc_call(mock, UPSERT, [
        ok[0], ("r2", {"_state": "SKIPPED"}), ("r3", {"_invalid": "bad name"})])]
    yield "delete-one-missing", seed_header(DELETE, 2), [bc_call(mock, DELETE, [ok[0], ("r9", {})])]
    mock.control("/config", {"blueconic": {"omit_identifiers": ["2"],
                                           "extra_identifiers": ["7"]}})
    yield "upsert-odd-elements", seed_header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    mock.control("/reset")
    mock.control("/config", {"blueconic": {"max_entries": 2}})
    yield "upsert-too-many", seed_header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    mock.control("/reset")
    yield "bad-request", seed_header(UPSERT, 1), [mock.call("PUT", BC_URL, {"not": "an array"})]
