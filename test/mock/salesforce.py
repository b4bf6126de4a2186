"""salesforce.py - the mock's "salesforce" dialect: Bulk API 2.0 ingest
(docs/protocols/salesforce.md).

This file owns Salesforce Bulk API 2.0 ingest jobs as bulkops sees them, mounted by
mock_api.py under /salesforce, so a target url (the instance URL) is
http://127.0.0.1:PORT/salesforce and the API base is {url}/services/data/v62.0:

  POST  {base}/jobs/ingest                       create a job      -> 200 JobInfo, Open
  PUT   {base}/jobs/ingest/<id>/batches          upload CSV        -> 201
  PATCH {base}/jobs/ingest/<id>/                 {"state": "UploadComplete" | "Aborted"}
  GET   {base}/jobs/ingest/<id>/                 JobInfo: UploadComplete, InProgress (for
                                                 in_progress_polls polls), then JobComplete,
                                                 or Failed with unprocessed records
  GET   {base}/jobs/ingest/<id>/successfulResults/   "sf__Id","sf__Created",<columns>
  GET   {base}/jobs/ingest/<id>/failedResults/       "sf__Id","sf__Error",<columns>
  GET   {base}/jobs/ingest/<id>/unprocessedrecords/  <columns>
  (each path also without its trailing slash)

  POST  {base}/jobs/query                        {"operation": "query" | "queryAll",
                                                  "query": SOQL}
  GET   {base}/jobs/query/<id>                   JobInfo: UploadComplete, InProgress, then
                                                 JobComplete (or Failed, see fail_query)
  PATCH {base}/jobs/query/<id>                   {"state": "Aborted"}
  GET   {base}/jobs/query/<id>/results?maxRecords=N[&locator=L]
                                                 a page of CSV; header Sforce-Locator names
                                                 the next page ("null" ends),
                                                 Sforce-NumberOfRecords its record count

and its test hooks under /_control/salesforce: store, applied, jobs, queries.

Query jobs understand "SELECT f1, f2, ... FROM Object" and nothing more (no WHERE, no
relationships): the rows are the object's records in the store, in Id order, then the
query_records (config) given in Salesforce's own notation, then query_rows (config)
made-up records whose fields hold commas, quotes and line breaks every seventh record.
A field a record lacks is empty (""), as Salesforce writes nulls.  queryAll also returns
deleted records: those a delete (not hardDelete) put in the recycle bin, after the
store's, and the query_records whose IsDeleted is "true"; the field IsDeleted is
"false" for the others.

Records are applied to an in-memory store per object when the job completes: insert makes
a new Id, update needs an existing Id, upsert matches the externalIdFieldName column,
delete and hardDelete remove by Id.  "#N/A" sets a field to null, an empty field leaves
it unchanged.  Rows ask for trouble through columns the store never keeps:
  _fail  "CODE:message"  the record fails with that sf__Error
  _lock  N               the record (same uploaded values) fails with UNABLE_TO_LOCK_ROW
                         the first N times it is processed
  _lost  anything        the record is applied but left out of every result file
(an empty or "#N/A" value asks for nothing, since a SQL source has the column on every
row).  Uploads are read with the job's columnDelimiter; one whose header row does not
end with the job's lineEnding is refused at close (INVALIDBATCH).  Result files list
their records shuffled (or as result_order says), every field quoted, with the job's
delimiter and line ending, as Salesforce writes them.  Errors are JSON arrays [{"errorCode", "message"}].

Configuration (POST /_control/config {"salesforce": {...}}), all optional:
  bearer                    token required in "Authorization: Bearer"; else 401
                            INVALID_SESSION_ID
  oauth (false)             requests must carry a live token issued by the mock's OAuth
                            endpoint (oauth.py); else 401 INVALID_SESSION_ID
  in_progress_polls (1)     polls answered InProgress (processed count growing) first
  result_order ("shuffle")  "shuffle", "reverse" or "upload"
  fail_job                  {"after": N, "times": T (1), "message": "...", "state":
                            "Failed" | "Aborted"}: the next T jobs end in that state
                            (Failed by default; Aborted as if someone aborted them)
                            after N records; the rest are unprocessed
  request_limit_exceeded    N: the next N ingest requests get 403 REQUEST_LIMIT_EXCEEDED
  objects                   list of known object names (default: any name)
  query_records ([])        records ({field: text}) every query returns after the
                            store's, as written (so in Salesforce's notation: "23.0",
                            "", "2024-05-01T12:34:56.000+0000", "true"); one with
                            IsDeleted "true" only to queryAll
  query_rows (0)            made-up records every query returns after those
  fail_query                {"message": "..."}: the next query job ends Failed

Assumed where the vendor's pages are silent (kept here, in one place; see
docs/protocols/salesforce.md):
  * a job takes any number of uploads, but one with more than one refuses to close with
    400 INVALIDJOB "Found multiple contents for job" (as Salesforce answers);
  * uploading to, closing or aborting a job in the wrong state is 409 INVALIDJOB;
  * an unknown object is 400 INVALIDJOB "Unable to find object";
  * result files of a job that is not final are 409 INVALIDJOB;
  * aborting an InProgress job keeps the records processed so far (numberRecordsProcessed)
    and leaves the rest unprocessed; aborting an Open job leaves its upload unprocessed;
  * a record with more or fewer fields than the header fails with INVALID_FIELD;
  * update of an Id not in the store fails with INVALID_CROSS_REFERENCE_KEY, delete of
    one with ENTITY_IS_DELETED;
  * a deleted (not hard-deleted) record stays in the recycle bin for good, and queryAll
    returns it with IsDeleted "true", after the live records.
"""

