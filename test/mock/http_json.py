"""http_json.py - the mock's "http_json" dialect (docs/protocols/http_json.md).

http_json speaks to any JSON bulk API its target's options describe, so this file
serves four APIs of different shapes, mounted by mock_api.py under /http_json, each
under a target url of its own (http://127.0.0.1:PORT/http_json/<shape>...):

  sync: a synchronous array answer, in the items' order
    POST|PUT|PATCH {url}/<resource>           upsert (an item without "id": insert)
    POST   {url}/<resource>/<op>              op: insert, update, upsert or delete
    DELETE {url}/<resource>                   delete
    The body is a JSON array of objects whose "id" is the key (a delete also takes
    the keys themselves); the answer 200 an array with one element per item, in order:
    {"status": "created"|"ok", "id": "<remote id>"} or
    {"status": "error", "error": {"code", "message"}}.

  keyed: answers keyed by the item's "ref", in another order, partly failed
    POST {url}/v2/<resource>/batch            {"mode": "insert"|"update"|"upsert",
                                               "records": [{"ref": k, "fields": {...}}]}
    POST {url}/v2/<resource>/batch/delete     {"mode": "delete", "records": [{"ref": k}]}
    answer 200 {"data": {"results": [{"ref", "success": true, "id", "created"} |
                                     {"ref", "success": false, "error": {"code", "message"}}]}}

  async: a task, polled until it is done
    POST|DELETE {url}/<resource>/jobs?mode=<op>   {"items": [{"key": k, "data": {...}}]}
        -> 202 {"job": {"id": "t1", "state": "queued"}}
    GET {url}/jobs/<id>  -> 200 {"job": {"id"}, "state": "running"} for pending_polls
        polls, then {"job", "state": "done", "items": [{"key", "outcome": "ok", "id",
        "created"} | {"key", "outcome": "failed", "error": {"code", "message"}}]}
        in the items' order (the task applies them at that poll); 404 for a task it
        does not know

  salesforce: the Salesforce REST API's sObject Collections, as documented
  (url http://127.0.0.1:PORT/http_json/salesforce/services/data/v62.0)
    POST  {url}/composite/sobjects                             create
    PATCH {url}/composite/sobjects                             update by "id" (or "Id")
    PATCH {url}/composite/sobjects/<SObject>/<ExternalIdField>  upsert
    body {"allOrNone": false, "records": [{"attributes": {"type": "Account"}, ...}]},
    at most 200 records; answer 200, one SaveResult per record in their order:
    {"id", "success": true, "errors": [], "created" (upsert only)} or
    {"success": false, "errors": [{"statusCode", "message", "fields"}]}; an error of
    the whole request is an array [{"message", "errorCode"}].

Test hooks under /_control/http_json: store (?shape=S&resource=R), tasks.

Rows ask for failures through their data: a "_fail" that is not null (in the item of
sync and salesforce, the record's "fields" of keyed, the item's "data" of async) fails
that item with its text as the message.
Configuration (POST /_control/config {"http_json": {...}}), all optional:
  api_key, bearer, basic ("user:pass")   credentials every request must carry (api_key
                                         in the header X-Api-Key)
  shuffle (true)           keyed answers in an order other than the records'
  pending_polls (1)        async polls answered "running" before the task runs
  fail_all (false)         async tasks end {"state": "failed"} without items, applying
                           nothing
  omit_keys ([])           keyed and async: no result for these keys (applied all the same)
  extra_keys ([])          keyed and async: a success result for these keys too

Assumed where the vendor is silent (kept here, in one place; see
docs/protocols/http_json.md):
  * the three made-up shapes apply items in array order, each once;
  * an insert always creates a new record (with a new remote id), whatever its key:
    sending it twice makes two;
  * Salesforce: more than 200 records is a 400 EXCEEDED_ID_LIMIT of the whole request;
    a record without attributes.type fails with INVALID_TYPE, an upsert record
    without the external id field with MISSING_ARGUMENT, an update of an id not
    stored with ENTITY_IS_DELETED; _fail is a FIELD_CUSTOM_VALIDATION_EXCEPTION;
    ids are "001" and 15 more characters.
"""

import collections
import json
import random
import re

from dialect_tests import (BASE, DELETE, INSERT, JSON_CT, UPDATE, UPSERT, bad_refusal_case,
                           bad_text_case, hex_of, seed_header)
from mock_api import MockDialect, Response, error_response, json_body, json_response, \
    shuffle_answer

NAME = "http_json"

