"""sap_fsm.py - the mock's "sap_fsm" dialect (docs/protocols/sap_fsm.md).

This file owns the SAP Field Service bulk endpoints by external id as bulkops sees
them, mounted by mock_api.py under /sap_fsm, so a target url is
http://127.0.0.1:PORT/sap_fsm:

  PATCH  {url}/api/data/v4/<Resource>/externalId/bulk?dtos=<Resource>.<n>[&forceUpdate=true]
  PUT    (the same; replaces whole objects)
  DELETE {url}/api/data/v4/<Resource>/externalId/bulk[?forceDelete=true]

Every answer to a valid request is 207 with one element per item, in shuffled order:
success {"status": 200|201, "location", "<resource lower-case>": {object}}, failure
{"status": 404|409|422, "externalId", "ex": {"error", "message", "values", "id"}}.
Test hooks under /_control/sap_fsm: store (?resource=R), applied (?resource=R).

Rows ask for failures through their data: "_fail": msg fails that item with 422 (a
null value asks for nothing, since a SQL source has the column on every row).  An
item whose "lastChanged" differs from the stored object's fails with 409 unless
forceUpdate / forceDelete is set.
Configuration (POST /_control/config {"sap_fsm": {...}}), all optional:
  bearer                   token required as "Authorization: Bearer <token>"
  headers ({})             exact values required for headers, e.g. {"X-Account-ID": "7"}
  shuffle (true)           answer elements in an order other than the items'
  omit_external_ids ([])   answer no element for these items (they are applied)
  extra_external_ids ([])  also answer a success element for these, never sent
  max_items (none)         a request of more items is refused whole with 413
  too_large_external_ids ([])  a request carrying one of these is refused with 413

Assumed where the vendor is silent (kept here, in one place; see
docs/protocols/sap_fsm.md):
  * X-Client-ID, X-Client-Version, X-Account-ID and X-Company-ID are required on every
    request: a missing one is a 400;
  * an error of the whole request is {"error": "CA-..", "message": "..."};
  * error codes: CA-41 lastChanged conflict (409), CA-20 validation (422), CA-15 not
    found (404), CA-10 bad request, CA-16 unauthorized;
  * dtos is "<DTO>.<integer>" entries separated by ";", one of them the path's
    resource; DELETE needs none;
  * a 413 applies nothing and is {"error": "CA-10", "message": "..."};
  * ids are 32 upper-case hex digits; lastChanged is epoch milliseconds, one more than
    the last one given out, on every write;
  * an upsert whose lastChanged names no stored object creates it;
  * items are applied in array order, duplicates included, and each gets an element.
"""

import collections
import json
import random
import re

from dialect_tests import (BASE, DELETE, UPSERT, bad_refusal_case, bad_text_case, hex_of,
                           seed_header)
from mock_api import MockDialect, Response, json_body, json_response, shuffle_answer

NAME = "sap_fsm"

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    # the store is keyed by resource: one of its own per case
    "target": {"resource": "Crash{name}",
               "options": {"dto_version": 43, "account_id": "1", "company_id": "1"}},
    "crash": {"one_step": True},
    # as fuzz_seeds() below sends it
    "fuzz": {"resource": "Contact"},
    "bench": {"resource": "Activity", "auth": {"type": "bearer", "token": "bench-token"}},
    "hostile": {
        # its answer's elements name the resource: the edits below say "activity"
        "resource": "Activity",
        "mock": {NAME: {"shuffle": False}},
        "kinds": [
            {"kind": "207", "method": "PATCH", "path": "/externalId/bulk", "status": 207,
             "step": "submit",
             "cases": [
                 {"label": "more elements than rows, one for a key not sent",
                  "edits": [{"at": "", "dup": 2},
                            {"at": "-1.externalId", "set": "stranger"}],
                  "final": {"rows": BASE}},
                 {"label": "fewer elements than rows",
                  "edits": [{"at": "", "drop": 1}],
                  "final": {"rows": ["succeeded", "failed", "unknown"],
                            "row_msg": {"3": r"the 207 answer had no element for this "
                                             r"externalId"}}},
                 {"label": "an unknown element status",
                  "edits": [{"at": "0.status", "set": "WEIRD"}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r'the answer gave this row status "WEIRD"'}}},
                 {"label": "an externalId that is not UTF-8",
                  "edits": [{"at": "0.activity.externalId", "set_bytes": hex_of(b"h\xff")}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r"no element for this externalId"}}},
                 bad_text_case("1.ex.message", "0.activity.id"),
                 {"label": "a NUL byte inside a string",
                  "edits": [{"at": "0.activity.id", "set_bytes": hex_of(b"a\0b")}],
                  "persistent": r"malformed JSON in a 207 answer"},
                 bad_refusal_case(400, {}, "error", "message"),
                 {"label": "a 207 body that is not an array",
                  "edits": [{"at": "", "set": {"status": 207}}],
                  "persistent": r"the 207 answer is not a JSON array"},
             ]},
        ],
    },
}

