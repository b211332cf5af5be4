"""The fast-ingest batch side of the pure-Python ``PublishRing`` (``_framing_py.py``), its twin in
``_framing_batches.pxi``: batches, their seqs, flow acks, notices that hold a message, commits and pings.

A batch's sent, unacked messages lie between its ``cursor`` and ``last_pseq``, with seqs rising with the
pseq (resends always go first into a new batch, so this stays true); an entry belongs to the batch it
was last sent in.
"""

from __future__ import annotations

BATCH_OPEN, BATCH_CLOSING = 1, 2
BATCH_MAX = 999_999     # messages per fast batch (+ its commit: seqs fit SEQ_DIGITS)
SEQ_DIGITS = 7
FLOW = 50               # acks asked for every FLOW messages (the server may choose fewer)

# entry fields (the ring's layout, _framing_py.py)
(_POS, _LEN, _SUBJ, _SLEN, _IDO, _IDL, _PAYO, _PAYL, _ST, _ORIG, _ATT, _FIRST, _SENTAT, _RECV, _REP, _BNO,
 _BSEQ, _HELD) = range(18)
_SENT = 1
_MODE_FAST = 2   # _framing_py.MODE_FAST


class _Batch:
    """One fast-ingest batch: seqs 1..next_seq-1 assigned, flow-acked up to ``acked``; its entries are the
    SENT ones with this ``bno`` between ``cursor`` and ``last_pseq`` (their seqs rise with the pseq)."""

    __slots__ = ("acked", "bno", "cursor", "eob_seq", "first_subj", "flow", "last_pseq", "last_send", "next_seq",
                 "started", "state")

    def __init__(self, bno: int, flow: int):
        self.bno, self.flow, self.state = bno, flow, BATCH_OPEN
        self.next_seq, self.acked, self.eob_seq = 1, 0, 0
        self.started = False            # the server acked the start: it has the batch
        self.cursor = self.last_pseq = 0
        self.last_send = 0.0
        self.first_subj = b""


