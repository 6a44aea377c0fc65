"""A webhook receiver for the tests: verifies Standard Webhooks signatures
with Python's own hmac and hashlib (not deployd's signing code).

Prints its port on the first line of stdout, then serves until killed.
Control endpoints (JSON):
  PUT  /_secrets   ["whsec_…", …]  secrets to verify with
  PUT  /_fail      n               answer 500 to the next n deliveries
  PUT  /_hold      true|false      hold deliveries unanswered until false
  GET  /_received                  every delivery as it arrived: {id,
                                   timestamp, body, signatures, verified:
                                   [bool per secret], answered: status or
                                   null while held}
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"secrets": [], "fail": 0, "received": []}
released = threading.Event()
released.set()
lock = threading.Lock()


def verify(secret, msg_id, timestamp, body, signatures):
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in signatures.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_PUT(self):
        value = json.loads(self.body())
        with lock:
            if self.path == "/_secrets":
                state["secrets"] = value
            elif self.path == "/_fail":
                state["fail"] = value
            elif self.path == "/_hold":
                (released.clear if value else released.set)()
        self.answer(204)

    def do_GET(self):
        with lock:
            self.answer(200, json.dumps(state["received"]).encode())

    def do_POST(self):
        body = self.body()
        msg_id = self.headers.get("webhook-id", "")
        timestamp = self.headers.get("webhook-timestamp", "")
        signatures = self.headers.get("webhook-signature", "")
        record = {
            "id": msg_id,
            "timestamp": timestamp,
            "contentType": self.headers.get("content-type", ""),
            "signatures": signatures,
            "answered": None,
            "body": json.loads(body),
        }
        with lock:
            record["verified"] = [
                verify(s, msg_id, timestamp, body, signatures) for s in state["secrets"]
            ]
            state["received"].append(record)
        released.wait()
        with lock:
            failing = state["fail"] > 0
            if failing:
                state["fail"] -= 1
            record["answered"] = 500 if failing else 200
        self.answer(record["answered"])


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A held request answered after deployd gave up on it (a timeout,
        # or a killed server) finds its socket closed: that is expected.
        pass


server = Server(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
