"""abortable.py - the mock side of the tests' "abortable" dialect.

Not a vendor's API: the counterpart of test/modules/abortable/abortable.c, a
dialect that exists so the worker's generic abort handling (dialect.h,
build_abort) can be tested.  Mounted under /abortable, so a target url is
http://127.0.0.1:PORT/abortable/<src>:

  POST {url}/jobs               {"rows": [{...}, ...]} -> 202 {"id": "j_N"}
  GET  {url}/jobs/<id>          {"state": "running"} or {"state": "done"|"aborted",
                                 "results": ["ok"|"failed"|"skipped", ...]} in row order
  POST {url}/jobs/<id>/abort    -> 200 {"state": "aborted"}; rows not yet processed
                                 are "skipped" and never applied

Each poll processes rows_per_poll more rows (config, default: all of them).
Configuration (POST /_control/config {"abortable": {...}}): rows_per_poll,
abort_status (answer abort requests with this status and change nothing).
Test hooks: GET /_control/abortable/jobs, GET /_control/abortable/applied?src=S.
"""

import collections

from mock_api import MockDialect, error_response, json_body, json_response

NAME = "abortable"


class Job:
    __slots__ = ("id", "src", "rows", "processed", "state", "aborts")

    def __init__(self, job_id, src, rows):
        self.id = job_id
        self.src = src
        self.rows = rows
        self.processed = 0
        self.state = "running"
        self.aborts = 0


class Dialect(MockDialect):
    def reset(self):
        super().reset()
        self.jobs = {}
        self.applied = collections.Counter()    # (src, id) -> times

    def routes(self):
        return [("POST", "/{src}/jobs", self.submit),
                ("GET", "/{src}/jobs/{job}", self.poll),
                ("POST", "/{src}/jobs/{job}/abort", self.abort)]

    def control_routes(self):
        return [("GET", "/jobs", self.ctl_jobs),
                ("GET", "/applied", self.ctl_applied)]

    def _job(self, params):
        job = self.jobs.get(params["job"])
        return job if job is not None and job.src == params["src"] else None

    def submit(self, req, params):
        rows = (json_body(req, dict) or {}).get("rows")
        if not isinstance(rows, list) or not rows:
            return error_response(400, "expected {\"rows\": [...]}")
        self.counts["submits"] += 1
        job = Job("j_%d" % (len(self.jobs) + 1), params["src"], rows)
        self.jobs[job.id] = job
        return json_response(202, {"id": job.id})

    def poll(self, req, params):
        job = self._job(params)
        if job is None:
            return error_response(404, "job not found")
        self.counts["polls"] += 1
        if job.state == "running":
            step = int(self.config.get("rows_per_poll", len(job.rows)))
            for row in job.rows[job.processed:job.processed + step]:
                self.applied[(job.src, str(row.get("id")))] += 1
            job.processed = min(len(job.rows), job.processed + step)
            if job.processed == len(job.rows):
                job.state = "done"
        if job.state == "running":
            return json_response(200, {"state": "running"})
        results = ["ok"] * job.processed + ["skipped"] * (len(job.rows) - job.processed)
        return json_response(200, {"state": job.state, "results": results})

    def abort(self, req, params):
        job = self._job(params)
        if job is None:
            return error_response(404, "job not found")
        self.counts["aborts"] += 1
        job.aborts += 1
        status = int(self.config.get("abort_status", 200))
        if status != 200:
            return error_response(status, "abort refused")
        if job.state == "running":
            job.state = "aborted"
        return json_response(200, {"state": job.state})

    def ctl_jobs(self, req, params):
        return json_response(200, {j.id: {"src": j.src, "state": j.state,
                                          "rows": len(j.rows), "processed": j.processed,
                                          "aborts": j.aborts}
                                   for j in self.jobs.values()})

    def ctl_applied(self, req, params):
        src = req.query.get("src")
        return json_response(200, {i: n for (s, i), n in self.applied.items()
                                   if src is None or s == src})