import collections
import csv
import io
import json
import random
import time

from dialect_tests import (BAD, BAD_CLEAN, BASE, DELETE, INSERT, UPDATE, UPSERT,
                           csv_bomb_cases, hex_of, quote, seed_header)
from mock_api import MockDialect, Response, json_body, json_response

NAME = "salesforce"

# What the generic tests need to know (mock_api.describe, docs/adding-a-dialect.md).
TESTS = {
    "target": {"resource": "Account"},
    # as fuzz_seeds() below sends it
    "fuzz": {"resource": "Contact"},
    # its wire format is CSV: the benchmark measures COPY (FORMAT csv) too
    "bench": {"auth": {"type": "bearer", "token": "bench-token"}, "csv": True},
    # an upsert's key is an external id field; the mark goes in a field too
    "crash": {"key": "Ext__c",
              "source": """SELECT id AS "Ext__c", 'crm-{op}-' || id || '-x' AS "Tag__c" """
                        """FROM crash_rows"""},
    # a batch is a job: create, upload, close, poll, then the CSV result files
    # (unprocessedrecords is not asked for here: the first two settle every row)
    "hostile": {
        "mock": {NAME: {"in_progress_polls": 0, "result_order": "upload"}},
        "kinds": [
            {"kind": "create", "method": "POST", "path": "/jobs/ingest$", "status": 200,
             "step": "submit",
             "cases": [
                 {"label": "no job id",
                  "edits": [{"at": "id", "delete": True}],
                  "persistent": r"the answer to creating a job has no usable job id"},
                 {"label": "a job id that is not UTF-8",
                  "edits": [{"at": "id", "set_bytes": hex_of(b"750\xff")}],
                  "persistent": r"the answer to creating a job has no usable job id"},
                 {"label": "a refusal whose code and message are not UTF-8",
                  "status": 400,
                  "edits": [{"at": "", "set": [{"errorCode": "x", "message": "y"}]},
                            {"at": "0.errorCode", "set_bytes": hex_of(b"E-\xff")},
                            {"at": "0.message", "set_bytes": BAD}],
                  "final": {"rows": ["failed"] * 3,
                            "msg": r"^could not create the job: HTTP 400 E-\?: %s$"
                                   % quote(BAD_CLEAN),
                            "code": "E-?"}},
             ]},
            # an upload's answer is empty: only the transport can spoil it
            {"kind": "upload", "method": "PUT", "path": "/batches$", "status": 201,
             "step": "later", "skip": r"JSON|empty answer|shorter than", "cases": []},
            # whatever a close answers, the poll that follows tells
            {"kind": "close", "method": "PATCH", "path": r"/jobs/ingest/\w+/$",
             "status": 200, "step": "later", "skip": r"JSON|empty answer",
             "cases": [
                 {"label": "a refusal of a close that took",
                  "status": 400,
                  "edits": [{"at": "", "set": [{"errorCode": "INVALIDJOB",
                                                "message": "no"}]}],
                  "final": {"rows": BASE}},
             ]},
            {"kind": "poll", "method": "GET", "path": r"/jobs/ingest/\w+/$", "status": 200,
             "step": "later",
             "cases": [
                 {"label": "an unknown job state",
                  "edits": [{"at": "state", "set": "Weird"}],
                  "persistent": r'job \S+ is in unknown state "Weird"'},
                 {"label": "a job state that is not UTF-8",
                  "edits": [{"at": "state", "set_bytes": hex_of(b"Job\xffComplete")}],
                  "persistent": r'job \S+ is in unknown state "Job\?Complete"'},
                 {"label": "counters that are not numbers",
                  "edits": [{"at": "numberRecordsProcessed", "set": "many"}],
                  "final": {"rows": BASE}},
             ]},
            # CSV read as it streams: not bounded by max_response_size, nor by
            # http_timeout while it keeps coming
            {"kind": "successfulResults", "method": "GET", "path": "/successfulResults/$",
             "status": 200, "step": "later",
             "skip": r"JSON|empty answer|larger than|slower than",
             "cases": [
                 {"label": "a record missing (the row is sent again)",
                  "edits": [{"lines": "drop", "n": 1}],
                  "final": {"rows": BASE}},
                 {"label": "the same record twice",
                  "edits": [{"lines": "dup", "n": 1}],
                  "final": {"rows": BASE}},
                 {"label": "a record for a key not sent",
                  "edits": [{"find": '-1","name 1"', "replace": '-9","name 1"'}],
                  "final": {"rows": BASE}},
                 {"label": "an empty file",
                  "edits": [{"cut": 0}],
                  "final": {"rows": BASE}},
                 {"label": "no key column",
                  "edits": [{"find": '"id"', "replace": '"xid"'}],
                  "persistent": r'result file has no column "id"'},
                 {"label": "a quote inside an unquoted field",
                  "edits": [{"find": '"true"', "replace": 'tr"ue'}],
                  "persistent": r"malformed CSV in line 2: a double quote inside an "
                                r"unquoted field"},
                 {"label": "a quoted field broken",
                  "edits": [{"find": '"name 3"', "replace": '"name 3'}],
                  "persistent": r"malformed CSV in line \d+: text after the closing quote"},
             ] + csv_bomb_cases() + [
                 {"label": "a NUL byte and invalid UTF-8 in fields not matched on",
                  "edits": [{"find": "name 1", "replace_bytes": hex_of(b"na\0me")},
                            {"find": "name 3", "replace_bytes": hex_of(b"n\xffme")}],
                  "final": {"rows": BASE}},
             ]},
            {"kind": "failedResults", "method": "GET", "path": "/failedResults/$",
             "status": 200, "step": "later",
             # the successes were settled by the file before
             "persist_rows": ["succeeded", "unknown", "succeeded"],
             "skip": r"JSON|empty answer|larger than|slower than",
             "cases": [
                 {"label": "an error that is not UTF-8",
                  "edits": [{"find": '"bad row","',
                             "replace_bytes": hex_of(b'"bad \x80\xfe row","')}],
                  "final": {"rows": BASE, "row_msg": {"2": "^%s$" % quote(BAD_CLEAN)}}},
                 {"label": "UNABLE_TO_LOCK_ROW (the row goes to a new job)",
                  "edits": [{"find": '"bad row","',
                             "replace": '"UNABLE_TO_LOCK_ROW:busy","'}],
                  "final": {"rows": BASE}},
                 {"label": "no sf__Error column",
                  "edits": [{"find": '"sf__Error"', "replace": '"error"'}],
                  "persistent": r"failedResults has no sf__Error column"},
             ] + csv_bomb_cases()},
        ],
    },
}

