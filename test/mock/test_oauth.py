"""test_oauth.py - proves the mock's OAuth token endpoint (oauth.py) as bulkops' tests
rely on it: both grants issue tokens that clinia accepts when configured to; a JWT
signed by the openssl CLI with a key generated here verifies against the public key
given as SPKI PEM, PKCS#1 PEM or n/e, and a tampered, mis-addressed, expired or
foreign one is refused; wrong client secrets are refused with OAuth's error shape;
/expire makes the next use of a token a 401 INVALID_SESSION_ID; instance_url and
expires_in are returned when configured; every documented path answers.

Run from the worktree root:  python3 -m unittest test/mock/test_oauth.py -v
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_mock_api import MockTestCase, BULK, upsert  # noqa: E402
import oauth  # noqa: E402

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, check=True,
                          capture_output=True).stdout


class KeyPair:
    """An RSA key pair made by the openssl CLI in a temporary directory."""

    def __init__(self, bits=2048):
        self.dir = tempfile.TemporaryDirectory()
        self.private = os.path.join(self.dir.name, "key.pem")
        openssl("genrsa", "-out", self.private, str(bits))
        self.public_pem = openssl("rsa", "-in", self.private, "-pubout").decode()
        self.pkcs1_pem = openssl("rsa", "-in", self.private, "-RSAPublicKey_out").decode()
        text = openssl("rsa", "-in", self.private, "-noout", "-modulus").decode()
        self.n = text.strip().split("=", 1)[1]

    def sign(self, message):
        return openssl("dgst", "-sha256", "-sign", self.private, data=message)

    def jwt(self, claims, header=None):
        head = b64url(json.dumps(header or {"alg": "RS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps(claims).encode())
        signing_input = ("%s.%s" % (head, body)).encode()
        return "%s.%s.%s" % (head, body, b64url(self.sign(signing_input)))


class TestOAuth(MockTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.keys = KeyPair()
        cls.other = KeyPair(1024)

    @classmethod
    def tearDownClass(cls):
        cls.keys.dir.cleanup()
        cls.other.dir.cleanup()
        super().tearDownClass()

    def configure(self, **cfg):
        base = {"client_id": "cid", "client_secret": "s3cret", "username": "u@x",
                "public_key": self.keys.public_pem}
        base.update(cfg)
        self.ctl("POST", "/config", {"oauth": base})

    def token(self, form, path="/oauth2/token"):
        return self.call("POST", path, urllib.parse.urlencode(form), FORM)

    def claims(self, **over):
        c = {"iss": "cid", "sub": "u@x", "aud": "http://127.0.0.1:%d" % self.port,
             "exp": int(time.time()) + 180}
        c.update(over)
        return c

    def jwt_grant(self, assertion, path="/oauth2/token"):
        return self.token({"grant_type": JWT_BEARER, "assertion": assertion}, path)

    def bearer(self, token):
        return {"Authorization": "Bearer " + token}

    # -- client credentials ---------------------------------------------------

    def test_client_credentials_token_is_accepted_by_clinia(self):
        self.configure()
        self.ctl("POST", "/config", {"clinia": {"oauth": True}})
        status, out = self.token({"grant_type": "client_credentials",
                                  "client_id": "cid", "client_secret": "s3cret"})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["token_type"], "Bearer")
        self.assertNotIn("instance_url", out)
        self.assertEqual(self.submit([upsert("p1")], headers=self.bearer(out["access_token"]))[0],
                         202)
        status, body = self.submit([upsert("p1")])
        self.assertEqual(status, 401)
        self.assertEqual(body[0]["errorCode"], "INVALID_SESSION_ID")
        self.assertEqual(self.submit([upsert("p1")], headers=self.bearer("tok_forged"))[0], 401)
        st = self.stats()["oauth"]
        self.assertEqual((st["token_requests"], st["issued"], st["client_credentials"],
                          st["bearer_ok"], st["bearer_refused"]), (1, 1, 1, 1, 2))

    def test_client_credentials_refusals(self):
        self.configure()
        for form, code in (
                ({"grant_type": "client_credentials", "client_id": "cid",
                  "client_secret": "wrong"}, "invalid_client"),
                ({"grant_type": "client_credentials", "client_id": "other",
                  "client_secret": "s3cret"}, "invalid_client"),
                ({"grant_type": "client_credentials"}, "invalid_request"),
                ({"client_id": "cid"}, "invalid_request"),
                ({"grant_type": "password"}, "invalid_request"),
                ({"grant_type": "implicit"}, "unsupported_grant_type")):
            status, out = self.token(form)
            self.assertEqual((status, out["error"]), (400, code), form)
            self.assertIn("error_description", out)
        st = self.stats()["oauth"]
        self.assertEqual((st["refused"], st["issued"]), (6, 0))

    def test_without_config_anything_goes_and_clinia_does_not_check(self):
        status, out = self.token({"grant_type": "client_credentials", "client_id": "x"})
        self.assertEqual(status, 200, out)
        self.assertEqual(self.submit([upsert("p1")])[0], 202)

    def test_every_path(self):
        self.configure()
        for path in ("/oauth2/token", "/services/oauth2/token", "/rest/v2/oauth/token",
                     "/clinia/oauth2/token", "/salesforce/services/oauth2/token",
                     "/blueconic/rest/v2/oauth/token"):
            status, out = self.token({"grant_type": "client_credentials",
                                      "client_id": "cid", "client_secret": "s3cret"}, path)
            self.assertEqual(status, 200, path)
        self.assertEqual(self.stats()["oauth"]["issued"], 6)
        self.assertEqual(self.call("GET", "/oauth2/token")[0], 405)

    def test_instance_url_and_expires_in(self):
        self.configure(instance_url="http://127.0.0.1:1/inst", expires_in=3600)
        out = self.token({"grant_type": "client_credentials", "client_id": "cid",
                          "client_secret": "s3cret"})[1]
        self.assertEqual((out["instance_url"], out["expires_in"]),
                         ("http://127.0.0.1:1/inst", 3600))

    def test_expire_gives_one_401_then_a_new_token_works(self):
        self.configure()
        self.ctl("POST", "/config", {"clinia": {"oauth": True}})
        form = {"grant_type": "client_credentials", "client_id": "cid",
                "client_secret": "s3cret"}
        old = self.token(form)[1]["access_token"]
        self.assertEqual(self.ctl("POST", "/oauth/expire"), {"expired": 1})
        status, body = self.submit([upsert("p1")], headers=self.bearer(old))
        self.assertEqual((status, body[0]["errorCode"]), (401, "INVALID_SESSION_ID"))
        new = self.token(form)[1]["access_token"]
        self.assertNotEqual(new, old)
        self.assertEqual(self.submit([upsert("p1")], headers=self.bearer(new))[0], 202)
        self.assertEqual(self.stats()["oauth"]["expired_refused"], 1)
        tokens = {t["token"]: t["valid"] for t in self.ctl("GET", "/oauth/tokens")}
        self.assertEqual(tokens, {old: False, new: True})

    def test_expires_in_really_expires(self):
        self.configure(expires_in=1)
        self.ctl("POST", "/config", {"clinia": {"oauth": True}})
        tok = self.token({"grant_type": "client_credentials", "client_id": "cid",
                          "client_secret": "s3cret"})[1]["access_token"]
        time.sleep(1.2)
        self.assertEqual(self.submit([upsert("p1")], headers=self.bearer(tok))[0], 401)

    # -- JWT bearer -----------------------------------------------------------

    def test_jwt_signed_by_openssl_verifies_with_each_key_form(self):
        for key in (self.keys.public_pem, self.keys.pkcs1_pem,
                    {"n": self.keys.n, "e": 65537}):
            self.ctl("POST", "/reset")
            self.configure(public_key=key, instance_url="http://127.0.0.1:9/sf")
            status, out = self.jwt_grant(self.keys.jwt(self.claims()))
            self.assertEqual(status, 200, (key, out))
            self.assertEqual(out["instance_url"], "http://127.0.0.1:9/sf")
            self.assertEqual(self.stats()["oauth"]["jwt"], 1)

    def test_jwt_refusals(self):
        self.configure()
        good = self.keys.jwt(self.claims())
        head, body, sig = good.split(".")
        tampered = ".".join([head, b64url(json.dumps(self.claims(sub="admin@x")).encode()),
                             sig])
        cases = (
            (self.other.jwt(self.claims()), "invalid_grant", "signature"),
            (tampered, "invalid_grant", "signature"),
            (self.keys.jwt(self.claims(aud="https://login.salesforce.com")),
             "invalid_grant", "audience"),
            (self.keys.jwt(self.claims(exp=int(time.time()) - 5)), "invalid_grant", "expired"),
            (self.keys.jwt(self.claims(exp=int(time.time()) + 3600)), "invalid_grant",
             "future"),
            (self.keys.jwt(self.claims(sub="someone@else")), "invalid_grant", "approved"),
            (self.keys.jwt(self.claims(iss="other")), "invalid_client", "client"),
            (self.keys.jwt(self.claims(), {"alg": "HS256"}), "invalid_grant", "RS256"),
            ("x.y.z", "invalid_grant", "malformed"),
            ("nodots", "invalid_request", "JWT"),
        )
        for assertion, code, words in cases:
            status, out = self.jwt_grant(assertion)
            self.assertEqual((status, out["error"]), (400, code), words)
            self.assertIn(words, out["error_description"])
        self.assertEqual(self.stats()["oauth"]["issued"], 0)

    def test_jwt_configured_audience_and_no_key(self):
        self.configure(audience="https://login.example.com")
        self.assertEqual(self.jwt_grant(self.keys.jwt(self.claims()))[0], 400)
        self.assertEqual(self.jwt_grant(self.keys.jwt(
            self.claims(aud="https://login.example.com")))[0], 200)
        self.ctl("POST", "/config", {"oauth": {"public_key": None}})
        status, out = self.jwt_grant(self.keys.jwt(self.claims()))
        self.assertEqual((status, out["error"]), (400, "invalid_grant"))


class TestRs256(unittest.TestCase):
    """The verifier alone, against signatures the openssl CLI made."""

    def test_verify(self):
        keys = KeyPair(1024)
        try:
            n, e = oauth.parse_public_key(keys.public_pem)
            self.assertEqual((n, e), oauth.parse_public_key(keys.pkcs1_pem))
            self.assertEqual(n, int(keys.n, 16))
            sig = keys.sign(b"hello")
            self.assertTrue(oauth.rs256_verify(n, e, b"hello", sig))
            self.assertFalse(oauth.rs256_verify(n, e, b"hellp", sig))
            bad = bytes([sig[0] ^ 1]) + sig[1:]
            self.assertFalse(oauth.rs256_verify(n, e, b"hello", bad))
            self.assertFalse(oauth.rs256_verify(n, e, b"hello", sig[1:]))
        finally:
            keys.dir.cleanup()


if __name__ == "__main__":
    unittest.main()
