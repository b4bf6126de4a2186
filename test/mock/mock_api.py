#!/usr/bin/env python3
"""mock_api.py - the in-memory stand-in for every remote bulk API bulkops speaks.

This file owns everything that is not one API's format:

  * the HTTP server (threaded, HTTP/1.1 keep-alive, raw response writing),
  * request routing by path template, and the dialect registry,
  * the control API under /_control (reset, config, stats, request log, faults,
    marks: how often each row was sent, whatever the dialect's format),
  * fault injection (status, redirect, reset, delay, malformed, truncate, huge,
    huge_record, trickle, mutate),
  * tagged paths: /_t/<tag>/<path> is served as <path>, while faults and the request
    log see the whole path, so tests running side by side give each case its own
    target URL and faults that hit only that case,
  * an optional second, TLS listener (--tls-port) serving the same state.

Each dialect (the format of one vendor's API, see docs/protocols/) lives in
its own module next to this one, and every module of this folder that defines NAME
and a class Dialect is served: nothing lists them (modules without those two, such
as dialect_tests.py and the unit tests, are helpers).  Dialect(ctx), usually a
MockDialect, has:

    routes()          -> [(method, template, handler)]  mounted under /<NAME>
                         (or under MOUNT when the module defines it, "" = root)
    control_routes()  -> [(method, template, handler)]  mounted under /_control/<NAME>
    reset()           forget all state
    stats()           -> dict, reported as stats[NAME]

A handler is called as handler(req, params) with ctx.lock held and returns a Response.
Templates are paths whose {name} segments match one path segment each.

A module may also describe itself to the generic tests with TESTS (what a target on
it looks like, which of its answers the hostile-answer test spoils, ...; see
describe() and docs/adding-a-dialect.md), served by GET /_control/dialects and
printed by --describe, and define fuzz_seeds(mock) for test/fuzz/make_seeds.py.

Requests under /_control are never logged, counted or spoiled by faults, so tests can
always inspect the server whatever rules they installed.

Usage:
    python3 test/mock/mock_api.py --port 8765 [--host 127.0.0.1] [--bench]
                                  [--pidfile F] [--quiet]
                                  [--tls-port N --tls-cert PEM --tls-key PEM]
    python3 test/mock/mock_api.py --describe     (every module's description, JSON)

With --tls-port, a line "mock_api tls on HOST:PORT" comes before the ready line
(test/mock/make_test_certs.sh makes a private CA and a certificate for localhost).
"""

import argparse
import base64
import collections
import http.server
import importlib
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse

REQUEST_LOG_SIZE = 1000
LOGGED_BODY_BYTES = 2000
CONTROL_PREFIX = "/_control"


# ---------------------------------------------------------------------------
# Requests and responses
# ---------------------------------------------------------------------------

class Request:
    """One parsed HTTP request, as handlers see it."""

    __slots__ = ("method", "path", "query", "headers", "body", "prefix")

    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query          # dict: name -> last value given
        self.headers = headers      # email.message.Message (case-insensitive get)
        self.body = body            # bytes
        self.prefix = ""            # "/_t/<tag>" of a tagged path: links a handler
                                    # gives out keep it, so they hit the same faults

    def json(self):
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body)


class Response:
    """An answer to write: status, body bytes and extra headers."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status, body=b"", content_type="application/json",
                 headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def json_body(req, kind=None):
    """The request's body parsed as JSON, or None when it is not JSON or, given
    kind (dict, list), not one of those."""
    try:
        body = req.json()
    except ValueError:
        return None
    return body if kind is None or isinstance(body, kind) else None


def json_response(status, obj, headers=None):
    return Response(status, json.dumps(obj).encode(), headers=headers)


def error_response(status, message, type_=None):
    """The error shape shared by the control API and dialects that have none."""
    err = {"code": status, "message": message}
    if type_:
        err["type"] = type_
    return json_response(status, {"error": err})


def shuffle_answer(rng, elements, enabled=True):
    """Shuffle an answer's elements in place, never leaving them in request order."""
    if not enabled or len(elements) < 2:
        return
    before = list(elements)
    rng.shuffle(elements)
    if elements == before:
        elements.append(elements.pop(0))


def reason_phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def encode_head(status, content_type, content_length, headers, close):
    """Status line and headers as bytes, ready to prefix a body."""
    lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status)),
             "Server: bulkops-mock",
             "Content-Type: " + content_type,
             "Content-Length: %d" % content_length]
    lines.extend("%s: %s" % kv for kv in headers.items())
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------

TAG_RX = re.compile(r"^/_t/[^/]+(?=/)")


