"""dialect_tests.py - what dialect modules use to describe themselves to the generic tests.

Not a dialect (it defines no NAME nor Dialect): the vocabulary of the TESTS
descriptions and fuzz_seeds() functions of the modules next to it, which
docs/adding-a-dialect.md explains.

  * For test/t/009_hostile_answers.pl (TESTS["hostile"]["kinds"]): every source there
    has three rows and the mock fails the second ("bad row"), so a case's rows end
    BASE unless its answer says otherwise; regular expressions are strings in Perl's
    syntax, and quote() makes a literal one.  The case builders below write the cases
    several dialects share.
  * For test/fuzz/make_seeds.py (fuzz_seeds): the operations' numbers and the header
    of one input of test/fuzz/fuzz_dialects.c.
"""

import re

# ---- hostile answers --------------------------------------------------------

BASE = ["succeeded", "failed", "succeeded"]


def hex_of(data):
    """bytes (or text, as UTF-8) as the hex a mutate edit's set_bytes takes."""
    return (data.encode() if isinstance(data, str) else data).hex()


def quote(text):
    """A regular expression matching text literally, as Perl's \\Q...\\E writes it."""
    return re.sub(r"(\W)", r"\\\1", text)


# a string holding invalid UTF-8 (a lone continuation byte and a 0xFE), and what
# the server stores instead
BAD = hex_of(b"bad \x80\xfe row")
BAD_CLEAN = "bad ?? row"


def bad_text_case(msg_at, id_at, msg_re=None):
    """Invalid UTF-8 in the failed row's error message (at msg_at) and in the first
    row's remote id (at id_at): stored cleaned (the message as msg_re says),
    outcomes unchanged."""
    return {"label": "invalid UTF-8 in an error message and a remote id",
            "edits": [{"at": msg_at, "set_bytes": BAD},
                      {"at": id_at, "set_bytes": hex_of(b"id\xc3")}],
            "final": {"rows": BASE,
                      "row_msg": {"2": msg_re or "^%s$" % quote(BAD_CLEAN)},
                      "remote_id": {"1": "id?"}}}


def bad_refusal_case(status, root, code_at, msg_at):
    """A refusal of the whole request (HTTP status, the answer replaced by root)
    whose error code (at code_at, if any) and message (at msg_at) are not UTF-8:
    every row fails with them, cleaned."""
    edits = [{"at": "", "set": root}, {"at": msg_at, "set_bytes": BAD}]
    final = {"rows": ["failed"] * 3,
             "msg": "^HTTP %d: %s$" % (status, quote(BAD_CLEAN))}
    if code_at:
        edits.append({"at": code_at, "set_bytes": hex_of(b"E-\xff")})
        final["code"] = "E-?"
    return {"label": "a refusal whose %s not UTF-8"
                     % ("code and message are" if code_at else "message is"),
            "status": status, "edits": edits, "final": final}


def csv_bomb_cases():
    """A CSV file read as it streams whose second line is one record of a gigabyte,
    or of ten million empty fields: refused once it passes what a result record of
    the batch can hold, long before either arrives whole."""
    return [{"label": "a record of a gigabyte",
             "rule": {"action": "huge_record", "shape": "long", "bytes": 1 << 30},
             "persistent": r"CSV record in line 2 is longer than \d+ bytes"},
            {"label": "a record of ten million empty fields",
             "rule": {"action": "huge_record", "shape": "fields", "bytes": 10_000_000},
             "persistent": r"CSV record in line 2 has more than \d+ fields"}]


# ---- fuzz seeds -------------------------------------------------------------

# BulkopsOp values (src/dialect.h)
INSERT, UPDATE, UPSERT, DELETE, OVERWRITE = range(5)
JSON_CT = b"content-type: application/json\r\n"


def seed_header(op, nrows, settled=0, options=0):
    """The first four bytes of a fuzz input: the operation, rows - 1, the mask of
    rows already settled, the dialect's boolean options (2 bits each)."""
    return bytes([op, nrows - 1, settled, options])
