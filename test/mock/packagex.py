"""packagex.py - the mock's "packagex" dialect (docs/protocols/packagex.md).

This file owns the PackageX Batches API as bulkops sees it, mounted by mock_api.py
under /packagex, so a target url is http://127.0.0.1:PORT/packagex/v1:

  POST {url}/batches          submit: the batch (sync: 200 and final; mixed, async: 201)
  GET  {url}/batches/<id>     poll: requested -> queued -> processing -> final;
                              ?include_errors_json=true adds _errors_json_url when final
  GET  /packagex/files/<id>/errors.json?sig=...   the errors file (a "presigned" link:
                              no API key needed, a wrong sig is 403)

and its test hooks under /_control/packagex: store, batches.

A batch goes through phases parsing (duplicate ids), validation (rows asking to fail)
and processing (applied to a store kept per resource), then cleanup.  Actions: merge
(create or update by id), overwrite (merge, then delete every stored item of the
resource that the batch did not apply), delete (by id; a missing id fails).  Stored
items are the items without "id" and without members whose name starts with "_".

The batch's "data" is an array of items, or a CSV file as a data URL
("data:text/csv;base64,..."): a header row naming the members, then one item per
record, an empty field being null; such a batch is "via": "file".

Rows ask for failures through their data: "_fail": msg fails that row in validation
(code "validation_failed"); a null value asks for nothing, since a SQL source has the
column on every row.
Configuration (POST /_control/config {"packagex": {...}}), all optional:
  api_key                       PX-API-KEY required on every API request
  pending_polls (2)             polls answered in progress before a batch is final
  sync_max_items (100)          larger sync batches are refused (400 sync_limit_exceeded)
  max_items (10000)             larger batches are refused (400 too_many_items)
  final_status, reason          batches end "failed" | "timed_out" | "expired" with that
                                reason, applying nothing (the errors found by parsing
                                and validation are still reported)
  final_status_times (-1)       how many batches end so; -1: every one
  shuffle_errors (false)        the errors file lists its entries in random order
  wrong_error_ids (false)       the errors file names ids the rows were not sent with
  errors_host                   host[:port] of _errors_json_url instead of the Host asked
  resources                     {"<resource>": ["merge", ...]}: allowed actions, over
                                the defaults (contact, group: all; shipment, tracker,
                                asset: merge)

Assumed where the vendor is silent (kept here, in one place; see
docs/protocols/packagex.md):
  * the errors file is [{"index", "id", "errors": [{"code", "message"}]}], index being
    the position in the request's data; a row has at most one entry;
  * an item without a string "id" fails parsing (code "missing_id");
  * stats: merge counts created/updated, overwrite created/overwritten (replaced) and
    deleted (removed because absent from the batch), delete counts deleted;
  * the settings above are read when the batch is submitted.
"""

import base64
import collections
import csv
import hashlib
import io
import json
import random
import re

from dialect_tests import (BAD, BAD_CLEAN, BASE, DELETE, JSON_CT, OVERWRITE, UPSERT,
                           bad_refusal_case, hex_of, quote, seed_header)
from mock_api import MockDialect, Response, json_body, json_response