def split_tag(path):
    """("/_t/<tag>", the rest) of a tagged path; ("", path) of any other."""
    m = TAG_RX.match(path)
    if m is None:
        return "", path
    return m.group(0), path[m.end():]


class Router:
    """Maps (method, path) to a handler through path templates.

    The template string doubles as the key under which stats count requests, so
    /clinia/sources/a/... and /clinia/sources/b/... add up in one counter.
    """

    def __init__(self):
        self._routes = []   # (method, compiled regex, template, handler)

    @staticmethod
    def _compile(template):
        parts = re.split(r"(\{\w+\})", template)
        rx = "".join("(?P<%s>[^/]+)" % p[1:-1] if p.startswith("{") else re.escape(p)
                     for p in parts)
        return re.compile(rx + "$")

    def add(self, method, template, handler):
        self._routes.append((method, self._compile(template), template, handler))

    def match(self, method, path):
        """(handler, params, template); handler is None for 404/405."""
        path_known = False
        for m, rx, template, handler in self._routes:
            hit = rx.match(path)
            if hit is None:
                continue
            if m == method:
                return handler, hit.groupdict(), template
            path_known = True
        if path_known:
            return None, 405, "(method not allowed)"
        return None, 404, "(no route)"


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

FAULT_DEFAULTS = {"skip": 0, "times": 1, "when": "before"}