class FastBatches:
    """Mixed into the Python ``PublishRing``: the batch bookkeeping (API: _framing_py.py docstring)."""

    def _patch(self, e: list, b: _Batch) -> None:
        """Write batch, seq and op into a fast frame's reply (fixed widths) and assign it to ``b``."""
        seq = b.next_seq
        b.next_seq += 1
        o = e[_POS] - self._base + e[_REP]
        self._buf[o:o + 8] = b"%08x" % b.bno
        s = o + 8 + 1 + len(self._flow_text) + 4
        self._buf[s:s + SEQ_DIGITS] = b"%0*d" % (SEQ_DIGITS, seq)
        self._buf[s + SEQ_DIGITS + 1] = 0x30 if seq == 1 else 0x31   # op 0 starts the batch, 1 appends
        e[_BNO], e[_BSEQ], e[_HELD] = b.bno, seq, 0

    def _track(self, b: _Batch, pseq: int, e: list) -> None:
        if not b.cursor:
            b.cursor = pseq
            o = e[_POS] - self._base
            b.first_subj = bytes(self._buf[o + e[_SUBJ]:o + e[_SUBJ] + e[_SLEN]])
        b.last_pseq = max(b.last_pseq, pseq)

    def _reply(self, b: _Batch, seq: int, op: int) -> bytes:
        return b"%sb%08x.%s.ok.%0*d.%d.$FI" % (self.inbox, b.bno, self._flow_text, SEQ_DIGITS, seq, op)

    def open_batch(self) -> int:
        """Open a new batch for the next sends (the caller subscribes to its inbox first); its number."""
        if self.mode != _MODE_FAST:
            raise RuntimeError("not in fast-ingest mode")
        if self.cur_batch:
            return self.cur_batch
        self._bno = self._bno % 0x7FFFFFFF + 1
        self._batches[self._bno] = _Batch(self._bno, self.flow)
        self.cur_batch = self._bno
        return self._bno

    @property
    def live_batches(self) -> int:
        """Batches open or committed and not yet answered."""
        return len(self._batches)

    @property
    def batch_full(self) -> bool:
        b = self._batches.get(self.cur_batch)
        return b is not None and b.next_seq > self.batch_max

    def commit_batch(self) -> bytes | None:
        """End the open batch: the commit frame (``op 3``, not stored; the server answers with a pub ack
        counting the batch), or None when the batch took no message (it is simply forgotten)."""
        b = self._batches.get(self.cur_batch)
        self.cur_batch = 0
        if b is None:
            return None
        if b.next_seq == 1:
            del self._batches[b.bno]
            return None
        b.state = BATCH_CLOSING
        b.eob_seq = b.next_seq
        return self.recommit(b.bno)

    def recommit(self, bno: int) -> bytes | None:
        """The commit of a closing batch again (the last one went to a subject no stream took)."""
        b = self._batches.get(bno)
        if b is None or b.state != BATCH_CLOSING:
            return None
        return b"PUB %s %s 0\r\n\r\n" % (self.good_subject or b.first_subj, self._reply(b, b.eob_seq, 3))

    def ping_frame(self, bno: int) -> bytes | None:
        """``op 4`` for a batch: the server sends its latest flow ack again (a committed batch it forgot:
        an error, so the publisher resends what that batch still holds)."""
        b = self._batches.get(bno)
        if b is None or b.next_seq == 1:
            return None
        seq = b.eob_seq if b.state == BATCH_CLOSING else b.next_seq - 1
        return b"PUB %s %s 0\r\n\r\n" % (self.good_subject or b.first_subj, self._reply(b, seq, 4))

    def batches(self) -> list[tuple[int, int, int, int, int, bool]]:
        """(bno, state, messages, acked seq, flow, started) of every live batch, oldest first."""
        return [(b.bno, b.state, (b.eob_seq or b.next_seq) - 1, b.acked, b.flow, b.started)
                for b in self._batches.values()]

    def _walk(self, b: _Batch):
        """pseqs of the batch's sent, unacked messages in order (its seqs rise with the pseq)."""
        p = max(b.cursor, self.head)
        stop = min(self.send_next, b.last_pseq + 1)
        while p < stop:
            if p >= self.head:
                e = self._entries[p - self.head]
                if e[_ST] == _SENT and e[_BNO] == b.bno:
                    yield p, e
            p += 1

    def fast_ack(self, bno: int, seq: int, flow: int = 0) -> bool:
        """Flow ack of batch ``bno``: every seq <= ``seq`` processed; settle its sent messages up to it that
        no notice held. False for a batch that is not live (a stale ack)."""
        b = self._batches.get(bno)
        if b is None:
            return False
        b.started = True
        if flow > 0:
            b.flow = flow
        if seq > b.acked:
            b.acked = seq
        cursor = 0
        for p, e in self._walk(b):
            if e[_BSEQ] > seq:
                cursor = cursor or p
                break
            if e[_HELD]:
                cursor = cursor or p
                continue
            o = e[_POS] - self._base
            subj = bytes(self._buf[o + e[_SUBJ]:o + e[_SUBJ] + e[_SLEN]])
            if self.ack(p):
                self.good_subject = subj
        b.cursor = cursor or min(self.send_next, b.last_pseq + 1)
        return True

    def finish_batch(self, bno: int, count: int) -> list[int] | None:
        """The commit's pub ack (``count`` seqs processed): settle, forget the batch; the pseqs it still held
        unsettled and not held (to resend), or None for a batch that is not live."""
        if bno not in self._batches:
            return None
        self.fast_ack(bno, count)
        b = self._batches.pop(bno)
        if self.cur_batch == bno:
            self.cur_batch = 0
        return [p for p, e in self._walk(b) if not e[_HELD]]

    def batch_pseq(self, bno: int, seq: int) -> int:
        """The pseq of the sent, unacked message at ``seq`` of batch ``bno``; 0 if none."""
        b = self._batches.get(bno)
        if b is not None:
            for p, e in self._walk(b):
                if e[_BSEQ] == seq:
                    return p
        return 0

    def hold(self, pseq: int) -> bool:
        """A notice named this sent message: flow acks no longer settle it (the publisher resolves it)."""
        e = self._entry(pseq)
        if e is None or pseq >= self.send_next or e[_ST] != _SENT:
            return False
        e[_HELD] = 1
        return True

    def hold_range(self, bno: int, first: int, end: int) -> list[int]:
        """Hold the batch's sent messages with ``first <= seq < end`` (a gap notice); their pseqs."""
        b = self._batches.get(bno)
        out = []
        if b is not None:
            for p, e in self._walk(b):
                if e[_BSEQ] >= end:
                    break
                if e[_BSEQ] >= first:
                    e[_HELD] = 1
                    out.append(p)
        return out

    def held(self, bno: int, first: int, end: int) -> list[int]:
        """The held messages of batch ``bno`` with ``first <= seq < end`` (still sent, unacked)."""
        b = self._batches.get(bno)
        if b is None:
            return []
        return [p for p, e in self._walk(b) if e[_HELD] and first <= e[_BSEQ] < end]

    def batch_sent(self, bno: int) -> list[int]:
        """Every sent, unacked message of batch ``bno``."""
        b = self._batches.get(bno)
        return [] if b is None else [p for p, _e in self._walk(b)]

    def kill_batch(self, bno: int) -> None:
        """Forget a batch the server no longer knows (its late answers are ignored)."""
        self._batches.pop(bno, None)
        if self.cur_batch == bno:
            self.cur_batch = 0

    def drop_batches(self) -> None:
        """Forget every batch (a new connection, or a new framing)."""
        self._batches.clear()
        self.cur_batch = 0

    def tail_state(self) -> tuple[int, float, float, int]:
        """The open batch's (messages sent and not flow-acked, last send time, send time of the oldest of
        them, flow): a tail shorter than the flow is settled only by more messages or a commit."""
        b = self._batches.get(self.cur_batch)
        if b is None:
            return 0, 0.0, 0.0, 0
        unsettled = b.next_seq - 1 - b.acked
        first = 0.0
        for _p, e in self._walk(b):
            first = e[_SENTAT]
            break
        return unsettled, b.last_send, first, b.flow