# /_control/marks counts a row when its job is closed: an upload alone is never
# processed, and a job uploaded twice refuses to close
OWN_MARKS = True

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
FINAL = ("JobComplete", "Failed", "Aborted")
FILES = ("successfulResults", "failedResults", "unprocessedrecords")
LOCK_ERROR = "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record"
SET_NULL = "#N/A"
TEST_COLUMNS = ("_fail", "_lock", "_lost")

# --bench answers
BENCH_SUCCESS_PREFIX = b'"001000000000000AAA","false",'


def sf_error(status, code, message):
    return json_response(status, [{"errorCode": code, "message": message}])


def asks(value):
    """Does a test column's value ask for something?"""
    return value not in (None, "", SET_NULL)


# columnDelimiter values and their characters
DELIMITERS = {"COMMA": ",", "TAB": "\t", "SEMICOLON": ";", "PIPE": "|", "CARET": "^",
              "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


def csv_bytes(rows, delimiter=",", lineterminator="\n"):
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL, delimiter=delimiter,
                   lineterminator=lineterminator)
    w.writerows(rows)
    return out.getvalue().encode("utf-8")


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())


class Job:
    """One ingest job, its uploads, and once processed its three result lists."""

    def __init__(self, job_id, spec, api_version, cfg, fail_job):
        self.id = job_id
        self.object = spec["object"]
        self.operation = spec["operation"]
        self.ext_id = spec.get("externalIdFieldName")
        self.api_version = api_version
        self.line_ending = spec.get("lineEnding", "LF")
        self.delimiter = spec.get("columnDelimiter", "COMMA")
        self.state = "Open"
        self.created = now_iso()
        self.uploads = []
        self.polls = 0
        self.in_progress_polls = int(cfg.get("in_progress_polls", 1))
        self.result_order = cfg.get("result_order", "shuffle")
        self.fail_job = fail_job        # {"after", "message"} or None
        self.header = None
        self.records = None             # list of field lists, upload order
        self.count = 0                  # records uploaded (at close)
        self.processed = 0
        self.failed = 0
        self.error_message = None
        self.success, self.failures, self.unprocessed = [], [], []
        self.bench_body = None

    def info(self):
        out = {"id": self.id, "operation": self.operation, "object": self.object,
               "createdById": "005000000000000AAA", "createdDate": self.created,
               "systemModstamp": now_iso(), "state": self.state,
               "concurrencyMode": "Parallel", "contentType": "CSV",
               "apiVersion": float(self.api_version), "jobType": "V2Ingest",
               "lineEnding": self.line_ending, "columnDelimiter": self.delimiter,
               "numberRecordsProcessed": self.processed,
               "numberRecordsFailed": self.failed, "retries": 0,
               "totalProcessingTime": 0}
        if self.ext_id:
            out["externalIdFieldName"] = self.ext_id
        if self.state == "Open":
            out["contentUrl"] = "services/data/v%s/jobs/ingest/%s/batches" % (
                self.api_version, self.id)
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out

    def parse(self, body):
        """The uploaded CSV's rows, read with the job's delimiter; ValueError when
        its header row does not end with the job's line ending (Salesforce fails
        such a job: "LineEnding is invalid on user data")."""
        text = body.decode("utf-8")
        first = text.split("\n", 1)[0]
        if first.endswith("\r") != (self.line_ending == "CRLF"):
            raise ValueError("LineEnding is invalid on user data. Current LineEnding "
                             "setting is %s" % self.line_ending)
        return list(csv.reader(io.StringIO(text, newline=""),
                               delimiter=DELIMITERS[self.delimiter]))

    def csv(self, rows):
        """A result file as Salesforce writes it: the job's delimiter and line ending."""
        return csv_bytes(rows, DELIMITERS[self.delimiter], LINE_ENDINGS[self.line_ending])