OPERATIONS = ("insert", "update", "upsert", "delete")
SF_MAX_RECORDS = 200
SHUFFLE_SEED = 7

# The targets the generic tests make, one option set per shape (README and
# docs/protocols/http_json.md show the same).
SYNC_OPTIONS = {
    "path": "/{resource}",
    "ok": {"pointer": "/status", "values": ["ok", "created"]},
    "remote_id": "/id",
    "error_code": "/error/code",
    "error_message": "/error/message",
}
ASYNC_OPTIONS = {
    "path": "/{resource}/jobs?mode={operation}",
    "body": {"items": "$rows"},
    "row": {"key": "$key", "data": "$row"},
    "task_id": "/job/id",
    "poll_path": "/jobs/{task_id}",
    "done": {"pointer": "/state", "values": ["done", "failed"]},
    "results": "/items",
    "match": "/key",
    "ok": {"pointer": "/outcome", "values": ["ok"]},
    "remote_id": "/id",
    "created": "/created",
    "error_code": "/error/code",
    "error_message": "/error/message",
}
ASYNC = {"url": "/async", "options": ASYNC_OPTIONS}
KEYED_OPTIONS = {
    "path": "/v2/{resource}/batch",
    "delete_method": "POST",
    "delete_path": "/v2/{resource}/batch/delete",
    "body": {"mode": "$operation", "records": "$rows"},
    "row": {"ref": "$key", "fields": "$row"},
    "results": "/data/results",
    "match": "/ref",
    "ok": "/success",
    "remote_id": "/id",
    "created": "/created",
    "error_code": "/error/code",
    "error_message": "/error/message",
}
# the sync shape without "ok": a result fails where it has an error
PLAIN_SYNC_OPTIONS = {
    "path": "/{resource}/{operation}",
    "delete_method": "POST",
    "remote_id": "/id",
    "error_code": "/error/code",
    "error_message": "/error/message",
}

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    # the stores are kept per shape and resource: one resource per case
    "target": {"url": "/sync", "resource": "items{name}", "options": SYNC_OPTIONS},
    # a task to poll, so that every crash point has a step to crash in; batches of
    # 5,000 go in requests of max_rows (1,000)
    "crash": dict(ASYNC, resource="crash{name}"),
    # as fuzz_seeds() below sends it; the answers are read as the options say,
    # so the other shapes are fuzzed too: results by position without "ok", and
    # results by key at once with a boolean "ok"
    "fuzz": dict(ASYNC, resource="items", variants={
        "sync": {"resource": "items", "options": PLAIN_SYNC_OPTIONS},
        "keyed": {"resource": "items", "options": KEYED_OPTIONS}}),
    "bench": {"resource": "customers", "options": {"max_rows": 10000},
              "auth": {"type": "bearer", "token": "bench-token"}},
    "hostile": dict(ASYNC, **{
        "mock": {NAME: {"pending_polls": 0}},
        "kinds": [
            {"kind": "submit", "method": "POST", "path": "/jobs$", "status": 202,
             "step": "submit",
             "cases": [
                 {"label": "no task id",
                  "edits": [{"at": "job.id", "delete": True}],
                  "persistent": r"the HTTP 202 answer has no usable task id at /job/id"},
                 {"label": "a task id that is a dot segment",
                  "edits": [{"at": "job.id", "set": ".."}],
                  "persistent": r"the HTTP 202 answer has no usable task id at /job/id"},
                 {"label": "a task id that is not UTF-8",
                  "edits": [{"at": "job.id", "set_bytes": hex_of(b"t\xff")}],
                  "persistent": r'invalid byte sequence for encoding "UTF8": 0xff'},
                 {"label": "an answer that is an array",
                  "edits": [{"at": "", "set": []}],
                  "persistent": r"the HTTP 202 answer has no usable task id at /job/id"},
                 # a task the remote side does not know: its polls are 404, it is
                 # submitted again (upsert is safe to repeat)
                 {"label": "a task id that is a number",
                  "edits": [{"at": "job.id", "set": 4711}],
                  "final": {"rows": BASE}},
                 bad_refusal_case(400, {"error": {}}, "error.code", "error.message"),
             ]},
            {"kind": "poll", "method": "GET", "path": "/jobs/[^/]+$", "status": 200,
             "step": "later",
             "cases": [
                 {"label": "a result repeated",
                  "edits": [{"at": "items", "dup": 1}],
                  "final": {"rows": BASE,
                            "last_error": r"has 0 results whose key is no row of the "
                                          r"request and 1 that repeat a key"}},
                 {"label": "fewer results than rows",
                  "edits": [{"at": "items", "drop": 1}],
                  "final": {"rows": ["succeeded", "failed", "unknown"],
                            "row_msg": {"3": r"^the answer has no result for this "
                                             r"row's key$"}}},
                 {"label": "a result for a key not sent",
                  "edits": [{"at": "items.2.key", "set": "stranger"}],
                  "final": {"rows": ["succeeded", "failed", "unknown"],
                            "last_error": r"has 1 results whose key is no row"}},
                 {"label": "a key that is a number",
                  "edits": [{"at": "items.0.key", "set": 12345}],
                  "final": {"rows": ["unknown", "failed", "succeeded"]}},
                 {"label": "a result that is not an object",
                  "edits": [{"at": "items.0", "set": "x"}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r"no result for this row's key"}}},
                 {"label": "a result that is null",
                  "edits": [{"at": "items.0", "set": None}],
                  "final": {"rows": ["unknown", "failed", "succeeded"]}},
                 {"label": "an outcome no value of ok lists",
                  "edits": [{"at": "items.0.outcome", "set": "WEIRD"}],
                  "final": {"rows": ["failed", "failed", "succeeded"],
                            "row_msg": {"1": r'^the result\'s /outcome is "WEIRD"$'}}},
                 {"label": "a result without an outcome",
                  "edits": [{"at": "items.0.outcome", "delete": True}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r"^the result has no /outcome$"}}},
                 {"label": "an outcome that is an object",
                  "edits": [{"at": "items.0.outcome", "set": {"ok": True}}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r"not a scalar"}}},
                 {"label": "results that are not an array",
                  "edits": [{"at": "items", "set": {"0": "x"}}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r'task \S+ ended \(/state is "done"\) without an array '
                                   r'of results at /items'}},
                 {"label": "a task that failed without results",
                  "edits": [{"at": "", "set": {"state": "failed"}}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r'ended \(/state is "failed"\) without an array of '
                                   r'results'}},
                 {"label": "no task state",
                  "edits": [{"at": "state", "delete": True}],
                  "persistent": r"cannot tell whether task \S+ is done: the poll answer "
                                r"has no /state"},
                 {"label": "a task state that is an object",
                  "edits": [{"at": "state", "set": {"done": True}}],
                  "persistent": r"the poll answer's /state is .*, not a scalar"},
                 {"label": "a NUL byte inside a string",
                  "edits": [{"at": "items.1.error.message", "set_bytes": hex_of(b"bad\0row")}],
                  "persistent": r"malformed JSON in an HTTP 200 answer"},
                 bad_text_case("items.1.error.message", "items.0.id"),
                 # the task is forgotten: submitted again (upsert is safe to repeat)
                 {"label": "a poll answered 404",
                  "rule": {"action": "status", "status": 404},
                  "final": {"rows": BASE}},
             ]},
        ],
    }),
}