REQUIRED_HEADERS = ("X-Client-ID", "X-Client-Version", "X-Account-ID", "X-Company-ID")
DTOS_RX = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\.(\d+)$")


def dtos_resources(dtos):
    """The DTO names of a dtos parameter, or None when it is malformed."""
    found = [DTOS_RX.match(d) for d in dtos.split(";")]
    return None if not all(found) else [m.group(1) for m in found]
FIRST_LAST_CHANGED = 1550571215725
SHUFFLE_SEED = 4

# --bench: every item's externalId, as the raw JSON string it was sent as.
BENCH_EXT_RX = re.compile(rb'"externalId":("(?:[^"\\]|\\.)*")')


def fsm_error(status, code, message):
    return json_response(status, {"error": code, "message": message})


def failure(status, external_id, code, message, seq):
    el = {"status": status,
          "ex": {"error": code, "message": message, "values": [], "id": "ex-%d" % seq}}
    if external_id is not None:
        el["externalId"] = external_id
    return el


class Dialect(MockDialect):
    COUNTERS = ("requests", "bad_requests", "operations", "created", "updated", "deleted",
                "failures", "conflicts", "requests_with_duplicates", "too_large")

    def reset(self):
        super().reset()
        self.store = {}                         # (resource, externalId) -> object
        self.applied = collections.Counter()    # (resource, externalId) -> writes
        self.next_id = 1
        self.last_changed = FIRST_LAST_CHANGED
        self.rng = random.Random(SHUFFLE_SEED)

    def routes(self):
        path = "/api/data/v4/{resource}/externalId/bulk"
        return [("PATCH", path, self.upsert), ("PUT", path, self.upsert),
                ("DELETE", path, self.delete)]

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/applied", self.ctl_applied)]

    def stats(self):
        return dict(super().stats(), store_size=len(self.store))

    # -- checks common to every request --------------------------------------

    def refuse(self, req, params, needs_dtos):
        """The error Response for a request that is refused as a whole, or None."""
        cfg = self.config
        refused = self.refuse_credentials(
            req, lambda why: fsm_error(401, "CA-16", "invalid or missing access token"))
        if refused:
            return refused
        for name in REQUIRED_HEADERS:
            if not req.headers.get(name):
                return fsm_error(400, "CA-10", "missing header %s" % name)
        for name, value in (cfg.get("headers") or {}).items():
            if req.headers.get(name) != value:
                return fsm_error(400, "CA-10", "unexpected value for header %s" % name)
        if needs_dtos:
            names = dtos_resources(req.query.get("dtos", ""))
            if names is None or params["resource"] not in names or \
                    len(set(names)) != len(names):
                return fsm_error(400, "CA-10", "query parameter dtos must name %s.<version>"
                                 % params["resource"])
        return None

    def too_large(self, items):
        """Whether the configuration makes this request a 413."""
        cfg = self.config
        big = set(cfg.get("too_large_external_ids") or ())
        return (cfg.get("max_items") is not None and len(items) > cfg["max_items"]) or \
            any(self.external_id(i) in big for i in items)

    @staticmethod
    def items(req):
        """The body's items, or None when it is not a non-empty JSON array."""
        return json_body(req, list) or None

    def serve(self, req, params, needs_dtos, apply):
        refused = self.refuse(req, params, needs_dtos)
        if refused:
            self.counts["bad_requests"] += 1
            return refused
        self.counts["requests"] += 1
        if self.ctx.bench:
            return self.bench_answer(req, params)
        items = self.items(req)
        if items is None:
            self.counts["bad_requests"] += 1
            return fsm_error(400, "CA-10", "body must be a non-empty JSON array")
        if self.too_large(items):
            self.counts["too_large"] += 1
            return fsm_error(413, "CA-10", "request entity too large")
        self.counts["operations"] += len(items)
        ids = [i.get("externalId") for i in items if isinstance(i, dict)]
        if len(set(map(json.dumps, ids))) != len(ids):
            self.counts["requests_with_duplicates"] += 1
        resource = params["resource"]
        omit = set(self.config.get("omit_external_ids") or ())
        elements = []
        for n, item in enumerate(items):
            el = self.item(resource, item, n, apply)
            if el.get("status", 0) >= 400:
                self.counts["failures"] += 1
            if self.external_id(item) not in omit:
                elements.append(el)
        for ext in self.config.get("extra_external_ids") or ():
            elements.append(self.success(200, resource, {"id": "F" * 32, "externalId": ext,
                                                         "lastChanged": 0}))
        shuffle_answer(self.rng, elements, self.config.get("shuffle", True))
        return json_response(207, elements)

    @staticmethod
    def external_id(item):
        return item.get("externalId") if isinstance(item, dict) else None

    def item(self, resource, item, n, apply):
        """Validate one item and apply it; its answer element."""
        ext = self.external_id(item)
        if not isinstance(ext, str) or ext == "":
            return failure(422, ext, "CA-20", "externalId must be a non-empty string", n)
        if item.get("_fail") is not None:
            return failure(422, ext, "CA-20", str(item["_fail"]), n)
        return apply(resource, ext, item, n)

    # -- the endpoints ---------------------------------------------------------

    def upsert(self, req, params):
        force = req.query.get("forceUpdate", "").lower() == "true"
        put = req.method == "PUT"

        def apply(resource, ext, item, n):
            key = (resource, ext)
            old = self.store.get(key)
            if old is not None and self.conflicts(old, item, force):
                return self.conflict(old, item, n)
            fields = {k: v for k, v in item.items() if k not in ("_fail", "lastChanged")}
            obj = {} if put or old is None else dict(old)
            obj.update(fields)
            obj["id"] = old["id"] if old else self.new_id()
            obj["lastChanged"] = self.tick()
            self.store[key] = obj
            self.applied[key] += 1
            self.counts["updated" if old else "created"] += 1
            return self.success(200 if old else 201, resource, obj)

        return self.serve(req, params, True, apply)

    def delete(self, req, params):
        force = req.query.get("forceDelete", "").lower() == "true"

        def apply(resource, ext, item, n):
            key = (resource, ext)
            old = self.store.get(key)
            if old is None:
                return failure(404, ext, "CA-15", "no %s with externalId %s"
                               % (resource, ext), n)
            if self.conflicts(old, item, force):
                return self.conflict(old, item, n)
            del self.store[key]
            self.applied[key] += 1
            self.counts["deleted"] += 1
            return self.success(200, resource, {"id": old["id"], "externalId": ext,
                                                "lastChanged": old["lastChanged"]})

        return self.serve(req, params, False, apply)

    @staticmethod
    def conflicts(old, item, force):
        return not force and "lastChanged" in item and \
            item["lastChanged"] != old["lastChanged"]

    def conflict(self, old, item, n):
        self.counts["conflicts"] += 1
        return failure(409, item["externalId"], "CA-41",
                       "object was changed: lastChanged is %s, not %s"
                       % (old["lastChanged"], item["lastChanged"]), n)

    def new_id(self):
        rid = "%032X" % self.next_id
        self.next_id += 1
        return rid

    def tick(self):
        self.last_changed += 1
        return self.last_changed

    @staticmethod
    def success(status, resource, obj):
        return {"status": status,
                "location": "/api/data/v4/%s/%s" % (resource, obj["id"]),
                resource.lower(): dict(obj)}

    def bench_answer(self, req, params):
        # No JSON parsing: at a million rows the mock must not be the bottleneck.
        ext_ids = BENCH_EXT_RX.findall(req.body)
        self.counts["operations"] += len(ext_ids)
        self.counts["updated"] += len(ext_ids)
        member = params["resource"].lower().encode()
        one = b'{"status":200,"' + member + b'":{"id":"B","externalId":%s}}'
        return Response(207, b"[" + b",".join(one % e for e in ext_ids) + b"]")

    # -- control ---------------------------------------------------------------

    def _select(self, mapping, req):
        resource = req.query.get("resource")
        return {e: v for (r, e), v in mapping.items() if resource in (None, r)}

    def ctl_store(self, req, params):
        return json_response(200, self._select(self.store, req))

    def ctl_applied(self, req, params):
        return json_response(200, self._select(self.applied, req))


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

