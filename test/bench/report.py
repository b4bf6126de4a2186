#!/usr/bin/env python3
"""report.py - the results table of test/bench/run.sh.

Reads the key<TAB>value lines run.sh wrote (one measurement per line, per-round
keys suffixed .1, .2, ...), prints the summary table with targets and
PASS/MISS, the details and the raw rounds, and exits 1 when the run is not
valid: a job not succeeded, a receipt missing or not succeeded, a worker
restart, or the mock having seen a different number of operations.

    python3 test/bench/report.py RESULTS.tsv
"""

import statistics
import sys

MB = 1024 * 1024

# Targets
TARGET_ENQUEUE_RATIO = 1.5      # enqueue rows/s >= 1.5 x baseline rows/s
TARGET_E2E_RATIO = 2.0          # end-to-end time <= 2 x enqueue time
TARGET_WORKER_RSS_MB = 200      # worker VmHWM < 200 MB
TARGET_WORKER_ANON_MB = 100     # worker private memory (RssAnon) <= 100 MB
TARGET_CSV_RATIO = 0.7          # CSV dialects: enqueue rows/s >= 0.7 x COPY csv rows/s
TARGET_DISK_BYTES_PER_ROW = 48  # database growth per pushed row, steady state
TARGET_WAL_BYTES_PER_ROW = 64   # WAL the worker writes per row
TARGET_SCALE_WORSE = 0.10
TARGET_SYNC_ONE = 1.5           # run_sync with 1% changed, x the baseline
TARGET_SYNC_NONE = 1.2          # run_sync with nothing changed, x the baseline
TARGET_SYNC_STATE = 64          # the stored state's bytes per key, its text left out       # per-row cost of the --scale-rows job vs the rounds'
TARGET_JOIN_RATIO = 2.0         # receipts join / plain table join
TARGET_FAIR_S = 5.0             # a small job behind a large one ends within 5 s
TARGET_FAIR_WAITED = 0.5        # ... having waited at most half of what the large one had left
TARGET_CLAIM_RATIO = 1.5        # probe latency, deep queue and history / 10 jobs, none