# --bench: each item of a sync body starts with the benchmark's key column "id"; an
# async item is {"key": <key>, ...}, its key echoed as sent
BENCH_SYNC_ITEM = b'{"id":'
BENCH_ASYNC_KEY_RX = re.compile(rb'\{"key":("(?:[^"\\]|\\.)*"|[-0-9.eE+]+)')


def key_text(key):
    """A key as the store keeps it: a string as it is, anything else as JSON."""
    return key if isinstance(key, str) else json.dumps(key)


def is_key(key):
    return (isinstance(key, str) and key != "") or \
        (isinstance(key, (int, float)) and not isinstance(key, bool))


class Store:
    """One shape's records of one resource: by remote id, and by key."""

    def __init__(self, id_format):
        self.records = {}       # remote id -> fields
        self.by_key = {}        # key text -> remote id
        self.key_of = {}        # remote id -> key text
        self.next = 1
        self.id_format = id_format

    def insert(self, key, fields):
        rid = self.id_format % self.next
        self.next += 1
        self.records[rid] = dict(fields)
        if key is not None:
            self.by_key[key_text(key)] = rid
            self.key_of[rid] = key_text(key)
        return rid

    def find(self, key):
        """The remote id of a key, or of a remote id given as the key."""
        k = key_text(key)
        if k in self.by_key:
            return self.by_key[k]
        return k if k in self.records else None

    def write(self, op, key, fields):
        """(remote id, created, error code) of one item's operation."""
        rid = self.find(key) if key is not None else None
        if op == "insert" or (op == "upsert" and (key is None or rid is None)):
            return self.insert(key, fields), True, None
        if rid is None:
            return None, False, "NOT_FOUND"
        if op == "delete":
            del self.records[rid]
            self.by_key.pop(self.key_of.pop(rid, None), None)
        else:
            self.records[rid].update(fields)
        return rid, False, None


