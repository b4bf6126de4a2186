"""clinia.py - the mock's "clinia" dialect (docs/protocols/clinia.md).

This file owns the clinia bulk API as bulkops sees it, mounted by mock_api.py under
/clinia, so a target url is http://127.0.0.1:PORT/clinia/sources/<sourceKey>/v1:

  POST {url}/resources/bulk              submit: 400 REJECTED or 202 ACCEPTED + task id
  GET  {url}/resources/bulk/<taskId>     poll:   PENDING ... then SUCCESS | FAILURE
  (the same under /relationships/bulk, with a store of its own)

and its test hooks under /_control/clinia: store, applied, tasks.

Rows ask for failures through their data: "_reject": msg fails synchronous validation
(the whole request is REJECTED), "_fail": msg fails that operation in the task; a null
value asks for nothing, since a SQL source has the column on every row.
Configuration (POST /_control/config {"clinia": {...}}), all optional:
  api_key, bearer, basic ("user:pass")   credentials required on every request
  oauth (false)                          requests must carry a live token issued by
                                         the mock's OAuth endpoint (oauth.py)
  pending_polls (1)                      polls answered PENDING before a task runs
  legacy_bulk_id (false)                 answer "bulkId" instead of "taskId"
  task_failure_all (false)               tasks end FAILURE, every operation failed

Assumed where the vendor is silent (kept here, in one place; see
docs/protocols/clinia.md):
  * the store is keyed by (kind, sourceKey, type, id): two sources never collide;
  * a task answers 404 when polled under another sourceKey or kind;
  * a submit with an empty "operations" list is a 400 error, like a missing one;
  * "id" and "type" must be non-empty strings, "data" an object when present;
  * a failed CREATE has no id, so its receipt has no "id" member;
  * "contained" is stored inside the stored data under the key "contained", which
    gives back the row as bulkops read it (minus the key column);
  * pending_polls and task_failure_all are read when the task is submitted.
"""

import collections
import functools
import json
import re

from dialect_tests import (DELETE, INSERT, JSON_CT, UPSERT, bad_refusal_case,
                           bad_text_case, hex_of, seed_header)
from mock_api import MockDialect, Response, error_response, json_body, json_response

