#!/usr/bin/env python3
"""make_seeds.py - writes test/fuzz/corpus/<dialect>/seed-* from the mock's real answers.

Each seed is one conversation in the input format fuzz_dialects.c reads:

    op (BulkopsOp value), rows - 1, mask of rows already settled, option bits,
    then per answer: status, headers length, headers ("name: value" lines), body
    length, body (numbers as 2 bytes, big-endian).

The conversations are played against the mock server (test/mock/mock_api.py, started
here on a free port) so the answers are the ones the mock really gives.  Run it again
after changing the mock or the format, and commit the result:

    python3 test/fuzz/make_seeds.py

A new dialect adds a function to CONVERSATIONS that yields (name, header, answers).
Inputs that once found a bug are kept as seeds named seed-found-*, written here too.
"""

import json
import os
import struct
import subprocess
import sys
import urllib.error
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(TOP, "test", "fuzz", "corpus")

# BulkopsOp values (src/dialect.h)
INSERT, UPDATE, UPSERT, DELETE, OVERWRITE = range(5)
# answer headers that say nothing about the answer's content
NOISE_HEADERS = ("date", "server", "connection", "content-length", "keep-alive")


class Mock:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(TOP, "test", "mock", "mock_api.py"),
             "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.base = "http://127.0.0.1:%d" % int(line.rsplit(":", 1)[1])

    def close(self):
        self.proc.terminate()
        self.proc.wait()

    def call(self, method, path, body=None, headers=None):
        """(status, headers text, body bytes) of one request, its body JSON or,
        given as bytes, CSV; HTTP errors are answers too."""
        if isinstance(body, bytes):
            data, ctype = body, "text/csv"
        else:
            data, ctype = (json.dumps(body).encode() if body is not None else None,
                           "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, self._headers(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, self._headers(e.headers), e.read()

    @staticmethod
    def _headers(msg):
        return "".join("%s: %s\r\n" % (k.lower(), v) for k, v in msg.items()
                       if k.lower() not in NOISE_HEADERS).encode()

    def control(self, path, body=None):
        self.call("POST", "/_control" + path, body if body is not None else {})


def header(op, nrows, settled=0, options=0):
    return bytes([op, nrows - 1, settled, options])


def answer(status, headers, body):
    return (struct.pack(">HH", status, len(headers)) + headers +
            struct.pack(">H", len(body)) + body)


# ---- clinia (docs/protocols/clinia.md) ----

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


def clinia(mock):
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert-ok", header(UPSERT, 3), clinia_run(mock, UPSERT, ok)
    yield "insert-one-fails", header(INSERT, 3), clinia_run(
        mock, INSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]])
    yield "delete-missing", header(DELETE, 2), clinia_run(mock, DELETE, ok[:2])

    # REJECTED: the failing operation settles, the cancelled ones are sent again
    rejected = clinia_run(mock, UPSERT, [ok[0], ("r2", {"_reject": "no"}), ok[2]])
    again = clinia_run(mock, UPSERT, [ok[0], ok[2]])
    yield "upsert-rejected-resubmit", header(UPSERT, 3), rejected + again
    yield "upsert-rejected-no-resubmit", header(UPSERT, 3, options=CLINIA_NO_RESUBMIT), rejected

    # a resumed batch: row 1 already has its receipt
    yield "upsert-resumed", header(UPSERT, 3, settled=0b001), clinia_run(mock, UPSERT, ok[1:])

    mock.control("/config", {"clinia": {"legacy_bulk_id": True, "task_failure_all": True}})
    yield "insert-legacy-all-fail", header(INSERT, 2), clinia_run(mock, INSERT, ok[:2])

    mock.control("/config", {"clinia": {"api_key": "k"}})
    yield "upsert-unauthorized", header(UPSERT, 1), clinia_run(mock, UPSERT, ok[:1])
    mock.control("/reset")

    # a task the remote side forgot
    first = clinia_run(mock, UPSERT, ok[:2], polls=0)
    gone = mock.call("GET", CLINIA_URL + "/bk_404?withReceipts=true")
    yield "upsert-task-gone", header(UPSERT, 2), first + [gone]


    # answers the mock never gives, for paths a short run would not reach
    json_ct = b"content-type: application/json\r\n"
    pending = b'{"status": "PENDING"}'
    accepted = b'{"status": "ACCEPTED", "taskId": "t1"}'
    yield "edge-task-cancelled-in-part", header(UPSERT, 2), [
        (202, json_ct, accepted),
        (200, json_ct, b'{"status": "CANCELLED", "receipts": [{"status": "SUCCESS", "id": "r1"}, '
                       b'{"status": "CANCELLED"}]}'),
        (202, json_ct, accepted),
        (200, json_ct, b'{"status": "SUCCESS", "receipts": [{"status": "SUCCESS", "id": "r2"}]}')]
    yield "edge-rejected-all-cancelled", header(UPSERT, 2), [
        (400, json_ct, b'{"status": "REJECTED", "receipts": [{"status": "CANCELLED"}, '
                       b'{"status": "CANCELLED"}]}')]
    yield "edge-task-odd", header(UPSERT, 1), [
        (202, json_ct, b'{"status": "ACCEPTED", "taskId": ".."}'),
        (202, json_ct, accepted), (200, json_ct, b'{"status": "LOST"}'),
        (200, json_ct, b'{"status": "SUCCESS", "receipts": [{"status": "ODD"}]}')]

    # what the fuzzer found (sql/fuzz_findings.sql replays them through the mock)
    yield "found-task-id-not-utf8", header(INSERT, 2), [
        (202, json_ct, b'{"status": "ACCEPTED", "bulkId": "b\x95\xa26"}'), (200, json_ct, pending)]
    yield "found-task-id-needs-escaping", header(INSERT, 2), [
        (202, json_ct, b'{"status": "ACCEPTED", "taskId": "bk6\x7f"}'), (200, json_ct, pending)]