class Task:
    __slots__ = ("id", "store", "op", "items", "polls", "pending_polls", "fail_all",
                 "state", "results", "bench_keys")

    def __init__(self, task_id, store, op, items, pending_polls, fail_all, bench_keys=None):
        self.id = task_id
        self.store = store
        self.op = op
        self.items = items
        self.polls = 0
        self.pending_polls = pending_polls
        self.fail_all = fail_all
        self.state = "queued"
        self.results = None
        self.bench_keys = bench_keys


class Dialect(MockDialect):
    # "operations": the rows received (test/bench/run.sh checks it)
    COUNTERS = ("requests", "bad_requests", "operations", "created", "updated", "deleted",
                "failures", "tasks", "polls")

    def reset(self):
        super().reset()
        self.stores = {}                        # (shape, resource) -> Store
        self.applied = collections.Counter()    # (shape, resource, key) -> writes
        self.tasks = {}
        self.next_task = 1
        self.rng = random.Random(SHUFFLE_SEED)

    def routes(self):
        sf = "/salesforce/services/data/{version}/composite/sobjects"
        return [
            ("POST", "/sync/{resource}", self.sync_upsert),
            ("PUT", "/sync/{resource}", self.sync_upsert),
            ("PATCH", "/sync/{resource}", self.sync_upsert),
            ("DELETE", "/sync/{resource}", self.sync_delete),
            ("POST", "/sync/{resource}/{op}", self.sync_op),
            ("POST", "/keyed/v2/{resource}/batch", self.keyed_write),
            ("POST", "/keyed/v2/{resource}/batch/delete", self.keyed_delete),
            ("POST", "/async/{resource}/jobs", self.async_submit),
            ("DELETE", "/async/{resource}/jobs", self.async_submit),
            ("GET", "/async/jobs/{task}", self.async_poll),
            ("POST", sf, self.sf_create),
            ("PATCH", sf, self.sf_update),
            ("PATCH", sf + "/{sobject}/{field}", self.sf_upsert),
        ]

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/tasks", self.ctl_tasks)]

    def store(self, shape, resource):
        key = (shape, resource)
        if key not in self.stores:
            fmt = {"sync": "s-%d", "keyed": "k-%d", "async": "a-%d"}.get(shape, "001%012dAAA")
            self.stores[key] = Store(fmt)
        return self.stores[key]

    def refuse(self, req, refusal):
        """The credentials' refusal, else None; counts the request."""
        denied = self.refuse_credentials(req, refusal, "X-Api-Key")
        if denied is None:
            self.counts["requests"] += 1
        return denied

    def bad(self, message, code="BAD_REQUEST"):
        self.counts["bad_requests"] += 1
        return error_response(400, message, code)

    def count(self, created, error, op):
        if error:
            self.counts["failures"] += 1
        elif op == "delete":
            self.counts["deleted"] += 1
        else:
            self.counts["created" if created else "updated"] += 1

    def apply(self, shape, resource, op, key, fields):
        """(remote id, created, error code, error message) of one item."""
        self.counts["operations"] += 1
        if fields.get("_fail") is not None:
            self.counts["failures"] += 1
            return None, False, "INVALID", str(fields["_fail"])
        store = self.store(shape, resource)
        rid, created, error = store.write(op, key, {k: v for k, v in fields.items()
                                                    if k != "_fail"})
        self.count(created, error, op)
        if error:
            return None, False, error, "no record with key %s" % key_text(key)
        self.applied[(shape, resource, key_text(key) if key is not None else rid)] += 1
        return rid, created, None, None

    # -- sync -------------------------------------------------------------------

    def sync_upsert(self, req, params):
        return self.sync(req, params, "upsert")

    def sync_delete(self, req, params):
        return self.sync(req, params, "delete")

    def sync_op(self, req, params):
        if params["op"] not in OPERATIONS:
            return self.bad("unknown operation %s" % params["op"])
        return self.sync(req, params, params["op"])

    def sync(self, req, params, op):
        denied = self.refuse(req, lambda why: error_response(401, why, "UNAUTHORIZED"))
        if denied:
            return denied
        if self.ctx.bench:
            n = req.body.count(BENCH_SYNC_ITEM)
            self.counts["operations"] += n
            return Response(200, b"[" + b",".join([b'{"status":"ok"}'] * n) + b"]")
        items = json_body(req, list)
        if not items:
            return self.bad("body must be a non-empty JSON array")
        out = []
        for item in items:
            if op == "delete" and is_key(item):
                item = {"id": item}
            if not isinstance(item, dict):
                out.append({"status": "error",
                            "error": {"code": "BAD_ITEM", "message": "an item must be an object"}})
                continue
            key = item.get("id")
            rid, created, code, message = self.apply("sync", params["resource"], op, key, item)
            if code:
                out.append({"status": "error", "error": {"code": code, "message": message}})
            else:
                out.append({"status": "created" if created else "ok", "id": rid})
        return json_response(200, out)

    # -- keyed ------------------------------------------------------------------

    def keyed_write(self, req, params):
        return self.keyed(req, params, ("insert", "update", "upsert"))

    def keyed_delete(self, req, params):
        return self.keyed(req, params, ("delete",))

    def keyed(self, req, params, modes):
        denied = self.refuse(req, lambda why: error_response(401, why, "UNAUTHORIZED"))
        if denied:
            return denied
        body = json_body(req, dict) or {}
        mode, records = body.get("mode"), body.get("records")
        if mode not in modes:
            return self.bad("mode must be %s here" % " or ".join(modes), "BAD_MODE")
        if not isinstance(records, list) or not records:
            return self.bad("records must be a non-empty array")
        results = []
        for rec in records:
            ref = rec.get("ref") if isinstance(rec, dict) else None
            if not is_key(ref):
                results.append({"ref": ref, "success": False,
                                "error": {"code": "BAD_RECORD", "message": "a record needs a ref"}})
                continue
            fields = rec.get("fields") if isinstance(rec.get("fields"), dict) else {}
            rid, created, code, message = self.apply("keyed", params["resource"], mode, ref,
                                                     fields)
            if code:
                results.append({"ref": ref, "success": False,
                                "error": {"code": code, "message": message}})
            else:
                results.append({"ref": ref, "success": True, "id": rid, "created": created})
        results = self.odd_results(results, "ref", {"success": True, "id": "k-0",
                                                    "created": False})
        shuffle_answer(self.rng, results, self.config.get("shuffle", True))
        return json_response(200, {"data": {"results": results}})

    def odd_results(self, results, member, success):
        """results without those for omit_keys, with successes for extra_keys."""
        omit = set(map(key_text, self.config.get("omit_keys") or ()))
        out = [r for r in results if key_text(r.get(member)) not in omit]
        for k in self.config.get("extra_keys") or ():
            out.append(dict(success, **{member: k}))
        return out

    # -- async ------------------------------------------------------------------

    def async_submit(self, req, params):
        denied = self.refuse(req, lambda why: error_response(401, why, "UNAUTHORIZED"))
        if denied:
            return denied
        op = req.query.get("mode")
        if op not in OPERATIONS or (req.method == "DELETE") != (op == "delete"):
            return self.bad("mode must be one of %s, and delete exactly with DELETE"
                            % ", ".join(OPERATIONS), "BAD_MODE")
        if self.ctx.bench:
            keys = BENCH_ASYNC_KEY_RX.findall(req.body)
            self.counts["operations"] += len(keys)
            return self.new_task(params["resource"], op, None, keys)
        items = (json_body(req, dict) or {}).get("items")
        if not isinstance(items, list) or not items:
            return self.bad("body must be {\"items\": [...]}, not empty")
        return self.new_task(params["resource"], op, items)

    def new_task(self, resource, op, items, bench_keys=None):
        cfg = self.config
        task = Task("t%d" % self.next_task, resource, op, items,
                    int(cfg.get("pending_polls", 1)), bool(cfg.get("fail_all", False)),
                    bench_keys)
        self.next_task += 1
        self.tasks[task.id] = task
        self.counts["tasks"] += 1
        return json_response(202, {"job": {"id": task.id, "state": task.state}})

    def async_poll(self, req, params):
        denied = self.refuse(req, lambda why: error_response(401, why, "UNAUTHORIZED"))
        if denied:
            return denied
        task = self.tasks.get(params["task"])
        if task is None:
            return error_response(404, "no such job", "NOT_FOUND")
        self.counts["polls"] += 1
        task.polls += 1
        if self.ctx.bench:
            return Response(200, b'{"state":"done","items":['
                            + b",".join(b'{"key":%s,"outcome":"ok"}' % k
                                        for k in task.bench_keys) + b"]}")
        if task.state == "queued" and task.polls > task.pending_polls:
            self.run(task)
        answer = {"job": {"id": task.id}, "state": "running" if task.state == "queued"
                  else task.state}
        if task.results is not None:
            answer["items"] = task.results
        return json_response(200, answer)

    def run(self, task):
        """Apply the task's items once, in order, and keep their results."""
        if task.fail_all:
            task.state = "failed"
            return
        results = []
        for item in task.items:
            key = item.get("key") if isinstance(item, dict) else None
            data = item.get("data") if isinstance(item, dict) else None
            if not is_key(key):
                results.append({"key": key, "outcome": "failed",
                                "error": {"code": "BAD_ITEM", "message": "an item needs a key"}})
                continue
            rid, created, code, message = self.apply("async", task.store, task.op, key,
                                                     data if isinstance(data, dict) else {})
            if code:
                results.append({"key": key, "outcome": "failed",
                                "error": {"code": code, "message": message}})
            else:
                results.append({"key": key, "outcome": "ok", "id": rid, "created": created})
        task.results = self.odd_results(results, "key", {"outcome": "ok", "id": "a-0"})
        task.state = "done"

    # -- salesforce sObject Collections -----------------------------------------

    def sf_create(self, req, params):
        return self.sf(req, None, lambda rec: (None, "insert"))

    def sf_update(self, req, params):
        return self.sf(req, None, lambda rec: (rec.get("id") or rec.get("Id"), "update"))

    def sf_upsert(self, req, params):
        field = params["field"]
        return self.sf(req, params["sobject"], lambda rec: (rec.get(field), "upsert"),
                       field)

    def sf(self, req, sobject, key_of, ext_field=None):
        denied = self.refuse(req, lambda why: json_response(
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]))
        if denied:
            return denied
        body = json_body(req, dict) or {}
        records = body.get("records")
        if not isinstance(records, list) or not records:
            self.counts["bad_requests"] += 1
            return json_response(400, [{"message": "records: a non-empty array is required",
                                        "errorCode": "JSON_PARSER_ERROR"}])
        if len(records) > SF_MAX_RECORDS:
            self.counts["bad_requests"] += 1
            return json_response(400, [{
                "message": "record limit reached. cannot submit more than %d records into "
                           "this call" % SF_MAX_RECORDS, "errorCode": "EXCEEDED_ID_LIMIT"}])
        all_or_none = body.get("allOrNone") is True
        # validated first: with allOrNone a failure anywhere applies nothing
        errors = [self.sf_check(rec, sobject, key_of, ext_field) for rec in records]
        if all_or_none and any(errors):
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                      "message": "Record rolled back because not all records were valid "
                                 "and the request was using AllOrNone header", "fields": []}
            return json_response(200, [{"success": False, "errors": [e or rolled]}
                                       for e in errors])
        out = []
        for rec, error in zip(records, errors):
            if error:
                out.append({"success": False, "errors": [error]})
                continue
            key, op = key_of(rec)
            sobj = rec["attributes"]["type"]
            fields = {k: v for k, v in rec.items() if k not in ("attributes", "_fail")}
            rid, created, code, _ = self.apply("salesforce", sobj, op, key, fields)
            if code:
                out.append({"success": False, "errors": [{
                    "statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted",
                    "fields": []}]})
                continue
            res = {"id": rid, "success": True, "errors": []}
            if op == "upsert":
                res["created"] = created
            out.append(res)
        return json_response(200, out)

    @staticmethod
    def sf_check(rec, sobject, key_of, ext_field):
        """The SaveResult error of a record refused before it is applied, or None."""
        def err(code, message, fields=()):
            return {"statusCode": code, "message": message, "fields": list(fields)}
        if not isinstance(rec, dict):
            return err("INVALID_TYPE", "a record must be an object")
        attrs = rec.get("attributes")
        sobj = attrs.get("type") if isinstance(attrs, dict) else None
        if not isinstance(sobj, str) or (sobject is not None and sobj != sobject):
            return err("INVALID_TYPE", "attributes.type must name the sObject")
        key, op = key_of(rec)
        if op != "insert" and not is_key(key):
            return err("MISSING_ARGUMENT", "%s not specified" % (ext_field or "Id"),
                       [ext_field or "Id"])
        if rec.get("_fail") is not None:
            return err("FIELD_CUSTOM_VALIDATION_EXCEPTION", str(rec["_fail"]))
        return None

    # -- control ----------------------------------------------------------------

    def ctl_store(self, req, params):
        q = req.query
        out = {}
        for (shape, resource), store in self.stores.items():
            if q.get("shape") not in (None, shape) or q.get("resource") not in (None, resource):
                continue
            keys = {rid: k for k, rid in store.by_key.items()}
            for rid, fields in store.records.items():
                out[keys.get(rid, rid)] = dict(fields, _remote_id=rid)
        return json_response(200, out)

    def ctl_tasks(self, req, params):
        return json_response(200, {t.id: {"op": t.op, "state": t.state, "polls": t.polls,
                                          "items": len(t.items or t.bench_keys or ())}
                                   for t in self.tasks.values()})


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

