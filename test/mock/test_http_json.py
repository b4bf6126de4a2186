"""test_http_json.py - proves the mock's four http_json APIs (http_json.py) as bulkops'
tests rely on them: the sync array answered in order (created, then ok; inserts always
new; update and delete of missing keys; keys sent bare; _fail); the keyed batch
answered by ref in another order (modes per path, omitted and extra results); the
async task (202 with its id, running for pending_polls polls, done with one item per
row, a failed task without items, 404 for a task it does not know, mode and method
that must agree); Salesforce sObject Collections (create, update, upsert with
created, SaveResults in order, per-record errors, allOrNone, the 200-record limit,
an expired session as an error array); credentials; and --bench answering without
parsing.

Run from the worktree root:  python3 -m unittest test/mock/test_http_json.py -v
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_mock_api import MockTestCase  # noqa: E402

SYNC = "/http_json/sync/items"
KEYED = "/http_json/keyed/v2/products/batch"
ASYNC = "/http_json/async/orders/jobs"
SF = "/http_json/salesforce/services/data/v62.0/composite/sobjects"
ACCOUNT = {"type": "Account"}


class HttpJsonCase(MockTestCase):
    def configure(self, **cfg):
        self.ctl("POST", "/config", {"http_json": cfg})

    def store(self, shape, resource):
        return self.ctl("GET", "/http_json/store?shape=%s&resource=%s" % (shape, resource))


class TestSync(HttpJsonCase):
    def test_upsert_in_order_then_updated(self):
        status, out = self.call("POST", SYNC, [{"id": "a", "n": 1}, {"id": "b", "_fail": "no"},
                                               {"id": "c", "_fail": None}])
        self.assertEqual(status, 200)
        self.assertEqual(out, [{"status": "created", "id": "s-1"},
                               {"status": "error", "error": {"code": "INVALID", "message": "no"}},
                               {"status": "created", "id": "s-2"}])
        status, out = self.call("PUT", SYNC, [{"id": "c", "n": 3}, {"id": "a", "n": 2}])
        self.assertEqual(out, [{"status": "ok", "id": "s-2"}, {"status": "ok", "id": "s-1"}])
        self.assertEqual(self.store("sync", "items")["a"],
                         {"id": "a", "n": 2, "_remote_id": "s-1"})

    def test_insert_always_new_and_missing_keys(self):
        for _ in range(2):
            status, out = self.call("POST", SYNC + "/insert", [{"id": "a"}, {"name": "no key"}])
            self.assertEqual([o["status"] for o in out], ["created", "created"])
        stats = self.ctl("GET", "/stats")["http_json"]
        self.assertEqual((stats["created"], stats["max_applications_per_id"]), (4, 2))
        status, out = self.call("POST", SYNC + "/update", [{"id": "zz"}, {"id": "a", "x": 1}])
        self.assertEqual(out[0]["error"]["code"], "NOT_FOUND")
        self.assertEqual(out[1]["status"], "ok")
        # a delete takes the keys themselves too
        status, out = self.call("DELETE", SYNC, ["a", {"id": "a"}, 7])
        self.assertEqual([o["status"] for o in out], ["ok", "error", "error"])

    def test_refused_requests(self):
        self.assertEqual(self.call("POST", SYNC, {"id": "a"})[0], 400)
        self.assertEqual(self.call("POST", SYNC, [])[0], 400)
        self.assertEqual(self.call("POST", SYNC + "/merge", [{"id": "a"}])[0], 400)
        self.configure(bearer="tok")
        self.assertEqual(self.call("POST", SYNC, [{"id": "a"}])[0], 401)
        self.assertEqual(self.call("POST", SYNC, [{"id": "a"}],
                                   {"Authorization": "Bearer tok"})[0], 200)


class TestKeyed(HttpJsonCase):
    def records(self, *refs, **fields):
        return [{"ref": r, "fields": dict(fields)} for r in refs]

    def test_shuffled_partly_failed(self):
        recs = self.records(*("k%d" % i for i in range(6)))
        recs[2]["fields"]["_fail"] = "bad"
        status, out = self.call("POST", KEYED, {"mode": "upsert", "records": recs})
        self.assertEqual(status, 200)
        results = out["data"]["results"]
        self.assertNotEqual([r["ref"] for r in results], ["k%d" % i for i in range(6)])
        by_ref = {r["ref"]: r for r in results}
        self.assertEqual(by_ref["k2"], {"ref": "k2", "success": False,
                                        "error": {"code": "INVALID", "message": "bad"}})
        self.assertEqual(by_ref["k0"]["created"], True)
        status, out = self.call("POST", KEYED, {"mode": "upsert", "records": self.records("k0")})
        self.assertEqual(out["data"]["results"][0]["created"], False)

    def test_modes_per_path_and_odd_results(self):
        self.assertEqual(self.call("POST", KEYED, {"mode": "delete",
                                                   "records": self.records("a")})[0], 400)
        self.assertEqual(self.call("POST", KEYED + "/delete", {"mode": "upsert",
                                                               "records": self.records("a")})[0], 400)
        self.configure(omit_keys=["a"], extra_keys=["x"], shuffle=False)
        status, out = self.call("POST", KEYED, {"mode": "insert", "records": self.records("a", "b")})
        self.assertEqual([r["ref"] for r in out["data"]["results"]], ["b", "x"])
        status, out = self.call("POST", KEYED + "/delete",
                                {"mode": "delete", "records": self.records("a", "zz")})
        self.assertEqual([r["success"] for r in out["data"]["results"]], [False, True])


class TestAsync(HttpJsonCase):
    def submit(self, items, mode="upsert", method="POST"):
        status, out = self.call(method, "%s?mode=%s" % (ASYNC, mode), {"items": items})
        self.assertEqual(status, 202, out)
        return out["job"]["id"]

    def poll(self, task):
        return self.call("GET", "/http_json/async/jobs/" + task)

    def test_running_then_done(self):
        self.configure(pending_polls=2)
        task = self.submit([{"key": 1, "data": {"a": 1}}, {"key": "2", "data": {"_fail": "x"}}])
        self.assertEqual(self.poll(task)[1]["state"], "running")
        self.assertEqual(self.poll(task)[1]["state"], "running")
        self.assertEqual(self.store("async", "orders"), {})
        status, out = self.poll(task)
        self.assertEqual(out["state"], "done")
        self.assertEqual(out["items"], [
            {"key": 1, "outcome": "ok", "id": "a-1", "created": True},
            {"key": "2", "outcome": "failed", "error": {"code": "INVALID", "message": "x"}}])
        # applied once, whatever the polls
        self.assertEqual(self.poll(task)[1]["items"], out["items"])
        self.assertEqual(self.ctl("GET", "/stats")["http_json"]["created"], 1)
        self.configure(pending_polls=0)
        task = self.submit([{"key": 1}, {"key": 9}], mode="delete", method="DELETE")
        out = self.poll(task)[1]
        self.assertEqual([i["outcome"] for i in out["items"]], ["ok", "failed"])

    def test_failed_unknown_and_refused(self):
        self.configure(pending_polls=0, fail_all=True)
        task = self.submit([{"key": 1}])
        self.assertEqual(self.poll(task)[1], {"job": {"id": task}, "state": "failed"})
        self.assertEqual(self.poll("t999")[0], 404)
        self.assertEqual(self.call("POST", ASYNC + "?mode=delete", {"items": [{"key": 1}]})[0], 400)
        self.assertEqual(self.call("DELETE", ASYNC + "?mode=upsert", {"items": [{"key": 1}]})[0], 400)
        self.assertEqual(self.call("POST", ASYNC + "?mode=upsert", {"items": []})[0], 400)
        self.assertEqual(self.ctl("GET", "/http_json/tasks")[task]["state"], "failed")


class TestSalesforceCollections(HttpJsonCase):
    def test_create_upsert_update(self):
        status, out = self.call("POST", SF, {"allOrNone": False, "records": [
            {"attributes": ACCOUNT, "Name": "a"}, {"attributes": ACCOUNT, "_fail": "nope"},
            {"Name": "no attributes"}]})
        self.assertEqual(status, 200)
        self.assertEqual(out[0], {"id": "001000000000001AAA", "success": True, "errors": []})
        self.assertEqual(out[1]["errors"][0]["statusCode"], "FIELD_CUSTOM_VALIDATION_EXCEPTION")
        self.assertEqual(out[2]["errors"][0]["statusCode"], "INVALID_TYPE")
        path = SF + "/Account/Ext__c"
        recs = [{"attributes": ACCOUNT, "Ext__c": "E1"}, {"attributes": ACCOUNT, "Name": "x"}]
        status, out = self.call("PATCH", path, {"allOrNone": False, "records": recs})
        self.assertEqual((out[0]["created"], out[1]["errors"][0]["statusCode"]),
                         (True, "MISSING_ARGUMENT"))
        status, out = self.call("PATCH", path, {"allOrNone": False, "records": recs[:1]})
        self.assertEqual(out[0]["created"], False)
        status, out = self.call("PATCH", SF, {"records": [
            {"attributes": ACCOUNT, "id": out[0]["id"], "Name": "y"},
            {"attributes": ACCOUNT, "id": "nope"}]})
        self.assertEqual([o["success"] for o in out], [True, False])
        self.assertNotIn("created", out[0])

    def test_all_or_none_limit_and_session(self):
        status, out = self.call("POST", SF, {"allOrNone": True, "records": [
            {"attributes": ACCOUNT}, {"attributes": ACCOUNT, "_fail": "no"}]})
        self.assertEqual(out[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK")
        self.assertEqual(self.store("salesforce", "Account"), {})
        status, out = self.call("POST", SF, {"records": [{"attributes": ACCOUNT}] * 201})
        self.assertEqual((status, out[0]["errorCode"]), (400, "EXCEEDED_ID_LIMIT"))
        self.configure(bearer="t")
        status, out = self.call("POST", SF, {"records": [{"attributes": ACCOUNT}]})
        self.assertEqual((status, out[0]["errorCode"]), (401, "INVALID_SESSION_ID"))


class TestHttpJsonBench(HttpJsonCase):
    extra_args = ("--bench",)

    def test_bench_answers_without_parsing(self):
        status, _, body = self.raw("POST", SYNC, b'[{"id":1,"a":2},{"id":3}]')
        self.assertEqual((status, body), (200, b'[{"status":"ok"},{"status":"ok"}]'))
        status, out = self.call("POST", ASYNC + "?mode=insert",
                                b'{"items":[{"key":1,"data":{}},{"key":"a\\"b","data":{}}]}')
        self.assertEqual(status, 202)
        status, out = self.call("GET", "/http_json/async/jobs/" + out["job"]["id"])
        self.assertEqual(out, {"state": "done", "items": [{"key": 1, "outcome": "ok"},
                                                          {"key": 'a"b', "outcome": "ok"}]})


if __name__ == "__main__":
    unittest.main()
