"""A stand-in for Vault's Transit engine: the two endpoints kekfs-kms-vault uses.

    python3 vault_standin.py TOKEN      prints its port on stdout, then serves 127.0.0.1

POST /v1/transit/encrypt/<key> {"plaintext": B64} -> {"data": {"ciphertext": "vault:v1:..."}}
POST /v1/transit/decrypt/<key> {"ciphertext": C}  -> {"data": {"plaintext": B64}}

Requests need the header X-Vault-Token: TOKEN (else 403, as Vault answers). Each key name
gets a random 32-byte key on first encrypt (Vault's upsert). The cipher is real and keyed:
a SHAKE-256 keystream XORed with the plaintext, then HMAC-SHA256 over nonce and ciphertext
(encrypt-then-MAC), so a wrong key, another key name or an edited ciphertext fail with 400.
Python standard library only, like every integration test.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "vault:v1:"


class Transit(object):
    def __init__(self):
        self.keys = {}

    def _stream(self, key, nonce, n):
        return hashlib.shake_256(b"enc" + key + nonce).digest(n)

    def encrypt(self, name, plaintext):
        key = self.keys.setdefault(name, os.urandom(32))
        nonce = os.urandom(16)
        ct = bytes(a ^ b for a, b in zip(plaintext, self._stream(key, nonce, len(plaintext))))
        tag = hmac.new(key, nonce + ct, hashlib.sha256).digest()
        return PREFIX + base64.b64encode(nonce + ct + tag).decode()

    def decrypt(self, name, ciphertext):
        key = self.keys.get(name)
        if key is None:
            raise ValueError("encryption key not found")
        if not ciphertext.startswith(PREFIX):
            raise ValueError("invalid ciphertext: no prefix")
        raw = base64.b64decode(ciphertext[len(PREFIX):], validate=True)
        nonce, ct, tag = raw[:16], raw[16:-32], raw[-32:]
        if len(raw) < 48 or not hmac.compare_digest(
                tag, hmac.new(key, nonce + ct, hashlib.sha256).digest()):
            raise ValueError("cipher: message authentication failed")
        return bytes(a ^ b for a, b in zip(ct, self._stream(key, nonce, len(ct))))


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.headers.get("X-Vault-Token") != self.server.token:
            return self._reply(403, {"errors": ["permission denied"]})
        if len(parts) != 4 or parts[:2] != ["v1", "transit"] or parts[2] not in (
                "encrypt", "decrypt"):
            return self._reply(404, {"errors": ["no handler for route"]})
        try:
            req = json.loads(raw)
            if parts[2] == "encrypt":
                pt = base64.b64decode(req["plaintext"], validate=True)
                out = {"ciphertext": self.server.transit.encrypt(parts[3], pt)}
            else:
                pt = self.server.transit.decrypt(parts[3], req["ciphertext"])
                out = {"plaintext": base64.b64encode(pt).decode()}
        except (ValueError, KeyError, TypeError) as e:
            return self._reply(400, {"errors": [str(e)]})
        self._reply(200, {"data": out})

    def log_message(self, fmt, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.token = sys.argv[1]
    server.transit = Transit()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
