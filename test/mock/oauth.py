"""oauth.py - the mock's OAuth 2.0 token endpoint, shared by every dialect.

This file owns token issuing and checking (docs/protocols/common.md, "OAuth", and
docs/protocols/salesforce.md, "OAuth").  It is mounted at the server's root, so the
endpoint answers at each of

  POST /oauth2/token            POST /{mount}/oauth2/token
  POST /services/oauth2/token   POST /{mount}/services/oauth2/token   (Salesforce)
  POST /rest/v2/oauth/token     POST /{mount}/rest/v2/oauth/token     (BlueConic)

where {mount} is one path segment (a dialect's mount point, e.g. /blueconic).  A
dialect mounted deeper can route its own path to Dialect.token.  Grants, as form
fields (application/x-www-form-urlencoded):

  grant_type=client_credentials & client_id & client_secret [& scope]
  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer & assertion=<JWT>
  grant_type=refresh_token & client_id [& client_secret] & refresh_token [& scope]
  grant_type=password & client_id & client_secret & username & password [& scope]

A JWT must be signed RS256; the signature is verified here in pure Python (the
public key's n and e, PKCS#1 v1.5 padding with a SHA-256 DigestInfo), then its
claims: iss = client_id, sub = username, aud = audience, exp in the future and at
most 10 minutes ahead.  The answer is {"access_token", "token_type": "Bearer"} plus
"instance_url" and "expires_in" when configured.  Failures answer 400 with
{"error": "invalid_request" | "unsupported_grant_type" | "invalid_client" |
"invalid_grant", "error_description"}.

Other dialects check a request's bearer token with check_bearer(req): a token this
endpoint issued and that has not expired passes; any other gets 401
[{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
(Salesforce's answer).

Configuration (POST /_control/config {"oauth": {...}}), all optional:
  client_id, client_secret   what the grants must carry (unset: anything goes)
  username                   the JWT's expected sub, and the password grant's user
  password                   what the password grant must carry
  refresh_token              what the refresh_token grant must carry (unset: any
                             non-empty one)
  require_secret (true)      whether the refresh_token grant needs client_secret
  audience                   the JWT's expected aud (default http://<Host header>)
  public_key                 PEM ("PUBLIC KEY" or "RSA PUBLIC KEY") or {"n", "e"}
  instance_url               returned with each token
  expires_in                 returned, and the tokens really expire after it

Control under /_control/oauth:
  POST /expire   every token issued so far is expired: its next use gets a 401
  GET  /tokens   the tokens issued, with their grant and state

Assumed (kept here): tokens are random hex; a token expired by /expire stays
refused; an unsupported grant is refused before the client is checked.
"""

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
import urllib.parse

from mock_api import MockDialect, json_response

NAME = "oauth"
MOUNT = ""          # at the server's root, not under /oauth

TOKEN_PATHS = ("/oauth2/token", "/services/oauth2/token", "/rest/v2/oauth/token")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_EXP_AHEAD = 600

# DER of the DigestInfo that precedes a SHA-256 hash in PKCS#1 v1.5 (RFC 8017 9.2).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")


# ---------------------------------------------------------------------------
# Keys and signatures
# ---------------------------------------------------------------------------

def _der_next(buf, pos):
    """(tag, content, next position) of the DER element at pos."""
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:pos + length], pos + length


def _der_rsa_public(seq):
    """(n, e) from the content of an RSAPublicKey SEQUENCE."""
    tag, n, pos = _der_next(seq, 0)
    tag2, e, _ = _der_next(seq, pos)
    if tag != 0x02 or tag2 != 0x02:
        raise ValueError("RSAPublicKey must hold two INTEGERs")
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


