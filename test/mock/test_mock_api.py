"""test_mock_api.py - proves the mock API server behaves as the bulkops tests rely on.

It starts test/mock/mock_api.py on a free port as a subprocess and checks, over real
HTTP: the readiness line and clean exit, the clinia flow (ACCEPTED -> PENDING ->
SUCCESS/FAILURE, receipts in order, CREATE ids, REJECTED, _fail rows, auth), the
sap_fsm bulk endpoints (shuffled 207 answers, created vs updated, lastChanged
conflicts and force, _fail rows, refused headers and dtos), the packagex flow (modes
and statuses, phases, errors file behind a signed link, duplicates, overwrite,
resources, final failures on request), the blueconic group and profile writes
(strategies, shuffled answers by identifier, failure states, 413), the control API
(reset, config, stats, request log, marks), every fault action, --bench, and the TLS
listener (with a private CA made by make_test_certs.sh).

Run from the worktree root:  python3 -m unittest test/mock/test_mock_api.py -v
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

MOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mock_api.py")
READY_RX = re.compile(r"^mock_api ready on 127\.0\.0\.1:(\d+)$")
TLS_RX = re.compile(r"^mock_api tls on 127\.0\.0\.1:(\d+)$")
MAKE_CERTS = os.path.join(os.path.dirname(MOCK), "make_test_certs.sh")
SRC = "/clinia/sources/src1/v1"
BULK = SRC + "/resources/bulk"


def start_mock(*args):
    """(process, port, seconds from spawn to the ready line)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", "--quiet"] + list(args),
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().rstrip("\n")
    m = TLS_RX.match(line)
    proc.tls_port = int(m.group(1)) if m else None
    if m:
        line = proc.stdout.readline().rstrip("\n")
    elapsed = time.monotonic() - t0
    m = READY_RX.match(line)
    if not m:
        proc.kill()
        raise AssertionError("no ready line, got %r" % line)
    return proc, int(m.group(1)), elapsed


def stop_mock(proc):
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(5)
    proc.stdout.close()
    return rc


def upsert(id_, type_="Patient", **data):
    return {"action": "UPSERT", "upsert": {"id": id_, "type": type_, "data": data}}


def create(type_="Patient", **data):
    return {"action": "CREATE", "create": {"type": type_, "data": data}}


def delete(id_, type_="Patient"):
    return {"action": "DELETE", "delete": {"id": id_, "type": type_}}


class MockTestCase(unittest.TestCase):
    """One server per class, reset before every test."""

    extra_args = ()

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.port, cls.startup = start_mock(*cls.extra_args)

    @classmethod
    def tearDownClass(cls):
        stop_mock(cls.proc)

    def setUp(self):
        self.ctl("POST", "/reset")

    # -- client helpers ---------------------------------------------------

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def raw(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers, body bytes) over a fresh connection."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def call(self, method, path, body=None, headers=None, timeout=10):
        """(status, parsed JSON body)."""
        status, _, data = self.raw(method, path, body, headers, timeout)
        return status, json.loads(data) if data else None

    def ctl(self, method, path, body=None):
        status, out = self.call(method, "/_control" + path, body)
        self.assertEqual(status, 200, out)
        return out

    def submit(self, ops, path=BULK, headers=None):
        return self.call("POST", path, {"operations": ops}, headers)

    def poll(self, task_id, path=BULK, receipts=True, headers=None):
        q = "?withReceipts=true" if receipts else ""
        return self.call("GET", "%s/%s%s" % (path, task_id, q), headers=headers)

    def faults(self, *rules):
        self.ctl("POST", "/faults", {"rules": list(rules)})

    def stats(self):
        return self.ctl("GET", "/stats")


class TestLifecycle(unittest.TestCase):
    def test_ready_line_pidfile_and_clean_exit(self):
        with tempfile.TemporaryDirectory() as d:
            pidfile = os.path.join(d, "mock.pid")
            proc, port, elapsed = start_mock("--pidfile", pidfile)
            self.assertLess(elapsed, 1.0, "startup must be well under a second")
            with open(pidfile) as f:
                self.assertEqual(int(f.read()), proc.pid)
            self.assertEqual(stop_mock(proc), 0)
            self.assertFalse(os.path.exists(pidfile), "pidfile left behind")


