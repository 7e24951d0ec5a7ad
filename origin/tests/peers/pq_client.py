"""A client of Heady's PQC API keys written from docs/pqc-keys.md with other people's code:
ML-DSA-65 from dilithium-py, the RFC 9421 signature base, Signature-Input, Signature and the
RFC 9530 Content-Digest from http-message-signatures. Nothing here comes from heady-shared.

    python pq_client.py keygen DIR
        writes DIR/peer.pub.b64 (base64 of the 1,952-byte public key) and DIR/peer.sk
    python pq_client.py send ORIGIN_URL HOST KEYID DIR
        signs requests for https://HOST with DIR's key and sends them to ORIGIN_URL (Host:
        HOST); prints one JSON line {post, get, replay, stale: {status, body}}
    python pq_client.py verify METHOD URL PUBLIC_KEY_FILE HEADERS_FILE BODY_FILE
        verifies headers printed by `heady-origin sign-request`; exits 0 only when valid
"""

import base64
import datetime
import json
import sys
import time
import urllib.error
import urllib.request

from dilithium_py.ml_dsa import ML_DSA_65
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)

COVERED = ("@method", "@authority", "@path", "@query")


class MlDsa65(HTTPSignatureAlgorithm):
    """ML-DSA-65 (FIPS 204, pure, empty context) as an RFC 9421 algorithm."""

    algorithm_id = "ml-dsa-65"

    def __init__(self, public_key=None, private_key=None):
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message):
        return ML_DSA_65.sign(self.private_key, message)

    def verify(self, signature, message):
        if not ML_DSA_65.verify(self.public_key, message, signature):
            raise InvalidSignature("ML-DSA-65 signature does not verify")


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, keyid, public=None, private=None):
        self.keyid, self.public, self.private = keyid, public, private

    def resolve_public_key(self, key_id):
        return self.public if key_id == self.keyid else None

    def resolve_private_key(self, key_id):
        return self.private


class Message:
    """What http-message-signatures reads of a request: method, absolute URL, headers."""

    def __init__(self, method, url, headers=None):
        self.method, self.url, self.headers = method, url, dict(headers or {})


def sign(keys, keyid, method, url, body, created=None):
    msg = Message(method, url, {"Content-Type": "application/json"} if body else {})
    signer = HTTPMessageSigner(signature_algorithm=MlDsa65, key_resolver=keys)
    when = datetime.datetime.fromtimestamp(created if created is not None else time.time(), datetime.timezone.utc)
    signer.sign(
        msg,
        key_id=keyid,
        created=when,
        label="sig1",
        covered_component_ids=COVERED,
        body=body if body else None,
    )
    return msg


def send(origin, host, msg, body):
    path = msg.url.split(host, 1)[1]
    req = urllib.request.Request(origin + path, data=body or None, method=msg.method)
    req.add_header("Host", host)
    for k, v in msg.headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text.decode("utf-8", "replace")
    return {"status": status, "body": answer}


def main(argv):
    if argv[1] == "keygen":
        pk, sk = ML_DSA_65.keygen()
        with open(argv[2] + "/peer.pub.b64", "w") as f:
            f.write(base64.b64encode(pk).decode() + "\n")
        with open(argv[2] + "/peer.sk", "wb") as f:
            f.write(sk)
        return 0
    if argv[1] == "send":
        origin, host, keyid, folder = argv[2:6]
        pk = base64.b64decode(open(folder + "/peer.pub.b64").read())
        sk = open(folder + "/peer.sk", "rb").read()
        keys = Keys(keyid, pk, sk)
        base = "https://" + host
        body = b'{"action":"code"}'
        post = sign(keys, keyid, "POST", base + "/api/conductor/route", body)
        out = {"post": send(origin, host, post, body)}
        get = sign(keys, keyid, "GET", base + "/api/identity?x=1&y=%2F", b"")
        out["get"] = send(origin, host, get, b"")
        out["replay"] = send(origin, host, post, body)
        stale = sign(keys, keyid, "GET", base + "/api/identity", b"", created=time.time() - 400)
        out["stale"] = send(origin, host, stale, b"")
        print(json.dumps(out))
        return 0
    if argv[1] == "verify":
        method, url, pk_file, headers_file, body_file = argv[2:7]
        pk = open(pk_file, "rb").read()
        headers = {}
        for line in open(headers_file):
            if line.strip():
                k, v = line.rstrip("\n").split(": ", 1)
                headers[k] = v
        body = open(body_file, "rb").read()
        if headers.get("Content-Digest") != ContentDigest.create(body):
            raise SystemExit("Content-Digest differs from http-message-signatures' own")
        keyid = headers["Signature-Input"].split('keyid="', 1)[1].split('"', 1)[0]
        verifier = HTTPMessageVerifier(signature_algorithm=MlDsa65, key_resolver=Keys(keyid, public=pk))
        results = verifier.verify(
            Message(method, url, headers),
            max_age=datetime.timedelta(seconds=300),
            require_components=COVERED + ("content-digest",),
            body=body,
        )
        print(json.dumps({"verified": [r.label for r in results]}))
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
