"""Subjects and ``Nats-Msg-Id`` values (sans-IO): the rules of docs/design.md "Subjects and message ids".

This module is the executable spec; the compiled framer (``_framing.pyx``) writes the same bytes, and
the twin tests compare them. Two encodings, both deterministic:

- a subject *token* maps ``.`` to ``_`` and %-escapes anything that is not printable ASCII or is a
  NATS wildcard, so no input (empty, ``*``, ``>``, space, CR/LF, non-ASCII) yields a wildcard, an
  extra token or a malformed subject; tickers that pass the schema's ticker rule only see ``.`` -> ``_``;
- an *id text* (the variable parts of a message id) %-escapes ``%`` itself, so it is injective: two
  different trade ids never share a ``Nats-Msg-Id`` (JetStream would drop the second as a duplicate).
"""

from __future__ import annotations

import hashlib

# Record kinds as numbered in _normalize.pxd (K_TRADE .. K_EVENT_LIFECYCLE); index -> subject word.
RAW_WORDS = (b"trade", b"ticker", b"orderbook", b"orderbook", b"lifecycle", b"event_lifecycle")
NORM_WORDS = (b"trade", b"ticker", b"book_snapshot", b"book_delta", b"market_lifecycle", b"event_lifecycle")
K_TRADE = 0

FORMS = ("raw", "normalized")
FORM_SUFFIX = {"raw": b"raw", "normalized": b"norm"}

MAX_TOKEN = 1024     # a valid ticker (1..1024 bytes) always fits whole
EMPTY_TOKEN = b"_"   # an empty key still gives a well-formed subject
MAX_ID_TEXT = 256    # longer id texts keep a prefix and a digest (ids stay unique, headers stay small)
ID_KEEP = 200
_HEX = b"0123456789ABCDEF"


def _token_byte_ok(b: int) -> bool:
    return 0x21 <= b <= 0x7E and b != 0x2A and b != 0x3E and b != 0x2E


def subject_token(key: bytes) -> bytes:
    """One subject token for a ticker, event ticker or frame type (see the module docstring)."""
    if not key:
        return EMPTY_TOKEN
    out = bytearray()
    for b in key:
        if b == 0x2E:
            piece = b"_"
        elif _token_byte_ok(b):
            piece = bytes((b,))
        else:
            piece = bytes((0x25, _HEX[b >> 4], _HEX[b & 15]))
        if len(out) + len(piece) > MAX_TOKEN:  # never split an escape; the cut is deterministic
            break
        out += piece
    return bytes(out)


def id_text(value: bytes) -> bytes:
    """A header-safe, injective text for a variable part of a message id (a trade id, a conn id).

    Printable ASCII other than ``%`` passes; every other byte (CR, LF, controls, space, non-ASCII,
    ``%``) becomes ``%XX``. Past ``MAX_ID_TEXT`` bytes: the first ``ID_KEEP`` bytes, ``~`` and 32 hex
    digits of the SHA-256 of the value.
    """
    out = bytearray()
    for b in value:
        if 0x21 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += bytes((0x25, _HEX[b >> 4], _HEX[b & 15]))
    if len(out) > MAX_ID_TEXT:
        return bytes(out[:ID_KEEP]) + b"~" + hashlib.sha256(value).hexdigest()[:32].encode("ascii")
    return bytes(out)


class SubjectEncoder:
    """Subjects and message ids for one environment (``prefix``, ``feed``)."""

    def __init__(self, prefix: str | bytes, feed: str | bytes = "kalshi"):
        self.prefix = prefix.encode("ascii") if isinstance(prefix, str) else bytes(prefix)
        self.feed = feed.encode("ascii") if isinstance(feed, str) else bytes(feed)
        if not self.prefix or any(not t or not all(_token_byte_ok(b) for b in t)
                                  for t in self.prefix.split(b".")):
            raise ValueError(f"bad subject prefix {self.prefix!r}")

    # ---------------------------------------------------------------- subjects

    def raw_subject(self, kind: int, key: bytes | None) -> bytes:
        """``{prefix}.json.{ticker|trade|orderbook|lifecycle|event_lifecycle}.{token}``"""
        return b"%s.json.%s.%s" % (self.prefix, RAW_WORDS[kind], subject_token(key or b""))

    def norm_subject(self, kind: int, key: bytes | None) -> bytes:
        """``{prefix}.norm.{trade|ticker|book_snapshot|book_delta|market_lifecycle|event_lifecycle}.{token}``"""
        return b"%s.norm.%s.%s" % (self.prefix, NORM_WORDS[kind], subject_token(key or b""))

    def other_subject(self, type_name: bytes | None) -> bytes:
        """``{prefix}.json.other.{type_token}`` for private and unknown frame types (raw only)."""
        return b"%s.json.other.%s" % (self.prefix, subject_token(type_name or b""))

    def event_subject(self, kind: str) -> bytes:
        """``{prefix}.events.{kind}``"""
        return b"%s.events.%s" % (self.prefix, subject_token(kind.encode("utf-8")))

    # ---------------------------------------------------------------- message ids

    def trade_msg_id(self, trade_id: bytes, form: bytes) -> bytes:
        """``{feed}:trade:{trade_id}:{raw|norm}``: the same across connections and instances."""
        return b"%s:trade:%s:%s" % (self.feed, id_text(trade_id), form)

    def seq_msg_id(self, conn: bytes, sid: int, seq: int, form: bytes) -> bytes:
        """``{feed}:{conn}:{sid}:{seq}:{raw|norm}`` for frames carrying a seq."""
        return b"%s:%s:%d:%d:%s" % (self.feed, id_text(conn), sid, seq, form)

    def unseq_msg_id(self, conn: bytes, counter: int, form: bytes) -> bytes:
        """``{feed}:{conn}:n{counter}:{raw|norm}``: a per-connection counter of unsequenced frames."""
        return b"%s:%s:n%d:%s" % (self.feed, id_text(conn), counter, form)

    def event_msg_id(self, conn: bytes, n: int) -> bytes:
        """``{feed}:event:{conn}:{n}``"""
        return b"%s:event:%s:%d" % (self.feed, id_text(conn), n)

    def frame_msg_id(self, conn: bytes, kind: int, trade_id: bytes | None, sid: int | None,
                     seq: int | None, counter: int, form: bytes) -> bytes:
        """The id of one published frame: trade id, else (sid, seq), else the unsequenced counter.

        ``counter`` is the frame's value of the connection's unsequenced counter (used only when the
        frame has no sid and seq); both forms of one frame share it.
        """
        if kind == K_TRADE and trade_id:
            return self.trade_msg_id(trade_id, form)
        if not takes_counter(kind, trade_id, sid, seq):
            return self.seq_msg_id(conn, sid, seq, form)
        return self.unseq_msg_id(conn, counter, form)


def takes_counter(kind: int, trade_id: bytes | None, sid: int | None, seq: int | None) -> bool:
    """Whether a frame's id is its connection's unsequenced counter: no trade id (trades), and no sid
    and seq both (a seq without its sid names nothing: two such frames would share an id, and JetStream
    would drop the second as a duplicate). The compiled framer (``_framing_ring.pxi``) applies the same."""
    return not (kind == K_TRADE and trade_id) and not ((sid or 0) > 0 and (seq or 0) > 0)


def valid_subject(subject: bytes) -> bool:
    """A literal subject: dot-separated non-empty tokens of printable ASCII, no wildcard token."""
    if not subject or not all(0x21 <= b <= 0x7E for b in subject):
        return False
    return all(t and t not in (b"*", b">") for t in subject.split(b"."))
