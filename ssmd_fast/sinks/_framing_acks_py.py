"""The ack parser of the pure-Python framing twin (``_framing_py.py`` re-exports it), and the helpers both
implementations share: protocol control lines, JetStream error replies, fast-ingest replies, latency buckets.

``AckParser`` reads the bytes of the data connection (INFO, MSG/HMSG, PING, PONG, +OK, -ERR) and resolves
acks by reply subject straight into the ring: per-message acks ``{inbox}.{pseq}``, and fast-ingest flow
acks ``{inbox}b{batch:08x}.{flow}.ok.{seq}.{op}.$FI``. Fast-ingest notices hold the message they name
(a later flow ack must not settle it) and become events for the publisher.
"""

from __future__ import annotations

import json
import re
import time

LATENCY_BUCKETS = 128   # frame receive -> ack histogram (latency_bucket)


def latency_bucket(ns: int) -> int:
    """The histogram bucket of a latency in ns: 0 below 1024 ns, then 4 linear sub-buckets per power of
    two (at most 25% wide), the last one open-ended."""
    if ns < 1024:
        return 0
    e = ns.bit_length() - 1
    return min(LATENCY_BUCKETS - 1, 1 + (e - 10) * 4 + ((ns >> (e - 2)) & 3))


def latency_upper_ns(i: int) -> float:
    """The exclusive upper bound of bucket ``i`` in ns (``inf`` for the last)."""
    if i >= LATENCY_BUCKETS - 1:
        return float("inf")
    if i == 0:
        return 1024.0
    e, sub = 10 + (i - 1) // 4, (i - 1) % 4
    return float((5 + sub) << (e - 2))


def control_event(line: bytes) -> tuple:
    """The event of a protocol line other than MSG/HMSG/+OK (both implementations use this)."""
    op = line[:4]
    if op == b"PING":
        return ("ping",)
    if op == b"PONG":
        return ("pong",)
    if op == b"INFO":
        return ("info", line[5:].strip())
    if op == b"-ERR":
        return ("err", line[4:].strip().strip(b"'").decode("utf-8", "replace"))
    return ("err", "unexpected protocol line: " + line[:80].decode("utf-8", "replace"))


def _error_fields(err) -> tuple[int, int, str]:
    return int(err.get("code") or 0), int(err.get("err_code") or 0), str(err.get("description") or "")


