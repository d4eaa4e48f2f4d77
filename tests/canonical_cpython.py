#!/usr/bin/env python3
"""Random JSON documents for tests/canonical_cpython.rs, one JSON line each:

    {"sent": <the text to parse>, "canonical": <what CPython's json.dumps writes for it>,
     "mac": <hex HMAC-SHA256(secret, json.dumps(obj with "signature": "")) or null>}

Usage: canonical_cpython.py SEED COUNT SECRET. Deterministic for a seed.

tv-ingress keeps numbers exactly as received, and json.dumps cannot be told to write a number in
a given spelling, so every number is a `Num` holding its spelling: the sent text writes it as is,
and the expected canonical form is json.dumps of the document with each number replaced by a
unique placeholder string, the placeholder (quotes included) then replaced by the spelling.
Strings, keys, separators, escapes and key order are all json.dumps's own. Cases flagged native
use only spellings json.dumps itself produces, and for them the script also checks that
json.dumps(json.loads(sent)) gives the same canonical text, which checks the placeholder method.

The sent text is formatted at random: whitespace around every token, and each character of a
string written raw or escaped in any legal way (short escapes, \\uXXXX in either case, surrogate
pairs for astral characters, "\\/").
"""
import hashlib
import hmac
import json
import random
import sys

MARK = "\ue000"  # never generated inside strings (see char())


class Num:
    def __init__(self, text):
        self.text = text


def number(rng, native):
    if native:
        kind = rng.randrange(3)
        if kind == 0:
            return Num(str(rng.randint(-10**6, 10**6)))
        if kind == 1:
            return Num(str(rng.randint(-10**30, 10**30)))
        return Num(repr(rng.choice([0.5, -2.25, 1e-7, 1.5e16, 3.14159, 1e300, -0.0, 1e22, 0.1])))
    choice = rng.randrange(6)
    if choice == 0:
        return Num(rng.choice([
            "0", "-0", "1", "-1", "10", "1E5", "1e5", "1e-7", "1.0e+5", "-2.5E-10", "0e0",
            "0E+0", "-0.0", "1e400", "-1e-400", "1.000000", "0.1", "123456789012345678901234567890",
            "-0.000000000000000000001", "9007199254740993", "1e-0", "5E+00010",
        ]))
    # sign, integer part, fraction, exponent: any spelling JSON allows
    text = rng.choice(["", "", "-"])
    if rng.random() < 0.2:
        text += "0"
    else:
        text += str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 45)))
    if rng.random() < 0.5:
        text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
    if rng.random() < 0.4:
        text += rng.choice("eE") + rng.choice(["", "+", "-"]) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
    return Num(text)


def char(rng):
    kind = rng.randrange(9)
    if kind == 0:
        return chr(rng.randint(0x20, 0x7E))
    if kind == 1:
        return rng.choice('"\\/\b\f\n\r\t')
    if kind == 2:
        return chr(rng.choice([*range(0x00, 0x20), 0x7F]))
    if kind == 3:
        return chr(rng.randint(0x80, 0xFF))
    if kind == 4:
        # the rest of the BMP without surrogates and the placeholder mark
        while True:
            c = rng.randint(0x100, 0xFFFF)
            if not 0xD800 <= c <= 0xDFFF and c != ord(MARK):
                return chr(c)
    if kind == 5:
        return chr(rng.choice([0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF, 0xFFFD, 0xD7FF, 0xE001]))
    if kind == 6:
        # astral planes 1 to 16, each as likely
        plane = rng.randint(1, 16)
        return chr(plane * 0x10000 + rng.randint(0, 0xFFFF))
    if kind == 7:
        return chr(rng.choice([0x10000, 0x1F680, 0x1F600, 0x10FFFF, 0xFFFFF, 0x20000, 0xE0001]))
    return rng.choice("abcXYZ09 _-.")


def string(rng):
    return "".join(char(rng) for _ in range(rng.randrange(0, 12)))


