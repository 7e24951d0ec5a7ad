"""Driver of deploy/bench-discord.sh: signs interactions with PyNaCl and plays Discord's webhook API."""
import http.server
import json
import statistics
import sys
import threading
import time
import urllib.request

from nacl.signing import SigningKey


def keygen(path):
    key = SigningKey.generate()
    open(path, "wb").write(bytes(key))
    open(path + ".pub", "w").write(key.verify_key.encode().hex())


class Webhooks(http.server.BaseHTTPRequestHandler):
    """PATCH/POST /api/v10/webhooks/{app}/{token}[/messages/@original]: records when each token's answer came."""

    arrived = {}
    lock = threading.Lock()

    def do_PATCH(self):
        self.body()

    def do_POST(self):
        self.body()

    def body(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        token = self.path.split("/")[5]
        with self.lock:
            self.arrived.setdefault(token, time.perf_counter())
        answer = b'{"id":"1"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def send(url, body=None, key=None):
    headers = {"content-type": "application/json"}
    if key is not None:
        ts = str(int(time.time()))
        headers["x-signature-timestamp"] = ts
        headers["x-signature-ed25519"] = key.sign(ts.encode() + body).signature.hex()
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    start = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        text = r.read()
        status = r.status
    return time.perf_counter() - start, status, text


def ask(i):
    return json.dumps({
        "type": 2, "id": str(1000 + i), "application_id": "123456789012345678", "token": f"tok{i}", "version": 1,
        "user": {"id": str(900000000000000000 + i), "username": f"u{i}"},
        "data": {"id": "1", "name": "ask", "type": 1, "options": [{"name": "question", "type": 3, "value": "Say hello in five words."}]},
    }).encode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


def run(key_path, base, discord_port, n):
    key = SigningKey(open(key_path, "rb").read())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(discord_port)), Webhooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ping = json.dumps({"type": 1, "id": "1", "application_id": "123456789012345678", "token": "p", "version": 1}).encode()
    for _ in range(20):
        send(f"{base}/health")
        send(f"{base}/discord/interactions", ping, key)
    rows = {}
    rows["GET /health (baseline)"] = [send(f"{base}/health")[0] for _ in range(n)]
    pings = []
    for _ in range(n):
        t, status, text = send(f"{base}/discord/interactions", ping, key)
        assert status == 200 and json.loads(text) == {"type": 1}, text
        pings.append(t)
    rows["signed PING -> PONG"] = pings
    acks, answers = [], []
    for i in range(n):
        t, status, text = send(f"{base}/discord/interactions", ask(i), key)
        assert status == 200 and json.loads(text)["type"] == 5, text
        acked = time.perf_counter()
        acks.append(t)
        deadline = acked + 10
        while time.perf_counter() < deadline:
            with Webhooks.lock:
                at = Webhooks.arrived.get(f"tok{i}")
            if at is not None:
                answers.append(max(0.0, at - acked))
                break
            time.sleep(0.0005)
        else:
            raise SystemExit(f"no answer for /ask {i} within 10 s")
    rows["signed /ask -> deferred ack"] = acks
    rows["ack -> answer PATCHed to Discord"] = answers
    print(f"# {n} sequential requests each on 127.0.0.1; fake provider answers at once")
    for name, xs in rows.items():
        print(f"{name:36} p50 {pct(xs, 50):8.3f} ms   p99 {pct(xs, 99):8.3f} ms")
    base50 = pct(rows["GET /health (baseline)"], 50)
    print(f"PING p50 / health p50 = {pct(pings, 50) / base50:.2f}x; /ask ack p99 = {pct(acks, 99):.1f} ms of Discord's 3,000 ms")
    server.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    else:
        run(*sys.argv[2:5], int(sys.argv[5]))
