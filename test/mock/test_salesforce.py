"""test_salesforce.py - proves the mock's Bulk API 2.0 ingest part (salesforce.py) as
bulkops' tests rely on it: the job lifecycle (Open -> UploadComplete -> InProgress for
in_progress_polls polls, with a growing processed count -> JobComplete); every operation
against the store; result files with every field quoted, in shuffled, reversed or upload
order, round-tripping commas, quotes and line breaks; _fail, _lock and _lost rows;
a Failed job with unprocessed records; Aborted on PATCH, keeping what was processed;
two uploads refusing to close; row marks counted when a job closes; 403 REQUEST_LIMIT_EXCEEDED and 401 INVALID_SESSION_ID as
error arrays; and --bench answering without parsing.

Run from the worktree root:  python3 -m unittest test/mock/test_salesforce.py -v
"""

import csv
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_mock_api import MockTestCase  # noqa: E402

BASE = "/salesforce/services/data/v62.0/jobs/ingest"
CSV = {"Content-Type": "text/csv"}


def rows_of(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


class SalesforceCase(MockTestCase):
    def configure(self, **cfg):
        self.ctl("POST", "/config", {"salesforce": cfg})

    def create(self, operation="insert", obj="Account", **extra):
        spec = dict({"object": obj, "operation": operation, "contentType": "CSV",
                     "columnDelimiter": "COMMA", "lineEnding": "LF"}, **extra)
        status, info = self.call("POST", BASE, spec)
        self.assertEqual(status, 200, info)
        self.assertEqual(info["state"], "Open")
        return info["id"]

    def upload(self, job, text):
        status, _, body = self.raw("PUT", "%s/%s/batches" % (BASE, job), text.encode(), CSV)
        self.assertEqual(status, 201, body)

    def close(self, job):
        return self.call("PATCH", "%s/%s/" % (BASE, job), {"state": "UploadComplete"})

    def poll(self, job):
        status, info = self.call("GET", "%s/%s/" % (BASE, job))
        self.assertEqual(status, 200, info)
        return info

    def file(self, job, name):
        status, headers, body = self.raw("GET", "%s/%s/%s/" % (BASE, job, name))
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/csv")
        return body

    def run_job(self, text, operation="insert", **extra):
        job = self.create(operation, **extra)
        self.upload(job, text)
        self.assertEqual(self.close(job)[0], 200)
        for _ in range(20):
            if self.poll(job)["state"] in ("JobComplete", "Failed", "Aborted"):
                break
        return job

    def store(self):
        return self.ctl("GET", "/salesforce/store?object=Account")


class TestSalesforceJobs(SalesforceCase):
    def test_lifecycle_with_progress(self):
        self.configure(in_progress_polls=3)
        job = self.create()
        self.upload(job, "Name\n" + "".join("n%d\n" % i for i in range(8)))
        status, info = self.close(job)
        self.assertEqual((status, info["state"]), (200, "UploadComplete"))
        seen = [(i["state"], i["numberRecordsProcessed"])
                for i in (self.poll(job) for _ in range(4))]
        self.assertEqual(seen, [("InProgress", 2), ("InProgress", 4), ("InProgress", 6),
                                ("JobComplete", 8)])
        self.assertEqual(self.poll(job)["state"], "JobComplete")
        # a final job takes no more data, nor a second close
        status, _, body = self.raw("PUT", "%s/%s/batches" % (BASE, job), b"Name\nx\n", CSV)
        self.assertEqual(status, 409)
        self.assertEqual(self.close(job)[1][0]["errorCode"], "INVALIDJOB")

    def test_quoted_fields_round_trip_in_any_order(self):
        text = ('Name,Note\n"a, b","say ""hi"""\n"two\nlines",plain\n"cr\rx",\n'
                'last,"#N/A"\n')
        for order in ("upload", "reverse", "shuffle"):
            self.ctl("POST", "/reset")
            self.configure(result_order=order)
            job = self.run_job(text)
            rows = rows_of(self.file(job, "successfulResults"))
            self.assertEqual(rows[0], ["sf__Id", "sf__Created", "Name", "Note"])
            got = [r[2:] for r in rows[1:]]
            want = [["a, b", 'say "hi"'], ["two\nlines", "plain"], ["cr\rx", ""],
                    ["last", "#N/A"]]
            if order == "upload":
                self.assertEqual(got, want)
            elif order == "reverse":
                self.assertEqual(got, want[::-1])
            else:
                self.assertEqual(sorted(got), sorted(want))
            self.assertTrue(all(r[1] == "true" and r[0].startswith("001") for r in rows[1:]))
        # every field is quoted, as Salesforce writes them
        self.assertTrue(self.file(job, "successfulResults").startswith(b'"sf__Id","sf__Created"'))
        stored = {v["Name"]: v for v in self.store().values()}
        self.assertIsNone(stored["last"]["Note"])          # "#N/A" sets null
        self.assertNotIn("Note", stored["cr\rx"])          # empty leaves it unset

    def test_operations_against_the_store(self):
        job = self.run_job("Ext__c,Name\nE1,one\nE2,two\n", "upsert", externalIdFieldName="Ext__c")
        ids = {r[2]: r[0] for r in rows_of(self.file(job, "successfulResults"))[1:]}
        job = self.run_job("Ext__c,Name\nE1,uno\nE3,three\n", "upsert",
                           externalIdFieldName="Ext__c")
        created = {r[2]: r[1] for r in rows_of(self.file(job, "successfulResults"))[1:]}
        self.assertEqual(created, {"E1": "false", "E3": "true"})
        self.assertEqual(self.store()[ids["E1"]]["Name"], "uno")
        job = self.run_job("Id,Name\n%s,UNO\n001999999999999AAA,x\n" % ids["E1"], "update")
        failed = rows_of(self.file(job, "failedResults"))
        self.assertEqual(failed[0], ["sf__Id", "sf__Error", "Id", "Name"])
        self.assertEqual(failed[1][1], "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id")
        self.assertEqual(self.store()[ids["E1"]]["Name"], "UNO")
        job = self.run_job("Id\n%s\n%s\n" % (ids["E2"], ids["E2"]), "hardDelete")
        self.assertEqual(len(rows_of(self.file(job, "successfulResults"))), 2)
        self.assertEqual(rows_of(self.file(job, "failedResults"))[1][1],
                         "ENTITY_IS_DELETED:entity is deleted")
        self.assertNotIn(ids["E2"], self.store())
        self.assertEqual(self.ctl("GET", "/salesforce/applied?object=Account")[ids["E1"]], 3)

    def test_fail_lock_and_lost_rows(self):
        text = ("Name,_fail,_lock,_lost\nok,,,\nbad,REQUIRED_FIELD_MISSING:Required fields "
                "are missing: [Name],,\nlocked,,1,\ngone,,,yes\n")
        job = self.run_job(text)
        ok = rows_of(self.file(job, "successfulResults"))
        failed = rows_of(self.file(job, "failedResults"))
        self.assertEqual([r[2] for r in ok[1:]], ["ok"])
        self.assertEqual(sorted((r[2], r[1]) for r in failed[1:]),
                         [("bad", "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]"),
                          ("locked", "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access "
                                     "to this record")])
        self.assertEqual(len(self.store()), 2)          # ok and gone were applied
        # the lock is gone the second time the same record comes
        job = self.run_job("Name,_fail,_lock,_lost\nlocked,,1,\n")
        self.assertEqual(len(rows_of(self.file(job, "successfulResults"))), 2)

    def test_failed_job_and_unprocessed_records(self):
        self.configure(fail_job={"after": 2, "times": 1, "message": "InvalidBatch : boom"},
                       result_order="upload")
        job = self.run_job("Name\na\nb\nc\nd\n")
        info = self.poll(job)
        self.assertEqual((info["state"], info["errorMessage"], info["numberRecordsProcessed"]),
                         ("Failed", "InvalidBatch : boom", 2))
        self.assertEqual(rows_of(self.file(job, "unprocessedrecords")), [["Name"], ["c"], ["d"]])
        self.assertEqual(len(rows_of(self.file(job, "successfulResults"))), 3)
        # only the configured number of jobs fail
        job = self.run_job("Name\ne\n")
        self.assertEqual(self.poll(job)["state"], "JobComplete")

    def test_abort_keeps_what_was_processed(self):
        self.configure(in_progress_polls=3, result_order="upload")
        job = self.create()
        self.upload(job, "Name\na\nb\nc\nd\n")
        self.close(job)
        self.assertEqual(self.poll(job)["numberRecordsProcessed"], 1)
        status, info = self.call("PATCH", "%s/%s" % (BASE, job), {"state": "Aborted"})
        self.assertEqual((status, info["state"]), (200, "Aborted"))
        self.assertEqual(len(rows_of(self.file(job, "successfulResults"))), 2)
        self.assertEqual(rows_of(self.file(job, "unprocessedrecords")), [["Name"], ["b"], ["c"], ["d"]])
        self.assertEqual(self.call("PATCH", "%s/%s/" % (BASE, job), {"state": "Aborted"})[0], 409)
        # an Open job aborts with nothing processed: its upload is unprocessed
        job = self.create()
        self.upload(job, "Name\ne\n")
        self.assertEqual(self.call("PATCH", "%s/%s/" % (BASE, job), {"state": "Aborted"})[0], 200)
        self.assertEqual(rows_of(self.file(job, "unprocessedrecords")), [["Name"], ["e"]])
        self.assertEqual(len(rows_of(self.file(job, "successfulResults"))), 1)
        self.assertEqual(self.stats()["salesforce"]["aborts"], 2)

    def test_two_uploads_refuse_to_close(self):
        job = self.create()
        self.upload(job, "Name\na\n")
        self.upload(job, "Name\na\n")
        status, err = self.close(job)
        self.assertEqual(status, 400)
        self.assertEqual(err[0]["errorCode"], "INVALIDJOB")
        self.assertIn("Found multiple contents", err[0]["message"])
        self.assertEqual(self.poll(job)["state"], "Open")
        self.assertEqual(len(self.store()), 0)
        status, err = self.close(self.create())
        self.assertEqual((status, err[0]["errorCode"]), (400, "INVALIDJOB"))

    def test_marks_count_rows_when_their_job_closes(self):
        self.ctl("POST", "/marks", {"pattern": r"(row-\d+)\."})
        twice = self.create()
        self.upload(twice, "Name\nrow-1.\n")
        self.upload(twice, "Name\nrow-1.\n")
        self.assertEqual(self.close(twice)[0], 400)
        self.upload(self.create(), "Name\nrow-2.\n")    # never closed
        self.assertEqual(self.ctl("GET", "/marks")["total"], 0)
        self.run_job("Name\nrow-1.\nrow-3.\n")
        m = self.ctl("GET", "/marks?prefix=row-&upto=3")
        self.assertEqual((m["sent"], m["sent_total"], m["missing"]), (2, 2, [2]))

    def test_error_arrays(self):
        self.configure(request_limit_exceeded=2, objects=["Account"])
        for _ in range(2):
            status, err = self.call("POST", BASE, {"object": "Account", "operation": "insert"})
            self.assertEqual(status, 403)
            self.assertEqual(err, [{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                    "message": "TotalRequests Limit exceeded."}])
        self.assertEqual(self.stats()["salesforce"]["limited"], 2)
        status, err = self.call("POST", BASE, {"object": "Nope__c", "operation": "insert"})
        self.assertEqual((status, err[0]["errorCode"]), (400, "INVALIDJOB"))
        status, err = self.call("POST", BASE, {"object": "Account", "operation": "upsert"})
        self.assertEqual((status, err[0]["errorCode"]), (400, "INVALIDJOB"))
        status, err = self.call("GET", BASE + "/750000000000099AAA/")
        self.assertEqual((status, err[0]["errorCode"]), (404, "NOT_FOUND"))
        job = self.create()
        status, _, _ = self.raw("PUT", "%s/%s/batches" % (BASE, job), b"Name\na\n",
                                {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.configure(bearer="tok")
        status, err = self.call("GET", "%s/%s/" % (BASE, job))
        self.assertEqual((status, err[0]["errorCode"]), (401, "INVALID_SESSION_ID"))
        status, _ = self.call("GET", "%s/%s/" % (BASE, job), headers={"Authorization": "Bearer tok"})
        self.assertEqual(status, 200)


class TestSalesforceBench(SalesforceCase):
    extra_args = ("--bench",)

    def test_bench_echoes_lines_without_parsing(self):
        job = self.create("upsert", externalIdFieldName="k")
        self.upload(job, "k,v\n1,a\n2,b\n3,c\n")
        self.close(job)
        self.assertEqual(self.poll(job)["state"], "JobComplete")
        ok = rows_of(self.file(job, "successfulResults"))
        self.assertEqual(ok[0], ["sf__Id", "sf__Created", "k", "v"])
        self.assertEqual([r[2:] for r in ok[1:]], [["1", "a"], ["2", "b"], ["3", "c"]])
        self.assertEqual(rows_of(self.file(job, "failedResults")), [["sf__Id", "sf__Error", "k", "v"]])
        self.assertEqual(rows_of(self.file(job, "unprocessedrecords")), [["k", "v"]])
        self.assertEqual(self.stats()["salesforce"]["operations"], 3)


if __name__ == "__main__":
    unittest.main()


QBASE = "/salesforce/services/data/v62.0/jobs/query"


class TestSalesforceQuery(SalesforceCase):
    """Query jobs: InProgress then JobComplete, pages followed by Sforce-Locator to
    "null", the store's records then made-up ones, quoting round-tripped, Failed on
    request, Aborted on PATCH."""

    def query(self, soql):
        status, info = self.call("POST", QBASE, {"operation": "query", "query": soql})
        self.assertEqual(status, 200, info)
        return info["id"]

    def test_pages_follow_the_locator(self):
        self.configure(query_rows=25, in_progress_polls=1)
        job = self.query("SELECT Id, Name FROM Account")
        self.assertEqual(self.call("GET", "%s/%s" % (QBASE, job))[1]["state"], "InProgress")
        self.assertEqual(self.call("GET", "%s/%s" % (QBASE, job))[1]["state"], "JobComplete")
        rows, locator, pages = [], "", 0
        while locator != "null":
            url = "%s/%s/results?maxRecords=10%s" % (
                QBASE, job, "&locator=" + locator if locator else "")
            status, headers, body = self.raw("GET", url)
            self.assertEqual(status, 200, body)
            page = rows_of(body)
            self.assertEqual(page[0], ["Id", "Name"])
            self.assertEqual(int(headers["Sforce-NumberOfRecords"]), len(page) - 1)
            rows += page[1:]
            locator = headers["Sforce-Locator"]
            pages += 1
        self.assertEqual(pages, 3)
        self.assertEqual(len(rows), 25)
        self.assertEqual(len({r[0] for r in rows}), 25)
        self.assertIn('Name, "7"\nline two', [r[1] for r in rows])

    def test_failed_and_aborted(self):
        self.configure(fail_query={"message": "INVALID_FIELD: nope"}, in_progress_polls=0)
        job = self.query("SELECT Nope FROM Account")
        info = self.call("GET", "%s/%s" % (QBASE, job))[1]
        self.assertEqual((info["state"], info["errorMessage"]), ("Failed", "INVALID_FIELD: nope"))
        self.configure(fail_query=None, in_progress_polls=5)
        job = self.query("SELECT Id FROM Account")
        status, info = self.call("PATCH", "%s/%s" % (QBASE, job), {"state": "Aborted"})
        self.assertEqual((status, info["state"]), (200, "Aborted"))
        self.assertEqual(self.raw("GET", "%s/%s/results" % (QBASE, job))[0], 409)


class TestSalesforceQueryAll(SalesforceCase):
    """queryAll returns what query does plus the recycle bin (records a delete
    removed, not a hardDelete) and query_records marked deleted, with IsDeleted;
    query_records come back in the notation given; /queries says which operation
    each query job had."""

    def test_query_all_and_records(self):
        self.configure(in_progress_polls=0, query_records=[
            {"Name": "Typed", "NumberOfEmployees": "23.0"},
            {"Name": "Gone", "NumberOfEmployees": "", "IsDeleted": "true"}])
        self.run_job("Name\nc1\nc2\nc3\n", obj="Contact")
        ids = sorted(self.ctl("GET", "/salesforce/store?object=Contact"))
        self.run_job("Id\n%s\n" % ids[0], "delete", obj="Contact")
        self.run_job("Id\n%s\n" % ids[1], "hardDelete", obj="Contact")
        soql = "SELECT Id, Name, NumberOfEmployees, IsDeleted FROM Contact"
        found = {}
        for op in ("query", "queryAll"):
            status, info = self.call("POST", QBASE, {"operation": op, "query": soql})
            self.assertEqual((status, info["operation"]), (200, op))
            self.call("GET", "%s/%s" % (QBASE, info["id"]))
            status, _, body = self.raw("GET", "%s/%s/results" % (QBASE, info["id"]))
            self.assertEqual(status, 200, body)
            found[op] = {(r[0] if r[0] else r[1]): r[3] for r in rows_of(body)[1:]}
            self.assertIn(["", "Typed", "23.0", "false"], rows_of(body)[1:])
        self.assertEqual(found["query"], {ids[2]: "false", "Typed": "false"})
        self.assertEqual(found["queryAll"], {ids[2]: "false", ids[0]: "true",
                                             "Typed": "false", "Gone": "true"})
        queries = self.call("GET", "/_control/salesforce/queries")[1]
        self.assertEqual(sorted(q["operation"] for q in queries.values()),
                         ["query", "queryAll"])