class TestClinia(MockTestCase):
    def test_accepted_pending_success_in_order(self):
        status, out = self.submit([upsert("p1", name="a"), create(name="b"),
                                   upsert("p2", name="c")])
        self.assertEqual(status, 202)
        self.assertEqual(out["status"], "ACCEPTED")
        task = out["taskId"]
        self.assertRegex(task, r"^bk_\d+$")

        status, out = self.poll(task)
        self.assertEqual((status, out["status"]), (200, "PENDING"))
        self.assertEqual([r["status"] for r in out["receipts"]], ["PENDING"] * 3)
        self.assertEqual(self.ctl("GET", "/clinia/store?type=Patient"), {},
                         "nothing applied while pending")

        status, out = self.poll(task)
        self.assertEqual(out["status"], "SUCCESS")
        rs = out["receipts"]
        self.assertEqual([(r["action"], r["status"], r["type"]) for r in rs],
                         [("UPSERT", "SUCCESS", "Patient"), ("CREATE", "SUCCESS", "Patient"),
                          ("UPSERT", "SUCCESS", "Patient")])
        self.assertEqual(rs[0]["id"], "p1")
        self.assertRegex(rs[1]["id"], r"^gen_\d+$")
        self.assertEqual(rs[2]["id"], "p2")

        store = self.ctl("GET", "/clinia/store?type=Patient")
        self.assertEqual(store, {"p1": {"name": "a"}, rs[1]["id"]: {"name": "b"},
                                 "p2": {"name": "c"}})
        # Polling again must not apply again.
        self.assertEqual(self.poll(task)[1], out)
        st = self.stats()["clinia"]
        self.assertEqual((st["applied"], st["creates"], st["max_applications_per_id"],
                          st["store_size"], st["tasks"]), (3, 1, 1, 3, 1))

    def test_pending_polls_and_receipts_optional(self):
        self.ctl("POST", "/config", {"clinia": {"pending_polls": 3}})
        task = self.submit([upsert("p1")])[1]["taskId"]
        for _ in range(3):
            out = self.poll(task, receipts=False)[1]
            self.assertEqual(out, {"status": "PENDING"})
        self.assertEqual(self.poll(task, receipts=False)[1], {"status": "SUCCESS"})

    def test_legacy_bulk_id(self):
        self.ctl("POST", "/config", {"clinia": {"legacy_bulk_id": True}})
        status, out = self.submit([upsert("p1")])
        self.assertEqual(status, 202)
        self.assertIn("bulkId", out)
        self.assertNotIn("taskId", out)

    def test_rejected_applies_nothing(self):
        ops = [upsert("p1"), upsert("p2", _reject="name is required"),
               {"action": "UPSERT", "upsert": {"type": "Patient", "data": {}}},
               {"action": "MERGE", "merge": {}},
               {"action": "CREATE"},
               create()]
        status, out = self.submit(ops)
        self.assertEqual(status, 400)
        self.assertEqual(out["status"], "REJECTED")
        self.assertEqual([r["status"] for r in out["receipts"]],
                         ["CANCELLED", "FAILURE", "FAILURE", "FAILURE", "FAILURE",
                          "CANCELLED"])
        err = out["receipts"][1]["error"]
        self.assertEqual(err, {"code": 400, "message": "name is required",
                               "type": "VALIDATION"})
        self.assertNotIn("taskId", out)
        st = self.stats()["clinia"]
        self.assertEqual((st["rejected"], st["tasks"], st["store_size"]), (1, 0, 0))

    def test_bad_bodies(self):
        for body in (b"not json", b"{}", b'{"operations": []}', b"[1]"):
            status, out = self.call("POST", BULK, body)
            self.assertEqual(status, 400, body)
            self.assertEqual(out["error"]["code"], 400)

    def test_fail_rows_and_missing_delete(self):
        task = self.submit([upsert("p1"), upsert("p2", _fail="bad birth date"),
                            delete("nope"), upsert("p3")])[1]["taskId"]
        self.poll(task)
        out = self.poll(task)[1]
        self.assertEqual(out["status"], "FAILURE")
        rs = out["receipts"]
        self.assertEqual([r["status"] for r in rs],
                         ["SUCCESS", "FAILURE", "FAILURE", "SUCCESS"])
        self.assertEqual(rs[1]["error"], {"code": 422, "message": "bad birth date",
                                          "type": "VALIDATION"})
        self.assertEqual(rs[2]["error"]["type"], "NOT_FOUND")
        self.assertEqual(rs[2]["error"]["code"], 404)
        self.assertEqual(sorted(self.ctl("GET", "/clinia/store?type=Patient")),
                         ["p1", "p3"])

    def test_delete_and_application_counts(self):
        for ops in ([upsert("p1", v=1)], [upsert("p1", v=2)], [delete("p1")]):
            task = self.submit(ops)[1]["taskId"]
            self.poll(task)
            self.assertEqual(self.poll(task)[1]["status"], "SUCCESS")
        self.assertEqual(self.ctl("GET", "/clinia/store?type=Patient"), {})
        self.assertEqual(self.ctl("GET", "/clinia/applied?type=Patient"), {"p1": 3})
        self.assertEqual(self.stats()["clinia"]["max_applications_per_id"], 3)

    def test_task_failure_all(self):
        self.ctl("POST", "/config", {"clinia": {"task_failure_all": True,
                                                "pending_polls": 0}})
        task = self.submit([upsert("p1"), create()])[1]["taskId"]
        out = self.poll(task)[1]
        self.assertEqual(out["status"], "FAILURE")
        self.assertEqual([r["status"] for r in out["receipts"]], ["FAILURE"] * 2)
        self.assertEqual(self.stats()["clinia"]["store_size"], 0)

    def test_contained_and_relationships_store(self):
        op = upsert("r1", "Link", w=1)
        op["upsert"]["contained"] = [{"x": 1}]
        rel = SRC + "/relationships/bulk"
        task = self.submit([op], path=rel)[1]["taskId"]
        self.poll(task, path=rel)
        self.assertEqual(self.poll(task, path=rel)[1]["status"], "SUCCESS")
        self.assertEqual(self.ctl("GET", "/clinia/store?type=Link&kind=relationships"),
                         {"r1": {"w": 1, "contained": [{"x": 1}]}})
        self.assertEqual(self.ctl("GET", "/clinia/store?type=Link"), {})
        # A task belongs to its kind and source.
        self.assertEqual(self.poll(task)[0], 404)
        self.assertEqual(self.poll(task, path="/clinia/sources/other/v1/relationships/bulk")[0],
                         404)

    def test_unknown_task_and_route(self):
        status, out = self.poll("bk_999")
        self.assertEqual(status, 404)
        self.assertEqual(out["error"]["code"], 404)
        self.assertEqual(self.call("GET", "/nowhere")[0], 404)
        self.assertEqual(self.call("DELETE", BULK)[0], 405)

    def test_auth(self):
        self.ctl("POST", "/config", {"clinia": {"api_key": "k1"}})
        status, out = self.submit([upsert("p1")])
        self.assertEqual(status, 401)
        self.assertEqual(out, {"error": {"code": 401, "message": "invalid api key"}})
        self.assertEqual(self.submit([upsert("p1")], headers={"X-Clinia-API-Key": "no"})[0],
                         401)
        status, out = self.submit([upsert("p1")], headers={"X-Clinia-API-Key": "k1"})
        self.assertEqual(status, 202)
        self.assertEqual(self.poll(out["taskId"])[0], 401)

        self.ctl("POST", "/reset")
        self.ctl("POST", "/config", {"clinia": {"bearer": "tok"}})
        self.assertEqual(self.submit([upsert("p1")])[0], 401)
        self.assertEqual(self.submit([upsert("p1")],
                                     headers={"Authorization": "Bearer tok"})[0], 202)

        self.ctl("POST", "/reset")
        self.ctl("POST", "/config", {"clinia": {"basic": "u:p"}})
        good = "Basic " + base64.b64encode(b"u:p").decode()
        bad = "Basic " + base64.b64encode(b"u:x").decode()
        self.assertEqual(self.submit([upsert("p1")], headers={"Authorization": bad})[0], 401)
        self.assertEqual(self.submit([upsert("p1")], headers={"Authorization": good})[0], 202)

    def test_chunked_request_body(self):
        body = json.dumps({"operations": [upsert("p1")]}).encode()
        c = self.conn()
        c.request("POST", BULK, body=iter([body[:10], body[10:]]), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        self.assertEqual(r.status, 202, r.read())
        c.close()


FSM = "/sap_fsm/api/data/v4/Activity/externalId/bulk"
FSM_HEADERS = {"X-Client-ID": "bulkops", "X-Client-Version": "1.0",
               "X-Account-ID": "acct", "X-Company-ID": "comp"}


class TestSapFsm(MockTestCase):
    def fsm(self, method, items, query="?dtos=Activity.43", headers=None):
        return self.call(method, FSM + query, items, dict(FSM_HEADERS, **(headers or {})))

    @staticmethod
    def by_ext(elements):
        out = {}
        for el in elements:
            ext = el.get("externalId") or el.get("activity", {}).get("externalId")
            out[ext] = el
        return out

    def test_created_then_updated_shuffled(self):
        items = [{"externalId": "a%d" % i, "subject": "s%d" % i} for i in range(8)]
        status, out = self.fsm("PATCH", items)
        self.assertEqual(status, 207)
        self.assertEqual(len(out), 8)
        order = [el["activity"]["externalId"] for el in out]
        self.assertNotEqual(order, [i["externalId"] for i in items], "not shuffled")
        self.assertEqual(sorted(order), sorted(i["externalId"] for i in items))
        first = self.by_ext(out)
        self.assertEqual({el["status"] for el in out}, {201})
        self.assertRegex(first["a0"]["activity"]["id"], r"^[0-9A-F]{32}$")
        self.assertEqual(first["a0"]["location"],
                         "/api/data/v4/Activity/" + first["a0"]["activity"]["id"])
        self.assertEqual(first["a0"]["activity"]["subject"], "s0")

        status, out = self.fsm("PATCH", [{"externalId": "a0", "status": "open"}])
        el = out[0]
        self.assertEqual((status, el["status"]), (207, 200))
        self.assertEqual(el["activity"]["id"], first["a0"]["activity"]["id"])
        self.assertEqual(el["activity"]["subject"], "s0", "PATCH keeps other fields")
        self.assertGreater(el["activity"]["lastChanged"], first["a0"]["activity"]["lastChanged"])
        # PUT replaces the whole object
        out = self.fsm("PUT", [{"externalId": "a0", "status": "done"}])[1]
        self.assertNotIn("subject", out[0]["activity"])
        store = self.ctl("GET", "/sap_fsm/store?resource=Activity")
        self.assertEqual(store["a0"]["status"], "done")
        st = self.stats()["sap_fsm"]
        self.assertEqual((st["created"], st["updated"], st["operations"], st["store_size"]),
                         (8, 2, 10, 8))

    def test_last_changed_conflicts_and_force(self):
        obj = self.fsm("PATCH", [{"externalId": "a"}])[1][0]["activity"]
        stale = obj["lastChanged"] - 1
        out = self.fsm("PATCH", [{"externalId": "a", "lastChanged": stale, "x": 1},
                                 {"externalId": "b", "lastChanged": stale}])[1]
        els = self.by_ext(out)
        self.assertEqual(els["a"]["status"], 409)
        self.assertEqual(els["a"]["ex"]["error"], "CA-41")
        self.assertIn("lastChanged", els["a"]["ex"]["message"])
        self.assertEqual(els["b"]["status"], 201, "no stored object: created")
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a", "lastChanged": obj["lastChanged"]}])
                         [1][0]["status"], 200)
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a", "lastChanged": stale}],
                                  "?dtos=Activity.43&forceUpdate=true")[1][0]["status"], 200)
        # deletes check it too
        self.assertEqual(self.fsm("DELETE", [{"externalId": "a", "lastChanged": stale}], "")
                         [1][0]["status"], 409)
        out = self.fsm("DELETE", [{"externalId": "a", "lastChanged": stale}],
                       "?forceDelete=true")[1]
        self.assertEqual(out[0]["status"], 200)
        self.assertEqual(out[0]["activity"]["externalId"], "a")
        self.assertEqual(sorted(self.ctl("GET", "/sap_fsm/store")), ["b"])
        self.assertEqual(self.stats()["sap_fsm"]["conflicts"], 2)

    def test_failures_and_missing_delete(self):
        out = self.fsm("PATCH", [{"externalId": "a", "_fail": "bad subject"},
                                 {"externalId": "b", "_fail": None}, {"x": 1}])[1]
        els = self.by_ext(out)
        self.assertEqual(els["a"]["status"], 422)
        self.assertEqual(els["a"]["ex"]["error"], "CA-20")
        self.assertEqual(els["a"]["ex"]["message"], "bad subject")
        self.assertEqual(els["b"]["status"], 201)
        self.assertEqual(els[None]["status"], 422)
        out = self.fsm("DELETE", [{"externalId": "zz"}], "")[1]
        self.assertEqual((out[0]["status"], out[0]["ex"]["error"], out[0]["externalId"]),
                         (404, "CA-15", "zz"))
        st = self.stats()["sap_fsm"]
        self.assertEqual((st["failures"], st["store_size"]), (3, 1))

    def test_duplicates_omitted_and_extra_elements(self):
        self.ctl("POST", "/config", {"sap_fsm": {"omit_external_ids": ["b"],
                                                 "extra_external_ids": ["ghost"],
                                                 "shuffle": False}})
        out = self.fsm("PATCH", [{"externalId": "a", "v": 1}, {"externalId": "b"},
                                 {"externalId": "a", "v": 2}])[1]
        self.assertEqual([(el["status"], el["activity"]["externalId"]) for el in out],
                         [(201, "a"), (200, "a"), (200, "ghost")])
        self.assertEqual(self.ctl("GET", "/sap_fsm/store")["b"]["externalId"], "b",
                         "an omitted element's item is still applied")
        self.assertEqual(self.ctl("GET", "/sap_fsm/applied"), {"a": 2, "b": 1})
        st = self.stats()["sap_fsm"]
        self.assertEqual((st["requests_with_duplicates"], st["max_applications_per_id"]), (1, 2))

    def test_refused_requests(self):
        for name in ("X-Client-ID", "X-Client-Version", "X-Account-ID", "X-Company-ID"):
            headers = dict(FSM_HEADERS)
            del headers[name]
            status, out = self.call("PATCH", FSM + "?dtos=Activity.43", [{"externalId": "a"}],
                                    headers)
            self.assertEqual(status, 400, name)
            self.assertEqual(out, {"error": "CA-10", "message": "missing header " + name})
        for query in ("", "?dtos=Activity", "?dtos=Other.2", "?dtos=Activity.x"):
            status, out = self.fsm("PATCH", [{"externalId": "a"}], query)
            self.assertEqual(status, 400, query)
            self.assertIn("dtos", out["message"])
        for body in ("not json", "[]", "{}"):
            self.assertEqual(self.fsm("PUT", body)[0], 400, body)
        self.assertEqual(self.call("POST", FSM, [], FSM_HEADERS)[0], 405)
        self.ctl("POST", "/config", {"sap_fsm": {"bearer": "tok",
                                                 "headers": {"X-Account-ID": "acct"}}})
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a"}])[0], 401)
        auth = {"Authorization": "Bearer tok"}
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a"}], headers=auth)[0], 207)
        status, out = self.fsm("PATCH", [{"externalId": "a"}],
                               headers=dict(auth, **{"X-Account-ID": "other"}))
        self.assertEqual((status, out["message"]),
                         (400, "unexpected value for header X-Account-ID"))
        st = self.stats()["sap_fsm"]
        self.assertEqual((st["requests"], st["bad_requests"], st["store_size"]), (4, 13, 1))

    def test_faults_apply_to_sap_fsm(self):
        self.faults({"method": "PATCH", "path": "/externalId/bulk$", "action": "status",
                     "status": 503, "headers": {"Retry-After": "0"}})
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a"}])[0], 503)
        self.assertEqual(self.fsm("PATCH", [{"externalId": "a"}])[0], 207)
        self.assertEqual(self.stats()["sap_fsm"]["created"], 1)