NAME = "packagex"

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    "target": {"url": "/v1", "resource": "contact"},
    "bench": {"auth": {"type": "header", "name": "PX-API-KEY", "value": "bench-key"}},
    "hostile": {
        "mock": {NAME: {"pending_polls": 0}},
        "kinds": [
            {"kind": "submit", "method": "POST", "path": "/v1/batches$", "status": 201,
             "step": "submit",
             "cases": [
                 {"label": "no batch id",
                  "edits": [{"at": "id", "delete": True}],
                  "persistent": r"answer to a batch submit without a usable batch id"},
                 {"label": "a batch id that is not UTF-8",
                  "edits": [{"at": "id", "set_bytes": hex_of(b"batch_\xff")}],
                  "persistent": r"answer to a batch submit without a usable batch id"},
                 {"label": "an unknown submit status",
                  "edits": [{"at": "status", "set": "weird"}],
                  "final": {"rows": BASE}},
                 bad_refusal_case(400, {"error": {}}, "error.code", "error.message"),
             ]},
            {"kind": "poll", "method": "GET", "path": "/v1/batches/", "status": 200,
             "step": "later",
             "cases": [
                 {"label": "an unknown batch status",
                  "edits": [{"at": "status", "set": "weird"}],
                  "persistent": r'batch \S+ in unknown status "weird"'},
                 {"label": "another batch's answer",
                  "edits": [{"at": "id", "set": "batch_999999"}],
                  "persistent": r"unexpected answer to a poll of batch \S+ \(HTTP 200\)"},
                 {"label": "an errors file without a link",
                  "edits": [{"at": "_errors_json_url", "delete": True}],
                  "persistent": r"has an errors file, but the answer names no "
                                r"_errors_json_url"},
                 # refused before any request: the port is never reached
                 {"label": "an errors file link that is not UTF-8",
                  "edits": [{"at": "_errors_json_url",
                             "set_bytes": hex_of(b"http://127.0.0.1:9/x\xff")}],
                  "persistent": r"link to the errors file of batch \S+ has a space, a "
                                r"control character or a byte beyond ASCII"},
                 {"label": "errors counted, but no errors file",
                  "edits": [{"at": "has_errors_file", "set": False}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"counted 1 failed rows, but its errors file lists 0",
                            "last_error": r"counted 1 failed rows, but its errors file "
                                          r"lists 0"}},
             ]},
            {"kind": "errors file", "method": "GET", "path": "/packagex/files/",
             "status": 200, "step": "later",
             "cases": [
                 {"label": "the same row listed twice",
                  "edits": [{"at": "", "dup": 1}],
                  "final": {"rows": BASE}},
                 {"label": "an entry for a row not sent",
                  "edits": [{"at": "", "dup": 1}, {"at": "-1.index", "set": 7}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"errors file does not match the request \(entry 2 has "
                                   r"no index between 0 and 2\)",
                            "last_error": r"errors file does not match the request"}},
                 {"label": "an entry with another row's id",
                  "edits": [{"at": "0.id", "set": "zzz"}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r'entry 1 names id "zzz" at index 1, where another id '
                                   r'was sent'}},
                 {"label": "fewer entries than failed rows",
                  "edits": [{"at": "", "drop": 1}],
                  "final": {"rows": ["unknown"] * 3,
                            "msg": r"counted 1 failed rows, but its errors file lists 0",
                            "last_error": r"counted 1 failed rows, but its errors file "
                                          r"lists 0"}},
                 {"label": "invalid UTF-8 in an error message",
                  "edits": [{"at": "0.errors.0.message", "set_bytes": BAD}],
                  "final": {"rows": BASE, "row_msg": {"2": "^%s$" % quote(BAD_CLEAN)}}},
                 {"label": "a \\u0000 escape inside a string",
                  "edits": [{"at": "0.errors.0.message", "set_bytes": hex_of(rb"a\u0000b")}],
                  "persistent": r"malformed JSON in an HTTP 200 answer"},
                 {"label": "an errors file that is not an array",
                  "edits": [{"at": "", "set": {"index": 1}}],
                  "persistent": r"the errors file of batch \S+ is not a JSON array"},
             ]},
        ],
    },
}

ACTIONS = ("merge", "overwrite", "delete")
MODES = ("sync", "mixed", "async")
DUPLICATE_HANDLING = ("ignore_all", "use_first")
FINAL = ("completed", "failed", "timed_out", "expired")
PHASES = ("parsing", "validation", "processing", "cleanup")
DEFAULT_RESOURCES = {
    "contact": ACTIONS, "group": ACTIONS,
    "shipment": ("merge",), "tracker": ("merge",), "asset": ("merge",),
}
DEFAULT_REASONS = {
    "failed": "processing failed",
    "timed_out": "processing exceeded its time limit",
    "expired": "the batch expired before it was processed",
}