FSM_URL = "/sap_fsm/api/data/v4/Contact/externalId/bulk"
FSM_HEADERS = {"X-Client-ID": "bulkops", "X-Client-Version": "1.0",
               "X-Account-ID": "7", "X-Company-ID": "9"}


def fsm_call(mock, op, rows, force=False, headers=FSM_HEADERS):
    if op == DELETE:
        path = FSM_URL + ("?forceDelete=true" if force else "")
        items = [{"externalId": rid} for rid, _ in rows]
    else:
        path = FSM_URL + "?dtos=Contact.43" + ("&forceUpdate=true" if force else "")
        items = [dict(data, externalId=rid) for rid, data in rows]
    return mock.call("DELETE" if op == DELETE else "PATCH", path, items, headers)


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock."""
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert-created", seed_header(UPSERT, 3), [fsm_call(mock, UPSERT, ok)]
    yield "upsert-updated-one-fails", seed_header(UPSERT, 3), [
        fsm_call(mock, UPSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]])]
    yield "upsert-conflict", seed_header(UPSERT, 1), [
        fsm_call(mock, UPSERT, [("r1", {"name": "x", "lastChanged": 1})])]
    yield "delete-one-missing", seed_header(DELETE, 2), [fsm_call(mock, DELETE, [ok[0], ("r9", {})])]
    # the same key twice in a batch: the second goes in a request of its own
    yield "upsert-duplicate-key", seed_header(UPSERT, 2), [
        fsm_call(mock, UPSERT, ok[:1]), fsm_call(mock, UPSERT, ok[:1])]
    mock.control("/config", {"sap_fsm": {"omit_external_ids": ["r2"],
                                         "extra_external_ids": ["r7"]}})
    yield "upsert-odd-elements", seed_header(UPSERT, 3), [fsm_call(mock, UPSERT, ok)]
    # a 413 for more than one item: halves (4, 2), then one at a time
    mock.control("/reset")
    mock.control("/config", {"sap_fsm": {"max_items": 1}})
    four = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3, 4)]
    yield "upsert-413-split", seed_header(UPSERT, 4), [
        fsm_call(mock, UPSERT, four), fsm_call(mock, UPSERT, four[:2]),
        fsm_call(mock, UPSERT, four[:1]), fsm_call(mock, UPSERT, four[1:2]),
        fsm_call(mock, UPSERT, four[2:3]), fsm_call(mock, UPSERT, four[3:])]
    # a row too large alone fails by itself; the next goes on
    mock.control("/config", {"sap_fsm": {"max_items": None,
                                         "too_large_external_ids": ["r1"]}})
    yield "upsert-413-alone", seed_header(UPSERT, 2), [
        fsm_call(mock, UPSERT, ok[:2]), fsm_call(mock, UPSERT, ok[:1]),
        fsm_call(mock, UPSERT, ok[1:2])]
    mock.control("/reset")
    yield "upsert-bad-request", seed_header(UPSERT, 1), [
        fsm_call(mock, UPSERT, ok[:1], headers={"X-Client-ID": "bulkops"})]
