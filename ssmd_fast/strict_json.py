"""Strict RFC 8259 parsing with exact numbers, for the pure-Python normalizer (and offline tools).

The C `json` scanner does the common work; hooks keep numbers exact (fractions and exponents as their
text) and reject NaN/Infinity and duplicate keys. What it cannot decide alone (nesting beyond the depth
limit without recursing, a syntax error after a duplicate key) goes to an iterative token scanner.
"""

from __future__ import annotations

import json
import re
import sys

__all__ = ["JsonError", "Number", "loads", "is_strict_json", "object_members", "minify"]


class JsonError(Exception):
    """The bytes are not one strict JSON value; ``reason`` is "utf8", "json", "depth" or "duplicate_key"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Number(str):
    """A JSON number literal kept as its text: fractions, exponents, integers beyond CPython's int() limit.

    Integers that fit the limit are plain ``int`` (exact); ``bool`` is never a Number.
    """

    __slots__ = ()


class _Stop(Exception):
    """A duplicate key or a NaN/Infinity literal stopped the C scanner."""


def _pairs(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Stop
    return d


def _reject_constant(_name):
    raise _Stop


def _int_or_number(text: str):
    """An integer literal as ``int`` when it fits CPython's int() limit, else as its text (``Number``)."""
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else Number(text)


_INT_DIGITS = sys.get_int_max_str_digits() or 1 << 62     # 0: no limit set
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=Number, parse_constant=_reject_constant)
# a document holding one integer past the limit: the others stay int, as the class docstring says
_DECODER_BIGINT = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=Number, parse_int=_int_or_number,
                                   parse_constant=_reject_constant)
_JSONDecodeError = json.JSONDecodeError
# The scanners themselves (JSONDecoder.decode adds only whitespace handling, done here with _WS).
_SCAN_ONCE = _DECODER.scan_once
_SCAN_ONCE_BIGINT = _DECODER_BIGINT.scan_once
_WS = re.compile(r"[ \t\r\n]*")

_TOKEN = re.compile(r"""[ \t\r\n]*+(?:
    ("(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+")
  | (-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?|true|false|null)
  | ([\[\]{}:,]))""", re.X)
_WS_END = re.compile(r"[ \t\r\n]*\Z")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _AFTER = range(6)


def is_strict_json(text: str) -> bool:
    """True when ``text`` is exactly one RFC 8259 JSON value, at any depth (explicit stack, no recursion).

    Duplicate keys are not checked here.
    """
    stack: list[str] = []
    state, pos = _VALUE, 0
    match = _TOKEN.match
    while True:
        m = match(text, pos)
        if m is None:
            return False
        pos = m.end()
        string, scalar, punct = m.groups()
        if string is not None:
            if "\\u" in string and _SURROGATE_ESCAPE.search(string) and _SURROGATE.search(json.loads(string)):
                return False  # a lone surrogate escape
            if state in (_KEY, _KEY_OR_CLOSE):
                state = _COLON
                continue
            scalar = string
        if scalar is not None:
            if state != _VALUE and state != _VALUE_OR_CLOSE:
                return False
            state = _AFTER
        elif punct == "[" or punct == "{":
            if state != _VALUE and state != _VALUE_OR_CLOSE:
                return False
            stack.append(punct)
            state = _VALUE_OR_CLOSE if punct == "[" else _KEY_OR_CLOSE
        elif punct == "]" or punct == "}":
            opener = "[" if punct == "]" else "{"
            empty_ok = _VALUE_OR_CLOSE if opener == "[" else _KEY_OR_CLOSE
            if not stack or stack[-1] != opener or (state != _AFTER and state != empty_ok):
                return False
            stack.pop()
            state = _AFTER
        elif punct == ":":
            if state != _COLON:
                return False
            state = _VALUE
        else:  # ","
            if state != _AFTER or not stack:
                return False
            state = _VALUE if stack[-1] == "[" else _KEY
        if state == _AFTER and not stack:
            return _WS_END.match(text, pos) is not None


