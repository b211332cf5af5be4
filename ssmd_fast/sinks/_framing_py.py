"""Pure-Python twin of ``_framing.pyx``: message framing into a ring of in-flight messages, and the ack parser.

The executable spec of the compiled module: same API, same bytes (tests/unit/test_framing.py compares
them). The publisher (``nats.py``) drives both the same way:

- ``PublishRing`` frames every publishable entry of a FrameBatch (and single messages: events, spill
  replay) into one growing buffer; each frame gets a 64-bit publish sequence (pseq). Three framings:
  core ``PUB`` (no header, no reply: benchmarks only), ``HPUB`` with a per-message reply ``{inbox}.{pseq}``
  and a ``Nats-Msg-Id`` header (one JetStream ack per message), and ``HPUB`` into a JetStream fast-ingest
  batch, reply ``{inbox}b{batch:08x}.{flow}.ok.{seq:07d}.{op}.$FI``, whose batch, seq and op are written
  into the frame when it is sent (fixed widths: a resend into a new batch rewrites them in place).
  Frames are kept until acked, for resends; ``take`` hands out (or writes straight to the socket) the
  queued frames that fit in the window.
- Fast-ingest batches (nats-server 2.14+, stream ``allow_batched``; gap mode ``ok``, so the batch
  survives a rejected or dropped message): the server acks every ``flow`` messages with
  ``{"type":"ack","seq":N,"msgs":F}`` (every seq <= N processed), reports per message ``err`` notices,
  ``gap`` notices (seqs it never saw) and no-responders, and answers a commit with a pub ack carrying
  ``"count"``. Entries named by an err, a gap or a no-responders are *held*: a later flow ack does not
  settle them; the publisher resolves them (dead-letter, park, or resend in a new batch).
- The batch bookkeeping is ``FastBatches`` (``_framing_batches_py.py``), mixed into the ring.
- ``AckParser`` (``_framing_acks_py.py``) reads the data connection's bytes and resolves acks straight
  into the ring; the rare things become events for the publisher.
"""

from __future__ import annotations

import os
import sys
from collections import deque

from ssmd_fast.sinks._framing_acks_py import (  # noqa: F401  (re-exported: the compiled module uses them)
    LATENCY_BUCKETS,
    AckParser,
    control_event,
    fast_reply,
    latency_bucket,
    latency_upper_ns,
    on_fast_reply,
    parse_ack_error,
)
from ssmd_fast.sinks._framing_batches_py import (  # noqa: F401  (re-exported)
    BATCH_CLOSING,
    BATCH_MAX,
    BATCH_OPEN,
    FLOW,
    SEQ_DIGITS,
    FastBatches,
    _Batch,
)
from ssmd_fast.sinks.subjects import K_TRADE, SubjectEncoder, takes_counter

IMPLEMENTATION = "python"

# outcome and flag values of the FrameBatch contract (_normalize.pxd)
_OUT_RECORD, _OUT_OTHER = 0, 2
_F_DUPLICATE, _F_SUPPRESSED = 1, 2

# message states and origins; framing modes; batch states
QUEUED, SENT, ACKED, RETIRED = 0, 1, 2, 3
ORIGIN_LIVE, ORIGIN_SPILL = 0, 1
MODE_CORE, MODE_ACK, MODE_FAST = 0, 1, 2

_HDR_HEAD = b"NATS/1.0\r\nNats-Msg-Id: "
_FORM_RAW, _FORM_NORM = b"raw", b"norm"
_COMPACT_MIN = 1 << 20  # compact the buffer only when it frees at least this much

# entry fields
(_POS, _LEN, _SUBJ, _SLEN, _IDO, _IDL, _PAYO, _PAYL, _ST, _ORIG, _ATT, _FIRST, _SENTAT, _RECV, _REP, _BNO,
 _BSEQ, _HELD) = range(18)


