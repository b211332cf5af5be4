"""Pure-Python twin of ``_framing.pyx``: HPUB framing into a ring of in-flight messages, and the ack parser.

The executable spec of the compiled module: same API, same bytes (tests/unit/test_framing.py compares
them). The publisher (``nats.py``) drives both the same way:

- ``PublishRing`` frames every publishable entry of a FrameBatch (and single messages: events, spill
  replay) into one growing buffer of ``HPUB`` frames; each frame gets a 64-bit publish sequence used as
  the reply token ``{inbox}.{pseq}``. Frames are kept until acked, for resends; ``take`` hands out the
  queued frames that fit in the window as one ``bytes`` (one socket write).
- ``AckParser`` reads the bytes of the data connection (INFO, MSG/HMSG, PING, PONG, +OK, -ERR),
  resolves acks by reply token straight into the ring and keeps the rare things (errors, no
  responders, pings, INFO) as events for the publisher.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import deque

from ssmd_fast.sinks.subjects import K_TRADE, SubjectEncoder

IMPLEMENTATION = "python"

# outcome and flag values of the FrameBatch contract (_normalize.pxd)
_OUT_RECORD, _OUT_OTHER = 0, 2
_F_DROP = 3

# message states and origins
QUEUED, SENT, ACKED, RETIRED = 0, 1, 2, 3
ORIGIN_LIVE, ORIGIN_SPILL = 0, 1

_HDR_HEAD = b"NATS/1.0\r\nNats-Msg-Id: "
_FORM_RAW, _FORM_NORM = b"raw", b"norm"
_COMPACT_MIN = 1 << 20  # compact the buffer only when it frees at least this much
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


class PublishRing:
    """Framed messages in publish order: queued -> sent -> acked (retired at the head, in order)."""

    def __init__(self, prefix: bytes, inbox: bytes, *, feed: bytes = b"kalshi", raw: bool = True,
                 normalized: bool = True, acked: bool = True, max_payload: int = 1 << 20):
        self.encoder = SubjectEncoder(prefix, feed)
        self.inbox = bytes(inbox)
        self.raw = bool(raw)
        self.normalized = bool(normalized)
        self.acked = bool(acked)
        self.max_payload = int(max_payload)
        self._buf = bytearray()
        self._base = 0                  # absolute position of _buf[0]
        self._entries: deque[list] = deque()  # [pos, len, subj_off, subj_len, id_off, id_len, pay_off,
        #                                  pay_len, state, origin, attempts, first_sent, sent_at, recv_ns]
        self.head = 1                   # oldest pseq still held
        self.tail = 1                   # next pseq to assign
        self.send_next = 1              # first queued (never sent) pseq
        self.queued_bytes = 0
        self._counters: dict[bytes, int] = {}
        self._oversized: list[tuple[bytes, bytes, bytes]] = []
        self._spill_retired = 0
        self.resends_pending = 0        # resent messages not yet acked (new sends wait for them)
        self.framed = self.sent = self.resent = self.acked_count = self.duplicates = 0
        self.rejected = self.oversized = 0
        self._recv_ns = 0               # recv_ts of the batch being framed
        self.now_ns = 0                 # when the bytes being parsed were read (set by AckParser.feed)
        self._lat_counts = [0] * LATENCY_BUCKETS
        self.latency_sum_ns = 0

    # ------------------------------------------------------------------ framing

    def add_batch(self, batch, conn: bytes) -> int:
        """Frame every publishable entry (records, raw of other frames; F_DROP skipped)."""
        enc = self.encoder
        n = 0
        conn_b = conn.encode("ascii", "replace") if isinstance(conn, str) else bytes(conn)
        counter = self._counters.get(conn, 0)
        self._recv_ns = batch.recv_ts
        for i in range(len(batch)):
            if batch.flags(i) & _F_DROP:
                continue
            outcome = batch.outcome(i)
            if outcome == _OUT_RECORD:
                if not (self.raw or self.normalized):
                    continue
                kind = batch.kind(i)
                key = batch.key(i)
                tid = batch.trade_id(i) if kind == K_TRADE else None
                sid, seq = batch.sid(i) or 0, batch.seq(i) or 0
                if not (kind == K_TRADE and tid) and not seq:
                    counter += 1
                if self.raw:
                    mid = enc.frame_msg_id(conn_b, kind, tid or None, sid, seq, counter, _FORM_RAW)
                    n += self._frame(enc.raw_subject(kind, key), mid, batch.raw(i), ORIGIN_LIVE) > 0
                if self.normalized:
                    mid = enc.frame_msg_id(conn_b, kind, tid or None, sid, seq, counter, _FORM_NORM)
                    n += self._frame(enc.norm_subject(kind, key), mid, batch.record(i), ORIGIN_LIVE) > 0
            elif outcome == _OUT_OTHER and self.raw:
                sid, seq = batch.sid(i) or 0, batch.seq(i) or 0
                if not seq:
                    counter += 1
                mid = enc.frame_msg_id(conn_b, -1, None, sid, seq, counter, _FORM_RAW)
                n += self._frame(enc.other_subject(batch.key(i)), mid, batch.raw(i), ORIGIN_LIVE) > 0
        self._counters[conn] = counter
        return n

    def add_message(self, subject: bytes, msg_id: bytes, payload: bytes, origin: int = ORIGIN_LIVE) -> int:
        """Frame one message (an event, a spill record); its pseq, or 0 when it is over max_payload."""
        self._recv_ns = 0  # no receive time to measure its latency from
        return self._frame(bytes(subject), bytes(msg_id), bytes(payload), origin)

    def _frame(self, subject: bytes, msg_id: bytes, payload: bytes, origin: int) -> int:
        hdr_len = len(_HDR_HEAD) + len(msg_id) + 4
        total = hdr_len + len(payload)
        if total > self.max_payload:
            self._oversized.append((subject, msg_id, payload))
            self.oversized += 1
            return 0
        pseq = self.tail
        if self.acked:
            line = b"HPUB %s %s.%d %d %d\r\n" % (subject, self.inbox, pseq, hdr_len, total)
        else:
            line = b"HPUB %s %d %d\r\n" % (subject, hdr_len, total)
        pos = self._base + len(self._buf)
        self._buf += line + _HDR_HEAD + msg_id + b"\r\n\r\n" + payload + b"\r\n"
        frame_len = len(line) + total + 2
        self._entries.append([pos, frame_len, 5, len(subject), len(line) + len(_HDR_HEAD), len(msg_id),
                              len(line) + hdr_len, len(payload), QUEUED, origin, 0, 0.0, 0.0, self._recv_ns])
        self.tail += 1
        self.queued_bytes += frame_len
        self.framed += 1
        return pseq

    def pop_oversized(self) -> list[tuple[bytes, bytes, bytes]]:
        """Messages too large for the server (never framed): the publisher dead-letters them."""
        out, self._oversized = self._oversized, []
        return out

    # ------------------------------------------------------------------ sending

    def _entry(self, pseq: int) -> list | None:
        if self.head <= pseq < self.tail:
            return self._entries[pseq - self.head]
        return None

    def _slice(self, first: int, last: int) -> bytes:
        a = self._entries[first - self.head]
        b = self._entries[last - self.head]
        return bytes(self._buf[a[0] - self._base:b[0] + b[1] - self._base])

    @property
    def queued(self) -> int:
        return self.tail - self.send_next

    @property
    def inflight(self) -> int:
        return self.send_next - self.head

    @property
    def retained_bytes(self) -> int:
        return len(self._buf)

    def take(self, window: int, now: float, max_bytes: int = sys.maxsize) -> bytes | None:
        """The queued frames that fit in ``window`` unacked messages and ``max_bytes`` (at least one
        frame), as one buffer, marked sent."""
        end = min(self.tail, self.head + window)
        first = self.send_next
        if end <= first:
            return None
        size = 0
        for p in range(first, end):
            size += self._entries[p - self.head][1]
            if size > max_bytes and p > first:
                end = p
                break
        data = self._slice(first, end - 1)
        for p in range(first, end):
            e = self._entries[p - self.head]
            self.queued_bytes -= e[1]
            e[8] = SENT
            e[10] = 1
            e[11] = e[12] = now
        self.send_next = end
        self.sent += end - first
        if not self.acked:  # core mode: nothing to wait for
            for p in range(first, end):
                self._entries[p - self.head][8] = RETIRED
            self._advance()
        return data

    def _resend(self, pseqs: list[int], now: float) -> bytes | None:
        if not pseqs:
            return None
        parts = []
        for p in pseqs:
            e = self._entries[p - self.head]
            if e[10] == 1:
                self.resends_pending += 1
            e[10] += 1
            e[12] = now
            parts.append(bytes(self._buf[e[0] - self._base:e[0] + e[1] - self._base]))
        self.resent += len(pseqs)
        return b"".join(parts)

    def resend_expired(self, now: float, timeout: float, limit: int = 1 << 30) -> bytes | None:
        """Frames sent more than ``timeout`` ago and still unacked (at most ``limit``), marked resent."""
        due = [p for p in range(self.head, self.send_next)
               if self._entries[p - self.head][8] == SENT and now - self._entries[p - self.head][12] >= timeout]
        return self._resend(due[:limit], now)

    def resend_all(self, now: float) -> bytes | None:
        """Every sent, unacked frame (after a reconnect: acks of the old connection are gone)."""
        return self._resend([p for p in range(self.head, self.send_next)
                             if self._entries[p - self.head][8] == SENT], now)

    def oldest_unacked_sent(self) -> float:
        """``first_sent`` of the oldest sent, unacked message; 0.0 when there is none."""
        for p in range(self.head, self.send_next):
            e = self._entries[p - self.head]
            if e[8] == SENT:
                return e[11]
        return 0.0

    # ------------------------------------------------------------------ acks

    def ack(self, pseq: int, duplicate: bool = False) -> bool:
        """Mark ``pseq`` stored; False when it is not in flight (a late ack of a resent message)."""
        e = self._entry(pseq)
        if e is None or pseq >= self.send_next or e[8] != SENT:
            return False
        e[8] = ACKED
        self.acked_count += 1
        if duplicate:
            self.duplicates += 1
        if e[10] > 1:
            self.resends_pending -= 1
        if e[13] > 0 and self.now_ns > 0:
            d = max(0, self.now_ns - e[13])
            self._lat_counts[latency_bucket(d)] += 1
            self.latency_sum_ns += d
        if pseq == self.head:
            self._advance()
        return True

    def latency_counts(self) -> list[int]:
        """Acks per ``latency_bucket`` of (ack read time ``now_ns`` - the batch's ``recv_ts``), for the
        messages framed from a batch with a receive time."""
        return list(self._lat_counts)

    def reject(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        """Retire an unacked message the server refused; its (subject, id, payload, origin)."""
        e = self._entry(pseq)
        if e is None or pseq >= self.send_next or e[8] != SENT:
            return None
        msg = self._message(e)
        e[8] = RETIRED
        self.rejected += 1
        if e[10] > 1:
            self.resends_pending -= 1
        if pseq == self.head:
            self._advance()
        return msg

    def _message(self, e: list) -> tuple[bytes, bytes, bytes, int]:
        o = e[0] - self._base
        buf = self._buf
        return (bytes(buf[o + e[2]:o + e[2] + e[3]]), bytes(buf[o + e[4]:o + e[4] + e[5]]),
                bytes(buf[o + e[6]:o + e[6] + e[7]]), e[9])

    def message(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        e = self._entry(pseq)
        return None if e is None or e[8] >= ACKED else self._message(e)

    def attempts(self, pseq: int) -> int:
        e = self._entry(pseq)
        return 0 if e is None else e[10]

    def find_sent(self, subject: bytes) -> int:
        """The oldest sent, unacked pseq with this subject (mapping a -ERR to its message); 0 if none."""
        for p in range(self.head, self.send_next):
            e = self._entries[p - self.head]
            if e[8] == SENT and self._message(e)[0] == subject:
                return p
        return 0

    def pop_spill_retired(self) -> int:
        """Spill-origin messages retired at the head since the last call (the SpillFile can consume them)."""
        n, self._spill_retired = self._spill_retired, 0
        return n

    def _advance(self) -> None:
        entries = self._entries
        while entries and entries[0][8] >= ACKED:
            e = entries.popleft()
            if e[9] == ORIGIN_SPILL:
                self._spill_retired += 1
            self.head += 1
        if self.send_next < self.head:
            self.send_next = self.head
        if not entries:
            self._base += len(self._buf)
            self._buf.clear()
        else:
            dead = entries[0][0] - self._base
            if dead >= _COMPACT_MIN and dead * 2 >= len(self._buf):
                del self._buf[:dead]
                self._base += dead

    # ------------------------------------------------------------------ bulk moves

    def extract(self, from_pseq: int = 0, include_spill: bool = False) -> list[tuple[bytes, bytes, bytes]]:
        """Remove the messages from ``max(head, from_pseq)`` to the tail; their (subject, id, payload)
        in order, spill-origin ones left out unless ``include_spill`` (they are still in the spill file).
        """
        start = max(self.head, from_pseq)
        if start >= self.tail:
            return []
        out = []
        for p in range(start, self.tail):
            e = self._entries[p - self.head]
            if e[8] < ACKED and (include_spill or e[9] != ORIGIN_SPILL):
                out.append(self._message(e)[:3])
            if e[8] == QUEUED:
                self.queued_bytes -= e[1]
            if e[10] > 1 and e[8] == SENT:
                self.resends_pending -= 1
        cut = self._entries[start - self.head][0] - self._base
        for _ in range(start, self.tail):
            self._entries.pop()
        del self._buf[cut:]
        self.tail = start
        self.send_next = min(self.send_next, start)
        if not self._entries:
            self._base += len(self._buf)
            self._buf.clear()
        return out


# ---------------------------------------------------------------------- the ack parser

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


def parse_ack_error(payload: bytes) -> tuple[int, int, str]:
    """(code, err_code, description) of a JetStream error reply (rare: plain json)."""
    try:
        err = json.loads(payload)["error"]
        return int(err.get("code") or 0), int(err.get("err_code") or 0), str(err.get("description") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0, 0, payload[:200].decode("utf-8", "replace")


_DUP_TRUE = re.compile(rb'"duplicate":[ \t]*true')  # nats-server writes '"duplicate": true'


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
    ``("msg", subject, payload)`` for a message that is not an ack of ours.
    """

    def __init__(self, ring: PublishRing, inbox: bytes):
        self.ring = ring
        self.prefix = bytes(inbox) + b"."
        self.events: list[tuple] = []
        self._pending = bytearray()
        self.acks = self.duplicates = self.errors = self.no_responders = self.stale = 0
        self.protocol_errors = 0

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
        pseq = 0
        if subject.startswith(self.prefix):
            token = subject[len(self.prefix):]
            if token.isdigit() and len(token) <= 19:
                pseq = int(token)
        if pseq == 0:
            self.events.append(("msg", subject, payload))
            return
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