class Dialect(MockDialect):
    COUNTERS = ("jobs", "uploads", "closes", "polls", "aborts", "fetches", "operations",
                "applied", "failures", "limited", "refused", "queries", "query_polls",
                "query_pages", "query_aborts")

    def reset(self):
        super().reset()
        self.store = collections.defaultdict(dict)     # object -> Id -> fields
        self.recycled = collections.defaultdict(dict)  # deleted, not hardDeleted
        self.applied = collections.Counter()            # (object, Id) -> times
        self.lock_seen = collections.Counter()          # record values -> times
        self.jobs = {}
        self.queries = {}
        self.next_job = 1
        self.next_id = 1

    def routes(self):
        qbase = "/services/data/{ver}/jobs/query"
        qjob = qbase + "/{job}"
        out = [("POST", qbase, self.query_create)]
        for suffix in ("", "/"):
            out.append(("GET", qjob + suffix, self.query_poll))
            out.append(("PATCH", qjob + suffix, self.query_patch))
            out.append(("GET", qjob + "/results" + suffix, self.query_results))
        return out + self.ingest_routes()

    def ingest_routes(self):
        base = "/services/data/{ver}/jobs/ingest"
        job = base + "/{job}"
        out = [("POST", base, self.create),
               ("PUT", job + "/batches", self.upload)]
        for suffix in ("", "/"):
            out.append(("PATCH", job + suffix, self.patch))
            out.append(("GET", job + suffix, self.poll))
            for name in FILES:
                out.append(("GET", job + "/" + name + suffix,
                            lambda req, params, name=name: self.results(name, req, params)))
        return out

    def control_routes(self):
        return [("GET", "/store", self.ctl_store),
                ("GET", "/applied", self.ctl_applied),
                ("GET", "/jobs", self.ctl_jobs),
                ("GET", "/queries", self.ctl_queries)]

    def stats(self):
        return dict(super().stats(), store_size=sum(len(v) for v in self.store.values()))

    # -- checks shared by every request ---------------------------------------

    def refuse(self, req, params):
        """The 401/403/400 answer every request may get first, or None."""
        cfg = self.config
        denied = self.refuse_credentials(
            req, lambda why: sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid"))
        if denied:
            return denied
        if int(cfg.get("request_limit_exceeded") or 0) > 0:
            # counted down in the configuration itself, which shows what is left
            cfg["request_limit_exceeded"] = int(cfg["request_limit_exceeded"]) - 1
            self.counts["limited"] += 1
            return sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        ver = params.get("ver", "")
        if not ver.startswith("v") or not ver[1:].replace(".", "", 1).isdigit():
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        return None

    def take(self, req, params, jobs=None):
        """(job, None) for a request about a known job (ingest, or of jobs) that
        passes refuse(), else (None, the answer to send)."""
        denied = self.refuse(req, params)
        if denied:
            return None, denied
        job = (self.jobs if jobs is None else jobs).get(params["job"])
        if job is None:
            return None, sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        return job, None

    # -- create, upload, close, abort -----------------------------------------

    @staticmethod
    def requested_state(req):
        """The "state" a PATCH asks for, or None."""
        return (json_body(req, dict) or {}).get("state")

    def request_spec(self, req, params):
        """(the JSON body or None, None) for a request that passes refuse(), else
        (None, the answer to send)."""
        denied = self.refuse(req, params)
        if denied:
            return None, denied
        return json_body(req), None

    def create(self, req, params):
        spec, denied = self.request_spec(req, params)
        if denied:
            return denied
        if not isinstance(spec, dict):
            return sf_error(400, "JSON_PARSER_ERROR", "the request body is not a JSON object")
        obj, op = spec.get("object"), spec.get("operation")
        problem = None
        if not isinstance(obj, str) or not obj:
            problem = "object is required"
        elif op not in OPERATIONS:
            problem = "InvalidJob : Invalid operation: %s" % (op,)
        elif op == "upsert" and not spec.get("externalIdFieldName"):
            problem = "External ID was blank for %s. An External ID must be specified for upsert." % obj
        elif spec.get("contentType", "CSV") != "CSV":
            problem = "contentType must be CSV"
        elif spec.get("columnDelimiter", "COMMA") not in DELIMITERS:
            problem = "columnDelimiter must be one of %s" % ", ".join(DELIMITERS)
        elif spec.get("lineEnding", "LF") not in LINE_ENDINGS:
            problem = "lineEnding must be LF or CRLF"
        elif self.config.get("objects") is not None and obj not in self.config["objects"]:
            problem = "Unable to find object: %s" % obj
        if problem:
            self.counts["refused"] += 1
            return sf_error(400, "INVALIDJOB", problem)
        fail_job = self.take_fail_job()
        job = Job("750%012dAAA" % self.next_job, spec, params["ver"][1:], self.config,
                  fail_job)
        self.next_job += 1
        self.jobs[job.id] = job
        self.counts["jobs"] += 1
        return json_response(200, job.info())

    def take_fail_job(self):
        spec = self.config.get("fail_job")
        if not spec:
            return None
        used = self.counts["failed_jobs"]
        if used >= int(spec.get("times", 1)):
            return None
        self.counts["failed_jobs"] += 1
        return {"after": int(spec.get("after", 0)),
                "message": spec.get("message", "InvalidBatch : Failed to process query"),
                "state": spec.get("state", "Failed")}

    def upload(self, req, params):
        job, answer = self.take(req, params)
        if answer:
            return answer
        if job.state != "Open":
            return sf_error(409, "INVALIDJOB", "Job %s is in state %s: no upload allowed"
                            % (job.id, job.state))
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "text/csv":
            return sf_error(400, "INVALIDCONTENTTYPE", "Content-Type must be text/csv")
        job.uploads.append(req.body)
        self.counts["uploads"] += 1
        return Response(201, b"", "text/plain")

    def patch(self, req, params):
        job, answer = self.take(req, params)
        if answer:
            return answer
        state = self.requested_state(req)
        if state == "UploadComplete":
            return self.close(job)
        if state == "Aborted":
            return self.abort(job)
        return sf_error(400, "INVALIDJOB", "state must be UploadComplete or Aborted")

    def close(self, job):
        if job.state != "Open":
            return sf_error(409, "INVALIDJOB", "Job %s is in state %s" % (job.id, job.state))
        if len(job.uploads) != 1:
            if not job.uploads:
                return sf_error(400, "INVALIDJOB", "No data was uploaded for job %s" % job.id)
            return sf_error(400, "INVALIDJOB",
                            "Found multiple contents for job: <%s>, please 'Close' / 'Abort' / "
                            "'Delete' the current Job then create a new Job and make sure you "
                            "only do 'PUT' once on a given Job." % job.id)
        body = job.uploads[0]
        if self.ctx.bench:
            job.bench_body = body
            job.count = max(body.count(b"\n") - 1, 0)
        else:
            try:
                rows = job.parse(body)
            except (UnicodeDecodeError, csv.Error, ValueError) as e:
                return sf_error(400, "INVALIDBATCH", "could not read the CSV: %s" % e)
            if not rows or not rows[0]:
                return sf_error(400, "INVALIDBATCH", "the CSV has no header row")
            job.header, job.records = rows[0], rows[1:]
            job.count = len(job.records)
        job.state = "UploadComplete"
        # rows are taken for processing here, not at their upload (marks)
        self.ctx.count_marks_in(body)
        self.counts["closes"] += 1
        self.counts["operations"] += job.count
        return json_response(200, job.info())

    def abort(self, job):
        if job.state not in ("Open", "UploadComplete", "InProgress"):
            return sf_error(409, "INVALIDJOB", "Job %s is in state %s" % (job.id, job.state))
        self.counts["aborts"] += 1
        if job.state == "InProgress":
            self.run(job, limit=job.processed, final="Aborted")
            return json_response(200, job.info())
        if job.state == "Open" and len(job.uploads) == 1 and not self.ctx.bench:
            # what was uploaded was never processed: all of it is unprocessed
            try:
                rows = job.parse(job.uploads[0])
            except (UnicodeDecodeError, csv.Error, ValueError):
                rows = []
            if rows:
                job.header, job.records = rows[0], rows[1:]
                job.count = len(job.records)
        self.run(job, limit=0, final="Aborted")
        return json_response(200, job.info())

    # -- poll and processing ------------------------------------------------------

    def poll(self, req, params):
        job, answer = self.take(req, params)
        if answer:
            return answer
        self.counts["polls"] += 1
        if job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            if self.ctx.bench or job.polls > job.in_progress_polls:
                fail = job.fail_job
                if fail is not None:
                    if fail["state"] == "Failed":
                        job.error_message = fail["message"]
                    self.run(job, limit=fail["after"], final=fail["state"])
                else:
                    self.run(job, limit=None, final="JobComplete")
            else:
                job.state = "InProgress"
                job.processed = job.count * job.polls // (job.in_progress_polls + 1)
        return json_response(200, job.info())

    def run(self, job, limit, final):
        """Process the first limit records (all when None); the rest stay unprocessed."""
        job.state = final
        if self.ctx.bench:
            job.processed = job.count if limit is None else min(limit, job.count)
            return
        records = job.records or []
        n = len(records) if limit is None else min(limit, len(records))
        # upsert finds records by their external id: index them once per job
        index = None
        if job.operation == "upsert":
            index = {r.get(job.ext_id): rid for rid, r in self.store[job.object].items()}
        for fields in records[:n]:
            self.process(job, fields, index)
        job.unprocessed = [list(f) for f in records[n:]]
        job.processed = n
        job.failed = len(job.failures)

    def process(self, job, fields, index):
        header = job.header
        if len(fields) != len(header):
            self.fail(job, "", "INVALID_FIELD:expected %d fields, found %d"
                      % (len(header), len(fields)), fields)
            return
        rec = dict(zip(header, fields))
        if asks(rec.get("_fail")):
            self.fail(job, "", rec["_fail"], fields)
            return
        if asks(rec.get("_lock")):
            seen_key = (job.object, tuple(fields))
            self.lock_seen[seen_key] += 1
            if self.lock_seen[seen_key] <= int(rec["_lock"]):
                self.fail(job, "", LOCK_ERROR, fields)
                return
        lost = asks(rec.get("_lost"))
        data = {k: v for k, v in rec.items() if k not in TEST_COLUMNS}
        store = self.store[job.object]
        op = job.operation
        created = False
        if op == "insert":
            rid = self.new_id()
            store[rid] = self.merge({}, data)
            created = True
        elif op == "update":
            rid = data.pop("Id", "")
            if rid not in store:
                self.fail(job, rid, "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id",
                          fields)
                return
            self.merge(store[rid], data)
        elif op == "upsert":
            value = data.get(job.ext_id, "")
            if value in ("", SET_NULL):
                self.fail(job, "", "MISSING_ARGUMENT:%s not specified" % job.ext_id, fields)
                return
            rid = index.get(value)
            if rid is None or rid not in store:
                rid = self.new_id()
                store[rid] = {}
                index[value] = rid
                created = True
            self.merge(store[rid], data)
        else:
            rid = data.get("Id", "")
            if rid not in store:
                self.fail(job, rid, "ENTITY_IS_DELETED:entity is deleted", fields)
                return
            if op == "delete":
                self.recycled[job.object][rid] = store[rid]
            del store[rid]
        self.applied[(job.object, rid)] += 1
        self.counts["applied"] += 1
        if not lost:
            job.success.append([rid, "true" if created else "false"] + list(fields))

    def fail(self, job, rid, error, fields):
        self.counts["failures"] += 1
        job.failures.append([rid, error] + list(fields))

    def new_id(self):
        rid = "001%012dAAA" % self.next_id
        self.next_id += 1
        return rid

    @staticmethod
    def merge(target, data):
        for k, v in data.items():
            if v == SET_NULL:
                target[k] = None
            elif v != "":
                target[k] = v
        return target

    # -- result files ---------------------------------------------------------------

    def results(self, name, req, params):
        job, answer = self.take(req, params)
        if answer:
            return answer
        if job.state not in FINAL:
            return sf_error(409, "INVALIDJOB", "Job %s is not finished: %s" % (job.id, job.state))
        self.counts["fetches"] += 1
        if self.ctx.bench:
            return Response(200, self.bench_file(job, name), "text/csv")
        header = job.header or []
        if name == "successfulResults":
            rows, head = job.success, ["sf__Id", "sf__Created"] + header
        elif name == "failedResults":
            rows, head = job.failures, ["sf__Id", "sf__Error"] + header
        else:
            rows, head = job.unprocessed, list(header)
        rows = list(rows)
        if job.result_order == "reverse":
            rows.reverse()
        elif job.result_order == "shuffle":
            random.Random(job.id + name).shuffle(rows)
        return Response(200, job.csv([head] + rows), "text/csv")

    @staticmethod
    def bench_file(job, name):
        # No CSV parsing: the benchmark's rows hold no line breaks.
        body = job.bench_body or b"\n"
        header, _, data = body.partition(b"\n")
        if name == "successfulResults":
            lines = [line for line in data.split(b"\n") if line]
            return (b'"sf__Id","sf__Created",' + header + b"\n"
                    + b"".join(BENCH_SUCCESS_PREFIX + line + b"\n" for line in lines))
        if name == "failedResults":
            return b'"sf__Id","sf__Error",' + header + b"\n"
        return header + b"\n"

    # -- query jobs ------------------------------------------------------------------

    def query_create(self, req, params):
        spec, denied = self.request_spec(req, params)
        if denied:
            return denied
        if not isinstance(spec, dict) or spec.get("operation") not in ("query", "queryAll"):
            return sf_error(400, "INVALIDJOB", "operation must be query or queryAll")
        soql = spec.get("query")
        words = soql.split() if isinstance(soql, str) else []
        upper = [w.upper() for w in words]
        if len(words) < 4 or upper[0] != "SELECT" or "FROM" not in upper[2:]:
            return sf_error(400, "INVALIDJOB", "malformed query: %r" % (soql,))
        at = upper.index("FROM", 1)
        fields = [f.strip() for f in " ".join(words[1:at]).split(",") if f.strip()]
        obj = words[at + 1]
        fail = self.config.get("fail_query")
        job = {"id": "750%012dQQQ" % self.next_job, "object": obj, "fields": fields,
               "operation": spec["operation"], "query": soql,
               "state": "UploadComplete", "polls": 0,
               "in_progress_polls": int(self.config.get("in_progress_polls", 1)),
               "fail": fail.get("message", "INVALID_FIELD: No such column") if fail else None,
               "rows": None, "pages": 0}
        if fail:
            self.config["fail_query"] = None
        self.next_job += 1
        self.queries[job["id"]] = job
        self.counts["queries"] += 1
        return json_response(200, self.query_info(job))

    def query_rows(self, job):
        out = []
        every = job["operation"] == "queryAll"
        stored = [(rid, rec, "false") for rid, rec in
                  sorted(self.store.get(job["object"], {}).items())]
        if every:
            stored += [(rid, rec, "true") for rid, rec in
                       sorted(self.recycled.get(job["object"], {}).items())]
        for rid, rec, deleted in stored:
            rec = dict(rec, Id=rid, IsDeleted=deleted)
            out.append(["" if rec.get(f) is None else str(rec.get(f)) for f in job["fields"]])
        for rec in self.config.get("query_records") or []:
            if rec.get("IsDeleted") == "true" and not every:
                continue
            rec = dict({"IsDeleted": "false"}, **rec)
            out.append([str(rec.get(f, "")) for f in job["fields"]])
        for i in range(1, int(self.config.get("query_rows", 0)) + 1):
            row = []
            for f in job["fields"]:
                if f == "Id":
                    row.append("001%09dQRY" % i)
                elif i % 7 == 0:
                    row.append('%s, "%d"\nline two' % (f, i))
                elif i % 11 == 0:
                    row.append("")
                else:
                    row.append("%s %d" % (f, i))
            out.append(row)
        return out

    def query_info(self, job):
        out = {"id": job["id"], "operation": job["operation"], "object": job["object"],
               "state": job["state"], "numberRecordsProcessed":
               len(job["rows"]) if job["rows"] is not None else 0}
        if job["state"] == "Failed":
            out["errorMessage"] = job["fail"]
        return out

    def query_take(self, req, params):
        return self.take(req, params, self.queries)

    def query_poll(self, req, params):
        job, answer = self.query_take(req, params)
        if answer:
            return answer
        self.counts["query_polls"] += 1
        if job["state"] in ("UploadComplete", "InProgress"):
            job["polls"] += 1
            if self.ctx.bench or job["polls"] > job["in_progress_polls"]:
                if job["fail"]:
                    job["state"] = "Failed"
                else:
                    job["state"] = "JobComplete"
                    job["rows"] = self.query_rows(job)
            else:
                job["state"] = "InProgress"
        return json_response(200, self.query_info(job))

    def query_patch(self, req, params):
        job, answer = self.query_take(req, params)
        if answer:
            return answer
        if self.requested_state(req) != "Aborted":
            return sf_error(400, "INVALIDJOB", "only Aborted may be set on a query job")
        if job["state"] in FINAL:
            return sf_error(409, "INVALIDJOB", "Job %s is already %s" % (job["id"], job["state"]))
        job["state"] = "Aborted"
        self.counts["query_aborts"] += 1
        return json_response(200, self.query_info(job))

    def query_results(self, req, params):
        job, answer = self.query_take(req, params)
        if answer:
            return answer
        if job["state"] != "JobComplete":
            return sf_error(409, "INVALIDJOB", "Job %s is not complete: %s"
                            % (job["id"], job["state"]))
        try:
            size = int(req.query.get("maxRecords", 50000))
            start = int(req.query.get("locator") or 0)
        except ValueError:
            return sf_error(400, "INVALID_LOCATOR", "bad maxRecords or locator")
        if size < 1 or start < 0 or start > len(job["rows"]):
            return sf_error(400, "INVALID_LOCATOR", "bad maxRecords or locator")
        page = job["rows"][start:start + size]
        end = start + len(page)
        job["pages"] += 1
        self.counts["query_pages"] += 1
        headers = {"Sforce-Locator": str(end) if end < len(job["rows"]) else "null",
                   "Sforce-NumberOfRecords": str(len(page))}
        return Response(200, csv_bytes([job["fields"]] + page), "text/csv", headers)

    # -- control ------------------------------------------------------------------

    def ctl_store(self, req, params):
        obj = req.query.get("object", "Account")
        return json_response(200, self.store.get(obj, {}))

    def ctl_applied(self, req, params):
        obj = req.query.get("object", "Account")
        return json_response(200, {rid: n for (o, rid), n in self.applied.items()
                                   if o == obj})

    def ctl_queries(self, req, params):
        return json_response(200, {q["id"]: {"operation": q["operation"], "query": q["query"],
                                             "object": q["object"], "state": q["state"],
                                             "pages": q["pages"]}
                                   for q in self.queries.values()})

    def ctl_jobs(self, req, params):
        return json_response(200, {j.id: {"object": j.object, "operation": j.operation,
                                          "externalIdFieldName": j.ext_id,
                                          "state": j.state, "uploads": len(j.uploads),
                                          "records": j.count, "polls": j.polls,
                                          "processed": j.processed,
                                          "header": j.header}
                                   for j in self.jobs.values()})


# -- fuzz seeds (test/fuzz/make_seeds.py) ------------------------------------

SF_BASE = "/salesforce/services/data/v62.0/jobs/ingest"
SF_OPERATION = {INSERT: "insert", UPDATE: "update", UPSERT: "upsert", DELETE: "delete"}


def sf_csv(op, rows, extra=None):
    """The CSV salesforce.c uploads for the harness's rows (id, name, n), with
    extra columns the mock reads to misbehave."""
    if op in (UPDATE, DELETE):
        head, lines = ["Id"], [[rid] for rid, _ in rows]
        if op == UPDATE:
            head += ["name", "n"]
            lines = [[rid, "name %d" % n, str(n)] for rid, n in rows]
    else:
        head, lines = ["id", "name", "n"], [[rid, "name %d" % n, str(n)] for rid, n in rows]
    if extra:
        head.append(extra[0])
        lines = [line + [extra[1].get(line[0], "")] for line in lines]
    return ("\n".join(",".join(line) for line in [head] + lines) + "\n").encode()


def sf_run(mock, op, nrows, extra=None, polls=3):
    """Create, upload, close, poll until final, fetch the three result files."""
    rows = [("r%d" % n, n) for n in range(1, nrows + 1)]
    body = {"object": "Contact", "operation": SF_OPERATION[op], "contentType": "CSV",
            "columnDelimiter": "COMMA", "lineEnding": "LF"}
    if op == UPSERT:
        body["externalIdFieldName"] = "id"
    out = [mock.call("POST", SF_BASE, body)]
    if out[0][0] != 200:
        return out
    job = "%s/%s/" % (SF_BASE, json.loads(out[0][2])["id"])
    out.append(mock.call("PUT", job + "batches", sf_csv(op, rows, extra)))
    out.append(mock.call("PATCH", job, {"state": "UploadComplete"}))
    for _ in range(polls):
        out.append(mock.call("GET", job))
        if json.loads(out[-1][2]).get("state") in ("JobComplete", "Failed", "Aborted"):
            break
    for f in ("successfulResults/", "failedResults/", "unprocessedrecords/"):
        out.append(mock.call("GET", job + f, headers={"Accept": "text/csv"}))
    return out


def fuzz_seeds(mock):
    """The conversations test/fuzz/make_seeds.py records as seeds: (name, header,
    answers) of one fuzz input each, played against this mock."""
    mock.control("/reset")
    yield "upsert", seed_header(UPSERT, 3), sf_run(mock, UPSERT, 3)
    yield "insert", seed_header(INSERT, 2), sf_run(mock, INSERT, 2)
    yield "upsert-one-fails-one-locked", seed_header(UPSERT, 3), sf_run(
        mock, UPSERT, 3, extra=("_fail", {"r2": "FIELD_CUSTOM_VALIDATION_EXCEPTION:no"}))
    yield "update-unknown-ids", seed_header(UPDATE, 2), sf_run(mock, UPDATE, 2)
    yield "delete-unknown-ids", seed_header(DELETE, 2), sf_run(mock, DELETE, 2)
    mock.control("/config", {"salesforce": {"fail_job": {"after": 1, "message": "boom"}}})
    yield "upsert-job-failed", seed_header(UPSERT, 3), sf_run(mock, UPSERT, 3)
    mock.control("/reset")
    mock.control("/config", {"salesforce": {"request_limit_exceeded": 1}})
    yield "limit-exceeded", seed_header(UPSERT, 1), sf_run(mock, UPSERT, 1)[:1] + sf_run(mock, UPSERT, 1)
    mock.control("/reset")