class TestControl(MockTestCase):
    def test_config_merge(self):
        self.ctl("POST", "/config", {"clinia": {"pending_polls": 3}})
        self.ctl("POST", "/config", {"clinia": {"api_key": "k"}})
        self.assertEqual(self.ctl("GET", "/config"),
                         {"clinia": {"pending_polls": 3, "api_key": "k"}})
        self.assertEqual(self.call("POST", "/_control/config", "[]")[0], 400)

    def test_stats_and_request_log(self):
        task = self.submit([upsert("p1"), upsert("p2")],
                           headers={"X-Test": "yes"})[1]["taskId"]
        self.poll(task)
        self.poll(task, receipts=False)
        st = self.stats()
        self.assertEqual(st["requests"],
                         {"POST /clinia/sources/{src}/v1/resources/bulk": 1,
                          "GET /clinia/sources/{src}/v1/resources/bulk/{task}": 2})
        self.assertEqual((st["clinia"]["submits"], st["clinia"]["polls"],
                          st["clinia"]["operations"]), (1, 2, 2))
        log = self.ctl("GET", "/requests?last=3")
        self.assertEqual([e["method"] for e in log], ["POST", "GET", "GET"])
        self.assertEqual(log[0]["headers"]["X-Test"], "yes")
        self.assertEqual(log[0]["path"], BULK)
        self.assertEqual(json.loads(log[0]["body"])["operations"][0]["upsert"]["id"], "p1")
        self.assertEqual(log[0]["body_len"], len(log[0]["body"]))
        self.assertEqual(log[1]["query"], {"withReceipts": "true"})
        self.assertEqual(len(self.ctl("GET", "/requests?last=1")), 1)

    def test_reset_clears_everything(self):
        self.ctl("POST", "/config", {"clinia": {"pending_polls": 0}})
        task = self.submit([upsert("p1")])[1]["taskId"]
        self.poll(task)
        self.faults({"path": "nothing-matches", "action": "status"})
        self.ctl("POST", "/reset")
        st = self.stats()
        self.assertEqual(st["requests"], {})
        self.assertEqual(st["faults_fired"], 0)
        self.assertTrue(all(v == 0 for v in st["clinia"].values()), st)
        self.assertEqual(self.ctl("GET", "/config"), {})
        self.assertEqual(self.ctl("GET", "/faults"), {"rules": []})
        self.assertEqual(self.ctl("GET", "/requests"), [])
        self.assertEqual(self.poll(task)[0], 404)

    def test_keep_alive(self):
        c = self.conn()
        body = json.dumps({"operations": [upsert("p1")]})
        socks = set()
        for _ in range(3):
            c.request("POST", BULK, body=body)
            r = c.getresponse()
            self.assertEqual(r.status, 202)
            r.read()
            socks.add(id(c.sock))
        c.close()
        self.assertEqual(len(socks), 1, "connection was not kept alive")

    def test_bad_fault_rule(self):
        status, _ = self.call("POST", "/_control/faults", {"rules": [{"action": "explode"}]})
        self.assertEqual(status, 400)

    def test_marks_count_rows_in_every_body(self):
        self.ctl("POST", "/marks", {"pattern": r"(row-\d+)\."})
        self.submit([create(tag="row-1."), create(tag="row-2.")])
        self.submit([create(tag="row-2."), create(tag="row-10.")])
        self.call("POST", "/nowhere", "row-3. is not: no API took it")
        self.faults({"action": "status", "status": 429, "method": "POST"})
        self.assertEqual(self.submit([create(tag="row-3.")])[0], 429)  # nor this
        self.faults({"action": "status", "status": 500, "when": "after", "method": "POST"})
        self.assertEqual(self.submit([create(tag="row-3.")])[0], 500)  # this was
        m = self.ctl("GET", "/marks?prefix=row-&upto=4")
        self.assertEqual((m["distinct"], m["total"], m["max"]), (4, 5, 2))
        self.assertEqual((m["sent"], m["sent_total"]), (4, 5))
        self.assertEqual((m["repeated_count"], m["repeated"]), (1, {"2": 2}))
        self.assertEqual((m["missing_count"], m["missing"]), (1, [4]))
        self.ctl("POST", "/marks", {})      # stops counting, forgets the counts
        self.submit([create(tag="row-1.")])
        self.assertEqual(self.ctl("GET", "/marks")["total"], 0)
        self.assertEqual(self.call("POST", "/_control/marks", {"pattern": "("})[0], 400)
        self.ctl("POST", "/marks", {"pattern": "row-1"})
        self.ctl("POST", "/reset")
        self.submit([create(tag="row-1.")])
        self.assertEqual(self.ctl("GET", "/marks")["pattern"], None)


    def test_dialect_modules_found_by_themselves(self):
        """Every module of the folder with NAME and Dialect is served and described,
        helpers are not; a module without TESTS gets the generic target."""
        described = self.ctl("GET", "/dialects")
        for name in ("clinia", "sap_fsm", "packagex", "blueconic", "salesforce",
                     "oauth", "abortable"):
            self.assertIn(name, described)
            self.assertEqual(described[name]["name"], name)
        self.assertNotIn("mock_api", described)
        self.assertNotIn("dialect_tests", described)
        self.assertEqual(described["oauth"]["mount"], "")
        self.assertEqual(described["abortable"]["crash"],
                         {"url": "/abortable", "resource": "Contact", "options": {}})
        self.assertFalse(described["abortable"]["described"])
        # fuzzing variants: their options whole, not over the target's
        self.assertEqual(described["abortable"]["fuzz"]["variants"], {})
        sync = described["http_json"]["fuzz"]["variants"]["sync"]
        self.assertEqual(sync["resource"], "items")
        self.assertNotIn("ok", sync["options"])
        self.assertIn("ok", described["http_json"]["fuzz"]["options"])
        out = subprocess.run([sys.executable, MOCK, "--describe"], capture_output=True,
                             text=True, check=True).stdout
        self.assertEqual(json.loads(out), described)