def key(rng):
    # keys too span every kind of character; short ones collide now and then and are skipped
    return string(rng) if rng.random() < 0.7 else rng.choice(
        ["ticker", "action", "quantity", "signature", "a", "b", "", "Ticker", "k"])


def value(rng, depth, native):
    r = rng.random()
    if depth >= 3 or r < 0.45:
        s = rng.randrange(6)
        if s <= 1:
            return number(rng, native)
        if s <= 3:
            return string(rng)
        return rng.choice([True, False, None])
    if r < 0.7:
        return [value(rng, depth + 1, native) for _ in range(rng.randrange(0, 5))]
    return obj(rng, depth + 1, native)


def obj(rng, depth, native):
    out = {}
    for _ in range(rng.randrange(0, 7)):
        out[key(rng)] = value(rng, depth, native)  # insertion order is random order
    return out


def ws(rng):
    return rng.choice(["", "", "", " ", "  ", "\n", "\r\n\t", "\t", " \n "])


def sent_string(rng, s):
    out = ['"']
    for c in s:
        o = ord(c)
        hexcase = str.upper if rng.random() < 0.3 else str.lower
        u = lambda x: "\\u" + hexcase("%04x" % x)
        if o > 0xFFFF:
            if rng.random() < 0.5:
                out.append(c)
            else:
                v = o - 0x10000
                out.append(u(0xD800 + (v >> 10)) + u(0xDC00 + (v & 0x3FF)))
            continue
        short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t", "/": "\\/"}
        options = [u(o)]
        if c in short:
            options.append(short[c])
        if o >= 0x20 and c not in '"\\':
            options.append(c)
        out.append(rng.choice(options))
    out.append('"')
    return "".join(out)


def sent(rng, v):
    if isinstance(v, Num):
        return v.text
    if isinstance(v, str):
        return sent_string(rng, v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, list):
        if not v:
            return "[" + ws(rng) + "]"
        return "[" + ",".join(ws(rng) + sent(rng, x) + ws(rng) for x in v) + "]"
    if not v:
        return "{" + ws(rng) + "}"
    return "{" + ",".join(
        ws(rng) + sent_string(rng, k) + ws(rng) + ":" + ws(rng) + sent(rng, x) + ws(rng)
        for k, x in v.items()) + "}"


def canonical(v):
    spellings = []

    def swap(x):
        if isinstance(x, Num):
            spellings.append(x.text)
            return "%sNUM%d%s" % (MARK, len(spellings) - 1, MARK)
        if isinstance(x, list):
            return [swap(y) for y in x]
        if isinstance(x, dict):
            return {k: swap(y) for k, y in x.items()}
        return x

    text = json.dumps(swap(v))
    for i, spelling in enumerate(spellings):
        placeholder = json.dumps("%sNUM%d%s" % (MARK, i, MARK))
        assert text.count(placeholder) == 1
        text = text.replace(placeholder, spelling)
    return text


def main():
    seed, count, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    rng = random.Random(seed)
    for i in range(count):
        native = i % 4 == 0
        shape = rng.random()
        if shape < 0.85:
            doc = obj(rng, 1, native)
        elif shape < 0.95:
            doc = [value(rng, 1, native) for _ in range(rng.randrange(0, 5))]
        else:
            doc = value(rng, 4, native)
        text = ws(rng) + sent(rng, doc) + ws(rng)
        expected = canonical(doc)
        # CPython agrees that the sent text is JSON and the same document.
        loaded = json.loads(text)
        if native:
            assert json.dumps(loaded) == expected, (text, expected)
        mac = None
        if isinstance(doc, dict):
            signed = dict(doc)
            signed["signature"] = ""
            mac = hmac.new(secret, canonical(signed).encode(), hashlib.sha256).hexdigest()
        print(json.dumps({"sent": text, "canonical": expected, "mac": mac}))


if __name__ == "__main__":
    main()
