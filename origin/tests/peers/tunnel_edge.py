"""An edge written from docs/tunnel.md with other people's cryptography, not heady-shared:
ML-DSA-65 from dilithium-py, ML-KEM-768 from kyber-py, X25519 and Ed25519 from PyNaCl
(libsodium), SHA-3, SHAKE and HMAC from Python's standard library.

    python tunnel_edge.py ORIGIN_URL EDGE_SECRET_FILE ORIGIN_FINGERPRINT

Opens a tunnel session with the origin (X-Wing handshake, composite signatures), then sends
POST /api/conductor/route under it. Prints one JSON line: the handshake's and the request's
status and the origin's answers; exits 0 only when both succeed.
"""

import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

from dilithium_py.ml_dsa import ML_DSA_65
from kyber_py.ml_kem import ML_KEM_768
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base
from nacl.signing import SigningKey, VerifyKey

HELLO_TAG = b"heady-tunnel-v2 hello\n"
WELCOME_TAG = b"heady-tunnel-v2 welcome\n"
ED25519_LABEL = b"heady-tunnel-composite-v1\n"
XWING_LABEL = b"\\.//^\\"


def composite_sign(ml_sk, ed, context, message):
    ml = ML_DSA_65.sign(ml_sk, message, ctx=context)
    ed_sig = ed.sign(ED25519_LABEL + bytes([len(context)]) + context + message).signature
    return ml + ed_sig


def composite_verify(public, context, message, signature):
    ml_pk, ed_pk = public[:1952], public[1952:]
    ml_sig, ed_sig = signature[:3309], signature[3309:]
    if not ML_DSA_65.verify(ml_pk, message, ml_sig, ctx=context):
        raise SystemExit("the origin's ML-DSA-65 signature does not verify")
    VerifyKey(ed_pk).verify(ED25519_LABEL + bytes([len(context)]) + context + message, ed_sig)


def fingerprint(public):
    return "htid1:" + hashlib.sha256(b"heady-tunnel-identity-v1\n" + public).hexdigest()


def xwing_keypair(sk):
    expanded = hashlib.shake_256(sk).digest(96)
    ek_m, dk_m = ML_KEM_768._keygen_internal(expanded[0:32], expanded[32:64])
    sk_x = expanded[64:96]
    return ek_m + crypto_scalarmult_base(sk_x), (dk_m, sk_x)


def xwing_decapsulate(private, ct, pk_x):
    dk_m, sk_x = private
    ss_m = ML_KEM_768.decaps(dk_m, ct[:1088])
    ct_x = ct[1088:]
    ss_x = crypto_scalarmult(sk_x, ct_x)
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def hkdf_sha256(salt, ikm, info, length):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def canonical(fields):
    return b"".join(f"{len(f.encode())}:".encode() + f.encode() + b"\n" for f in fields)


def main():
    base, secret_file, pinned = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(secret_file).read().strip()
    raw = bytes.fromhex(text.split(":", 1)[1])
    ml_pk, ml_sk = ML_DSA_65.key_derive(raw[:32])
    ed = SigningKey(raw[32:])
    public = ml_pk + bytes(ed.verify_key)

    now = int(time.time())
    ek, dk = xwing_keypair(os.urandom(32))
    body = HELLO_TAG + now.to_bytes(8, "big") + os.urandom(16) + public + ek
    hello = body + composite_sign(ml_sk, ed, b"heady-tunnel-v2 edge hello", body)
    status, welcome = post(
        f"{base}/api/tunnel/handshake", hello, {"content-type": "application/octet-stream"}
    )
    result = {"handshake": status}
    if status != 200:
        result["answer"] = welcome.decode(errors="replace")
        print(json.dumps(result))
        return 1

    at = len(WELCOME_TAG)
    assert welcome[:at] == WELCOME_TAG, "welcome tag"
    expires_at = welcome[at : at + 8]
    origin_public = welcome[at + 8 : at + 8 + 1984]
    ct = welcome[at + 1992 : at + 1992 + 1120]
    ticket_len = int.from_bytes(welcome[at + 3112 : at + 3114], "big")
    ticket = welcome[at + 3114 : at + 3114 + ticket_len]
    signature = welcome[at + 3114 + ticket_len :]
    if fingerprint(origin_public) != pinned:
        raise SystemExit(f"origin identity {fingerprint(origin_public)} is not pinned")
    transcript = hashlib.sha256(
        b"heady-tunnel-v2 key\n" + hello + expires_at + origin_public + ct
    ).digest()
    composite_verify(origin_public, b"heady-tunnel-v2 origin welcome", transcript + ticket, signature)
    shared = xwing_decapsulate(dk, ct, ek[1184:])
    mac_key = hkdf_sha256(transcript, shared, b"heady-tunnel-v2 request mac key", 32)
    session_id = hkdf_sha256(transcript, shared, b"heady-tunnel-v2 session id", 16)

    path, payload = "/api/conductor/route", b'{"action":"code"}'
    env = {
        "host": "headyapi.com",
        "subject": "ip:198.51.100.9",
        "tier": "pro",
        "clearance": "PUBLIC",
        "client_ip": "198.51.100.9",
        "timestamp": str(int(time.time())),
        "nonce": uuid.uuid4().hex,
    }
    fields = [
        "heady-tunnel-v2", "POST", env["host"], path, "", hashlib.sha256(payload).hexdigest(),
        env["subject"], env["tier"], env["clearance"], env["client_ip"], env["timestamp"],
        env["nonce"], session_id.hex(),
    ]
    mac = hmac.new(mac_key, canonical(fields), hashlib.sha256).hexdigest()
    headers = {f"x-heady-{k.replace('_', '-')}": v for k, v in env.items()}
    headers["x-heady-session"] = ticket.hex()
    headers["x-heady-signature"] = f"session-hmac-sha256 {mac}"
    headers["content-type"] = "application/json"
    status, answer = post(f"{base}{path}", payload, headers)
    result.update(request=status, answer=json.loads(answer or b"null"), session=session_id.hex())
    print(json.dumps(result))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