NAME = "clinia"

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    "target": {"url": "/sources/{name}/v1", "resource": "Thing"},
    # as fuzz_seeds() below sends it
    "fuzz": {"resource": "Contact"},
    "bench": {"resource": "Patient",
              "auth": {"type": "header", "name": "X-Clinia-API-Key", "value": "bench-key"}},
    "hostile": {
        "resource": "Practitioner",
        "mock": {NAME: {"pending_polls": 0}},
        "kinds": [
            {"kind": "submit", "method": "POST", "path": "/resources/bulk$", "status": 202,
             "step": "submit",
             "cases": [
                 {"label": "an unknown submit status",
                  "edits": [{"at": "status", "set": "QUEUED"}],
                  "persistent":
                      r'unexpected answer to the bulk request \(HTTP 202, status "QUEUED"\)'},
                 {"label": "no task id",
                  "edits": [{"at": "taskId", "delete": True}],
                  "persistent": r"ACCEPTED answer without a usable taskId"},
                 {"label": "a task id that is not UTF-8",
                  "edits": [{"at": "taskId", "set_bytes": hex_of(b"bk_\xff")}],
                  "persistent": r'invalid byte sequence for encoding "UTF8": 0xff'},
                 # were the id stored, it would stay with the batch
                 {"label": "a task id that is not UTF-8, every poll failing",
                  "edits": [{"at": "taskId", "set_bytes": hex_of(b"bk_\xff")}],
                  "times": -1,
                  "also": [{"method": "GET", "path": "/resources/bulk/",
                            "action": "status", "status": 500, "times": -1}],
                  "final": {"rows": ["failed"] * 3,
                            "last_error": r"^gave up after 2 attempts: could not read "
                                          r"the answer .*invalid byte sequence"}},
                 {"label": "a rejection with fewer receipts than rows",
                  "status": 400,
                  "edits": [{"at": "", "set": {"status": "REJECTED", "receipts": [
                      {"status": "FAILURE", "error": {"message": "x"}}]}}],
                  "final": {"rows": ["failed"] * 3,
                            "msg": r"^HTTP 400: request REJECTED with 1 receipts for 3 "
                                   r"operations$",
                            "last_error": r"REJECTED with 1 receipts for 3 operations"}},
                 bad_refusal_case(422, {"error": {}}, None, "error.message"),
             ]},
            {"kind": "poll", "method": "GET", "path": "/resources/bulk/", "status": 200,
             "step": "later",
             "cases": [
                 {"label": "more receipts than rows",
                  "edits": [{"at": "receipts", "dup": 1}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"task \S+ ended FAILURE with 4 receipts for 3 operations",
                            "last_error": r"ended FAILURE with 4 receipts for 3 operations"}},
                 {"label": "fewer receipts than rows",
                  "edits": [{"at": "receipts", "drop": 1}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"ended FAILURE with 2 receipts for 3 operations",
                            "last_error": r"ended FAILURE with 2 receipts for 3 operations"}},
                 {"label": "receipts that are not an array",
                  "edits": [{"at": "receipts", "set": {"0": "x"}}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"ended FAILURE without a receipts array"}},
                 {"label": "an unknown receipt status",
                  "edits": [{"at": "receipts.0.status", "set": "WEIRD"}],
                  "final": {"rows": ["unknown", "failed", "succeeded"],
                            "row_msg": {"1": r'the task ended with this operation in '
                                             r'state "WEIRD"'}}},
                 {"label": "an unknown task status",
                  "edits": [{"at": "status", "set": "RUNNING"}],
                  "persistent": r'task in unknown state "RUNNING"'},
                 {"label": "a NUL byte inside a string",
                  "edits": [{"at": "receipts.1.error.message",
                             "set_bytes": hex_of(b"bad\0row")}],
                  "persistent": r"malformed JSON in an HTTP 200 answer"},
                 {"label": "a task status that is not UTF-8",
                  "edits": [{"at": "status", "set_bytes": hex_of(b"SUCC\xffESS")}],
                  "persistent": r'task in unknown state "SUCC\?ESS"'},
                 bad_text_case("receipts.1.error.message", "receipts.0.id"),
             ]},
        ],
    },
}

KINDS = ("resources", "relationships")
MEMBERS = {"UPSERT": "upsert", "CREATE": "create", "DELETE": "delete"}
NEEDS_ID = ("UPSERT", "DELETE")

TASK_FAILURE_ALL_ERROR = {"code": 500, "message": "task failed", "type": "INTERNAL"}
NOT_FOUND_ERROR = {"code": 404, "message": "resource not found", "type": "NOT_FOUND"}

# --bench answers, built once as bytes.
BENCH_RECEIPT = b'{"action": "UPSERT", "status": "SUCCESS"}'
BENCH_OP_RX = re.compile(rb'\{\s*"action"\s*:')


def _is_name(value):
    return isinstance(value, str) and value != ""


def validate(op):
    """Why an operation fails synchronous validation, or None when it passes."""
    if not isinstance(op, dict):
        return "operation must be an object"
    action = op.get("action")
    member = MEMBERS.get(action)
    if member is None:
        return "unknown action %s" % json.dumps(action)
    body = op.get(member)
    if not isinstance(body, dict):
        return "missing member \"%s\" for action %s" % (member, action)
    if not _is_name(body.get("type")):
        return "missing type"
    if action in NEEDS_ID and not _is_name(body.get("id")):
        return "missing id"
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        return "data must be an object"
    # null means "no": a SQL source has the column on every row
    if data and data.get("_reject") is not None:
        return str(data["_reject"])
    return None


def count_operations(body):
    """Operations in a submit body without parsing it (--bench)."""
    n = body.count(b'{"action"')
    return n if n else len(BENCH_OP_RX.findall(body))


