#!/usr/bin/env python3
"""bench_mock_api.py - measures that the mock is never the bottleneck.

Prints (1) the time from spawning mock_api.py to its ready line, the median of a few
spawns, and (2) --bench throughput: POSTs of a 10,000-operation clinia body (~2 MB)
over one keep-alive connection, then one poll with receipts per task.

    python3 test/mock/bench_mock_api.py [--posts 100] [--ops 10000]
"""

import argparse
import http.client
import json
import socket
import statistics
import time

from test_mock_api import BULK, start_mock, stop_mock


def make_body(ops):
    """A compact clinia submit of ops UPSERTs, about 200 bytes each."""
    one = ('{"action":"UPSERT","upsert":{"id":"key%07d","type":"Patient","data":'
           '{"name":"patient number %07d","city":"Montreal","email":"p%07d@example.invalid",'
           '"birth":"1970-01-01","note":"%s"}}}')
    return ('{"operations":[' + ",".join(one % (i, i, i, "x" * 40) for i in range(ops))
            + "]}").encode()


def measure_startup(runs):
    times = []
    for _ in range(runs):
        proc, _, elapsed = start_mock()
        times.append(elapsed)
        stop_mock(proc)
    return statistics.median(times), max(times)


def measure_throughput(posts, ops):
    proc, port, _ = start_mock("--bench")
    body = make_body(ops)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    # The client's own Nagle delays would be charged to the mock otherwise.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tasks = []
    t0 = time.perf_counter()
    for _ in range(posts):
        conn.request("POST", BULK, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        tasks.append(json.loads(r.read())["taskId"])
        assert r.status == 202, r.status
    t_post = time.perf_counter() - t0
    t0 = time.perf_counter()
    received = 0
    for task in tasks:
        conn.request("GET", "%s/%s?withReceipts=true" % (BULK, task))
        r = conn.getresponse()
        received += len(r.read())
    t_poll = time.perf_counter() - t0
    conn.close()
    stop_mock(proc)
    return len(body), t_post, t_poll, received


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--posts", type=int, default=100)
    p.add_argument("--ops", type=int, default=10000)
    p.add_argument("--spawns", type=int, default=10)
    args = p.parse_args()

    median, worst = measure_startup(args.spawns)
    print("startup: spawn -> ready line median %.0f ms, max %.0f ms over %d spawns"
          % (median * 1000, worst * 1000, args.spawns))

    size, t_post, t_poll, received = measure_throughput(args.posts, args.ops)
    rows = args.posts * args.ops
    print("bench submit: %d POSTs x %d ops (%.2f MB each) in %.2f s: "
          "%.0f requests/s, %.0f MB/s, %.2f M rows/s"
          % (args.posts, args.ops, size / 1e6, t_post, args.posts / t_post,
             args.posts * size / 1e6 / t_post, rows / t_post / 1e6))
    print("bench poll:   %d GETs with receipts (%.2f MB total) in %.2f s: %.0f requests/s"
          % (args.posts, received / 1e6, t_poll, args.posts / t_poll))


if __name__ == "__main__":
    main()