# ---- sap_fsm (docs/protocols/sap_fsm.md): one synchronous 207 per request ----

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


def sap_fsm(mock):
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert-created", header(UPSERT, 3), [fsm_call(mock, UPSERT, ok)]
    yield "upsert-updated-one-fails", header(UPSERT, 3), [
        fsm_call(mock, UPSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]])]
    yield "upsert-conflict", header(UPSERT, 1), [
        fsm_call(mock, UPSERT, [("r1", {"name": "x", "lastChanged": 1})])]
    yield "delete-one-missing", header(DELETE, 2), [fsm_call(mock, DELETE, [ok[0], ("r9", {})])]
    # the same key twice in a batch: the second goes in a request of its own
    yield "upsert-duplicate-key", header(UPSERT, 2), [
        fsm_call(mock, UPSERT, ok[:1]), fsm_call(mock, UPSERT, ok[:1])]
    mock.control("/config", {"sap_fsm": {"omit_external_ids": ["r2"],
                                         "extra_external_ids": ["r7"]}})
    yield "upsert-odd-elements", header(UPSERT, 3), [fsm_call(mock, UPSERT, ok)]
    mock.control("/reset")
    yield "upsert-bad-request", header(UPSERT, 1), [
        fsm_call(mock, UPSERT, ok[:1], headers={"X-Client-ID": "bulkops"})]


# ---- packagex (docs/protocols/packagex.md): batches with phases, an errors file ----

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