class Task:
    """One accepted bulk request and, once it has run, its receipts."""

    __slots__ = ("id", "src", "kind", "ops", "count", "polls", "pending_polls",
                 "fail_all", "status", "receipts")

    def __init__(self, task_id, src, kind, ops, count, pending_polls, fail_all):
        self.id = task_id
        self.src = src
        self.kind = kind
        self.ops = ops              # validated operations (None in --bench)
        self.count = count
        self.polls = 0
        self.pending_polls = pending_polls
        self.fail_all = fail_all
        self.status = "PENDING"
        self.receipts = None        # set when the task has run

    def pending_receipts(self):
        out = []
        for op in self.ops:
            body = op[MEMBERS[op["action"]]]
            r = {"action": op["action"], "status": "PENDING"}
            if body.get("id") is not None:
                r["id"] = body["id"]
            r["type"] = body["type"]
            out.append(r)
        return out


class Dialect(MockDialect):
    COUNTERS = ("submits", "rejected", "bad_requests", "tasks", "polls", "operations",
                "applied", "creates", "failures")

    def reset(self):
        super().reset()
        self.store = {}                         # (kind, src, type, id) -> data
        self.applied = collections.Counter()    # (kind, src, type, id) -> times
        self.tasks = {}
        self.next_task = 1
        self.next_gen = 1

    def routes(self):
        out = []
        for kind in KINDS:
            base = "/sources/{src}/v1/%s/bulk" % kind
            out.append(("POST", base, functools.partial(self.submit, kind)))
            out.append(("GET", base + "/{task}", functools.partial(self.poll, kind)))
        return out

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/applied", self.ctl_applied),
                ("GET", "/tasks", self.ctl_tasks)]

    def stats(self):
        return dict(super().stats(), store_size=len(self.store))

    def check_auth(self, req):
        """A 401 Response when the configured credentials are missing, else None."""
        return self.refuse_credentials(req, lambda why: error_response(401, why),
                                       "X-Clinia-API-Key")

    # -- submit ---------------------------------------------------------------

    def submit(self, kind, req, params):
        denied = self.check_auth(req)
        if denied:
            return denied
        self.counts["submits"] += 1
        if self.ctx.bench:
            return self.bench_submit(kind, req, params)
        ops = (json_body(req, dict) or {}).get("operations")
        if not isinstance(ops, list) or not ops:
            self.counts["bad_requests"] += 1
            return error_response(400, "body must be a JSON object with a non-empty "
                               "\"operations\" array", "INVALID_REQUEST")
        errors = [validate(op) for op in ops]
        if any(errors):
            self.counts["rejected"] += 1
            return json_response(400, {"status": "REJECTED",
                                       "receipts": [self._rejected_receipt(e)
                                                    for e in errors]})
        task = self.new_task(params["src"], kind, ops, len(ops))
        return self.accepted(task)

    @staticmethod
    def _rejected_receipt(error):
        if error is None:
            return {"status": "CANCELLED"}
        return {"status": "FAILURE",
                "error": {"code": 400, "message": error, "type": "VALIDATION"}}

    def new_task(self, src, kind, ops, count):
        cfg = self.config
        task = Task("bk_%d" % self.next_task, src, kind, ops, count,
                    int(cfg.get("pending_polls", 1)),
                    bool(cfg.get("task_failure_all", False)))
        self.next_task += 1
        self.tasks[task.id] = task
        self.counts["tasks"] += 1
        self.counts["operations"] += count
        return task

    def accepted(self, task):
        id_member = "bulkId" if self.config.get("legacy_bulk_id") else "taskId"
        return Response(202, b'{"status": "ACCEPTED", "%s": "%s"}'
                        % (id_member.encode(), task.id.encode()))

    def bench_submit(self, kind, req, params):
        # No JSON parsing: at a million rows the mock must not be the bottleneck.
        task = self.new_task(params["src"], kind, None, count_operations(req.body))
        return self.accepted(task)

    # -- poll -----------------------------------------------------------------

    def poll(self, kind, req, params):
        denied = self.check_auth(req)
        if denied:
            return denied
        task = self.tasks.get(params["task"])
        if task is None or task.kind != kind or task.src != params["src"]:
            return error_response(404, "task not found", "NOT_FOUND")
        self.counts["polls"] += 1
        task.polls += 1
        with_receipts = req.query.get("withReceipts", "").lower() == "true"
        if self.ctx.bench:
            return self.bench_poll(task, with_receipts)
        if task.status == "PENDING" and task.polls > task.pending_polls:
            self.run(task)
        answer = {"status": task.status}
        if with_receipts:
            answer["receipts"] = task.receipts or task.pending_receipts()
        return json_response(200, answer)

    def bench_poll(self, task, with_receipts):
        if task.status == "PENDING":
            task.status = "SUCCESS"
            self.counts["applied"] += task.count
        if not with_receipts:
            return Response(200, b'{"status": "SUCCESS"}')
        return Response(200, b'{"status": "SUCCESS", "receipts": ['
                        + b", ".join([BENCH_RECEIPT] * task.count) + b"]}")

    # -- running a task -------------------------------------------------------

    def run(self, task):
        """Apply the task's operations once, in order, and keep the receipts."""
        if task.fail_all:
            task.receipts = [self._receipt(op, None, TASK_FAILURE_ALL_ERROR)
                             for op in task.ops]
        else:
            task.receipts = [self.apply(task, op) for op in task.ops]
        failed = sum(r["status"] == "FAILURE" for r in task.receipts)
        self.counts["failures"] += failed
        task.status = "FAILURE" if failed else "SUCCESS"

    def apply(self, task, op):
        """Apply one operation to the store; its receipt."""
        action = op["action"]
        body = op[MEMBERS[action]]
        data = body.get("data") or {}
        if data.get("_fail") is not None:
            return self._receipt(op, body.get("id"),
                                 {"code": 422, "message": str(data["_fail"]),
                                  "type": "VALIDATION"})
        rid = body.get("id")
        if action == "CREATE":
            rid = "gen_%d" % self.next_gen
            self.next_gen += 1
            self.counts["creates"] += 1
        key = (task.kind, task.src, body["type"], rid)
        if action == "DELETE":
            if key not in self.store:
                return self._receipt(op, rid, NOT_FOUND_ERROR)
            del self.store[key]
        else:
            self.store[key] = self._stored(body)
        self.applied[key] += 1
        self.counts["applied"] += 1
        return self._receipt(op, rid, None)

    @staticmethod
    def _stored(body):
        data = dict(body.get("data") or {})
        if "contained" in body:
            data["contained"] = body["contained"]
        return data

    @staticmethod
    def _receipt(op, rid, error):
        r = {"action": op["action"], "status": "FAILURE" if error else "SUCCESS"}
        if rid is not None:
            r["id"] = rid
        r["type"] = op[MEMBERS[op["action"]]]["type"]
        if error:
            r["error"] = dict(error)
        return r

    # -- control --------------------------------------------------------------

    def _select(self, mapping, req):
        """Entries of a (kind, src, type, id)-keyed mapping picked by the query.

        kind defaults to resources; src, when absent, takes every source.  Keys are
        ids when type is given, "type/id" otherwise.
        """
        q = req.query
        kind, src, rtype = q.get("kind", "resources"), q.get("src"), q.get("type")
        out = {}
        for (k, s, t, i), v in mapping.items():
            if k != kind or (src is not None and s != src):
                continue
            if rtype is None:
                out["%s/%s" % (t, i)] = v
            elif t == rtype:
                out[i] = v
        return out

    def ctl_store(self, req, params):
        return json_response(200, self._select(self.store, req))

    def ctl_applied(self, req, params):
        return json_response(200, self._select(self.applied, req))

    def ctl_tasks(self, req, params):
        return json_response(200, {t.id: {"src": t.src, "kind": t.kind,
                                          "status": t.status, "polls": t.polls,
                                          "operations": t.count}
                                   for t in self.tasks.values()})


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