BENCH_ITEM = b'{"id":'
BENCH_ITEM_RX = re.compile(rb'\{\s*"id"\s*:')


def px_error(status, code, message):
    return json_response(status, {"error": {"code": code, "message": message}})


def csv_items(url):
    """The items of a CSV file sent as a data URL, or None when it is not one."""
    prefix = "data:text/csv;base64,"
    if not url.startswith(prefix):
        return None
    try:
        text = base64.b64decode(url[len(prefix):], validate=True).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (ValueError, UnicodeDecodeError, csv.Error):
        return None
    if not rows:
        return None
    return [{k: (v if v != "" else None) for k, v in zip(rows[0], r)} for r in rows[1:]]


class Batch:
    """One submitted batch: its request, where it stands, and what it found."""

    def __init__(self, batch_id, resource, action, mode, dup, items, count,
                 pending_polls, final_status, reason):
        self.id = batch_id
        self.resource = resource
        self.action = action
        self.mode = mode
        self.duplicate_handling = dup
        self.items = items          # None in --bench
        self.count = count
        self.pending_polls = pending_polls
        self.final_status = final_status
        self.reason = reason
        self.polls = 0
        self.status = "requested"
        self.errors = {}            # index -> entry of the errors file
        self.phases = {p: dict(total=0, processed=0, success=0, error=0) for p in PHASES}
        self.stats = dict(created=0, updated=0, deleted=0, overwritten=0)
        self.valid = []             # indexes that passed parsing and validation
        self.sig = hashlib.sha256(("sig-" + batch_id).encode()).hexdigest()[:16]
        self.via = "api"

    def fail_row(self, index, code, message):
        item = self.items[index]
        rid = item.get("id") if isinstance(item, dict) else None
        self.errors.setdefault(index, {"index": index, "id": rid, "errors": []})[
            "errors"].append({"code": code, "message": message})

    def as_json(self, errors_url=None):
        out = {"id": self.id, "object": "batch", "resource": self.resource,
               "action": self.action, "mode": self.mode, "via": self.via,
               "duplicate_handling": self.duplicate_handling, "status": self.status,
               "phases": [dict(name=p, **self.phases[p]) for p in PHASES],
               "stats": dict(self.stats),
               "has_errors_file": bool(self.errors) and self.status in FINAL}
        if self.status in FINAL and self.status != "completed":
            out["reason"] = self.reason
        if errors_url:
            out["_errors_json_url"] = errors_url
        return out