ASYNC_URL = "/http_json/async/items/jobs"
OP_NAMES = {INSERT: "insert", UPDATE: "update", UPSERT: "upsert", DELETE: "delete"}
# bits of byte 3: the dialect's boolean options in table order (idempotent_insert)
IDEMPOTENT_INSERT = 2


def async_items(rows):
    """Items as the fuzzing harness encodes its rows (r1, r2, ... keyed by id)."""
    return [{"key": rid, "data": dict(data, id=rid)} for rid, data in rows]


def async_run(mock, op, rows, polls=3):
    """Submit, then poll the task until it is done: the answers in order."""
    name = OP_NAMES[op]
    out = [mock.call("DELETE" if op == DELETE else "POST", "%s?mode=%s" % (ASYNC_URL, name),
                     {"items": async_items(rows)})]
    if out[0][0] == 202:
        task = json.loads(out[0][2])["job"]["id"]
        for _ in range(polls):
            out.append(mock.call("GET", "/http_json/async/jobs/" + task))
            if json.loads(out[-1][2]).get("state") not in ("queued", "running"):
                break
    return out


def sync_run(mock, op, rows):
    """The answer of the sync shape (PLAIN_SYNC_OPTIONS) to the rows."""
    return [mock.call("POST", "/http_json/sync/items/" + OP_NAMES[op],
                      [dict(data, id=rid) for rid, data in rows])]