CLINIA_URL = "/clinia/sources/fuzz/v1/resources/bulk"
CLINIA_MEMBER = {INSERT: ("CREATE", "create"), UPSERT: ("UPSERT", "upsert"),
                 DELETE: ("DELETE", "delete")}
# bits of byte 3: the dialect's boolean options in table order (resubmit_cancelled)
CLINIA_NO_RESUBMIT = 1


def clinia_ops(op, rows):
    """Operations for rows given as (id, data) pairs."""
    action, member = CLINIA_MEMBER[op]
    out = []
    for rid, data in rows:
        body = {"type": "Contact"}
        if op != INSERT:
            body["id"] = rid
        if op != DELETE:
            body["data"] = data
        out.append({"action": action, member: body})
    return out


def clinia_run(mock, op, rows, polls=2):
    """Submit, then poll the task until it is final: the answers in order."""
    out = [mock.call("POST", CLINIA_URL, {"operations": clinia_ops(op, rows)})]
    if out[0][0] == 202:
        task = json.loads(out[0][2]).get("taskId") or json.loads(out[0][2]).get("bulkId")
        for _ in range(polls):
            out.append(mock.call("GET", "%s/%s?withReceipts=true" % (CLINIA_URL, task)))
            if json.loads(out[-1][2]).get("status") != "PENDING":
                break
    return out


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock."""
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert-ok", seed_header(UPSERT, 3), clinia_run(mock, UPSERT, ok)
    yield "insert-one-fails", seed_header(INSERT, 3), clinia_run(
        mock, INSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]])
    yield "delete-missing", seed_header(DELETE, 2), clinia_run(mock, DELETE, ok[:2])

    # REJECTED: the failing operation settles, the cancelled ones are sent again
    rejected = clinia_run(mock, UPSERT, [ok[0], ("r2", {"_reject": "no"}), ok[2]])
    again = clinia_run(mock, UPSERT, [ok[0], ok[2]])
    yield "upsert-rejected-resubmit", seed_header(UPSERT, 3), rejected + again
    yield "upsert-rejected-no-resubmit", seed_header(UPSERT, 3, options=CLINIA_NO_RESUBMIT), rejected

    # a resumed batch: row 1 already has its receipt
    yield "upsert-resumed", seed_header(UPSERT, 3, settled=0b001), clinia_run(mock, UPSERT, ok[1:])

    mock.control("/config", {"clinia": {"legacy_bulk_id": True, "task_failure_all": True}})
    yield "insert-legacy-all-fail", seed_header(INSERT, 2), clinia_run(mock, INSERT, ok[:2])

    mock.control("/config", {"clinia": {"api_key": "k"}})
    yield "upsert-unauthorized", seed_header(UPSERT, 1), clinia_run(mock, UPSERT, ok[:1])
    mock.control("/reset")

    # a task the remote side forgot
    first = clinia_run(mock, UPSERT, ok[:2], polls=0)
    gone = mock.call("GET", CLINIA_URL + "/bk_404?withReceipts=true")
    yield "upsert-task-gone", seed_header(UPSERT, 2), first + [gone]

    # answers the mock never gives, for paths a short run would not reach
    pending = b'{"status": "PENDING"}'
    accepted = b'{"status": "ACCEPTED", "taskId": "t1"}'
    yield "edge-task-cancelled-in-part", seed_header(UPSERT, 2), [
        (202, JSON_CT, accepted),
        (200, JSON_CT, b'{"status": "CANCELLED", "receipts": [{"status": "SUCCESS", "id": "r1"}, '
                       b'{"status": "CANCELLED"}]}'),
        (202, JSON_CT, accepted),
        (200, JSON_CT, b'{"status": "SUCCESS", "receipts": [{"status": "SUCCESS", "id": "r2"}]}')]
    yield "edge-rejected-all-cancelled", seed_header(UPSERT, 2), [
        (400, JSON_CT, b'{"status": "REJECTED", "receipts": [{"status": "CANCELLED"}, '
                       b'{"status": "CANCELLED"}]}')]
    yield "edge-task-odd", seed_header(UPSERT, 1), [
        (202, JSON_CT, b'{"status": "ACCEPTED", "taskId": ".."}'),
        (202, JSON_CT, accepted), (200, JSON_CT, b'{"status": "LOST"}'),
        (200, JSON_CT, b'{"status": "SUCCESS", "receipts": [{"status": "ODD"}]}')]

    # what the fuzzer found (sql/fuzz_findings.sql replays them through the mock)
    yield "found-task-id-not-utf8", seed_header(INSERT, 2), [
        (202, JSON_CT, b'{"status": "ACCEPTED", "bulkId": "b\x95\xa26"}'), (200, JSON_CT, pending)]
    yield "found-task-id-needs-escaping", seed_header(INSERT, 2), [
        (202, JSON_CT, b'{"status": "ACCEPTED", "taskId": "bk6\x7f"}'), (200, JSON_CT, pending)]