class Dialect(MockDialect):
    COUNTERS = ("submits", "refused", "batches", "polls", "operations", "applied",
                "row_errors", "errors_fetches", "errors_fetches_with_key")

    def reset(self):
        super().reset()
        self.store = collections.defaultdict(dict)     # resource -> id -> data
        self.applied = collections.Counter()            # (resource, id) -> times
        self.batches = {}
        self.next_batch = 1
        self.final_fired = 0

    def routes(self):
        return [("POST", "/v1/batches", self.submit),
                ("GET", "/v1/batches/{batch}", self.poll),
                ("GET", "/files/{batch}/errors.json", self.errors_file)]

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/batches", self.ctl_batches)]

    def stats(self):
        return dict(super().stats(), store_size=sum(len(s) for s in self.store.values()))

    def check_auth(self, req):
        return self.refuse_credentials(req, lambda why: px_error(401, "unauthorized", why),
                                       "PX-API-KEY")

    def allowed(self, resource):
        resources = dict(DEFAULT_RESOURCES, **(self.config.get("resources") or {}))
        return resources.get(resource)

    # -- submit ---------------------------------------------------------------

    def submit(self, req, params):
        denied = self.check_auth(req)
        if denied:
            return denied
        self.counts["submits"] += 1
        if self.ctx.bench:
            return self.bench_submit(req)
        body = json_body(req)
        via = "api"
        if isinstance(body, dict) and isinstance(body.get("data"), str):
            via = "file"
            body = dict(body, data=csv_items(body["data"]))
        problem = self.check_submit(body)
        if problem:
            self.counts["refused"] += 1
            return px_error(400, *problem)
        cfg = self.config
        final_status = cfg.get("final_status")
        times = int(cfg.get("final_status_times", -1))
        if final_status and times != -1 and self.final_fired >= times:
            final_status = None
        if final_status:
            self.final_fired += 1
        batch = Batch("batch_%d" % self.next_batch, body["resource"], body["action"],
                      body.get("mode", "mixed"),
                      body.get("duplicate_handling", "ignore_all"),
                      body["data"], len(body["data"]), int(cfg.get("pending_polls", 2)),
                      final_status,
                      cfg.get("reason", DEFAULT_REASONS.get(final_status)))
        batch.via = via
        self.next_batch += 1
        self.batches[batch.id] = batch
        self.counts["batches"] += 1
        self.counts["operations"] += batch.count
        if batch.mode == "sync":
            self.check(batch)
            self.run(batch)
            return json_response(200, batch.as_json())
        if batch.mode == "mixed":
            self.check(batch)
            batch.status = "queued"
        return json_response(201, batch.as_json())

    def check_submit(self, body):
        """(code, message) when the request as a whole is refused, else None."""
        if not isinstance(body, dict):
            return "invalid_request", "body must be a JSON object"
        resource, action = body.get("resource"), body.get("action")
        data = body.get("data")
        if action not in ACTIONS:
            return "invalid_action", "unknown action %s" % json.dumps(action)
        allowed = self.allowed(resource) if isinstance(resource, str) else None
        if allowed is None:
            return "invalid_resource", "unknown resource %s" % json.dumps(resource)
        if action not in allowed:
            return "action_not_allowed", "%s does not allow %s" % (resource, action)
        mode = body.get("mode", "mixed")
        if mode not in MODES:
            return "invalid_mode", "unknown mode %s" % json.dumps(mode)
        if body.get("duplicate_handling", "ignore_all") not in DUPLICATE_HANDLING:
            return "invalid_duplicate_handling", "unknown duplicate_handling"
        if not isinstance(data, list) or not data:
            return "invalid_request", "data must be a non-empty array"
        if len(data) > int(self.config.get("max_items", 10000)):
            return "too_many_items", "at most %d items per batch" % int(
                self.config.get("max_items", 10000))
        if mode == "sync" and len(data) > int(self.config.get("sync_max_items", 100)):
            return "sync_limit_exceeded", "sync batches take at most %d items" % int(
                self.config.get("sync_max_items", 100))
        return None

    def bench_submit(self, req):
        # No JSON parsing: at a million rows the mock must not be the bottleneck.
        count = req.body.count(BENCH_ITEM) or len(BENCH_ITEM_RX.findall(req.body))
        batch = Batch("batch_%d" % self.next_batch, "bench", "merge", "mixed",
                      "ignore_all", None, count, 0, None, None)
        self.next_batch += 1
        batch.status = "queued"
        self.batches[batch.id] = batch
        self.counts["batches"] += 1
        self.counts["operations"] += batch.count
        return Response(201, b'{"id": "%s", "status": "queued"}' % batch.id.encode())

    # -- phases ---------------------------------------------------------------

    def check(self, batch):
        """Parsing (duplicate and missing ids) and validation (_fail), synchronous."""
        seen = {}
        counts = collections.Counter(item.get("id") for item in batch.items
                                     if isinstance(item, dict))
        parsed = []
        for i, item in enumerate(batch.items):
            rid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(rid, str) or not rid:
                batch.fail_row(i, "missing_id", "item has no string id")
            elif counts[rid] > 1 and batch.duplicate_handling == "ignore_all":
                batch.fail_row(i, "duplicate", "id %s appears %d times in the batch"
                               % (rid, counts[rid]))
            elif rid in seen:
                batch.fail_row(i, "duplicate", "id %s was taken at index %d"
                               % (rid, seen[rid]))
            else:
                parsed.append(i)
            seen.setdefault(rid, i)
        n = len(batch.items)
        batch.phases["parsing"].update(total=n, processed=n, success=len(parsed),
                                       error=n - len(parsed))
        for i in parsed:
            fail = batch.items[i].get("_fail")
            if fail is not None:
                batch.fail_row(i, "validation_failed", str(fail))
            else:
                batch.valid.append(i)
        batch.phases["validation"].update(total=len(parsed), processed=len(parsed),
                                          success=len(batch.valid),
                                          error=len(parsed) - len(batch.valid))
        batch.phases["processing"]["total"] = len(batch.valid)

    def run(self, batch):
        """Processing and cleanup, once; the batch is final afterwards."""
        if batch.final_status:
            batch.status = batch.final_status
        else:
            store = self.store[batch.resource]
            kept = set()
            for i in batch.valid:
                item = batch.items[i]
                rid = item["id"]
                # "_fail" and the like steer the mock; they are not data
                data = {k: v for k, v in item.items()
                        if k != "id" and not k.startswith("_")}
                if batch.action == "delete":
                    if rid not in store:
                        batch.fail_row(i, "not_found", "%s %s does not exist"
                                       % (batch.resource, rid))
                        batch.phases["processing"]["error"] += 1
                        continue
                    del store[rid]
                    batch.stats["deleted"] += 1
                elif rid in store:
                    if batch.action == "overwrite":
                        store[rid] = data
                        batch.stats["overwritten"] += 1
                    else:
                        store[rid].update(data)
                        batch.stats["updated"] += 1
                else:
                    store[rid] = data
                    batch.stats["created"] += 1
                kept.add(rid)
                self.applied[(batch.resource, rid)] += 1
                self.counts["applied"] += 1
                batch.phases["processing"]["success"] += 1
            batch.phases["processing"]["processed"] = len(batch.valid)
            if batch.action == "overwrite":
                gone = [rid for rid in store if rid not in kept]
                for rid in gone:
                    del store[rid]
                batch.stats["deleted"] += len(gone)
                batch.phases["cleanup"].update(total=len(gone), processed=len(gone),
                                               success=len(gone))
            batch.status = "completed"
        self.counts["row_errors"] += len(batch.errors)

    # -- poll -----------------------------------------------------------------

    def poll(self, req, params):
        denied = self.check_auth(req)
        if denied:
            return denied
        batch = self.batches.get(params["batch"])
        if batch is None:
            return px_error(404, "not_found", "batch not found")
        self.counts["polls"] += 1
        batch.polls += 1
        if self.ctx.bench:
            return self.bench_poll(batch)
        if batch.status not in FINAL:
            if batch.polls > batch.pending_polls:
                if batch.status == "requested":
                    self.check(batch)
                self.run(batch)
            else:
                steps = ("requested", "queued", "processing")
                batch.status = steps[min(steps.index(batch.status) + 1, len(steps) - 1)]
                if batch.status != "requested" and not batch.phases["parsing"]["total"]:
                    self.check(batch)
        url = None
        if batch.status in FINAL and \
                req.query.get("include_errors_json", "").lower() == "true":
            host = self.config.get("errors_host") or req.headers.get("Host")
            url = "http://%s%s/packagex/files/%s/errors.json?sig=%s" % (
                host, req.prefix, batch.id, batch.sig)
        return json_response(200, batch.as_json(url))

    def bench_poll(self, batch):
        if batch.status != "completed":
            batch.status = "completed"
            self.counts["applied"] += batch.count
        return Response(200, b'{"id": "%s", "status": "completed", "has_errors_file": false,'
                        b' "stats": {"created": %d}}' % (batch.id.encode(), batch.count))

    # -- the errors file ------------------------------------------------------

    def errors_file(self, req, params):
        batch = self.batches.get(params["batch"])
        if batch is None or req.query.get("sig") != batch.sig or \
                batch.status not in FINAL:
            return px_error(403, "forbidden", "invalid or expired link")
        self.counts["errors_fetches"] += 1
        if req.headers.get("PX-API-KEY") is not None:
            self.counts["errors_fetches_with_key"] += 1
        entries = [dict(e) for _, e in sorted(batch.errors.items())]
        if self.config.get("wrong_error_ids"):
            for e in entries:
                e["id"] = "not-%s" % e["id"]
        if self.config.get("shuffle_errors"):
            random.Random(batch.id).shuffle(entries)
        return json_response(200, entries)

    # -- control --------------------------------------------------------------

    def ctl_store(self, req, params):
        resource = req.query.get("resource")
        if resource is None:
            return json_response(200, {r: s for r, s in self.store.items()})
        return json_response(200, self.store.get(resource, {}))

    def ctl_batches(self, req, params):
        return json_response(200, {b.id: {"resource": b.resource, "action": b.action,
                                          "mode": b.mode, "via": b.via, "items": b.count,
                                          "duplicate_handling": b.duplicate_handling,
                                          "status": b.status, "polls": b.polls,
                                          "errors": len(b.errors)}
                                   for b in self.batches.values()})


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