def load(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            k, _, v = line.partition("\t")
            out[k] = v
    return out


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def grouped(n):
    return "{:,.0f}".format(n)


def per_round(res, name):
    """The values of name.1, name.2, ... in round order."""
    vals = []
    r = 1
    while "%s.%d" % (name, r) in res:
        vals.append(num(res["%s.%d" % (name, r)]))
        r += 1
    return vals


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def verdict(ok):
    return "PASS" if ok else "MISS"


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def main(path):
    res = load(path)
    rows = int(res["rows"])
    base_s = per_round(res, "baseline_s")
    enq_s = per_round(res, "enqueue_s")
    fn_s = per_round(res, "enqueue_fn_s")
    e2e_s = per_round(res, "e2e_s")
    enq_cpu = per_round(res, "enqueue_cpu_s")
    base_cpu = per_round(res, "baseline_cpu_s")
    wcpu = per_round(res, "worker_cpu_s")
    mcpu = per_round(res, "mock_cpu_s")
    ocpu = per_round(res, "others_cpu_s")
    round_s = per_round(res, "round_s")
    ncpu = int(res.get("ncpu", "1"))
    nrounds = len(enq_s)
    job_keys = ["job.%d" % r for r in range(1, nrounds + 1)]
    job_keys += [k for k in ("job.cx", "job.cy") if k + ".state" in res]
    job_bytes = [num(res["job.%d.bytes" % r]) for r in range(1, nrounds + 1)]

    base_bytes = num(res["baseline_bytes"])
    m_base, m_enq, m_e2e = median(base_s), median(enq_s), median(e2e_s)
    m_bytes = median(job_bytes)
    ratio_enq = median([b / e for b, e in zip(base_s, enq_s)])
    ratio_e2e = median([x / e for x, e in zip(e2e_s, enq_s)])
    vmhwm_mb = num(res.get("vmhwm_kb")) / 1024
    anon_mb = num(res.get("rss_anon_peak_kb", 0)) / 1024
    shmem_mb = num(res.get("rss_shmem_peak_kb", 0)) / 1024

    # validity
    problems = []
    receipts_ok = True
    for k in job_keys:
        state = res.get(k + ".state")
        counts = [int(res.get(k + "." + c) or -1)
                  for c in ("rows_total", "receipts", "receipts_succeeded", "receipts_keyed")]
        if state != "succeeded" or any(c != rows for c in counts):
            receipts_ok = False
            problems.append("%s: state %s, rows_total/receipts/succeeded/keyed = %s (want %d)"
                            % (k, state, "/".join(map(str, counts)), rows))
    scale_rows = int(res.get("scale_rows", "0"))
    if scale_rows:
        state = res.get("job.scale.state")
        counts = [int(res.get("job.scale." + c) or -1)
                  for c in ("rows_total", "receipts", "receipts_succeeded", "receipts_keyed")]
        if state != "succeeded" or any(c != scale_rows for c in counts):
            receipts_ok = False
            problems.append("job.scale: state %s, rows_total/receipts/succeeded/keyed = %s "
                            "(want %d)" % (state, "/".join(map(str, counts)), scale_rows))
    expected_ops = rows * len(job_keys) + scale_rows + int(res.get("sync_sent_rows", "0"))
    mock_ops = num(res.get("mock_operations"))
    if mock_ops != expected_ops:
        problems.append("the mock saw %s operations, expected %d" % (res.get("mock_operations"),
                                                                     expected_ops))
    if res.get("worker_restarted"):
        problems.append("the bulkops worker restarted during the run (its VmHWM is partial)")

    print()
    print("bulkops benchmark: %s" % res.get("config", ""))
    print("machine: %s" % res.get("machine", ""))
    print("cluster: %s" % res.get("settings", "").replace(";", ", "))
    print("medians of %d rounds (baseline and enqueue alternating); ratios are medians of "
          "per-round ratios" % nrounds)
    print()
    csv_s = per_round(res, "csv_baseline_s")
    summary = [
        ("rows", grouped(rows), "", ""),
        ("baseline COPY row_to_json, rows/s", grouped(rows / m_base), "", ""),
        ("baseline MB/s", "%.1f" % (base_bytes / MB / m_base), "", ""),
        ("enqueue rows/s", grouped(rows / m_enq), "", ""),
        ("enqueue MB/s", "%.1f" % (m_bytes / MB / m_enq), "", ""),
        ("enqueue / baseline (rows/s ratio)", "%.2f" % ratio_enq,
         ">= %.2f" % TARGET_ENQUEUE_RATIO, verdict(ratio_enq >= TARGET_ENQUEUE_RATIO)),
    ]
    if csv_s:
        # the dialect encodes CSV: against COPY's own CSV output
        ratio_csv = median([c / e for c, e in zip(csv_s, enq_s)])
        summary += [
            ("baseline COPY t TO /dev/null (FORMAT csv), rows/s", grouped(rows / median(csv_s)),
             "", ""),
            ("CSV enqueue / COPY csv (rows/s ratio)", "%.2f" % ratio_csv,
             ">= %.2f" % TARGET_CSV_RATIO, verdict(ratio_csv >= TARGET_CSV_RATIO)),
        ]
    if "contended_enqueue_s" in res:
        c = num(res["contended_enqueue_s"])
        summary.append(("enqueue rows/s, worker busy with a job", grouped(rows / c), "", ""))
    summary += [
        ("end to end rows/s", grouped(rows / m_e2e), "", ""),
        ("end to end time / enqueue time", "%.1f" % ratio_e2e,
         "<= %.1f" % TARGET_E2E_RATIO, verdict(ratio_e2e <= TARGET_E2E_RATIO)),
        ("worker peak RSS (VmHWM)", "%.0f MB" % vmhwm_mb,
         "< %d MB" % TARGET_WORKER_RSS_MB, verdict(vmhwm_mb < TARGET_WORKER_RSS_MB)),
        ("  of which private (peak RssAnon)", "%.0f MB" % anon_mb,
         "<= %d MB" % TARGET_WORKER_ANON_MB, verdict(anon_mb <= TARGET_WORKER_ANON_MB)),
    ]
    # steady state: from the second round on, a job reuses what the one
    # before it freed
    growth = [(a - b) / rows for a, b in zip(per_round(res, "db_bytes_after"),
                                            per_round(res, "db_bytes_before"))]
    steady = growth[1:] if len(growth) > 1 else growth
    if steady:
        disk = median(steady)
        summary.append(("on disk per pushed row, steady state (database growth)",
                        "%.1f B" % disk, "<= %d B" % TARGET_DISK_BYTES_PER_ROW,
                        verdict(disk <= TARGET_DISK_BYTES_PER_ROW)))
    wal_row = median(per_round(res, "wal_worker_bytes")) / rows
    summary.append(("WAL written by the worker per row", "%.1f B" % wal_row,
                    "<= %d B" % TARGET_WAL_BYTES_PER_ROW,
                    verdict(wal_row <= TARGET_WAL_BYTES_PER_ROW)))
    if scale_rows:
        per_row = median([x / rows for x in e2e_s])
        scale_per_row = num(res["scale_e2e_s"]) / scale_rows
        worse = scale_per_row / per_row - 1
        summary.append(("end to end per row, %s rows vs %s rows" % (grouped(scale_rows),
                                                                    grouped(rows)),
                        "%+.1f%%" % (100 * worse), "<= +%.0f%%" % (100 * TARGET_SCALE_WORSE),
                        verdict(worse <= TARGET_SCALE_WORSE)))
    join_r = per_round(res, "join_ms.receipts")
    join_p = per_round(res, "join_ms.plain_receipts")
    if join_r and join_p:
        jr = median(join_r) / median(join_p)
        summary.append(("join a job's receipts to t by key / same join on a plain table",
                        "%.2f (%.0f ms / %.0f ms)" % (jr, median(join_r), median(join_p)),
                        "<= %.1f" % TARGET_JOIN_RATIO, verdict(jr <= TARGET_JOIN_RATIO)))
    summary += [
        ("receipts written (per job, all succeeded)",
         "%s x %d jobs" % (grouped(rows), len(job_keys)) if receipts_ok else "INVALID",
         "= rows", "PASS" if receipts_ok else "FAIL"),
    ]
    table(summary, ("measure", "value", "target", ""))

    print()
    commit = [e - f for e, f in zip(enq_s, fn_s)]
    after = [x - e for x, e in zip(e2e_s, enq_s)]
    details = [
        ("t as row_to_json / as batch bodies (per job)",
         "%.1f MB / %.1f MB" % (base_bytes / MB, m_bytes / MB)),
        ("baseline: seconds / backend CPU seconds", "%.2f / %.2f" % (m_base, median(base_cpu))),
    ]
    if csv_s:
        details.append(("COPY csv baseline: seconds / backend CPU seconds",
                        "%.2f / %.2f" % (median(csv_s),
                                         median(per_round(res, "csv_baseline_cpu_s")))))
    details += [
        ("enqueue: seconds (in bulk_upsert + COMMIT)",
         "%.2f (%.2f + %.2f)" % (m_enq, median(fn_s), median(commit))),
        ("enqueue: backend CPU seconds", "%.2f" % median(enq_cpu)),
        ("after COMMIT until final: seconds", "%.2f" % median(after)),
        ("worker CPU seconds per job", "%.2f (%.0f%% of the time after COMMIT)"
         % (median(wcpu), 100 * median(wcpu) / median(after))),
        ("mock CPU seconds per job", "%.2f" % median(mcpu)),
        ("WAL per job: enqueue / worker (receipts, batch states)",
         "%.0f MB / %.0f MB" % (median(per_round(res, "wal_enqueue_bytes")) / MB,
                                median(per_round(res, "wal_worker_bytes")) / MB)),
        ("worker peak RssAnon (private) / RssShmem (shared buffers it touched)",
         "%.0f MB / %.0f MB (sampled every 0.1 s)" % (anon_mb, shmem_mb)),
    ]
    if "contended_enqueue_s" in res:
        details.append(("contended: enqueue s (backend CPU s) / both jobs end to end s",
                        "%.2f (%.2f) / %.2f" % (num(res["contended_enqueue_s"]),
                                                num(res["contended_enqueue_cpu_s"]),
                                                num(res["contended_e2e_s"]))))
    if steady:
        details.append(("database growth per row, round by round (round 1 includes what "
                         "the first job creates once)",
                        ", ".join("%.1f B" % g for g in growth)))
    sync_rows = []
    if "sync_all_s" in res:
        sync_base = median(base_s + [num(res["sync_baseline_s"])])
        for key, what, target in (("all", "run_sync, every key new (100% changed)", None),
                                  ("fold", "run_sync, 0% changed, folding the first job in",
                                   None),
                                  ("none", "run_sync, 0% changed", TARGET_SYNC_NONE),
                                  ("one", "run_sync, 1% changed", TARGET_SYNC_ONE)):
            x = num(res["sync_%s_s" % key]) / sync_base
            sync_rows.append((what, "%.2f s" % num(res["sync_%s_s" % key]),
                              grouped(int(res["sync_%s_rows" % key])), "%.2f" % x,
                              "<= %.1f" % target if target else "",
                              verdict(x <= target) if target else ""))
        size, keys, text = (num(v) for v in res["sync_state"].split("|"))
        per_key = (size - text) / keys if keys else float("nan")
        sync_rows.append(("state on disk per key, its text left out",
                          "%.1f B" % per_key, grouped(int(keys)), "", "<= %d B" % TARGET_SYNC_STATE,
                          verdict(per_key <= TARGET_SYNC_STATE)))
        sync_rows.insert(0, ("baseline COPY (SELECT row_to_json(t) FROM t) TO '/dev/null'",
                             "%.2f s" % sync_base, grouped(rows), "1.00", "", ""))
        want_one = int(res.get("sync_one_expected", "0"))
        if int(res["sync_one_rows"]) != want_one or int(res["sync_none_rows"]) != 0 \
                or int(res["sync_fold_rows"]) != 0 or int(res["sync_all_rows"]) != rows:
            problems.append("sync: enqueued %s/%s/%s/%s rows (100%%/fold/0%%/1%%), want %d/0/0/%d"
                            % (res["sync_all_rows"], res["sync_fold_rows"],
                               res["sync_none_rows"], res["sync_one_rows"], rows, want_one))
        for k in ("all", "one"):
            if "job.sync_%s.state" % k in res and res["job.sync_%s.state" % k] != "succeeded":
                problems.append("sync job %s: %s" % (k, res["job.sync_%s.state" % k]))
    if scale_rows:
        details.append(("--scale-rows job: enqueue s / end to end s / worker WAL per row",
                        "%.2f / %.2f / %.1f B" % (num(res["scale_enqueue_s"]),
                                                  num(res["scale_e2e_s"]),
                                                  num(res["scale_wal_worker_bytes"])
                                                  / scale_rows)))
    if "join_plan" in res:
        details.append(("plan of the receipts join", res["join_plan"].strip(";")
                        .replace(";", " / ")))
    details.append(("mock operations received / expected",
                    "%s / %s" % (grouped(mock_ops or 0), grouped(expected_ops))))
    details.append(("CPU used by other processes on the machine, rounds 1-%d" % nrounds,
                    "%.1f s (%.0f%% of %d cores x %.0f s)"
                    % (sum(ocpu), 100 * sum(ocpu) / (ncpu * sum(round_s)), ncpu,
                       sum(round_s))))
    details.append(("checkpoints by time or WAL during the run",
                    res.get("checkpoints_timed_or_requested", "?")))
    table(details, ("detail", "value"))
    if sync_rows:
        print()
        table(sync_rows, ("sync of t", "time", "rows enqueued", "x baseline", "target", ""))

    print()
    raw = []
    for r in range(nrounds):
        raw.append((r + 1, "%.2f" % base_s[r], "%.2f" % enq_s[r], "%.2f" % fn_s[r],
                    "%.2f" % e2e_s[r], "%.2f" % enq_cpu[r], "%.2f" % wcpu[r], "%.2f" % mcpu[r],
                    "%.1f" % max(0.0, ocpu[r])))
    table(raw, ("round", "baseline s", "enqueue s", "in fn s", "e2e s", "backend CPU s",
                "worker CPU s", "mock CPU s", "others' CPU s"))

    queue(res)

    if problems:
        print()
        print("INVALID RUN:")
        for p in problems:
            print("  - " + p)
        return 1
    return 0


def queue(res):
    """The queue's tables: fairness, and claim latency by queue depth and history."""
    if "fair_small_alone_s" in res:
        print()
        alone = num(res["fair_small_alone_s"])
        behind = num(res["fair_small_behind_s"])
        after = num(res["fair_big_after_small_s"])
        # of the time the large job still needed when the small one came,
        # the part the small one waited: about all of it, oldest first
        waited = behind / (behind + after) if behind + after > 0 else 1.0
        table([
            ("100-row job, worker idle: enqueue -> finished", "%.2f s" % alone, "", ""),
            ("100-row job behind a %s-row job on its target" % grouped(int(res["rows"])),
             "%.2f s (%.1f x alone)" % (behind, behind / alone), "<= %.0f s" % TARGET_FAIR_S,
             verdict(behind <= TARGET_FAIR_S)),
            ("  the large job ended after it by", "%.2f s (of %.2f s end to end)"
             % (after, num(res["fair_big_e2e_s"])), "", ""),
            ("  its wait / the large job's time left when it came", "%.2f" % waited,
             "<= %.2f" % TARGET_FAIR_WAITED, verdict(waited <= TARGET_FAIR_WAITED)),
        ], ("fairness", "value", "target", ""))
    cases = int(res.get("queue.cases", "0"))
    if cases:
        print()
        base = num(res["queue.1.probe_s"])
        rows = []
        for k in range(1, cases + 1):
            p = num(res["queue.%d.probe_s" % k])
            ratio = p / base
            rows.append((grouped(num(res["queue.%d.jobs" % k])),
                         grouped(num(res["queue.%d.history_rows" % k])),
                         "%.1f ms" % (1000 * p), "%.2f" % ratio,
                         "" if k == 1 else "<= %.1f" % TARGET_CLAIM_RATIO,
                         "" if k == 1 else verdict(ratio <= TARGET_CLAIM_RATIO)))
        table(rows, ("unfinished jobs", "receipts in history", "probe job latency (median of 20)",
                     "/ first row", "target", ""))
        print("probe: a 1-row job on an idle target, COMMIT -> finished_at; the queued jobs "
              "wait on another target, its one slot held by a request never answered")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