class PublishRing(FastBatches):
    """Framed messages in publish order: queued -> sent -> acked (retired at the head, in order)."""

    def __init__(self, prefix: bytes, inbox: bytes, *, feed: bytes = b"kalshi", raw: bool = True,
                 normalized: bool = True, acked: bool = True, fast: bool = False, flow: int = FLOW,
                 batch_max: int = BATCH_MAX, max_payload: int = 1 << 20):
        self.encoder = SubjectEncoder(prefix, feed)
        self.inbox = bytes(inbox)
        self.raw = bool(raw)
        self.normalized = bool(normalized)
        self.acked = bool(acked)
        self.mode = MODE_CORE if not acked else (MODE_FAST if fast else MODE_ACK)
        if not 1 <= flow <= 9999:
            raise ValueError("flow must be 1..9999")
        self.flow = int(flow)
        if not 1 <= batch_max <= BATCH_MAX:
            raise ValueError(f"batch_max must be 1..{BATCH_MAX}")
        self.batch_max = int(batch_max)   # messages per fast batch before the publisher rolls it
        self._flow_text = b"%d" % flow
        self.max_payload = int(max_payload)
        self._buf = bytearray()
        self._base = 0                  # absolute position of _buf[0]
        self._entries: deque[list] = deque()
        self.head = 1                   # oldest pseq still held
        self.tail = 1                   # next pseq to assign
        self.send_next = 1              # first queued (never sent) pseq
        self.queued_bytes = 0
        self._counters: dict[bytes, int] = {}
        self._oversized: list[tuple[bytes, bytes, bytes]] = []
        self._spill_retired = 0
        self.resends_pending = 0        # resent messages not yet acked (new sends wait for them)
        self.framed = self.sent = self.resent = self.acked_count = self.duplicates = 0
        self.rejected = self.oversized = self.parked = 0
        self._recv_ns = 0               # recv_ts of the batch being framed
        self.now_ns = 0                 # when the bytes being parsed were read (set by AckParser.feed)
        self._lat_counts = [0] * LATENCY_BUCKETS
        self.latency_sum_ns = 0
        self._batches: dict[int, _Batch] = {}
        self._bno = 0                   # the last batch number handed out
        self.cur_batch = 0              # the open batch new sends go into (0: none)
        self.good_subject = b""         # a subject the stream took lately (commits and pings go there)
        self.gate_starts = False        # a batch's start goes alone until acked (set while starts fail)
        self.direct_bytes = 0           # bytes written straight from the ring to the socket

    @property
    def fast(self) -> bool:
        return self.mode == MODE_FAST

    # ------------------------------------------------------------------ framing

    def add_batch(self, batch, conn: bytes) -> int:
        """Frame every publishable entry: records (raw and/or normalized) and the raw of other frames. A
        duplicate is skipped; a book delta withheld while its book resyncs (F_SUPPRESSED) goes out raw only."""
        enc = self.encoder
        n = 0
        conn_b = conn.encode("ascii", "replace") if isinstance(conn, str) else bytes(conn)
        counter = self._counters.get(conn, 0)
        self._recv_ns = batch.recv_ts
        for i in range(len(batch)):
            flags = batch.flags(i)
            if flags & _F_DUPLICATE:
                continue
            outcome = batch.outcome(i)
            if outcome == _OUT_RECORD:
                if not (self.raw or self.normalized):
                    continue
                kind = batch.kind(i)
                key = batch.key(i)
                tid = batch.trade_id(i) if kind == K_TRADE else None
                sid, seq = batch.sid(i), batch.seq(i)
                if takes_counter(kind, tid, sid, seq):
                    counter += 1
                if self.raw:
                    mid = enc.frame_msg_id(conn_b, kind, tid or None, sid, seq, counter, _FORM_RAW)
                    n += self._frame(enc.raw_subject(kind, key), mid, batch.raw(i), ORIGIN_LIVE) > 0
                if self.normalized and not flags & _F_SUPPRESSED:
                    mid = enc.frame_msg_id(conn_b, kind, tid or None, sid, seq, counter, _FORM_NORM)
                    n += self._frame(enc.norm_subject(kind, key), mid, batch.record(i), ORIGIN_LIVE) > 0
            elif outcome == _OUT_OTHER and self.raw:
                sid, seq = batch.sid(i), batch.seq(i)
                if takes_counter(-1, None, sid, seq):
                    counter += 1
                mid = enc.frame_msg_id(conn_b, -1, None, sid, seq, counter, _FORM_RAW)
                n += self._frame(enc.other_subject(batch.key(i)), mid, batch.raw(i), ORIGIN_LIVE) > 0
        self._counters[conn] = counter
        return n

    def add_message(self, subject: bytes, msg_id: bytes, payload: bytes, origin: int = ORIGIN_LIVE) -> int:
        """Frame one message (an event, a spill record); its pseq, or 0 when it is over max_payload."""
        self._recv_ns = 0  # no receive time to measure its latency from
        return self._frame(bytes(subject), bytes(msg_id), bytes(payload), origin)

    def add_messages(self, items: list, origin: int = ORIGIN_LIVE) -> int:
        """``add_message`` for each ``(subject, msg_id, payload)`` of ``items``, in order, in one call (a spill
        replay's chunk); it stops at the first one over max_payload (kept for ``pop_oversized``, as
        ``add_message`` keeps it). Returns how many were framed."""
        for k, (subject, msg_id, payload) in enumerate(items):
            if not self.add_message(subject, msg_id, payload, origin):
                return k
        return len(items)

    def _frame_bytes(self, pseq: int, subject: bytes, msg_id: bytes, payload: bytes) -> tuple[bytes, int, int, int]:
        """(frame, offset of the id, offset of the payload, offset of the fast reply's batch field)."""
        if self.mode == MODE_CORE:  # no header: a msg id only means something to JetStream
            line = b"PUB %s %d\r\n" % (subject, len(payload))
            return line + payload + b"\r\n", len(line), len(line), 0
        hdr_len = len(_HDR_HEAD) + len(msg_id) + 4
        rep = 0
        if self.mode == MODE_ACK:
            reply = b"%s.%d" % (self.inbox, pseq)
        else:
            reply = b"%sb00000000.%s.ok.%s.1.$FI" % (self.inbox, self._flow_text, b"0" * SEQ_DIGITS)
            rep = 5 + len(subject) + 1 + len(self.inbox) + 1
        line = b"HPUB %s %s %d %d\r\n" % (subject, reply, hdr_len, hdr_len + len(payload))
        frame = line + _HDR_HEAD + msg_id + b"\r\n\r\n" + payload + b"\r\n"
        return frame, len(line) + len(_HDR_HEAD), len(line) + hdr_len, rep

    def _frame(self, subject: bytes, msg_id: bytes, payload: bytes, origin: int) -> int:
        total = len(payload) if self.mode == MODE_CORE else len(_HDR_HEAD) + len(msg_id) + 4 + len(payload)
        if total > self.max_payload:
            self._oversized.append((subject, msg_id, payload))
            self.oversized += 1
            return 0
        pseq = self.tail
        frame, id_off, pay_off, rep = self._frame_bytes(pseq, subject, msg_id, payload)
        pos = self._base + len(self._buf)
        self._buf += frame
        self._entries.append([pos, len(frame), 4 if self.mode == MODE_CORE else 5, len(subject), id_off,
                              len(msg_id) if self.mode != MODE_CORE else 0, pay_off, len(payload), QUEUED,
                              origin, 0, 0.0, 0.0, self._recv_ns, rep, 0, 0, 0])
        self.tail += 1
        self.queued_bytes += len(frame)
        self.framed += 1
        return pseq

    def pop_oversized(self) -> list[tuple[bytes, bytes, bytes]]:
        """Messages too large for the server (never framed): the publisher dead-letters them."""
        out, self._oversized = self._oversized, []
        return out

    def set_mode(self, mode: int) -> None:
        """Reframe every held message for ``MODE_ACK`` or ``MODE_FAST`` (the server or the stream cannot
        do fast-ingest batches, or can again); the batches are forgotten: the caller resends what was sent."""
        if mode not in (MODE_ACK, MODE_FAST) or self.mode == MODE_CORE:
            raise ValueError("only an acked ring switches between MODE_ACK and MODE_FAST")
        self.drop_batches()
        if mode == self.mode:
            return
        self.mode = mode
        msgs = [(p, e, self._message(e)) for p, e in zip(range(self.head, self.tail), self._entries, strict=True)]
        self._buf = bytearray()
        self._base = 0
        self.queued_bytes = 0
        for p, e, (subject, msg_id, payload, _origin) in msgs:
            frame, id_off, pay_off, rep = self._frame_bytes(p, subject, msg_id, payload)
            e[_POS], e[_LEN], e[_IDO], e[_PAYO], e[_REP] = len(self._buf), len(frame), id_off, pay_off, rep
            e[_BNO] = e[_BSEQ] = e[_HELD] = 0
            self._buf += frame
            if e[_ST] == QUEUED:
                self.queued_bytes += len(frame)

    # ------------------------------------------------------------------ sending

    def _entry(self, pseq: int) -> list | None:
        if self.head <= pseq < self.tail:
            return self._entries[pseq - self.head]
        return None

    def _span(self, first: int, last: int) -> tuple[int, int]:
        a = self._entries[first - self.head]
        b = self._entries[last - self.head]
        return a[_POS] - self._base, b[_POS] + b[_LEN] - self._base

    @property
    def queued(self) -> int:
        return self.tail - self.send_next

    @property
    def inflight(self) -> int:
        return self.send_next - self.head

    @property
    def retained_bytes(self) -> int:
        """Bytes of the frames from the oldest unsettled one to the newest (what resends or a spill may need)."""
        return sum(e[_LEN] for e in self._entries)

    def can_send(self, window: int) -> bool:
        """Queued frames that fit in ``window`` unacked messages?"""
        return min(self.tail, self.head + window) > self.send_next

    def take(self, window: int, now: float, max_bytes: int = sys.maxsize, fd: int = -1) -> bytes | None:
        """The queued frames that fit in ``window`` unacked messages and ``max_bytes`` (at least one frame),
        marked sent: as one ``bytes``, or with ``fd >= 0`` written to that non-blocking socket straight from
        the ring, returning ``b""`` when it took them all. When the socket takes less, the message it stopped
        in is sent in full (its rest is returned, for the caller's transport, which then holds something and
        says when it drained) and the messages after it go back to the queue, unsent: a full socket costs a
        copy of one message's rest, not of everything offered. None: nothing to send (in fast mode also when
        no batch is open)."""
        end = min(self.tail, self.head + window)
        first = self.send_next
        b = None
        if self.mode == MODE_FAST:
            b = self._batches.get(self.cur_batch)
            if b is None:
                return None
            if self.gate_starts and not b.started:
                # the start alone until the server acks it: a start the stream never sees (denied, no
                # stream) then costs one message, not a batch of "batch unknown" answers
                if b.next_seq > 1:
                    return None
                end = min(end, first + 1)
            end = min(end, first + self.batch_max + 1 - b.next_seq)
        if end <= first:
            return None
        size = 0
        for p in range(first, end):
            size += self._entries[p - self.head][_LEN]
            if size > max_bytes and p > first:
                end = p
                break
        for p in range(first, end):
            e = self._entries[p - self.head]
            if b is not None:
                self._patch(e, b)
            self.queued_bytes -= e[_LEN]
            e[_ST] = SENT
            e[_ATT] = 1
            e[_FIRST] = e[_SENTAT] = now
        if b is not None:
            self._track(b, first, self._entries[first - self.head])
            b.last_pseq = end - 1
            b.last_send = now
        lo, hi = self._span(first, end - 1)
        if fd < 0:
            data = bytes(self._buf[lo:hi])
        else:
            at = lo + self._write(fd, lo, hi)
            data = b""
            if at < hi:
                end, data = self._short_write(first, end, b, at)
        self.send_next = end
        self.sent += end - first
        if not self.acked:  # core mode: nothing to wait for
            for p in range(first, end):
                self._entries[p - self.head][_ST] = RETIRED
            self._advance()
        return data

    def _write(self, fd: int, lo: int, hi: int) -> int:
        """Write buf[lo:hi] to ``fd``; the bytes it took (on EAGAIN, or an error the transport will report)."""
        done = 0
        with memoryview(self._buf) as mv:
            try:
                while lo + done < hi:
                    done += os.write(fd, mv[lo + done:hi])
            except OSError:
                pass
        self.direct_bytes += done
        return done

    def _short_write(self, first: int, end: int, b, at: int) -> tuple[int, bytes]:
        """The socket stopped at buf[at] inside [first, end): the rest of the message holding that byte, and
        the messages after it back in the queue (their fast-ingest seqs given back to the batch)."""
        k = first
        while True:
            e = self._entries[k - self.head]
            o = e[_POS] - self._base
            if at < o + e[_LEN]:
                break
            k += 1
        rest = bytes(self._buf[at:o + e[_LEN]])
        for p in range(k + 1, end):
            e = self._entries[p - self.head]
            self.queued_bytes += e[_LEN]
            e[_ST], e[_ATT], e[_FIRST], e[_SENTAT] = QUEUED, 0, 0.0, 0.0
            e[_BNO] = e[_BSEQ] = 0
        if b is not None:
            b.next_seq -= end - (k + 1)
            b.last_pseq = k
        return k + 1, rest

    def _resend(self, pseqs: list[int], now: float) -> bytes | None:
        if not pseqs:
            return None
        b = None
        if self.mode == MODE_FAST:
            b = self._batches.get(self.cur_batch)
            if b is None or b.next_seq != 1:
                raise RuntimeError("fast-ingest resends go first into a new batch (open_batch)")
        parts = []
        for p in pseqs:
            e = self._entries[p - self.head]
            if b is not None:
                self._patch(e, b)
                self._track(b, p, e)
            e[_HELD] = 0
            if e[_ATT] == 1:
                self.resends_pending += 1
            e[_ATT] += 1
            e[_SENTAT] = now
            o = e[_POS] - self._base
            parts.append(bytes(self._buf[o:o + e[_LEN]]))
        if b is not None:
            b.last_send = now
        self.resent += len(pseqs)
        return b"".join(parts)

    def resend(self, pseqs: list[int], now: float) -> bytes | None:
        """These sent, unacked messages again (ascending pseqs; fast mode: into the open, empty batch)."""
        return self._resend([p for p in pseqs if (e := self._entry(p)) is not None and e[_ST] == SENT], now)

    def expired(self, now: float, timeout: float, limit: int = 1 << 30) -> list[int]:
        """Sent, unacked messages sent more than ``timeout`` ago (at most ``limit``)."""
        out = []
        ordered = self.resends_pending == 0     # sent once each, in pseq order: send times only grow
        for p in range(self.head, self.send_next):
            e = self._entries[p - self.head]
            if e[_ST] == SENT:
                if now - e[_SENTAT] >= timeout:
                    out.append(p)
                    if len(out) >= limit:
                        break
                elif ordered:
                    break
        return out

    def resend_expired(self, now: float, timeout: float, limit: int = 1 << 30) -> bytes | None:
        """Frames sent more than ``timeout`` ago and still unacked (at most ``limit``), marked resent."""
        return self._resend(self.expired(now, timeout, limit), now)

    def resend_all(self, now: float) -> bytes | None:
        """Every sent, unacked frame (after a reconnect: acks of the old connection are gone)."""
        return self._resend([p for p in range(self.head, self.send_next)
                             if self._entries[p - self.head][_ST] == SENT], now)

    def oldest_unacked_sent(self) -> float:
        """``first_sent`` of the oldest sent, unacked message; 0.0 when there is none."""
        for p in range(self.head, self.send_next):
            e = self._entries[p - self.head]
            if e[_ST] == SENT:
                return e[_FIRST]
        return 0.0

    # ------------------------------------------------------------------ acks

    def ack(self, pseq: int, duplicate: bool = False) -> bool:
        """Mark ``pseq`` stored; False when it is not in flight (a late ack of a resent message)."""
        e = self._entry(pseq)
        if e is None or pseq >= self.send_next or e[_ST] != SENT:
            return False
        e[_ST] = ACKED
        self.acked_count += 1
        if duplicate:
            self.duplicates += 1
        if e[_ATT] > 1:
            self.resends_pending -= 1
        if e[_RECV] > 0 and self.now_ns > 0:
            d = max(0, self.now_ns - e[_RECV])
            self._lat_counts[latency_bucket(d)] += 1
            self.latency_sum_ns += d
        if pseq == self.head:
            self._advance()
        return True

    def latency_counts(self) -> list[int]:
        """Acks per ``latency_bucket`` of (ack read time ``now_ns`` - the batch's ``recv_ts``), for the
        messages framed from a batch with a receive time."""
        return list(self._lat_counts)

    def _retire(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        e = self._entry(pseq)
        if e is None or pseq >= self.send_next or e[_ST] != SENT:
            return None
        msg = self._message(e)
        e[_ST] = RETIRED
        if e[_ATT] > 1:
            self.resends_pending -= 1
        if pseq == self.head:
            self._advance()
        return msg

    def reject(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        """Retire an unacked message the server refused; its (subject, id, payload, origin)."""
        msg = self._retire(pseq)
        self.rejected += msg is not None
        return msg

    def park(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        """Take an unacked message out of the window (no stream stores its subject now); its message."""
        msg = self._retire(pseq)
        self.parked += msg is not None
        return msg

    def _message(self, e: list) -> tuple[bytes, bytes, bytes, int]:
        o = e[_POS] - self._base
        buf = self._buf
        return (bytes(buf[o + e[_SUBJ]:o + e[_SUBJ] + e[_SLEN]]), bytes(buf[o + e[_IDO]:o + e[_IDO] + e[_IDL]]),
                bytes(buf[o + e[_PAYO]:o + e[_PAYO] + e[_PAYL]]), e[_ORIG])

    def message(self, pseq: int) -> tuple[bytes, bytes, bytes, int] | None:
        e = self._entry(pseq)
        return None if e is None or e[_ST] >= ACKED else self._message(e)

    def attempts(self, pseq: int) -> int:
        e = self._entry(pseq)
        return 0 if e is None else e[_ATT]

    def find_sent(self, subject: bytes) -> int:
        """The oldest sent, unacked pseq with this subject (mapping a -ERR to its message); 0 if none."""
        for p in range(self.head, self.send_next):
            e = self._entries[p - self.head]
            if e[_ST] == SENT and self._message(e)[0] == subject:
                return p
        return 0

    def pop_spill_retired(self) -> int:
        """Spill-origin messages retired at the head since the last call (the SpillFile can consume them)."""
        n, self._spill_retired = self._spill_retired, 0
        return n

    def _advance(self) -> None:
        entries = self._entries
        while entries and entries[0][_ST] >= ACKED:
            e = entries.popleft()
            if e[_ORIG] == ORIGIN_SPILL:
                self._spill_retired += 1
            self.head += 1
        if self.send_next < self.head:
            self.send_next = self.head
        if not entries:
            self._base += len(self._buf)
            self._buf.clear()
        else:
            dead = entries[0][_POS] - self._base
            if dead >= _COMPACT_MIN and dead * 2 >= len(self._buf):
                del self._buf[:dead]
                self._base += dead

    # ------------------------------------------------------------------ bulk moves

    def extract(self, from_pseq: int = 0, include_spill: bool = False) -> list[tuple[bytes, bytes, bytes]]:
        """Remove the messages from ``max(head, from_pseq)`` to the tail; their (subject, id, payload)
        in order, spill-origin ones left out unless ``include_spill`` (they are still in the spill file).
        Emptying the ring never reuses the pseqs of messages that were sent (a late ack of one of them
        must not settle a new message)."""
        start = max(self.head, from_pseq)
        if start >= self.tail:
            return []
        out = []
        for p in range(start, self.tail):
            e = self._entries[p - self.head]
            if e[_ST] < ACKED and (include_spill or e[_ORIG] != ORIGIN_SPILL):
                out.append(self._message(e)[:3])
            if e[_ST] == QUEUED:
                self.queued_bytes -= e[_LEN]
            if e[_ATT] > 1 and e[_ST] == SENT:
                self.resends_pending -= 1
        cut = self._entries[start - self.head][_POS] - self._base
        for _ in range(start, self.tail):
            self._entries.pop()
        del self._buf[cut:]
        if not self._entries and self.send_next > start:
            self.head = self.tail = self.send_next    # skip the numbers that went out
        else:
            self.tail = start
            self.send_next = min(self.send_next, start)
        if not self._entries:
            self._base += len(self._buf)
            self._buf.clear()
        return out
