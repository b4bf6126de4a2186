#!/usr/bin/env python3
"""make_seeds.py - writes test/fuzz/corpus/<dialect>/seed-* from the mock's real answers.

Each seed is one conversation in the input format fuzz_dialects.c reads:

    op (BulkopsOp value), rows - 1, mask of rows already settled, option bits,
    then per answer: status, headers length, headers ("name: value" lines), body
    length, body (numbers as 2 bytes, big-endian).

The conversations are played against the mock server (test/mock/mock_api.py, started
here on a free port) so the answers are the ones the mock really gives.  Run it again
after changing the mock or the format, and commit the result:

    python3 test/fuzz/make_seeds.py [dialect ...]

Every dialect of src/dialects/registry.c gets the conversations of fuzz_seeds(mock)
in its mock module (test/mock/<dialect>.py), which yields (name, header, answers);
a name "V/name" is a seed of the dialect's fuzzing variant V (TESTS["fuzz"]["variants"]),
written to test/fuzz/corpus/<dialect>.V/.  A dialect without fuzz_seeds is fuzzed
from no seeds, and this says so.  Inputs that once
found a bug are kept as seeds named seed-found-*, written here too.
"""

import json
import os
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(TOP, "test", "fuzz", "corpus")
REGISTRY = os.path.join(TOP, "src", "dialects", "registry.c")

sys.path.insert(0, os.path.join(TOP, "test", "mock"))
import mock_api  # noqa: E402

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


def answer(status, headers, body):
    return (struct.pack(">HH", status, len(headers)) + headers +
            struct.pack(">H", len(body)) + body)


def registered_dialects():
    """The dialects built into bulkops, in the order of registry.c's DIALECT() lines."""
    with open(REGISTRY) as f:
        return re.findall(r"^\s*DIALECT\((\w+)\)", f.read(), re.M)


def main(argv):
    modules = {m.NAME: m for m in mock_api.dialect_modules()}
    dialects = argv or registered_dialects()
    mock = Mock()
    missing = 0
    try:
        for dialect in dialects:
            conversations = getattr(modules.get(dialect), "fuzz_seeds", None)
            if conversations is None:
                print("%s: no fuzz_seeds() in test/mock/%s.py: no seeds, it is fuzzed "
                      "from scratch" % (dialect, dialect), file=sys.stderr)
                missing += 1
                continue
            for name, head, answers in conversations(mock):
                variant, _, name = name.rpartition("/")
                d = dialect + "." + variant if variant else dialect
                os.makedirs(os.path.join(CORPUS, d), exist_ok=True)
                with open(os.path.join(CORPUS, d, "seed-" + name), "wb") as f:
                    f.write(head + b"".join(answer(*a) for a in answers))
                print("%s/seed-%s: %d answers" % (d, name, len(answers)))
    finally:
        mock.close()
    return 1 if missing and argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