def keyed_run(mock, op, rows):
    """The answer of the keyed shape (KEYED_OPTIONS) to the rows."""
    path = "/http_json/keyed/v2/items/batch" + ("/delete" if op == DELETE else "")
    return [mock.call("POST", path, {"mode": OP_NAMES[op],
                                     "records": [{"ref": rid, "fields": dict(data, id=rid)}
                                                 for rid, data in rows]})]


def shape_seeds(mock, shape, run, ok):
    """The seeds of a shape answered at once: (shape/name, header, answers)."""
    mock.control("/reset")
    yield shape + "/upsert-ok", seed_header(UPSERT, 3), run(mock, UPSERT, ok)
    yield shape + "/insert-one-fails", seed_header(INSERT, 3), run(
        mock, INSERT, [ok[0], ("r2", dict(ok[1][1], _fail="bad name")), ok[2]])
    yield shape + "/update-missing", seed_header(UPDATE, 2), run(
        mock, UPDATE, [("r1", {}), ("r9", {})])
    yield shape + "/delete-one", seed_header(DELETE, 2), run(mock, DELETE, ok[:2])
    yield shape + "/upsert-resumed", seed_header(UPSERT, 3, settled=0b001), run(
        mock, UPSERT, ok[1:])
    yield shape + "/insert-idempotent", seed_header(
        INSERT, 2, options=IDEMPOTENT_INSERT), run(mock, INSERT, ok[:2])
    mock.control("/config", {NAME: {"api_key": "k"}})
    yield shape + "/upsert-unauthorized", seed_header(UPSERT, 1), run(mock, UPSERT, ok[:1])
    mock.control("/reset")


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock; "sync/..." and
    "keyed/..." are seeds of TESTS["fuzz"]'s variants."""
    ok = [("r%d" % i, {"name": "name %d" % i, "n": i}) for i in (1, 2, 3)]
    yield from shape_seeds(mock, "sync", sync_run, ok)
    yield from shape_seeds(mock, "keyed", keyed_run, ok)
    mock.control("/config", {NAME: {"omit_keys": ["r2"], "extra_keys": ["r7"]}})
    yield "keyed/upsert-odd-results", seed_header(UPSERT, 3), keyed_run(mock, UPSERT, ok)
    mock.control("/reset")
    # answers the mock never gives: results paired by position that are fewer, not
    # an array, null or of odd types, errors that are null or only a code
    yield "sync/edge-odd-results", seed_header(UPSERT, 3), [
        (200, JSON_CT, b'[{"id": "s-1"}]'), (200, JSON_CT, b'{"0": {}}'),
        (200, JSON_CT, b'[null, {"error": null, "id": 7}, {"error": {"code": 42}}]')]
    yield "sync/edge-refusals", seed_header(INSERT, 2), [
        (408, JSON_CT, b'[]'), (422, JSON_CT, b'{"error": {"code": "Q", "message": ["x"]}}')]
    # keys and booleans of odd types, results nested elsewhere
    yield "keyed/edge-odd-results", seed_header(UPSERT, 3), [
        (200, JSON_CT, b'{"data": {"results": [{"ref": "r1", "success": "yes"}, '
                       b'{"ref": 2, "success": true}, {"ref": "r3", "success": false, '
                       b'"error": {"message": {"nested": 1}}}, {"ref": "r3"}]}}'),
        (200, JSON_CT, b'{"data": []}'),
        (200, JSON_CT, b'{"data": {"results": [{"ref": "r2", "success": true, '
                       b'"created": 1}]}}')]
    mock.control("/reset")
    yield "upsert-ok", seed_header(UPSERT, 3), async_run(mock, UPSERT, ok)
    yield "insert-one-fails", seed_header(INSERT, 3), async_run(
        mock, INSERT, [ok[0], ("r2", dict(ok[1][1], _fail="bad name")), ok[2]])
    yield "update-missing", seed_header(UPDATE, 2), async_run(
        mock, UPDATE, [("r1", {}), ("r9", {})])
    yield "delete-one", seed_header(DELETE, 2), async_run(mock, DELETE, ok[:2])
    # a resumed batch: row 1 already has its receipt
    yield "upsert-resumed", seed_header(UPSERT, 3, settled=0b001), async_run(
        mock, UPSERT, ok[1:])
    # an insert the target says is safe to repeat
    yield "insert-idempotent", seed_header(INSERT, 2, options=IDEMPOTENT_INSERT), async_run(
        mock, INSERT, ok[:2])

    mock.control("/config", {NAME: {"omit_keys": ["r2"], "extra_keys": ["r7"]}})
    yield "upsert-odd-results", seed_header(UPSERT, 3), async_run(mock, UPSERT, ok)
    mock.control("/config", {NAME: {"omit_keys": [], "extra_keys": [], "fail_all": True}})
    yield "upsert-task-failed", seed_header(UPSERT, 2), async_run(mock, UPSERT, ok[:2])
    mock.control("/config", {NAME: {"fail_all": False, "api_key": "k"}})
    yield "upsert-unauthorized", seed_header(UPSERT, 1), async_run(mock, UPSERT, ok[:1])
    mock.control("/reset")

    # a task the remote side forgot
    first = async_run(mock, UPSERT, ok[:2], polls=0)
    gone = mock.call("GET", "/http_json/async/jobs/t404")
    yield "upsert-task-gone", seed_header(UPSERT, 2), first + [gone]
    yield "insert-task-gone", seed_header(INSERT, 2), first + [gone]

    # answers the mock never gives, for paths a short run would not reach
    queued = b'{"job": {"id": "t1", "state": "queued"}}'
    yield "edge-odd-task-ids", seed_header(UPSERT, 2), [
        (202, JSON_CT, b'{"job": {"id": ".."}}'), (202, JSON_CT, b'{"job": {"id": 17}}'),
        (200, JSON_CT, b'{"state": {"x": 1}}'), (200, JSON_CT, b'{"state": "running"}'),
        (200, JSON_CT, b'{"state": "done", "items": [{"key": "r1", "outcome": "ok"}, '
                       b'{"key": "r1", "outcome": "failed"}, {"key": 2, "outcome": "ok"}, '
                       b'null, "r2"]}')]
    yield "edge-results-not-array", seed_header(INSERT, 2), [
        (202, JSON_CT, queued), (200, JSON_CT, b'{"state": "done", "items": {"r1": 1}}')]
    yield "edge-refusals", seed_header(INSERT, 3), [
        (408, JSON_CT, b'{}'), (413, JSON_CT, b'{"error": {"code": "TOO_BIG"}}')]
    yield "edge-server-errors", seed_header(UPSERT, 1), [
        (507, b"", b"disk full"), (202, JSON_CT, b"[1, 2"), (202, JSON_CT, b'"t1"'),
        (202, JSON_CT, queued), (503, b"", b""), (200, JSON_CT, b'{"state": "done"}')]