def parse_public_key(spec):
    """(n, e) from a PEM text (SubjectPublicKeyInfo or PKCS#1) or {"n", "e"}."""
    if isinstance(spec, dict):
        n, e = spec["n"], spec.get("e", 65537)
        return (int(n, 16) if isinstance(n, str) else int(n),
                int(e, 16) if isinstance(e, str) else int(e))
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", spec, re.S)
    if not m:
        raise ValueError("no PEM block")
    der = base64.b64decode("".join(m.group(2).split()))
    tag, outer, _ = _der_next(der, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if m.group(1) == "RSA PUBLIC KEY":
        return _der_rsa_public(outer)
    if m.group(1) != "PUBLIC KEY":
        raise ValueError("unsupported PEM type %r" % m.group(1))
    tag, alg, pos = _der_next(outer, 0)
    _, oid, _ = _der_next(alg, 0)
    if oid != RSA_ENCRYPTION_OID:
        raise ValueError("not an RSA key")
    tag, bits, _ = _der_next(outer, pos)
    if tag != 0x03 or bits[:1] != b"\x00":
        raise ValueError("bad BIT STRING")
    tag, seq, _ = _der_next(bits, 1)
    return _der_rsa_public(seq)


def rs256_verify(n, e, message, signature):
    """Is signature an RSASSA-PKCS1-v1_5 SHA-256 signature of message?"""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    if k < len(t) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return secrets.compare_digest(em, expected)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---------------------------------------------------------------------------
# The endpoint
# ---------------------------------------------------------------------------

class Token:
    __slots__ = ("value", "grant", "client_id", "issued", "expires", "revoked")

    def __init__(self, value, grant, client_id, expires):
        self.value = value
        self.grant = grant
        self.client_id = client_id
        self.issued = time.time()
        self.expires = expires      # epoch seconds, or None
        self.revoked = False

    def valid(self):
        return not self.revoked and (self.expires is None or time.time() < self.expires)


class OAuthError(Exception):
    def __init__(self, code, description):
        super().__init__(description)
        self.code = code
        self.description = description


class Dialect(MockDialect):
    COUNTERS = ("token_requests", "issued", "client_credentials", "jwt", "refresh_token",
                "password", "refused", "bearer_ok", "bearer_refused", "expired_refused")

    def reset(self):
        super().reset()
        self.tokens = {}

    def routes(self):
        out = []
        for path in TOKEN_PATHS:
            out.append(("POST", path, self.token))
            out.append(("POST", "/{mount}" + path, self.token))
        return out

    def control_routes(self):
        return [("POST", "/expire", self.ctl_expire),
                ("GET", "/tokens", self.ctl_tokens)]

    # -- issuing --------------------------------------------------------------

    def token(self, req, params):
        self.counts["token_requests"] += 1
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))
        try:
            grant = form.get("grant_type")
            if grant == "client_credentials":
                client_id = self.client_credentials(form)
                kind = "client_credentials"
            elif grant == JWT_BEARER:
                client_id = self.jwt_bearer(form, req)
                kind = "jwt"
            elif grant == "refresh_token":
                client_id = self.refresh_token(form)
                kind = "refresh_token"
            elif grant == "password":
                client_id = self.password(form)
                kind = "password"
            elif grant is None:
                raise OAuthError("invalid_request", "grant_type is missing")
            else:
                raise OAuthError("unsupported_grant_type",
                                 "grant type not supported")
        except OAuthError as e:
            self.counts["refused"] += 1
            return json_response(400, {"error": e.code,
                                       "error_description": e.description})
        self.counts[kind] += 1
        return self.issue(kind, client_id)

    def client_credentials(self, form):
        cfg = self.config
        client_id = form.get("client_id")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is missing")
        if cfg.get("client_id") is not None and client_id != cfg["client_id"]:
            raise OAuthError("invalid_client", "invalid client credentials")
        if cfg.get("client_secret") is not None and \
                form.get("client_secret") != cfg["client_secret"]:
            raise OAuthError("invalid_client", "invalid client credentials")
        return client_id

    def refresh_token(self, form):
        cfg = self.config
        if not form.get("refresh_token"):
            raise OAuthError("invalid_request", "refresh_token is missing")
        if not cfg.get("require_secret", True):
            form = dict(form, client_secret=cfg.get("client_secret"))
        elif "client_secret" not in form and cfg.get("client_secret") is not None:
            raise OAuthError("invalid_client", "client_secret is missing")
        client_id = self.client_credentials(form)
        if cfg.get("refresh_token") is not None and \
                form["refresh_token"] != cfg["refresh_token"]:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        return client_id

    def password(self, form):
        cfg = self.config
        client_id = self.client_credentials(form)
        if not form.get("username") or "password" not in form:
            raise OAuthError("invalid_request", "username and password are required")
        if (cfg.get("username") is not None and form["username"] != cfg["username"]) or \
                (cfg.get("password") is not None and form["password"] != cfg["password"]):
            raise OAuthError("invalid_grant", "authentication failure")
        return client_id

    def jwt_bearer(self, form, req):
        cfg = self.config
        parts = (form.get("assertion") or "").split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_request", "assertion is not a JWT")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise OAuthError("invalid_grant", "malformed JWT") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "algorithm must be RS256")
        if cfg.get("public_key") is None:
            raise OAuthError("invalid_grant", "no public key configured for the client")
        try:
            n, e = parse_public_key(cfg["public_key"])
        except (ValueError, KeyError, IndexError, binascii.Error) as err:
            raise OAuthError("invalid_grant", "configured key unusable: %s" % err) from None
        signed = (parts[0] + "." + parts[1]).encode()
        if not rs256_verify(n, e, signed, signature):
            raise OAuthError("invalid_grant", "invalid assertion signature")
        self.check_claims(claims, req)
        return claims["iss"]

    def check_claims(self, claims, req):
        cfg = self.config
        if not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "claims must be an object")
        if not isinstance(claims.get("iss"), str) or \
                (cfg.get("client_id") is not None and claims["iss"] != cfg["client_id"]):
            raise OAuthError("invalid_client", "client identifier invalid")
        if not isinstance(claims.get("sub"), str) or \
                (cfg.get("username") is not None and claims["sub"] != cfg["username"]):
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        audience = cfg.get("audience") or "http://%s" % req.headers.get("Host", "")
        if claims.get("aud") != audience:
            raise OAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        now = time.time()
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise OAuthError("invalid_grant", "exp must be an integer")
        if exp <= now:
            raise OAuthError("invalid_grant", "expired authorization code")
        if exp > now + MAX_EXP_AHEAD:
            raise OAuthError("invalid_grant", "exp is too far in the future")

    def issue(self, grant, client_id):
        cfg = self.config
        value = "tok_" + secrets.token_hex(16)
        expires_in = cfg.get("expires_in")
        self.tokens[value] = Token(value, grant, client_id,
                                   time.time() + expires_in if expires_in else None)
        self.counts["issued"] += 1
        answer = {"access_token": value, "token_type": "Bearer",
                  "issued_at": str(int(time.time() * 1000))}
        if cfg.get("instance_url"):
            answer["instance_url"] = cfg["instance_url"]
        if expires_in:
            answer["expires_in"] = expires_in
        return json_response(200, answer)

    # -- checking -------------------------------------------------------------

    def check_bearer(self, req):
        """None when req carries a live token issued here, else the 401 to send."""
        scheme, _, value = (req.headers.get("Authorization") or "").partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is not None and token.valid():
            self.counts["bearer_ok"] += 1
            return None
        self.counts["bearer_refused"] += 1
        if token is not None:
            self.counts["expired_refused"] += 1
        return json_response(401, [{"errorCode": "INVALID_SESSION_ID",
                                    "message": "Session expired or invalid"}])

    # -- control --------------------------------------------------------------

    def ctl_expire(self, req, params):
        n = 0
        for t in self.tokens.values():
            if not t.revoked:
                t.revoked = True
                n += 1
        return json_response(200, {"expired": n})

    def ctl_tokens(self, req, params):
        return json_response(200, [{"token": t.value, "grant": t.grant,
                                    "client_id": t.client_id, "valid": t.valid()}
                                   for t in self.tokens.values()])