class FaultRule:
    """One configured fault: which requests it hits, how often, and what it does."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("a rule must be an object")
        self.spec = dict(FAULT_DEFAULTS, **spec)
        self.action = self.spec.get("action")
        if self.action not in FAULT_ACTIONS:
            raise ValueError("unknown fault action %r" % (self.action,))
        if self.spec["when"] not in ("before", "after"):
            raise ValueError("when must be \"before\" or \"after\"")
        self.method = (self.spec.get("method") or "").upper() or None
        self.path_rx = re.compile(self.spec["path"]) if self.spec.get("path") else None
        if self.action == "mutate":
            check_edits(self.spec.get("edits"))
        self.seen = 0       # matching requests let through by "skip"
        self.fired = 0
        self.applied = 0    # mutate: edits that changed an answer
        self.missed = 0     # mutate: edits that found nothing to change

    @property
    def after(self):
        return self.spec["when"] == "after"

    def matches(self, method, path):
        if self.method and self.method != method:
            return False
        return self.path_rx is None or self.path_rx.search(path) is not None

    def exhausted(self):
        times = self.spec["times"]
        return times != -1 and self.fired >= times

    def describe(self):
        return dict(self.spec, seen=self.seen, fired=self.fired,
                    applied=self.applied, missed=self.missed)


def pick_fault(rules, method, path):
    """The rule that fires for this request, or None; updates the rules' counters.

    Rules are tried in order and the first that fires takes the request: a request
    taken by an earlier rule does not count towards a later rule's "skip".
    """
    for rule in rules:
        if rule.exhausted() or not rule.matches(method, path):
            continue
        if rule.seen < rule.spec["skip"]:
            rule.seen += 1
            continue
        rule.fired += 1
        return rule
    return None


# Each action is fault_<name>(handler, rule, produce); produce() runs the request for
# real (with the lock) and returns its Response.  "before" actions never call it.

def _real_or_placeholder(rule, produce):
    """The answer a spoiling action damages: the real one when when=after."""
    if rule.after:
        return produce()
    body = rule.spec.get("body", '{"status": "ACCEPTED", "taskId": "bk_fault"}')
    return Response(rule.spec.get("status", 200), body.encode())


def fault_status(h, rule, produce):
    if rule.after:
        produce()
    status = rule.spec.get("status", 503)
    body = rule.spec.get("body")
    if body is None:
        body = json.dumps({"error": {"code": status, "message": "injected fault"}})
    h.send_response_obj(Response(status, body.encode(),
                                 rule.spec.get("content_type", "application/json"),
                                 rule.spec.get("headers")))


def fault_redirect(h, rule, produce):
    # A redirect elsewhere: a client that follows it shows up at "location".
    if rule.after:
        produce()
    headers = dict(rule.spec.get("headers") or {})
    headers["Location"] = rule.spec.get("location", "http://elsewhere.invalid/")
    h.send_response_obj(Response(rule.spec.get("status", 302), b"", "text/plain",
                                 headers))


def fault_reset(h, rule, produce):
    # Half of the head is enough for the client to have started parsing an answer.
    head = h.response_bytes(_real_or_placeholder(rule, produce), body=False)
    h.write_quietly(head[:len(head) // 2])
    h.abort_connection()


def fault_delay(h, rule, produce):
    seconds = float(rule.spec.get("seconds", 1.0))
    if not rule.after:
        time.sleep(seconds)
    resp = produce()
    if rule.after:
        time.sleep(seconds)
    h.send_response_obj(resp)


def fault_malformed(h, rule, produce):
    # "body_base64" gives bytes a JSON string cannot carry: invalid UTF-8, NULs.
    if rule.after:
        produce()
    if "body_base64" in rule.spec:
        body = base64.b64decode(rule.spec["body_base64"])
    else:
        body = rule.spec.get("body", '{"status": "ACC').encode()
    h.send_response_obj(Response(rule.spec.get("status", 200), body,
                                 rule.spec.get("content_type", "application/json")))


def fault_truncate(h, rule, produce):
    resp = _real_or_placeholder(rule, produce)
    head = h.response_bytes(resp, body=False, close=True)
    # The declared length stays that of the full body; only half of it follows.
    h.write_quietly(head + resp.body[:len(resp.body) // 2])
    h.close_connection = True


def fault_huge(h, rule, produce):
    if rule.after:
        produce()
    h.send_huge(int(rule.spec.get("bytes", 16 << 20)), rule.spec.get("status", 200))


def fault_huge_record(h, rule, produce):
    # The real answer's first line (a CSV header), then one record of "bytes" bytes:
    # one endless field ("shape": "long") or nothing but commas ("fields").
    resp = produce()
    head = resp.body.split(b"\n", 1)[0] + b"\n"
    fill = b"," if rule.spec.get("shape", "long") == "fields" else b"x"
    h.send_huge_record(resp, head, int(rule.spec.get("bytes", 16 << 20)), fill)


def fault_trickle(h, rule, produce):
    # The answer is the real one whatever "when" says: only its pace is spoiled.
    h.send_trickle(h.response_bytes(produce()), float(rule.spec.get("interval", 0.1)))


def fault_mutate(h, rule, produce):
    # The real answer, well-formed HTTP, but saying what no request asked for.
    resp = produce()
    body, applied, missed = mutate_body(resp.body, rule.spec["edits"])
    with h.ctx.lock:
        rule.applied += applied
        rule.missed += missed
    h.send_response_obj(Response(rule.spec.get("status", resp.status), body,
                                 resp.content_type, resp.headers))


FAULT_ACTIONS = {
    "status": fault_status,
    "redirect": fault_redirect,
    "reset": fault_reset,
    "delay": fault_delay,
    "malformed": fault_malformed,
    "truncate": fault_truncate,
    "huge": fault_huge,
    "huge_record": fault_huge_record,
    "trickle": fault_trickle,
    "mutate": fault_mutate,
}


# ---------------------------------------------------------------------------
# Mutations: the edits of a "mutate" fault
# ---------------------------------------------------------------------------
#
# JSON edits change the answer's parsed JSON at "at", a dotted path from the root
# ("" is the root itself; a segment is an object member, an array index, negative
# from the end, or "*" for every element or member):
#   {"at": P, "set": V}           replace (or add) the value at P with V
#   {"at": P, "set_bytes": HEX}   make it a string of exactly these bytes (which may
#                                 be invalid UTF-8: JSON itself cannot say so)
#   {"at": P, "delete": true}     remove the member or element
#   {"at": P, "drop": N}          remove the last N elements of the array at P
#   {"at": P, "dup": N}           append N copies of the last element of the array
# Byte edits change the body as sent (after the JSON edits), JSON or not (CSV):
#   {"cut": F}                    keep the first fraction F of the body, with a
#                                 Content-Length that matches: a cut, not a loss
#   {"lines": "drop"|"dup", "n": N}  remove the last N lines / repeat the last N times
#   {"find": S, "replace": T}     replace every S by T ("replace_bytes": HEX for T)
# An edit that finds nothing to change counts as missed (GET /_control/faults).

JSON_EDITS = ("set", "set_bytes", "delete", "drop", "dup")
BYTE_EDITS = ("cut", "lines", "find")


def edit_kind(edit):
    kinds = [k for k in JSON_EDITS + BYTE_EDITS if k in edit]
    if len(kinds) != 1:
        raise ValueError("an edit needs exactly one of %s"
                         % ", ".join(JSON_EDITS + BYTE_EDITS))
    return kinds[0]


def check_edits(edits):
    if not isinstance(edits, list) or not edits:
        raise ValueError("mutate needs a non-empty list \"edits\"")
    for e in edits:
        if not isinstance(e, dict):
            raise ValueError("an edit must be an object")
        kind = edit_kind(e)
        if kind in JSON_EDITS and not isinstance(e.get("at"), str):
            raise ValueError("a JSON edit needs \"at\", a dotted path")
        if kind == "set_bytes":
            bytes.fromhex(e["set_bytes"])
        if kind == "lines" and e["lines"] not in ("drop", "dup"):
            raise ValueError("lines must be \"drop\" or \"dup\"")
        if kind == "find" and "replace_bytes" in e:
            bytes.fromhex(e["replace_bytes"])


def _places(holder, path, create):
    """The (container, key) pairs path names; with create, a missing last member too."""
    places = [(holder, 0)]
    segs = path.split(".") if path else []
    for n, seg in enumerate(segs):
        last = n == len(segs) - 1
        out = []
        for c, k in places:
            v = c[k]
            if isinstance(v, list):
                if seg == "*":
                    out.extend((v, i) for i in range(len(v)))
                else:
                    try:
                        i = int(seg)
                    except ValueError:
                        continue
                    if -len(v) <= i < len(v):
                        out.append((v, i % len(v)))
            elif isinstance(v, dict):
                if seg == "*":
                    out.extend((v, m) for m in v)
                elif seg in v or (create and last):
                    out.append((v, seg))
        places = out
    return places


def _json_edit(holder, e, raw):
    kind = edit_kind(e)
    places = _places(holder, e["at"], kind in ("set", "set_bytes"))
    if kind == "set":
        for c, k in places:
            c[k] = json.loads(json.dumps(e["set"]))
    elif kind == "set_bytes":
        for c, k in places:
            token = "__mutate_raw_%d__" % len(raw)
            raw[token] = bytes.fromhex(e["set_bytes"])
            c[k] = token
    elif kind == "delete":
        # from the end, so that removing one element does not move the next
        for c, k in sorted(places, key=lambda p: p[1] if isinstance(p[1], int) else 0,
                           reverse=True):
            del c[k]
    else:
        places = [(c, k) for c, k in places if isinstance(c[k], list) and c[k]]
        n = int(e[kind])
        for c, k in places:
            if kind == "drop":
                del c[k][max(0, len(c[k]) - n):]
            else:
                c[k].extend(json.loads(json.dumps(c[k][-1])) for _ in range(n))
    return bool(places)


def _byte_edit(body, e):
    kind = edit_kind(e)
    if kind == "cut":
        out = body[:int(len(body) * float(e["cut"]))]
    elif kind == "lines":
        lines = body.splitlines(keepends=True)
        n = int(e.get("n", 1))
        if not lines:
            return body, False
        if e["lines"] == "drop":
            out = b"".join(lines[:max(0, len(lines) - n)])
        else:
            tail = lines[-1] if lines[-1].endswith(b"\n") else lines[-1] + b"\n"
            out = b"".join(lines[:-1]) + tail * (n + 1)
    else:
        find = e["find"].encode()
        repl = bytes.fromhex(e["replace_bytes"]) if "replace_bytes" in e \
            else str(e.get("replace", "")).encode()
        out = body.replace(find, repl)
    return out, out != body


def mutate_body(body, edits):
    """(new body, edits applied, edits missed) after the edits of a mutate fault."""
    applied = missed = 0
    json_edits = [e for e in edits if edit_kind(e) in JSON_EDITS]
    if json_edits:
        raw = {}
        try:
            holder = [json.loads(body)]
        except ValueError:
            holder = None
        for e in json_edits:
            if holder is not None and _json_edit(holder, e, raw):
                applied += 1
            else:
                missed += 1
        if holder is not None:
            body = json.dumps(holder[0]).encode()
            for token, b in raw.items():
                body = body.replace(b'"%s"' % token.encode(), b'"' + b + b'"')
    for e in edits:
        if edit_kind(e) in BYTE_EDITS:
            body, changed = _byte_edit(body, e)
            applied += changed
            missed += not changed
    return body, applied, missed


# ---------------------------------------------------------------------------
# Dialect modules
# ---------------------------------------------------------------------------

class MockDialect:
    """What a module's Dialect starts from: the context, the module's configuration
    section, its counters, and the credential check every handler opens with.

    A subclass extends reset() (this one starts the counters) and defines routes();
    control_routes() and stats() are there if it needs no other."""

    # the counters stats() reports, zero or not (without any: those counted so far)
    COUNTERS = ()

    def __init__(self, ctx):
        self.ctx = ctx
        # the NAME of the module that defines the subclass
        self.name = sys.modules[type(self).__module__].NAME
        self.reset()

    def reset(self):
        self.counts = collections.Counter()

    def routes(self):
        return []

    def control_routes(self):
        return []

    def stats(self):
        """COUNTERS, and for a dialect that counts in self.applied how often each
        record was written, the most any one was (max_applications_per_id)."""
        c = self.counts
        out = {k: c[k] for k in self.COUNTERS} if self.COUNTERS else dict(c)
        if hasattr(self, "applied"):
            out["max_applications_per_id"] = max(self.applied.values(), default=0)
        return out

    @property
    def config(self):
        return self.ctx.section(self.name)

    def refuse_credentials(self, req, refusal, api_key_header=None):
        """None when the request carries the credentials the configuration asks for,
        else the answer to give: refusal(why) for a wrong or missing api_key (in the
        header api_key_header), bearer token or basic "user:pass", the OAuth endpoint's
        own answer (oauth.py) for a token it did not issue when "oauth" is set."""
        cfg = self.config
        if api_key_header and cfg.get("api_key") is not None and \
                req.headers.get(api_key_header) != cfg["api_key"]:
            return refusal("invalid api key")
        scheme, _, value = (req.headers.get("Authorization") or "").partition(" ")
        scheme = scheme.lower()
        if cfg.get("bearer") is not None and \
                (scheme != "bearer" or value.strip() != cfg["bearer"]):
            return refusal("invalid bearer token")
        if cfg.get("basic") is not None and \
                (scheme != "basic" or not _basic_matches(value, cfg["basic"])):
            return refusal("invalid credentials")
        if cfg.get("oauth"):
            return self.ctx.dialects["oauth"].check_bearer(req)
        return None


def _basic_matches(value, expected):
    try:
        return base64.b64decode(value.strip(), validate=True).decode() == expected
    except (ValueError, UnicodeDecodeError):
        return False


def dialect_modules():
    """Every module of this folder that defines NAME and Dialect, by file name.

    The unit tests (test_*.py) are not even imported; other modules without NAME
    and Dialect are helpers."""
    folder = os.path.dirname(os.path.abspath(__file__))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules.setdefault("mock_api", sys.modules[__name__])
    found = {}
    for file in sorted(os.listdir(folder)):
        name, ext = os.path.splitext(file)
        if ext != ".py" or name.startswith("test_") or name in ("mock_api", "__init__"):
            continue
        module = importlib.import_module(name)
        if not (hasattr(module, "NAME") and hasattr(module, "Dialect")):
            continue
        if module.NAME in found:
            raise RuntimeError("modules %s and %s both define dialect %r"
                               % (found[module.NAME].__name__, name, module.NAME))
        found[module.NAME] = module
    return list(found.values())


# What a target on a module is when its TESTS do not say: its mount, and a resource.
DEFAULT_TARGET = {"url": "", "resource": "Contact", "options": {}}
# The generic tests that read TESTS: each gets TESTS["target"] with its own entry
# over it (crash: the crash matrices; hostile: test/t/009_hostile_answers.pl; fuzz:
# test/fuzz/run.sh; bench: test/bench/run.sh).
TEST_NAMES = ("crash", "hostile", "fuzz", "bench")


def describe(module):
    """What the generic tests need to know of a dialect module, JSON-ready: its
    mount, whether it has TESTS at all ("described"), whether it has fuzz_seeds, and
    for each test of TEST_NAMES the target to make (url, the mount put in front of the
    module's; resource; options, the test's over the target's; auth) with that
    test's own members (docs/adding-a-dialect.md says which).  "{name}" in url and resource stands
    for a name each test makes unique to its case."""
    mount = getattr(module, "MOUNT", "/" + module.NAME)
    tests = getattr(module, "TESTS", None)
    target = dict(DEFAULT_TARGET, **((tests or {}).get("target") or {}))
    out = {"name": module.NAME, "mount": mount, "described": tests is not None,
           "fuzz_seeds": hasattr(module, "fuzz_seeds")}
    for test in TEST_NAMES:
        own = (tests or {}).get(test) or {}
        spec = dict(target, **own)
        spec["options"] = dict(target["options"], **(own.get("options") or {}))
        spec["url"] = mount + spec["url"]
        out[test] = spec
    # fuzz's variants: more targets of the dialect, each fuzzed on its own
    # (test/fuzz/run.sh); a variant's resource defaults to the target's, and its
    # options are its own, whole (not over the target's)
    out["fuzz"]["variants"] = {
        name: {"resource": v.get("resource", target["resource"]),
               "options": v.get("options") or {}}
        for name, v in (out["fuzz"].get("variants") or {}).items()}
    return out


# ---------------------------------------------------------------------------
# Shared state and the control API
# ---------------------------------------------------------------------------

def deep_merge(dst, src):
    """Merge src into dst in place: objects merge key by key, the rest replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


class MockContext:
    """Everything the server remembers; every access holds self.lock."""

    def __init__(self, bench=False, quiet=False):
        self.lock = threading.Lock()
        self.bench = bench
        self.quiet = quiet
        self.router = Router()
        self.dialects = {}
        self.config = {}
        self.faults = []
        self.request_counts = collections.Counter()
        self.request_log = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.faults_fired = 0
        self.marks = None               # compiled bytes regex, or None
        self.mark_counts = collections.Counter()
        self.own_marks = []             # path prefixes of OWN_MARKS dialects
        self.descriptions = {}
        self._add_control_routes()
        for module in dialect_modules():
            self._register(module)

    def section(self, name):
        """A dialect's configuration object (empty when never configured)."""
        return self.config.get(name) or {}

    def _register(self, module):
        dialect = module.Dialect(self)
        if getattr(module, "OWN_MARKS", False):
            self.own_marks.append("/" + module.NAME + "/")
        self.dialects[module.NAME] = dialect
        self.descriptions[module.NAME] = describe(module)
        mount = getattr(module, "MOUNT", "/" + module.NAME)
        for method, template, handler in dialect.routes():
            self.router.add(method, mount + template, handler)
        for method, template, handler in dialect.control_routes():
            self.router.add(method, "%s/%s%s" % (CONTROL_PREFIX, module.NAME, template),
                            handler)

    def _add_control_routes(self):
        for method, path, handler in (
                ("POST", "/reset", self.ctl_reset),
                ("GET", "/config", self.ctl_get_config),
                ("POST", "/config", self.ctl_set_config),
                ("GET", "/stats", self.ctl_stats),
                ("GET", "/requests", self.ctl_requests),
                ("GET", "/faults", self.ctl_get_faults),
                ("POST", "/faults", self.ctl_add_faults),
                ("DELETE", "/faults", self.ctl_clear_faults),
                ("GET", "/marks", self.ctl_get_marks),
                ("POST", "/marks", self.ctl_set_marks),
                ("GET", "/dialects", self.ctl_dialects)):
            self.router.add(method, CONTROL_PREFIX + path, handler)

    def record(self, req, template):
        """Count and log one API request (not called for /_control)."""
        self.request_counts["%s %s" % (req.method, template)] += 1
        self.request_log.append({
            "time": time.time(),
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "headers": dict(req.headers.items()),
            "body_len": len(req.body),
            "body": req.body[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
        })

    def count_marks(self, req):
        """Count the marks in a request an API handler takes (not one a fault
        refused before it ran: the remote side never saw that one), unless its
        dialect counts them itself (OWN_MARKS)."""
        path = split_tag(req.path)[1]
        if not any(path.startswith(p) for p in self.own_marks):
            self.count_marks_in(req.body)

    def count_marks_in(self, data):
        """Count the marks in data.  A dialect whose API takes rows for good at
        some later request than the one carrying them (Salesforce: the close of
        an upload) sets OWN_MARKS = True and calls this there."""
        if self.marks is not None and data:
            group = 1 if self.marks.groups else 0
            for m in self.marks.finditer(data):
                self.mark_counts[m.group(group).decode("utf-8", "replace")] += 1

    # -- control handlers -------------------------------------------------

    def ctl_reset(self, req, params):
        self.config = {}
        self.faults = []
        self.request_counts.clear()
        self.request_log.clear()
        self.faults_fired = 0
        self.marks = None
        self.mark_counts.clear()
        for d in self.dialects.values():
            d.reset()
        return json_response(200, {"reset": True})

    def ctl_get_config(self, req, params):
        return json_response(200, self.config)

    def ctl_set_config(self, req, params):
        body = json_body(req, dict)
        if body is None:
            return error_response(400, "config must be a JSON object")
        deep_merge(self.config, body)
        return json_response(200, self.config)

    def ctl_stats(self, req, params):
        out = {"requests": dict(self.request_counts),
               "faults_fired": self.faults_fired,
               "bench": self.bench}
        for name, d in self.dialects.items():
            out[name] = d.stats()
        return json_response(200, out)

    def ctl_dialects(self, req, params):
        """describe() of every dialect module, by NAME."""
        return json_response(200, self.descriptions)

    def ctl_requests(self, req, params):
        entries = list(self.request_log)
        try:
            last = int(req.query.get("last", len(entries)))
        except ValueError:
            return error_response(400, "last must be an integer")
        return json_response(200, entries[-last:] if last > 0 else [])

    def ctl_get_faults(self, req, params):
        return json_response(200, {"rules": [r.describe() for r in self.faults]})

    def ctl_add_faults(self, req, params):
        body = json_body(req, dict)
        if body is None or not isinstance(body.get("rules"), list):
            return error_response(400, "expected {\"rules\": [...]}")
        try:
            rules = [FaultRule(spec) for spec in body["rules"]]
        except (ValueError, TypeError, re.error) as e:
            return error_response(400, "bad fault rule: %s" % e)
        self.faults.extend(rules)
        return json_response(200, {"rules": len(self.faults)})

    def ctl_clear_faults(self, req, params):
        self.faults = []
        return json_response(200, {"rules": 0})

    # Marks: the body of every request an API handler takes is searched for a
    # pattern (the rows of a test carry a unique mark each) and each mark's
    # occurrences are counted, so a test can tell how often the remote side was
    # given every row, in any dialect's wire format.

    def ctl_set_marks(self, req, params):
        """{"pattern": regex} starts counting afresh (group 1 is the mark when the
        pattern has a group); a missing or empty pattern stops counting."""
        body = json_body(req, dict)
        if body is None:
            return error_response(400, "expected {\"pattern\": regex}")
        pattern = body.get("pattern") or None
        try:
            self.marks = re.compile(pattern.encode()) if pattern else None
        except (re.error, AttributeError) as e:
            return error_response(400, "bad pattern: %s" % e)
        self.mark_counts.clear()
        return json_response(200, {"pattern": pattern})

    def ctl_get_marks(self, req, params):
        """Totals; with prefix=P: the marks P<n> sent more than once, and with
        upto=N also those of 1..N never sent (each list at most limit long)."""
        q = req.query
        try:
            upto = int(q.get("upto", 0))
            limit = int(q.get("limit", 1000))
        except ValueError:
            return error_response(400, "upto and limit must be integers")
        prefix = q.get("prefix")
        counts = self.mark_counts
        out = {"pattern": self.marks.pattern.decode() if self.marks else None,
               "distinct": len(counts), "total": sum(counts.values()),
               "max": max(counts.values(), default=0)}
        if prefix is not None:
            mine = {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}
            repeated = sorted((k for k, v in mine.items() if v > 1), key=_natural)
            missing = [n for n in range(1, upto + 1) if str(n) not in mine]
            out.update(sent=len(mine), sent_total=sum(mine.values()),
                       repeated_count=len(repeated),
                       repeated={k: mine[k] for k in repeated[:limit]},
                       missing_count=len(missing), missing=missing[:limit])
        return json_response(200, out)


def _natural(key):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------

class MockHandler(http.server.BaseHTTPRequestHandler):
    """Reads a request, picks a fault, runs the route, writes raw bytes.

    Responses are written as one buffer (head + body) rather than through
    send_response/send_header, which saves a write per request and lets faults
    damage the exact bytes.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "bulkops-mock"

    @property
    def ctx(self):
        return self.server.ctx

    def log_message(self, fmt, *args):
        if not self.ctx.quiet:
            sys.stderr.write("mock_api: " + (fmt % args) + "\n")

    # All methods go the same way; routing decides what exists.
    def do_GET(self):
        self.serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def serve(self):
        req = self.read_request()
        if req is None:
            return
        control = req.path.startswith(CONTROL_PREFIX + "/")
        req.prefix, path = split_tag(req.path)
        if req.prefix and path.startswith(CONTROL_PREFIX + "/"):
            path = "/(no route)"    # control is never tagged, so never faulted
        handler, params, template = self.ctx.router.match(req.method, path)
        fault = None
        with self.ctx.lock:
            if not control:
                self.ctx.record(req, template)
                fault = pick_fault(self.ctx.faults, req.method, req.path)
                if fault:
                    self.ctx.faults_fired += 1

        def produce():
            return self.dispatch(handler, params, req)

        if fault is None:
            resp = produce()
            self.send_response_obj(resp)
        else:
            FAULT_ACTIONS[fault.action](self, fault, produce)
            resp = None
        self.log_message("%s %s%s -> %s", req.method, req.path,
                         " [fault %s]" % fault.action if fault else "",
                         resp.status if resp else "-")

    def dispatch(self, handler, params, req):
        """Run the route's handler under the lock; unknown routes get 404/405."""
        if handler is None:
            return error_response(params, "no route for %s %s" % (req.method, req.path))
        try:
            with self.ctx.lock:
                self.ctx.count_marks(req)
                return handler(req, params)
        except Exception:
            # A bug in the mock: say so loudly, but keep serving.
            traceback.print_exc()
            return error_response(500, "mock handler crashed")

    def read_request(self):
        """The current request with its whole body, or None if the body is bad."""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            body = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.send_response_obj(error_response(400, str(e)))
            return None
        return Request(self.command, url.path, query, self.headers, body)

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        n = int(length)
        # One read: BufferedReader hands large reads straight to the socket.
        body = self.rfile.read(n)
        if len(body) != n:
            raise ValueError("request body shorter than Content-Length")
        return body

    def read_chunked(self):
        parts = []
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ValueError("bad chunk size line") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass    # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    # -- writing --------------------------------------------------------------

    def response_bytes(self, resp, body=True, close=None):
        close = self.close_connection if close is None else close
        head = encode_head(resp.status, resp.content_type, len(resp.body),
                           resp.headers, close)
        return head + resp.body if body else head

    def send_response_obj(self, resp):
        self.write_quietly(self.response_bytes(resp))

    def write_quietly(self, data):
        """Write to a client that may already have given up (timeouts are tested)."""
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def send_huge(self, size, status):
        """A valid-looking JSON object of exactly size bytes, streamed in chunks."""
        prefix = b'{"status": "SUCCESS", "receipts": [], "padding": "'
        suffix = b'"}'
        pad = max(0, size - len(prefix) - len(suffix))
        chunk = b"x" * 65536
        self.write_quietly(encode_head(status, "application/json",
                                       len(prefix) + pad + len(suffix), {}, False)
                           + prefix)
        while pad > 0 and not self.close_connection:
            n = min(pad, len(chunk))
            self.write_quietly(chunk[:n])
            pad -= n
        self.write_quietly(suffix)

    def send_huge_record(self, resp, head, size, fill):
        """resp's head and status with the body head + size bytes of fill + LF,
        streamed in chunks (never held whole: a gigabyte costs nothing here)."""
        chunk = fill * 65536
        self.write_quietly(encode_head(resp.status, resp.content_type,
                                       len(head) + size + 1, resp.headers, False)
                           + head)
        while size > 0 and not self.close_connection:
            n = min(size, len(chunk))
            self.write_quietly(chunk[:n])
            size -= n
        self.write_quietly(b"\n")

    def send_trickle(self, data, interval):
        for i in range(len(data)):
            self.write_quietly(data[i:i + 1])
            if self.close_connection:
                return
            time.sleep(interval)

    def abort_connection(self):
        """Close with RST: SO_LINGER 0 makes close() discard and reset.

        The socket is closed here, not by the server's shutdown_request, because
        that one would send a FIN first and the client would see a clean EOF.
        """
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The makefile'd rfile holds the descriptor open: close both.  wfile stays
        # open because handle_one_request() flushes it after this returns.
        self.rfile.close()
        self.connection.close()


class MockServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, ctx, tls=None):
        self.ctx = ctx
        self.tls = tls      # an ssl.SSLContext for the TLS listener
        super().__init__(address, MockHandler)

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        # The handshake runs in the request's thread, so a client that stalls
        # or refuses our certificate (a tested case) holds up nobody else.
        try:
            request.settimeout(30)
            conn = self.tls.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def server_bind(self):
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds
        # without DNS; the mock does not need a server name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        # Clients that hang up (timeouts, our own resets) are part of the tests.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="bulkops mock remote API server")
    p.add_argument("--describe", action="store_true",
                   help="print every dialect module's description (JSON) and exit")
    p.add_argument("--port", type=int, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--bench", action="store_true",
                   help="cheapest possible answers, for throughput measurements")
    p.add_argument("--pidfile")
    p.add_argument("--quiet", action="store_true", help="log nothing per request")
    p.add_argument("--tls-port", type=int,
                   help="also serve HTTPS on this port (0 picks a free one)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) of the TLS listener")
    p.add_argument("--tls-key", help="PEM private key of the TLS listener")
    args = p.parse_args(argv)
    if args.port is None and not args.describe:
        p.error("--port is required")
    if args.tls_port is not None and not (args.tls_cert and args.tls_key):
        p.error("--tls-port needs --tls-cert and --tls-key")
    return args


def start_tls_server(args, ctx):
    """The TLS listener, serving in a daemon thread; None without --tls-port."""
    if args.tls_port is None:
        return None
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = MockServer((args.host, args.tls_port), ctx, tls=tls)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    print("mock_api tls on %s:%d" % (args.host, server.server_address[1]), flush=True)
    return server


def _exit_on_signal(signum, frame):
    # SystemExit unwinds serve_forever() in the main thread, through the finally.
    raise SystemExit(0)


def main(argv=None):
    args = parse_args(argv)
    # Dialect modules sit next to this file, whatever the current directory, and
    # import this one as "mock_api": make that the running module, not a second copy.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.modules.setdefault("mock_api", sys.modules[__name__])
    if args.describe:
        json.dump({m.NAME: describe(m) for m in dialect_modules()}, sys.stdout,
                  indent=1, sort_keys=True)
        print()
        return 0
    ctx = MockContext(bench=args.bench, quiet=args.quiet)
    server = MockServer((args.host, args.port), ctx)
    tls_server = start_tls_server(args, ctx)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    try:
        print("mock_api ready on %s:%d" % (args.host, server.server_address[1]),
              flush=True)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if tls_server:
            tls_server.server_close()
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