class TestFaults(MockTestCase):
    ops = [upsert("p1")]

    def assertApplied(self, tasks):
        self.assertEqual(self.stats()["clinia"]["tasks"], tasks)

    def test_status_with_retry_after_once(self):
        self.faults({"method": "POST", "path": "/resources/bulk$", "action": "status",
                     "status": 429, "headers": {"Retry-After": "1"}})
        status, headers, body = self.raw("POST", BULK, {"operations": self.ops})
        self.assertEqual(status, 429)
        self.assertEqual(headers["Retry-After"], "1")
        self.assertEqual(json.loads(body)["error"]["code"], 429)
        self.assertEqual(self.submit(self.ops)[0], 202, "fault fires once by default")
        self.assertApplied(1)
        self.assertEqual(self.stats()["faults_fired"], 1)

    def test_status_custom_body_skip_method_forever(self):
        self.faults({"method": "GET", "skip": 1, "times": -1, "action": "status",
                     "status": 403, "body": '[{"errorCode": "REQUEST_LIMIT_EXCEEDED"}]'})
        task = self.submit(self.ops)[1]["taskId"]      # POST: not matched
        self.assertEqual(self.poll(task)[0], 200)      # skipped
        for _ in range(3):
            status, out = self.poll(task)
            self.assertEqual(status, 403)
            self.assertEqual(out[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED")
        self.ctl("DELETE", "/faults")
        self.assertEqual(self.poll(task)[0], 200)
        self.assertEqual(self.stats()["faults_fired"], 3)

    def test_status_after_processes_the_request(self):
        self.faults({"path": "bulk$", "when": "after", "action": "status", "status": 502})
        self.assertEqual(self.submit(self.ops)[0], 502)
        self.assertApplied(1)

    def test_redirect(self):
        self.faults({"path": "bulk$", "action": "redirect", "status": 307,
                     "location": "http://localhost:1/elsewhere"})
        status, headers, body = self.raw("POST", BULK, {"operations": self.ops})
        self.assertEqual((status, headers["Location"], body),
                         (307, "http://localhost:1/elsewhere", b""))
        self.assertApplied(0)
        self.faults({"path": "bulk$", "action": "redirect", "when": "after"})
        self.assertEqual(self.raw("POST", BULK, {"operations": self.ops})[0], 302)
        self.assertApplied(1)

    def test_reset(self):
        self.faults({"path": "bulk$", "action": "reset"})
        with self.assertRaises((OSError, http.client.HTTPException)):
            self.raw("POST", BULK, {"operations": self.ops})
        self.assertApplied(0)
        self.assertEqual(self.submit(self.ops)[0], 202, "server survives a reset")

    def test_reset_after(self):
        self.faults({"path": "bulk$", "action": "reset", "when": "after"})
        with self.assertRaises((OSError, http.client.HTTPException)):
            self.raw("POST", BULK, {"operations": self.ops})
        self.assertApplied(1)

    def test_delay_before_and_after(self):
        self.faults({"path": "bulk$", "action": "delay", "seconds": 0.3})
        t0 = time.monotonic()
        self.assertEqual(self.submit(self.ops)[0], 202)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        # Slower than the client's timeout, yet applied: the classic lost answer.
        self.faults({"path": "bulk$", "action": "delay", "seconds": 1.0, "when": "after"})
        with self.assertRaises(TimeoutError):
            self.raw("POST", BULK, {"operations": self.ops}, timeout=0.3)
        self.assertApplied(2)

    def test_malformed(self):
        self.faults({"path": "bulk$", "action": "malformed", "status": 202})
        status, headers, body = self.raw("POST", BULK, {"operations": self.ops})
        self.assertEqual(status, 202)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(body, b'{"status": "ACC')
        with self.assertRaises(ValueError):
            json.loads(body)
        self.assertApplied(0)

    def test_malformed_bytes(self):
        raw = b'{"status": "ACCEPTED", "taskId": "bk\x95\xa2"}'
        self.faults({"path": "bulk$", "action": "malformed", "status": 202,
                     "body_base64": base64.b64encode(raw).decode()})
        status, _, body = self.raw("POST", BULK, {"operations": self.ops})
        self.assertEqual((status, body), (202, raw))
        self.assertApplied(0)

    def test_truncate(self):
        self.faults({"path": "bulk$", "action": "truncate", "when": "after"})
        with self.assertRaises(http.client.IncompleteRead):
            self.raw("POST", BULK, {"operations": self.ops})
        self.assertApplied(1)

    def test_huge(self):
        size = 5 * 1000 * 1000
        self.faults({"path": "bulk$", "action": "huge", "bytes": size})
        status, _, body = self.raw("POST", BULK, {"operations": self.ops})
        self.assertEqual(status, 200)
        self.assertEqual(len(body), size)
        self.assertEqual(json.loads(body)["status"], "SUCCESS")

    def test_huge_record(self):
        size = 3 * 1000 * 1000
        for shape, fill in (("long", b"x"), ("fields", b",")):
            self.faults({"path": "bulk$", "action": "huge_record", "shape": shape,
                         "bytes": size})
            status, _, body = self.raw("POST", BULK, {"operations": self.ops})
            self.assertEqual(status, 202)
            first, record = body.split(b"\n", 1)
            self.assertEqual(json.loads(first)["status"], "ACCEPTED")
            self.assertEqual(record, fill * size + b"\n")

    def test_trickle(self):
        self.faults({"path": "bulk$", "action": "trickle", "interval": 0.002})
        t0 = time.monotonic()
        status, headers, body = self.raw("POST", BULK, {"operations": self.ops})
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 202)
        self.assertEqual(json.loads(body)["status"], "ACCEPTED")
        self.assertGreaterEqual(elapsed, 0.002 * len(body))
        self.assertApplied(1)

    def test_control_is_never_faulted(self):
        self.faults({"times": -1, "action": "status", "status": 500})
        self.assertEqual(self.submit(self.ops)[0], 500)
        self.assertEqual(self.stats()["faults_fired"], 1)


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class TestTls(MockTestCase):
    """The TLS listener shares the plain one's state; its certificate is for
    localhost only and is trusted only through the private CA."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.TemporaryDirectory()
        subprocess.run(["sh", MAKE_CERTS, cls.pki.name], check=True)
        cls.extra_args = ("--tls-port", "0",
                          "--tls-cert", os.path.join(cls.pki.name, "server.pem"),
                          "--tls-key", os.path.join(cls.pki.name, "server.key"))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.pki.cleanup()

    def tls_get(self, host, cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        c = http.client.HTTPSConnection(host, self.proc.tls_port, timeout=10, context=ctx)
        try:
            c.request("GET", "/_control/stats")
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def test_private_ca_trusted_and_state_shared(self):
        self.assertIsNotNone(self.proc.tls_port)
        self.submit([upsert("p1")])
        status, out = self.tls_get("localhost", os.path.join(self.pki.name, "ca.pem"))
        self.assertEqual((status, out["clinia"]["submits"]), (200, 1))

    def test_untrusted_and_wrong_name_refused(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.tls_get("localhost", None)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.tls_get("127.0.0.1", os.path.join(self.pki.name, "ca.pem"))
        # the listener survives clients that refuse its certificate
        self.assertEqual(self.tls_get("localhost",
                                      os.path.join(self.pki.name, "ca.pem"))[0], 200)


class TestBench(MockTestCase):
    extra_args = ("--bench",)

    def test_bench_counts_without_parsing(self):
        body = '{"operations":[' + ",".join(
            '{"action":"UPSERT","upsert":{"id":"k%d","type":"T","data":{}}}' % i
            for i in range(5)) + "]}"
        status, out = self.call("POST", BULK, body)
        self.assertEqual((status, out["status"]), (202, "ACCEPTED"))
        self.assertEqual(self.poll(out["taskId"], receipts=False)[1], {"status": "SUCCESS"})
        out = self.poll(out["taskId"])[1]
        self.assertEqual(out["receipts"], [{"action": "UPSERT", "status": "SUCCESS"}] * 5)
        # Pretty-printed JSON is still counted.
        status, out = self.submit([upsert("a"), upsert("b")])
        self.assertEqual(len(self.poll(out["taskId"])[1]["receipts"]), 2)
        st = self.stats()
        self.assertTrue(st["bench"])
        self.assertEqual((st["clinia"]["submits"], st["clinia"]["operations"],
                          st["clinia"]["applied"]), (2, 7, 7))
        self.assertEqual(st["requests"]["POST /clinia/sources/{src}/v1/resources/bulk"], 2)


class TestSapFsmBench(MockTestCase):
    extra_args = ("--bench",)

    def test_bench_echoes_external_ids_without_parsing(self):
        body = "[" + ",".join('{"externalId":"k%d","v":%d}' % (i, i) for i in range(5)) \
            + ',{"externalId":"q\\"x"}]'
        status, out = self.call("PATCH", FSM + "?dtos=Activity.1", body, FSM_HEADERS)
        self.assertEqual(status, 207)
        self.assertEqual([el["activity"]["externalId"] for el in out],
                         ["k0", "k1", "k2", "k3", "k4", 'q"x'])
        self.assertEqual({el["status"] for el in out}, {200})
        self.assertEqual(self.stats()["sap_fsm"]["operations"], 6)
        # still refuses what a real server refuses
        self.assertEqual(self.call("PATCH", FSM + "?dtos=Activity.1", body)[0], 400)


PX = "/packagex/v1/batches"


def px_body(data, action="merge", resource="contact", mode="mixed", dup="ignore_all"):
    return {"resource": resource, "action": action, "mode": mode,
            "duplicate_handling": dup, "data": data}


def contact(id_, **data):
    return dict(id=id_, **data)


class TestPackagex(MockTestCase):
    def px_submit(self, data, headers=None, **kw):
        return self.call("POST", PX, px_body(data, **kw), headers)

    def px_poll(self, batch_id, errors=True, headers=None):
        q = "?include_errors_json=true" if errors else ""
        return self.call("GET", "%s/%s%s" % (PX, batch_id, q), headers=headers)

    def px_final(self, batch_id):
        """Poll until final; the last answer."""
        for _ in range(10):
            status, out = self.px_poll(batch_id)
            self.assertEqual(status, 200, out)
            if out["status"] in ("completed", "failed", "timed_out", "expired"):
                return out
        self.fail("batch %s never became final" % batch_id)

    def errors_of(self, answer):
        url = answer["_errors_json_url"]
        path = url.split("/", 3)[3]
        status, out = self.call("GET", "/" + path)
        self.assertEqual(status, 200, out)
        return out

    def store(self, resource="contact"):
        return self.ctl("GET", "/packagex/store?resource=" + resource)

    def test_mixed_phases_errors_file_and_store(self):
        status, out = self.px_submit([contact("a", name="A"), contact("b", _fail="bad email"),
                                      contact("c", name="C", _fail=None)])
        self.assertEqual((status, out["status"]), (201, "queued"))
        phases = {p["name"]: p for p in out["phases"]}
        self.assertEqual((phases["parsing"]["total"], phases["validation"]["error"]), (3, 1))
        self.assertEqual(self.store(), {})
        statuses = [self.px_poll(out["id"])[1]["status"] for _ in range(3)]
        self.assertEqual(statuses, ["processing", "processing", "completed"])
        final = self.px_poll(out["id"])[1]
        self.assertEqual(final["stats"]["created"], 2)
        self.assertTrue(final["has_errors_file"])
        self.assertNotIn("_errors_json_url", self.px_poll(out["id"], errors=False)[1])
        self.assertEqual(self.errors_of(final), [
            {"index": 1, "id": "b", "errors": [{"code": "validation_failed",
                                                "message": "bad email"}]}])
        # members starting with "_" steer the mock and are not stored
        self.assertEqual(self.store(), {"a": {"name": "A"}, "c": {"name": "C"}})
        self.assertEqual(self.stats()["packagex"]["errors_fetches"], 1)

    def test_async_moves_through_every_status(self):
        status, out = self.px_submit([contact("a")], mode="async")
        self.assertEqual((status, out["status"]), (201, "requested"))
        self.assertEqual(out["phases"][0]["total"], 0)
        seen = [self.px_poll(out["id"])[1]["status"] for _ in range(3)]
        self.assertEqual(seen, ["queued", "processing", "completed"])

    def test_pending_polls(self):
        self.ctl("POST", "/config", {"packagex": {"pending_polls": 0}})
        _, out = self.px_submit([contact("a")])
        self.assertEqual(self.px_poll(out["id"])[1]["status"], "completed")

    def test_sync_answers_final_within_its_limit(self):
        status, out = self.px_submit([contact("a"), contact("b")], mode="sync")
        self.assertEqual((status, out["status"], out["has_errors_file"]), (200, "completed", False))
        self.ctl("POST", "/config", {"packagex": {"sync_max_items": 1, "max_items": 3}})
        status, out = self.px_submit([contact("a"), contact("b")], mode="sync")
        self.assertEqual((status, out["error"]["code"]), (400, "sync_limit_exceeded"))
        status, out = self.px_submit([contact(str(i)) for i in range(4)])
        self.assertEqual((status, out["error"]["code"]), (400, "too_many_items"))
        self.assertEqual(self.stats()["packagex"]["refused"], 2)

    def test_duplicates(self):
        data = [contact("a", n=1), contact("b"), contact("a", n=2), contact("a", n=3)]
        _, out = self.px_submit(data, mode="sync")
        self.assertEqual([e["index"] for e in self.errors_of(self.px_poll(out["id"])[1])],
                         [0, 2, 3])
        self.assertEqual(sorted(self.store()), ["b"])
        _, out = self.px_submit(data, mode="sync", dup="use_first")
        errors = self.errors_of(self.px_poll(out["id"])[1])
        self.assertEqual([(e["index"], e["errors"][0]["code"]) for e in errors],
                         [(2, "duplicate"), (3, "duplicate")])
        self.assertEqual(self.store()["a"], {"n": 1})

    def test_overwrite_leaves_exactly_the_batch(self):
        self.px_submit([contact(k, v=1) for k in "abcd"], mode="sync")
        _, out = self.px_submit([contact("c", w=2), contact("e"), contact("f", _fail="no")],
                                action="overwrite", mode="sync")
        self.assertEqual(out["stats"], {"created": 1, "updated": 0, "deleted": 3,
                                        "overwritten": 1})
        self.assertEqual(self.store(), {"c": {"w": 2}, "e": {}})
        cleanup = [p for p in out["phases"] if p["name"] == "cleanup"][0]
        self.assertEqual(cleanup["success"], 3)

    def test_delete(self):
        self.px_submit([contact("a"), contact("b")], mode="sync")
        _, out = self.px_submit([contact("a"), contact("z")], action="delete", mode="sync")
        self.assertEqual(out["stats"]["deleted"], 1)
        errors = self.errors_of(self.px_poll(out["id"])[1])
        self.assertEqual([(e["id"], e["errors"][0]["code"]) for e in errors], [("z", "not_found")])
        self.assertEqual(sorted(self.store()), ["b"])

    def test_resources_and_bad_requests(self):
        status, out = self.px_submit([contact("a")], action="delete", resource="shipment")
        self.assertEqual((status, out["error"]["code"]), (400, "action_not_allowed"))
        status, out = self.px_submit([contact("a")], resource="contacts")
        self.assertEqual((status, out["error"]["code"]), (400, "invalid_resource"))
        self.ctl("POST", "/config", {"packagex": {"resources": {"shipment": ["merge", "delete"]}}})
        self.assertEqual(self.px_submit([contact("a")], action="delete",
                                        resource="shipment")[0], 201)
        for body in ({"resource": "contact", "action": "merge", "data": []},
                     {"resource": "contact", "action": "upsert", "data": [{}]},
                     px_body([contact("a")], mode="later"), px_body([contact("a")], dup="x")):
            self.assertEqual(self.call("POST", PX, body)[0], 400, body)
        self.assertEqual(self.call("POST", PX, "not json")[0], 400)
        _, out = self.px_submit([{"name": "no id"}], mode="sync")
        self.assertEqual(self.errors_of(self.px_poll(out["id"])[1])[0]["errors"][0]["code"],
                         "missing_id")
        self.assertEqual(self.px_poll("batch_999")[0], 404)

    def test_final_status_on_request(self):
        self.ctl("POST", "/config", {"packagex": {"final_status": "timed_out",
                                                  "final_status_times": 1}})
        _, out = self.px_submit([contact("a"), contact("b", _fail="no")])
        final = self.px_final(out["id"])
        self.assertEqual((final["status"], final["reason"]),
                         ("timed_out", "processing exceeded its time limit"))
        self.assertEqual([e["id"] for e in self.errors_of(final)], ["b"])
        self.assertEqual(self.store(), {})
        _, out = self.px_submit([contact("a")])
        self.assertEqual(self.px_final(out["id"])["status"], "completed")
        self.ctl("POST", "/config", {"packagex": {"final_status": "failed", "reason": "r",
                                                  "final_status_times": -1}})
        _, out = self.px_submit([contact("a")], mode="sync")
        self.assertEqual((out["status"], out["reason"]), ("failed", "r"))

    def test_errors_link(self):
        self.ctl("POST", "/config", {"packagex": {"shuffle_errors": True, "api_key": "k"}})
        key = {"PX-API-KEY": "k"}
        _, out = self.px_submit([contact(str(i), _fail="bad") for i in range(20)], key)
        for _ in range(3):
            final = self.px_poll(out["id"], headers=key)[1]
        url = final["_errors_json_url"]
        # a presigned link: no key needed, but the signature is
        indexes = [e["index"] for e in self.errors_of(final)]
        self.assertEqual(sorted(indexes), list(range(20)))
        self.assertNotEqual(indexes, list(range(20)))
        self.assertEqual(self.call("GET", "/" + url.split("/", 3)[3].replace("sig=", "sig=x"))[0],
                         403)
        self.ctl("POST", "/config", {"packagex": {"wrong_error_ids": True,
                                                  "errors_host": "files.example.invalid"}})
        final = self.px_poll(out["id"], headers=key)[1]
        self.assertTrue(final["_errors_json_url"].startswith("http://files.example.invalid/"))
        self.assertTrue(all(e["id"].startswith("not-") for e in self.errors_of(final)))
        self.assertEqual(self.stats()["packagex"]["errors_fetches_with_key"], 0)

    def test_auth(self):
        self.ctl("POST", "/config", {"packagex": {"api_key": "k"}})
        status, out = self.px_submit([contact("a")])
        self.assertEqual((status, out["error"]["code"]), (401, "unauthorized"))
        status, out = self.px_submit([contact("a")], {"PX-API-KEY": "k"})
        self.assertEqual(status, 201)
        self.assertEqual(self.px_poll(out["id"])[0], 401)


class TestTaggedPaths(MockTestCase):
    """/_t/<tag>/<path> is served as <path>; faults see the tag."""

    def test_tag_routes_and_scopes_faults(self):
        tagged = "/_t/case1" + BULK
        self.faults({"path": "^/_t/case1/", "times": -1, "action": "status", "status": 500})
        self.assertEqual(self.submit(self.ops())[0], 202, "untagged: no fault")
        self.assertEqual(self.submit(self.ops(), path=tagged)[0], 500)
        self.ctl("DELETE", "/faults")
        status, out = self.submit(self.ops(), path=tagged)
        self.assertEqual(status, 202)
        # the task is the same whichever way it is reached
        self.assertEqual(self.poll(out["taskId"])[0], 200)
        self.assertEqual(self.ctl("GET", "/requests?last=1")[0]["path"], BULK + "/" + out["taskId"])
        self.assertEqual([r["path"] for r in self.ctl("GET", "/requests")][1], tagged)

    def test_links_keep_the_tag(self):
        self.ctl("POST", "/config", {"packagex": {"pending_polls": 0}})
        tagged = "/_t/px9" + PX
        _, out = self.call("POST", tagged, px_body([contact("a", _fail="no")]))
        _, out = self.call("GET", "%s/%s?include_errors_json=true" % (tagged, out["id"]))
        self.assertIn("/_t/px9/packagex/files/", out["_errors_json_url"])
        status, entries = self.call("GET", "/" + out["_errors_json_url"].split("/", 3)[3])
        self.assertEqual((status, entries[0]["id"]), (200, "a"))

    def test_control_is_never_tagged(self):
        self.assertEqual(self.raw("GET", "/_t/x/_control/stats")[0], 404)

    @staticmethod
    def ops():
        return [upsert("p1")]


class TestMutate(MockTestCase):
    """The mutate fault: the real answer, edited."""

    def setUp(self):
        super().setUp()
        self.ctl("POST", "/config", {"clinia": {"pending_polls": 0}})
        self.task = self.submit([upsert("p1"), upsert("p2", _fail="no"), upsert("p3")])[1]["taskId"]

    def mutate(self, *edits, **rule):
        self.faults(dict({"method": "GET", "action": "mutate", "edits": list(edits)}, **rule))

    def rule(self):
        return self.ctl("GET", "/faults")["rules"][0]

    def test_drop_dup_set_delete(self):
        self.mutate({"at": "receipts", "drop": 1}, {"at": "receipts", "dup": 2},
                    {"at": "receipts.*.status", "set": "WEIRD"},
                    {"at": "receipts.0.id", "delete": True}, {"at": "new", "set": [1]})
        status, out = self.poll(self.task)
        self.assertEqual(status, 200)
        self.assertEqual([r["status"] for r in out["receipts"]], ["WEIRD"] * 4)
        self.assertEqual([r.get("id") for r in out["receipts"]], [None, "p2", "p2", "p2"])
        self.assertEqual((out["status"], out["new"]), ("FAILURE", [1]))
        self.assertEqual((self.rule()["applied"], self.rule()["missed"]), (5, 0))
        self.assertEqual(self.poll(self.task)[1]["receipts"][0]["id"], "p1", "once by default")

    def test_set_bytes_makes_invalid_utf8(self):
        self.mutate({"at": "receipts.1.error.message", "set_bytes": "6261640aff fe22"})
        _, _, body = self.raw("GET", "%s/%s?withReceipts=true" % (BULK, self.task))
        self.assertIn(b'"message": "bad\n\xff\xfe""', body)
        with self.assertRaises(UnicodeDecodeError):
            body.decode("utf-8")

    def test_missed_edits_are_counted(self):
        self.mutate({"at": "receipts.7.status", "set": "X"}, {"at": "nothing", "drop": 1},
                    {"find": "no such text", "replace": "y"})
        self.assertEqual(self.poll(self.task)[0], 200)
        self.assertEqual((self.rule()["applied"], self.rule()["missed"]), (0, 3))

    def test_root_and_status(self):
        self.mutate({"at": "", "set": [1, 2]}, status=207)
        self.assertEqual(self.poll(self.task), (207, [1, 2]))

    def test_cut_keeps_a_matching_length(self):
        self.mutate({"cut": 0.5})
        status, headers, body = self.raw("GET", "%s/%s?withReceipts=true" % (BULK, self.task))
        self.assertEqual((status, int(headers["Content-Length"])), (200, len(body)))
        with self.assertRaises(ValueError):
            json.loads(body)

    def test_byte_edits_of_a_text_body(self):
        self.faults({"method": "GET", "action": "mutate",
                     "edits": [{"lines": "dup", "n": 2}, {"find": "FAILURE", "replace_bytes": "c328"}]})
        _, _, body = self.raw("GET", "%s/%s" % (BULK, self.task))
        self.assertEqual(body.count(b"\xc3("), 3, body)
        self.faults({"method": "GET", "action": "mutate", "edits": [{"lines": "drop", "n": 1}]})
        self.assertEqual(self.raw("GET", "%s/%s" % (BULK, self.task))[2], b"")

    def test_bad_rules_refused(self):
        for edits in ([], [{"at": "x"}], [{"at": "x", "set": 1, "drop": 1}],
                      [{"set": 1}], [{"at": "x", "set_bytes": "zz"}], [{"lines": "swap"}]):
            status, _ = self.call("POST", "/_control/faults",
                                  {"rules": [{"action": "mutate", "edits": edits}]})
            self.assertEqual(status, 400, edits)


class TestPackagexBench(MockTestCase):
    extra_args = ("--bench",)

    def test_bench_counts_without_parsing(self):
        body = '{"resource":"contact","action":"merge","data":[' + ",".join(
            '{"id":"k%d","name":"n"}' % i for i in range(5)) + "]}"
        status, out = self.call("POST", PX, body)
        self.assertEqual((status, out["status"]), (201, "queued"))
        out = self.call("GET", "%s/%s?include_errors_json=true" % (PX, out["id"]))[1]
        self.assertEqual((out["status"], out["has_errors_file"], out["stats"]["created"]),
                         ("completed", False, 5))
        # pretty-printed JSON is still counted
        self.call("POST", PX, px_body([contact("a"), contact("b")]))
        st = self.stats()["packagex"]
        self.assertEqual((st["submits"], st["operations"], st["applied"]), (2, 7, 5))


class TestAbortable(MockTestCase):
    JOBS = "/abortable/s1/jobs"

    def test_runs_to_done_or_is_aborted(self):
        self.ctl("POST", "/config", {"abortable": {"rows_per_poll": 1}})
        rows = [{"id": 1}, {"id": 2}, {"id": 3}]
        status, out = self.call("POST", self.JOBS, {"rows": rows})
        self.assertEqual(status, 202)
        job = out["id"]
        self.assertEqual(self.call("GET", "%s/%s" % (self.JOBS, job)),
                         (200, {"state": "running"}))
        self.assertEqual(self.call("POST", "%s/%s/abort" % (self.JOBS, job)),
                         (200, {"state": "aborted"}))
        self.assertEqual(self.call("GET", "%s/%s" % (self.JOBS, job)),
                         (200, {"state": "aborted", "results": ["ok", "skipped", "skipped"]}))
        self.assertEqual(self.ctl("GET", "/abortable/applied?src=s1"), {"1": 1})
        self.assertEqual(self.ctl("GET", "/abortable/jobs")[job]["aborts"], 1)

        self.ctl("POST", "/config", {"abortable": {"rows_per_poll": 5}})
        status, out = self.call("POST", self.JOBS, {"rows": rows})
        self.assertEqual(self.call("GET", "%s/%s" % (self.JOBS, out["id"])),
                         (200, {"state": "done", "results": ["ok", "ok", "ok"]}))
        self.assertEqual(self.call("GET", "/abortable/s2/jobs/%s" % out["id"])[0], 404)

    def test_abort_refused(self):
        self.ctl("POST", "/config", {"abortable": {"rows_per_poll": 0, "abort_status": 409}})
        _, out = self.call("POST", self.JOBS, {"rows": [{"id": 1}]})
        self.assertEqual(self.call("POST", "%s/%s/abort" % (self.JOBS, out["id"]))[0], 409)
        self.assertEqual(self.call("GET", "%s/%s" % (self.JOBS, out["id"])),
                         (200, {"state": "running"}))


BC = "/blueconic/rest/v2/"


def bc_entry(ident, key, strategy="UPSERT", group_type="company", **props):
    e = {"identifier": ident, "groupId": key, "strategy": strategy,
         "properties": [{"id": k, "values": v, "strategy": "SET"} for k, v in props.items()]}
    if group_type is not None:
        e["groupTypeId"] = group_type
    return e


class TestBlueconic(MockTestCase):
    def put(self, entries, resource="groups", headers=None):
        return self.call("PUT", BC + resource, entries, headers)

    @staticmethod
    def by_ident(elements):
        return {el.get("identifier"): el for el in elements}

    def test_upsert_update_delete_shuffled(self):
        entries = [bc_entry(str(i), "g%d" % i, name=["n%d" % i], tags=["a", "b"])
                   for i in range(8)]
        status, out = self.put(entries)
        self.assertEqual(status, 200)
        self.assertNotEqual([el["identifier"] for el in out], [str(i) for i in range(8)],
                            "not shuffled")
        els = self.by_ident(out)
        self.assertEqual(sorted(els), [str(i) for i in range(8)])
        self.assertEqual(els["3"], {"state": "CREATED", "groupId": "g3",
                                    "groupTypeId": "company", "identifier": "3"})
        store = self.ctl("GET", "/blueconic/store?resource=groups")
        self.assertEqual(store["company/g3"]["properties"],
                         {"name": ["n3"], "tags": ["a", "b"]})
        # UPDATE: modified, unchanged, or skipped when missing (and not created)
        out = self.by_ident(self.put([
            bc_entry("a", "g1", "UPDATE", name=["new"]),
            bc_entry("b", "g2", "UPDATE", name=["n2"]),
            bc_entry("c", "nope", "UPDATE", name=["x"]),
            bc_entry("d", "g4", "UPDATE", tags=[])])[1])
        self.assertEqual({k: v["state"] for k, v in out.items()},
                         {"a": "MODIFIED", "b": "UNCHANGED", "c": "SKIPPED", "d": "MODIFIED"})
        store = self.ctl("GET", "/blueconic/store?resource=groups")
        self.assertNotIn("company/nope", store)
        self.assertEqual(store["company/g4"]["properties"], {"name": ["n4"]},
                         "SET with no values removes the property")
        # the default strategy is UPDATE
        e = bc_entry("e", "nope2")
        del e["strategy"]
        self.assertEqual(self.put([e])[1][0]["state"], "SKIPPED")
        # DELETE
        out = self.by_ident(self.put([bc_entry("x", "g5", "DELETE"),
                                      bc_entry("y", "g5", "DELETE")])[1])
        self.assertEqual((out["x"]["state"], out["y"]["state"]), ("DELETED", "NOTFOUND"))
        st = self.stats()["blueconic"]
        self.assertEqual((st["created"], st["modified"], st["unchanged"], st["skipped"],
                          st["deleted"], st["notfound"], st["groups"]),
                         (8, 2, 1, 2, 1, 1, 7))

    def test_profiles_and_property_strategies(self):
        e = {"identifier": "1", "profileId": "p1", "strategy": "UPSERT",
             "properties": [{"id": "email", "values": ["a@x"], "strategy": "SET"},
                            {"id": "n", "values": ["2"], "strategy": "SET"}]}
        status, out = self.put([e], "profiles")
        self.assertEqual((status, out), (200, [{"state": "CREATED", "profileId": "p1",
                                                "identifier": "1"}]))
        e["properties"] = [{"id": "email", "values": ["b@x", "a@x"], "strategy": "ADD"},
                           {"id": "n", "values": ["3"], "strategy": "INCREMENT"},
                           {"id": "f", "values": ["1"], "strategy": "SET_IF_EMPTY"}]
        self.assertEqual(self.put([e], "profiles")[1][0]["state"], "MODIFIED")
        e["properties"] = [{"id": "email", "values": ["a@x"], "strategy": "REMOVE"},
                           {"id": "f", "values": ["2"], "strategy": "SET_IF_EMPTY"}]
        self.put([e], "profiles")
        self.assertEqual(self.ctl("GET", "/blueconic/store?resource=profiles")["p1"],
                         {"properties": {"email": ["b@x"], "n": ["5"], "f": ["1"]}})
        # without an id, UPSERT makes one
        out = self.put([{"identifier": "9", "strategy": "UPSERT"}], "profiles")[1][0]
        self.assertEqual(out["state"], "CREATED")
        self.assertRegex(out["profileId"], r"^new-\d+$")
        self.assertEqual(self.stats()["blueconic"]["profiles"], 2)

    def test_failure_states_and_validation_errors(self):
        self.ctl("POST", "/config", {"blueconic": {"group_types": ["company"]}})
        out = self.by_ident(self.put([
            bc_entry("1", "g1", group_type="planet"),
            bc_entry("2", "g2", _state=["WEIRD"]),
            bc_entry("3", "g3", _invalid=["email: not an address"])])[1])
        self.assertEqual(out["1"]["state"], "UNKNOWN_GROUP_TYPE")
        self.assertEqual(out["2"]["state"], "WEIRD")
        self.assertEqual((out["3"]["state"], out["3"]["validationErrors"]),
                         ("CREATED", {"_invalid": ["email: not an address"]}))
        self.assertEqual(sorted(self.ctl("GET", "/blueconic/store?resource=groups")),
                         ["company/g3"], "a forced state is not applied")

    def test_413_applies_the_first_entries_only(self):
        self.ctl("POST", "/config", {"blueconic": {"max_entries": 3}})
        status, out = self.put([bc_entry(str(i), "g%d" % i) for i in range(5)])
        self.assertEqual(status, 413)
        self.assertEqual(sorted(el["identifier"] for el in out), ["0", "1", "2"])
        self.assertEqual(sorted(self.ctl("GET", "/blueconic/store?resource=groups")),
                         ["company/g0", "company/g1", "company/g2"])
        st = self.stats()["blueconic"]
        self.assertEqual((st["requests_413"], st["max_entries_per_request"]), (1, 5))
        self.ctl("POST", "/config", {"blueconic": {"max_entries": 1000}})
        status, out = self.put([bc_entry(str(i), "h%d" % i) for i in range(1001)])
        self.assertEqual((status, len(out)), (413, 1000))
        self.assertNotIn("1000", {el["identifier"] for el in out})

    def test_duplicates_omitted_and_extra_elements(self):
        self.ctl("POST", "/config", {"blueconic": {"omit_identifiers": ["2"],
                                                   "extra_identifiers": ["ghost"],
                                                   "shuffle": False}})
        out = self.put([bc_entry("1", "g", v=["1"]), bc_entry("2", "h"),
                        bc_entry("3", "g", v=["2"])])[1]
        self.assertEqual([(el["identifier"], el["state"]) for el in out],
                         [("1", "CREATED"), ("3", "MODIFIED"), ("ghost", "MODIFIED")])
        self.assertIn("company/h", self.ctl("GET", "/blueconic/store?resource=groups"),
                      "an omitted element's entry is still applied")
        self.assertEqual(self.ctl("GET", "/blueconic/applied"), {"company/g": 2, "company/h": 1})
        st = self.stats()["blueconic"]
        self.assertEqual((st["requests_with_duplicates"], st["max_applications_per_id"]), (1, 2))

    def test_refused_requests(self):
        for body, field in (("not json", "body"), ({"a": 1}, "body"), ([1], "body"),
                            ([bc_entry("1", "g", "MERGE")], "[0].strategy"),
                            ([bc_entry("1", "g", n=[1])], "[0].properties.n"),
                            ([bc_entry(1, "g")], "[0].identifier"),
                            ([{"groupId": "g", "properties": [{"id": "x", "strategy": "NOPE"}]}],
                             "[0].properties.x")):
            status, out = self.put(body)
            self.assertEqual(status, 400, body)
            self.assertEqual((out["code"], out["errors"][0]["field"]), (400, field), body)
        self.assertEqual(self.put([], "segments")[0], 404)
        self.assertEqual(self.call("POST", BC + "groups", [])[0], 405)
        self.ctl("POST", "/config", {"blueconic": {"bearer": "tok"}})
        status, out = self.put([bc_entry("1", "g")])
        self.assertEqual((status, out["code"]), (401, 401))
        self.assertEqual(self.put([bc_entry("1", "g")],
                                  headers={"Authorization": "Bearer tok"})[0], 200)
        st = self.stats()["blueconic"]
        self.assertEqual((st["requests"], st["bad_requests"], st["groups"]), (1, 8, 1))

    def test_oauth_tokens_from_the_token_path(self):
        self.ctl("POST", "/config", {"blueconic": {"oauth": True},
                                     "oauth": {"client_id": "c", "client_secret": "s"}})
        self.assertEqual(self.put([bc_entry("1", "g")])[0], 401)
        status, _, body = self.raw("POST", "/blueconic/rest/v2/oauth/token",
                                   "grant_type=client_credentials&client_id=c&client_secret=s",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, body)
        token = json.loads(body)["access_token"]
        auth = {"Authorization": "Bearer " + token}
        self.assertEqual(self.put([bc_entry("1", "g")], headers=auth)[0], 200)
        self.ctl("POST", "/oauth/expire")
        self.assertEqual(self.put([bc_entry("1", "g")], headers=auth)[0], 401)

    def test_faults_apply_to_blueconic(self):
        self.faults({"method": "PUT", "path": "^/blueconic/", "action": "status",
                     "status": 429, "headers": {"Retry-After": "0"}})
        self.assertEqual(self.put([bc_entry("1", "g")])[0], 429)
        self.assertEqual(self.put([bc_entry("1", "g")])[0], 200)
        self.assertEqual(self.stats()["blueconic"]["created"], 1)


class TestBlueconicBench(MockTestCase):
    extra_args = ("--bench",)

    def test_bench_echoes_identifiers_without_parsing(self):
        body = "[" + ",".join('{"identifier":"%d","groupId":"k%d","properties":[]}' % (i, i)
                              for i in range(5)) + "]"
        status, out = self.call("PUT", BC + "groups", body)
        self.assertEqual(status, 200)
        self.assertEqual(out, [{"state": "MODIFIED", "identifier": str(i)} for i in range(5)])
        self.assertEqual(self.stats()["blueconic"]["operations"], 5)


if __name__ == "__main__":
    unittest.main()