PX_URL = "/packagex/v1/batches"
PX_ACTION = {UPSERT: "merge", OVERWRITE: "overwrite", DELETE: "delete"}


def px_run(mock, op, rows, mode="mixed", polls=4):
    """Submit, poll until final, then fetch the errors file it names."""
    body = {"resource": "contact", "action": PX_ACTION[op], "mode": mode,
            "duplicate_handling": "ignore_all",
            "data": [dict(data, id=rid) if op != DELETE else {"id": rid}
                     for rid, data in rows]}
    out = [mock.call("POST", PX_URL, body)]
    if out[0][0] not in (200, 201):
        return out
    batch = json.loads(out[0][2])
    for _ in range(polls):
        if batch.get("status") in ("completed", "failed", "timed_out", "expired"):
            break
        out.append(mock.call("GET", "%s/%s?include_errors_json=true" % (PX_URL, batch["id"])))
        batch = json.loads(out[-1][2])
    url = batch.get("_errors_json_url")
    if url:
        out.append(mock.call("GET", url[url.index("/packagex/"):]))
    return out


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock."""
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    # the errors file's link names a fixed host, not the mock's port of the day
    fixed = {"packagex": {"errors_host": "127.0.0.1:9"}}
    mock.control("/reset")
    mock.control("/config", fixed)
    yield "merge-sync", seed_header(UPSERT, 3, options=0), px_run(mock, UPSERT, ok, mode="sync")
    yield "merge-async-one-fails", seed_header(UPSERT, 3), px_run(
        mock, UPSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]], mode="async")
    yield "overwrite", seed_header(OVERWRITE, 2), px_run(mock, OVERWRITE, ok[:2])
    yield "delete-one-missing", seed_header(DELETE, 2), px_run(mock, DELETE, [ok[0], ("r9", {})])
    mock.control("/config", {"packagex": {"final_status": "failed"}})  # merged into fixed
    yield "merge-batch-failed", seed_header(UPSERT, 2), px_run(
        mock, UPSERT, [ok[0], ("r2", {"_fail": "no"})])
    mock.control("/reset")
    mock.control("/config", {"packagex": {"api_key": "k"}})
    yield "merge-unauthorized", seed_header(UPSERT, 1), px_run(mock, UPSERT, ok[:1])
    mock.control("/reset")

    # what the fuzzer found (sql/fuzz_findings.sql replays it through the mock)
    final = (b'{"id": "b1", "status": "completed", "has_errors_file": true, '
             b'"_errors_json_url": "http://127.0.0.1:9/packagex/fil s/b1/errors.json"}')
    yield "found-batch-id-dot-segment", seed_header(UPSERT, 1), [
        (201, JSON_CT, b'{"id": "..", "status": "queued"}'), (200, JSON_CT, final)]
    yield "found-errors-url-with-space", seed_header(DELETE, 2), [
        (201, JSON_CT, b'{"id": "b1", "status": "queued"}'), (200, JSON_CT, final),
        (200, JSON_CT, b'[{"index": 1, "id": "r2", "errors": [{"code": "not_found"}]}]')]