def packagex(mock):
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    # the errors file's link names a fixed host, not the mock's port of the day
    fixed = {"packagex": {"errors_host": "127.0.0.1:9"}}
    mock.control("/reset")
    mock.control("/config", fixed)
    yield "merge-sync", header(UPSERT, 3, options=0), px_run(mock, UPSERT, ok, mode="sync")
    yield "merge-async-one-fails", header(UPSERT, 3), px_run(
        mock, UPSERT, [ok[0], ("r2", {"_fail": "bad name"}), ok[2]], mode="async")
    yield "overwrite", header(OVERWRITE, 2), px_run(mock, OVERWRITE, ok[:2])
    yield "delete-one-missing", header(DELETE, 2), px_run(mock, DELETE, [ok[0], ("r9", {})])
    mock.control("/config", {"packagex": {"final_status": "failed"}})  # merged into fixed
    yield "merge-batch-failed", header(UPSERT, 2), px_run(
        mock, UPSERT, [ok[0], ("r2", {"_fail": "no"})])
    mock.control("/reset")
    mock.control("/config", {"packagex": {"api_key": "k"}})
    yield "merge-unauthorized", header(UPSERT, 1), px_run(mock, UPSERT, ok[:1])
    mock.control("/reset")

    # what the fuzzer found (sql/fuzz_findings.sql replays it through the mock)
    json_ct = b"content-type: application/json\r\n"
    final = (b'{"id": "b1", "status": "completed", "has_errors_file": true, '
             b'"_errors_json_url": "http://127.0.0.1:9/packagex/fil s/b1/errors.json"}')
    yield "found-batch-id-dot-segment", header(UPSERT, 1), [
        (201, json_ct, b'{"id": "..", "status": "queued"}'), (200, json_ct, final)]
    yield "found-errors-url-with-space", header(DELETE, 2), [
        (201, json_ct, b'{"id": "b1", "status": "queued"}'), (200, json_ct, final),
        (200, json_ct, b'[{"index": 1, "id": "r2", "errors": [{"code": "not_found"}]}]')]


# ---- blueconic (docs/protocols/blueconic.md): one synchronous PUT per request ----

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


def blueconic(mock):
    ok = [("r%d" % i, {"name": "n%d" % i}) for i in (1, 2, 3)]
    mock.control("/reset")
    yield "upsert", header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    yield "upsert-states", header(UPSERT, 3), [bc_call(mock, UPSERT, [
        ok[0], ("r2", {"_state": "SKIPPED"}), ("r3", {"_invalid": "bad name"})])]
    yield "delete-one-missing", header(DELETE, 2), [bc_call(mock, DELETE, [ok[0], ("r9", {})])]
    mock.control("/config", {"blueconic": {"omit_identifiers": ["2"],
                                           "extra_identifiers": ["7"]}})
    yield "upsert-odd-elements", header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    mock.control("/reset")
    mock.control("/config", {"blueconic": {"max_entries": 2}})
    yield "upsert-too-many", header(UPSERT, 3), [bc_call(mock, UPSERT, ok)]
    mock.control("/reset")
    yield "bad-request", header(UPSERT, 1), [mock.call("PUT", BC_URL, {"not": "an array"})]


# ---- salesforce (docs/protocols/salesforce.md): Bulk API 2.0 ingest jobs ----

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


def salesforce(mock):
    mock.control("/reset")
    yield "upsert", header(UPSERT, 3), sf_run(mock, UPSERT, 3)
    yield "insert", header(INSERT, 2), sf_run(mock, INSERT, 2)
    yield "upsert-one-fails-one-locked", header(UPSERT, 3), sf_run(
        mock, UPSERT, 3, extra=("_fail", {"r2": "FIELD_CUSTOM_VALIDATION_EXCEPTION:no"}))
    yield "update-unknown-ids", header(UPDATE, 2), sf_run(mock, UPDATE, 2)
    yield "delete-unknown-ids", header(DELETE, 2), sf_run(mock, DELETE, 2)
    mock.control("/config", {"salesforce": {"fail_job": {"after": 1, "message": "boom"}}})
    yield "upsert-job-failed", header(UPSERT, 3), sf_run(mock, UPSERT, 3)
    mock.control("/reset")
    mock.control("/config", {"salesforce": {"request_limit_exceeded": 1}})
    yield "limit-exceeded", header(UPSERT, 1), sf_run(mock, UPSERT, 1)[:1] + sf_run(mock, UPSERT, 1)
    mock.control("/reset")


CONVERSATIONS = {"clinia": clinia, "sap_fsm": sap_fsm, "packagex": packagex,
                 "blueconic": blueconic, "salesforce": salesforce}


def main():
    mock = Mock()
    try:
        for dialect, conversations in CONVERSATIONS.items():
            d = os.path.join(CORPUS, dialect)
            os.makedirs(d, exist_ok=True)
            for name, head, answers in conversations(mock):
                with open(os.path.join(d, "seed-" + name), "wb") as f:
                    f.write(head + b"".join(answer(*a) for a in answers))
                print("%s/seed-%s: %d answers" % (dialect, name, len(answers)))
    finally:
        mock.close()


if __name__ == "__main__":
    main()