# Strings, possessively (an unterminated one runs to the end): linear time on any input.
_STRING_BYTES = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKETS_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def depth_bound(data: bytes, limit: int) -> int:
    """Nesting depth of a valid document (exact up to limit + 1), an upper bound for any other input.

    Strings are cut out, then innermost ``[]`` pairs are peeled off, one level per pass, at C speed.
    """
    t = _STRING_BYTES.sub(b"", data).translate(_BRACKETS_AS_SQUARE, _NOT_BRACKETS)
    passes = 0
    while t and passes <= limit:
        peeled = t.replace(b"[]", b"")
        if len(peeled) == len(t):
            break
        t, passes = peeled, passes + 1
    return passes + t.count(b"[")


def _has_surrogate(value) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            if _SURROGATE.search(v):
                return True
        elif t is dict:
            stack.extend(v)
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
    return False


def loads(data: bytes, max_depth: int = 128):
    """``(value, text)`` of one strict JSON document given as UTF-8 bytes; raises `JsonError`.

    Reasons come in the schema's precedence order: utf8 (a BOM included), json, depth (the top value
    has depth 1), duplicate_key (keys compared after unescaping, at any level).
    """
    if data[:3] == b"\xef\xbb\xbf":
        raise JsonError("utf8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("utf8")
    if data.count(b"[") + data.count(b"{") > max_depth and depth_bound(data, max_depth) > max_depth:
        raise JsonError("depth" if is_strict_json(text) else "json")
    scan = _SCAN_ONCE
    while True:
        try:
            value, end = scan(text, _WS.match(text).end())
            if _WS.match(text, end).end() != len(text):
                raise JsonError("json")
            break
        except StopIteration:  # no value where one must start
            raise JsonError("json")
        except _JSONDecodeError:
            raise JsonError("json")
        except _Stop:  # a syntax error further on still comes first
            raise JsonError("duplicate_key" if is_strict_json(text) else "json")
        except RecursionError:  # ruled out by depth_bound; kept so that no input escapes as a crash
            raise JsonError("depth" if is_strict_json(text) else "json")
        except ValueError:  # an integer beyond CPython's 4300-digit int() limit: keep it as text
            if scan is _SCAN_ONCE_BIGINT:
                raise JsonError("json")
            scan = _SCAN_ONCE_BIGINT
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_surrogate(value):
        raise JsonError("json")  # lone surrogate escape (the decoder pairs valid ones)
    return value, text


# --- raw text of already validated documents (the lifecycle `metadata` is copied as received)

_RAW_STRING_OR_WS = re.compile(r'("(?:[^"\\]++|\\.)*+")|[ \t\r\n]++', re.S)
_SCAN = re.compile(r'[ \t\r\n]*+("(?:[^"\\]++|\\.)*+"|[^ \t\r\n"\[\]{}:,]++|[\[\]{}:,])', re.S)


def minify(raw: str) -> str:
    """A valid JSON text without the whitespace between tokens (strings and numbers kept byte for byte)."""
    if " " not in raw and "\t" not in raw and "\r" not in raw and "\n" not in raw:
        return raw
    return _RAW_STRING_OR_WS.sub(lambda m: m.group(1) or "", raw)


def object_members(text: str, pos: int = 0):
    """Yield (decoded key, value start, value end) for the members of the valid object at/after ``pos``."""
    scan = _SCAN.match
    pos = scan(text, pos).end()  # "{"
    tok = scan(text, pos)
    if tok.group(1) == "}":
        return
    while True:
        key = tok.group(1)
        key = json.loads(key) if "\\" in key else key[1:-1]
        tok = scan(text, scan(text, tok.end()).end())  # skip ":"
        start, depth = tok.start(1), 0
        while True:
            t = tok.group(1)
            if t == "[" or t == "{":
                depth += 1
            elif t == "]" or t == "}":
                depth -= 1
            if depth == 0:
                break
            tok = scan(text, tok.end())
        end = tok.end()
        yield key, start, end
        sep = scan(text, end)
        if sep.group(1) == "}":
            return
        tok = scan(text, sep.end())