def parse_ack_error(payload: bytes) -> tuple[int, int, str]:
    """(code, err_code, description) of a JetStream error reply (rare: plain json)."""
    try:
        return _error_fields(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0, 0, payload[:200].decode("utf-8", "replace")


def fast_reply(payload: bytes) -> tuple:
    """A fast-ingest reply other than the compact flow ack (both implementations use this):
    ``("ack", seq, flow)``, ``("err", seq, code, err_code, description)`` (a message rejected),
    ``("gap", first, end)`` (seqs ``first <= s < end`` never reached the stream), ``("done", count)``
    (the commit's pub ack), ``("error", code, err_code, description)`` (the message's own reply: e.g.
    10208 batch unknown, 10205 batching disabled), or ``("other",)``."""
    try:
        d = json.loads(payload)
        kind = d.get("type")
        if kind == "ack":
            return ("ack", int(d["seq"]), int(d.get("msgs") or 0))
        if kind == "err":
            return ("err", int(d["seq"]), *_error_fields(d.get("error") or {}))
        if kind == "gap":
            return ("gap", int(d["last_seq"]), int(d["seq"]))
        if "error" in d:
            return ("error", *_error_fields(d["error"] or {}))
        if "batch" in d and "count" in d:
            return ("done", int(d["count"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return ("other",)


def fast_subject_seq(subject: bytes) -> int:
    """The batch seq in a fast-ingest reply subject ``...{seq}.{op}.$FI`` (0 if it is not one)."""
    parts = subject.split(b".")
    if len(parts) >= 4 and parts[-1] == b"$FI" and parts[-3].isdigit():
        return int(parts[-3])
    return 0


_DUP_TRUE = re.compile(rb'"duplicate":[ \t]*true')  # nats-server writes '"duplicate": true'
_FLOW_ACK = re.compile(rb'\{"type":"ack","seq":(\d{1,10}),"msgs":(\d{1,10})\}\Z')
_HEX8 = re.compile(rb"[0-9a-f]{8}\.")


def _valid_args(parts: list[bytes], op: bytes) -> bool:
    nums = 1 if op == b"MSG " else 2
    if parts[0] != op.strip():
        return False
    if not 3 + nums <= len(parts) <= 4 + nums:
        return False
    if not all(p.isdigit() and len(p) <= 12 for p in parts[-nums:]):
        return False
    return nums == 1 or int(parts[-2]) <= int(parts[-1])


class AckParser:
    """Reads the data connection's bytes; acks go into the ring, rare things into ``events``.

    Events: ``("ping",)``, ``("pong",)``, ``("info", json_bytes)``, ``("err", text)``,
    ``("ack_error", pseq, code, err_code, description)``, ``("no_responders", pseq)``,
    ``("msg", subject, payload)`` for a message that is not an ack of ours; fast-ingest:
    ``("fi_err", pseq, code, err_code, description)`` (pseq 0: not found), ``("fi_gap", bno, first, end)``,
    ``("fi_done", bno, count)``, ``("fi_error", bno, seq, code, err_code, description)``.
    """

    def __init__(self, ring, inbox: bytes):
        self.ring = ring
        self.prefix = bytes(inbox) + b"."
        self.fast_prefix = bytes(inbox) + b"b"
        self.events: list[tuple] = []
        self._pending = bytearray()
        self.acks = self.duplicates = self.errors = self.no_responders = self.stale = 0
        self.protocol_errors = self.gaps = 0
        self.replies = 0            # every message on our inboxes: the server is alive

    def reset(self) -> None:
        """A new connection: drop any partial protocol line of the old one."""
        self._pending.clear()

    def feed(self, data: bytes, now_ns: int = 0) -> int:
        """Parse ``data`` (read at ``now_ns``, ns since the epoch; 0 = now); the number of events waiting
        in ``events``."""
        self.ring.now_ns = now_ns if now_ns > 0 else time.time_ns()
        buf = self._pending
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = bytes(buf[pos:eol])
            op = line[:4]
            parts = line.split() if op in (b"MSG ", b"HMSG") else None
            if parts is not None and not _valid_args(parts, op):
                self.protocol_errors += 1
                self.events.append(("err", "malformed protocol line: " + line[:80].decode("utf-8", "replace")))
                pos = eol + 2
                continue
            if op == b"MSG ":
                size = int(parts[-1])
                if eol + 2 + size + 2 > n:
                    break
                payload = bytes(buf[eol + 2:eol + 2 + size])
                self._on_msg(parts[1], b"", payload)
                pos = eol + 2 + size + 2
                continue
            if op == b"HMSG":
                hsize, size = int(parts[-2]), int(parts[-1])
                if eol + 2 + size + 2 > n:
                    break
                body = bytes(buf[eol + 2:eol + 2 + size])
                self._on_msg(parts[1], body[:hsize], body[hsize:])
                pos = eol + 2 + size + 2
                continue
            if not op.startswith(b"+OK"):
                ev = control_event(line)
                if ev[0] == "err" and ev[1].startswith("unexpected"):
                    self.protocol_errors += 1
                self.events.append(ev)
            pos = eol + 2
        del buf[:pos]
        return len(self.events)

    def _on_msg(self, subject: bytes, headers: bytes, payload: bytes) -> None:
        k = len(self.fast_prefix)
        if subject.startswith(self.fast_prefix) and _HEX8.match(subject, k) and 0 < int(subject[k:k + 8], 16) < 1 << 31:
            on_fast_reply(self, int(subject[k:k + 8], 16), subject, headers, payload)
            return
        pseq = 0
        if subject.startswith(self.prefix):
            token = subject[len(self.prefix):]
            if token.isdigit() and len(token) <= 19:
                pseq = int(token)
        if pseq == 0:
            self.events.append(("msg", subject, payload))
            return
        self.replies += 1
        if headers[:9] == b"NATS/1.0 " and headers[9:12] == b"503":
            self.no_responders += 1
            self.events.append(("no_responders", pseq))
            return
        if b'"error":' in payload:
            self.errors += 1
            self.events.append(("ack_error", pseq, *parse_ack_error(payload)))
            return
        if b'"seq":' not in payload:
            self.events.append(("msg", subject, payload))
            return
        duplicate = _DUP_TRUE.search(payload) is not None
        self.acks += 1
        if duplicate:
            self.duplicates += 1
        if not self.ring.ack(pseq, duplicate):
            self.stale += 1


def on_fast_reply(parser, bno: int, subject: bytes, headers: bytes, payload: bytes) -> None:
    """A message on the inbox of fast-ingest batch ``bno`` (both parsers; the compiled one settles the
    compact flow ack itself and comes here for everything else)."""
    ring = parser.ring
    parser.replies += 1
    if headers[:9] == b"NATS/1.0 " and headers[9:12] == b"503":
        parser.no_responders += 1
        seq = fast_subject_seq(subject)
        pseq = ring.batch_pseq(bno, seq)
        if pseq and ring.hold(pseq):
            parser.events.append(("no_responders", pseq))
        else:  # a commit or a ping the stream did not take
            parser.events.append(("fi_error", bno, seq, 503, 0, "no responders"))
        return
    m = _FLOW_ACK.match(payload)
    ev = ("ack", int(m[1]), int(m[2])) if m else fast_reply(payload)
    kind = ev[0]
    if kind == "ack":
        parser.acks += 1
        if not ring.fast_ack(bno, ev[1], ev[2]):
            parser.stale += 1
    elif kind == "err":
        parser.errors += 1
        pseq = ring.batch_pseq(bno, ev[1])
        if pseq:
            ring.hold(pseq)
        parser.events.append(("fi_err", pseq, *ev[2:]))
    elif kind == "gap":
        parser.gaps += 1
        ring.hold_range(bno, ev[1], ev[2])
        parser.events.append(("fi_gap", bno, ev[1], ev[2]))
    elif kind == "done":
        parser.acks += 1
        parser.events.append(("fi_done", bno, ev[1]))
    elif kind == "error":
        parser.errors += 1
        parser.events.append(("fi_error", bno, fast_subject_seq(subject), *ev[1:]))
    else:
        parser.events.append(("msg", subject, payload))
