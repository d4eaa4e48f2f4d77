#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/.

pipeline seeds are signed with the target's keys and timestamped near its pinned NOW, so the
fuzzer starts from requests that get all the way through (first byte: 0 = credentials in the
body, a signature or a token; 1 = the target adds a correct X-Signature header; 2 = the next 64
bytes are an X-Signature; 3 = the target adds correct Standard Webhooks headers; 4 = the
webhook-* header values come first, NUL-terminated).
"""
import base64, hashlib, hmac, json, os

SECRET = b"fuzz-secret-0123456789abcdef0123456789"
SW_SECRET = b"fuzz-standard-webhooks-secret-0123"
TOKEN = "fuzz-token-0123456789abcdef0123456789"
NOW_SECONDS = 1766752210
HERE = os.path.dirname(os.path.abspath(__file__))

def sign(obj):
    obj = dict(obj)
    obj["signature"] = ""
    obj["signature"] = hmac.new(SECRET, json.dumps(obj).encode(), hashlib.sha256).hexdigest()
    return obj

base = {"ticker": "AAPL", "action": "buy", "quantity": 10, "order_type": "MARKET",
        "timestamp": "2025-12-26T12:30:00Z"}
signals = [
    base,
    dict(base, ticker="BRK.B", action="SELL", quantity="0.5", order_type="limit",
         limit_price="412.35", timestamp="2025-12-26T12:30:09.5+00:00", order_id="long-1"),
    dict(base, ticker="ES1!", quantity=1.5e-3, order_type="STOP", stop_price=4100,
         timestamp="2025-12-26T07:30:05-05:00", strategy="s\u00e9rie \U0001F680"),
    dict(base, order_type="stop_limit", limit_price=10.5, stop_price="10.4", price=10.45,
         comment="line one\nline two\ttab", order_id=None),
]

def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for i, s in enumerate(signals):
    write("pipeline", f"body-{i}", b"\x00" + json.dumps(sign(s)).encode())
    write("pipeline", f"body-indent-{i}", b"\x00" + json.dumps(sign(s), indent=2, ensure_ascii=False).encode())
    write("pipeline", f"header-{i}", b"\x01" + json.dumps(s, separators=(",", ":")).encode())
    write("pipeline", f"header-field-{i}", b"\x02" + b"0" * 64 + json.dumps(s).encode())
    write("pipeline", f"standard-webhooks-{i}", b"\x03" + json.dumps(s).encode())
    write("pipeline", f"token-{i}", b"\x00" + json.dumps(dict(s, passphrase=TOKEN)).encode())
    body = json.dumps(s).encode()
    mac = hmac.new(SW_SECRET, f"msg_{i}.{NOW_SECONDS}.".encode() + body, hashlib.sha256).digest()
    headers = [f"msg_{i}", str(NOW_SECONDS), "v1," + base64.b64encode(mac).decode()]
    write("pipeline", f"webhook-headers-{i}", b"\x04" + b"".join(h.encode() + b"\0" for h in headers) + body)

canonical = [
    '{"a": [1, -0, 1.5e+10, 2E-3, true, false, null, {}], "b": {"c": "\\u00e9\\ud83d\\ude80\\n"}}',
    '[" \\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\\u2028", 123456789012345678901234567890]',
    '{"\\u0041": "caf\u00e9 \U0001F680 \uffff", "k": [[[[]]]], "n": -1.0e-7}',
    '  {"x" : 1 , "y":[ ]}\n',
]
for i, c in enumerate(canonical):
    write("canonical", f"seed-{i}", c.encode())
