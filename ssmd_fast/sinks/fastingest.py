"""FastIngest: drives JetStream fast-ingest batches (nats-server 2.14+, stream ``allow_batched``) for the
publisher, on top of the ring's batch bookkeeping (``_framing_py.py``, "fast-ingest batches").

Measured on nats-server 2.15.1 (raw sockets, before this was written) and relied on here:

- the batch id is the second token of a two-token inbox ``_INBOX.{id}``; replies go to each message's
  own reply subject, so each batch gets ``SUB _INBOX.{id}.>`` (sid = batch + 1) and ``UNSUB`` when done;
  several batches may be open on one connection, and a batch is the stream's, not the connection's;
- gap mode ``ok``: an ``err`` (stream full, too large, ...), a message the stream never saw (no stream
  for its subject: a 503 to its reply, then a gap notice; a publish permission violation: ``-ERR``,
  then a gap notice) are reported per message and the batch goes on; in gap mode ``fail`` each of them
  ends the batch (every later message: 10208 "batch publish ID unknown"), which a full stream or a
  narrowed one would turn into a batch per message;
- flow acks come every ``msgs`` messages (the server caps the asked flow at 500 and lowers it while
  several batches are open); a ``ping`` (op 4) re-sends the latest flow ack, it does not ack a tail
  shorter than the flow: only more messages or the commit (op 3) settle a tail, hence the tail timer;
- an idle batch is forgotten after 10 s (later messages: 10208), a batch took 1.1 M messages without
  a limit, ``Nats-Msg-Id`` dedupe works inside a batch (a resend into a new batch is dropped if stored).

Resends (a reconnect, an expired message, a gap, a batch the server forgot) always go first into a new
batch, with their original bytes and ids; the old batch's later answers only settle what is still its own.
"""

from __future__ import annotations

import asyncio
import logging

from ssmd_fast.sinks import framing

log = logging.getLogger(__name__)

TAIL_IDLE = 0.005    # commit a tail shorter than the flow after this long without a new send ...
TAIL_MAX = 0.020     # ... or once its oldest message waited this long (bounds the ack latency)
MAX_LIVE = 8         # batches open or awaiting their commit's answer; past it sends wait
DENIED_KEEP = 4096   # subjects of publish permission violations waiting for their gap notice
GATE_HOLD = 30.0     # after a sign that starts can fail, each batch's start goes alone this long


def batch_sid(bno: int) -> int:
    return bno + 1   # sid 1 is the per-message inbox


class FastIngest:
    """The batch side of one ``JetStreamPublisher`` (see the module docstring)."""

    def __init__(self, pub):
        self.pub = pub
        self.ring = pub.ring
        self.denied: dict[bytes, int] = {}   # subject -> publish permission violations not matched yet
        self._recommit: set[int] = set()     # closing batches whose commit found no stream
        self._timer: asyncio.TimerHandle | None = None
        self._progress: dict[int, tuple[int, float]] = {}   # bno -> (acked seq, when it last moved)
        self._pinged: dict[int, float] = {}
        self._gate_until = 0.0
        self.counters = {"batches": 0, "commits": 0, "pings": 0, "gap_resends": 0, "batch_resends": 0,
                         "dead_starts": 0}

    # ------------------------------------------------------------------ batches

    def reset(self) -> None:
        """A new connection or framing: every batch is forgotten, the tail timer stopped."""
        self.ring.drop_batches()
        self.denied.clear()
        self._recommit.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._progress.clear()
        self._pinged.clear()

    def open(self) -> int:
        bno = self.ring.open_batch()
        self.pub.conn.write(b"SUB %sb%08x.> %d\r\n" % (self.pub.inbox, bno, batch_sid(bno)))
        self.counters["batches"] += 1
        return bno

    def commit(self) -> None:
        """End the open batch (its commit's pub ack settles the tail); a batch without messages just goes."""
        bno = self.ring.cur_batch
        frame = self.ring.commit_batch()
        if frame is not None:
            self.pub.conn.write(frame)
            self.counters["commits"] += 1
        elif bno:
            self.pub.conn.write(b"UNSUB %d\r\n" % batch_sid(bno))

    def ready(self, window: int) -> bool:
        """An open batch with room for the next sends (opening or rolling one when there is something to send)."""
        ring = self.ring
        if ring.cur_batch and not ring.batch_full:
            return True
        if not ring.can_send(window):
            return False
        if ring.cur_batch:
            self.commit()
        if ring.live_batches >= MAX_LIVE:
            return False
        self.open()
        return True

    def resend(self, pseqs: list[int]) -> None:
        """These sent, unacked messages again, first into a new batch (ids unchanged: dedupe drops the stored)."""
        pub = self.pub
        if not pseqs or pub.conn is None:
            return  # the next connection resends everything unacked
        if self.ring.cur_batch:
            self.commit()
        self.open()
        data = self.ring.resend(sorted(set(pseqs)), pub.clock())
        if data is not None:
            pub.conn.write(data)
            pub.counters["resend_writes"] += 1
            self.arm()

    def resend_all(self) -> None:
        """After a (re)connect: every sent, unacked message into the first batch of this connection."""
        self.open()
        data = self.ring.resend_all(self.pub.clock())
        if data is not None:
            self.pub.conn.write(data)
            self.pub.counters["resend_writes"] += 1
            self.arm()

    def flush(self) -> None:
        """Shutdown: commit the open batch once everything queued went out."""
        if self.ring.cur_batch and not self.ring.queued:
            self.commit()

    # ------------------------------------------------------------------ the tail

    def arm(self) -> None:
        """After a write or a read: make sure a tail shorter than the flow gets committed. Only such a tail
        needs the timer: with a flow's worth or more unsettled the server owes a flow ack, and the read of
        that ack calls this again (a timer set at every read and write woke the loop 5 ms later for nothing,
        about 25 times a second under load)."""
        if self._timer is None and self.ring.cur_batch:
            unsettled, _, _, flow = self.ring.tail_state()
            if 0 < unsettled < flow:
                self._timer = asyncio.get_running_loop().call_later(TAIL_IDLE, self._tail_check)

    def _tail_check(self) -> None:
        self._timer = None
        pub, ring = self.pub, self.ring
        if pub.conn is None or not ring.fast or not ring.cur_batch:
            return
        unsettled, last_send, first_sent, flow = ring.tail_state()
        if unsettled <= 0 or unsettled >= flow:
            return  # nothing waits, or the server owes a flow ack (a lost one: the tick pings)
        now = pub.clock()
        due = min(last_send + TAIL_IDLE, first_sent + TAIL_MAX)
        if now >= due:
            self.commit()
        else:
            self._timer = asyncio.get_running_loop().call_later(due - now, self._tail_check)

    # ------------------------------------------------------------------ deadlines

    def deny(self, subject: bytes) -> None:
        """A ``-ERR`` publish permission violation: the batch's gap notice (or its error) names the message."""
        if len(self.denied) >= DENIED_KEEP:
            del self.denied[next(iter(self.denied))]
        self.denied[subject] = self.denied.get(subject, 0) + 1
        self.trouble()

    def trouble(self) -> None:
        """Some subject is denied or has no stream: a batch could start with such a message, which the stream
        never sees (then every later message of that batch is answered "batch unknown" and resent). For a
        while each start goes alone and the rest waits for its ack (one round trip per batch)."""
        self.ring.gate_starts = True
        self._gate_until = self.pub.clock() + max(GATE_HOLD, self.pub.cfg.retry_horizon)

    def drop_dead_starts(self) -> None:
        """Forget the batches whose start the stream never saw (parked, or denied) and that hold nothing
        else: the next sends open a new batch at once."""
        for bno, state, _msgs, _acked, _flow, started in self.ring.batches():
            if started or state != framing.BATCH_OPEN:
                continue
            pending = self.ring.batch_sent(bno)
            if len(pending) > 1 or (pending and self._unseen(pending)):
                continue   # still on its way: its ack (or its answers) settle it
            self.counters["dead_starts"] += 1
            self._forget(bno)

    def tick(self, now: float, ack_timeout: float) -> None:
        """Resend what is overdue (into a new batch); commit again where a commit found no stream; ping
        batches that owe an ack (a lost flow ack or commit answer: the server re-sends its latest, or
        says it forgot the batch)."""
        ring, conn = self.ring, self.pub.conn
        if ring.gate_starts and now > self._gate_until:
            ring.gate_starts = False
        for bno in self._recommit:
            if ring.batch_sent(bno):
                frame = ring.recommit(bno)
                if frame is not None:
                    conn.write(frame)
            else:                 # nothing of it left to settle (resent elsewhere meanwhile)
                self._forget(bno)
        self._recommit.clear()
        due = ring.expired(now, ack_timeout)
        if due:
            self.resend(due)
        ping_after = max(0.05, ack_timeout / 4)
        live = set()
        for bno, state, msgs, acked, flow, _started in ring.batches():
            live.add(bno)
            if msgs <= acked or (state == framing.BATCH_OPEN and msgs - acked < flow):
                continue  # settled, or an open batch's tail (the tail timer's)
            seen = self._progress.get(bno)
            if seen is None or seen[0] != acked:
                self._progress[bno] = (acked, now)
                continue
            if now - seen[1] >= ping_after and now - self._pinged.get(bno, 0.0) >= ping_after:
                frame = ring.ping_frame(bno)
                if frame is not None:
                    conn.write(frame)
                    self._pinged[bno] = now
                    self.counters["pings"] += 1
        for d in (self._progress, self._pinged):
            for bno in [b for b in d if b not in live]:
                del d[bno]

    # ------------------------------------------------------------------ notices

    def _forget(self, bno: int) -> None:
        self.ring.kill_batch(bno)
        if self.pub.conn is not None:
            self.pub.conn.write(b"UNSUB %d\r\n" % batch_sid(bno))

    def _unseen(self, pseqs: list[int]) -> list[int]:
        """Messages the stream never saw: publish permission violations (a ``-ERR`` named the subject) are
        dead-lettered; the rest are returned, to be resent."""
        again = []
        for pseq in pseqs:
            msg = self.ring.message(pseq)
            n = self.denied.get(msg[0], 0) if msg is not None else 0
            if n:
                if n == 1:
                    del self.denied[msg[0]]
                else:
                    self.denied[msg[0]] = n - 1
                self.pub._reject(pseq, "permissions",
                                 f"permissions violation for publish to {msg[0].decode('utf-8', 'replace')}")
            else:
                again.append(pseq)
        return again

    def on_gap(self, bno: int, first: int, end: int) -> None:
        """Seqs the stream never saw: a publish permission violation or a drop."""
        again = self._unseen(self.ring.held(bno, first, end))
        if again:
            self.counters["gap_resends"] += len(again)
            self.resend(again)

    def on_done(self, bno: int, count: int) -> None:
        """The commit's pub ack: the batch is settled up to ``count``."""
        rest = self.ring.finish_batch(bno, count)
        if rest is None:
            return
        if self.pub.conn is not None:
            self.pub.conn.write(b"UNSUB %d\r\n" % batch_sid(bno))
        self.resend(rest)

    def on_error(self, bno: int, seq: int, code: int, err_code: int, desc: str) -> bool:
        """An error reply to a batch's message, commit or ping; False when fast-ingest cannot go on here."""
        if err_code == 10205:
            return False  # the stream does not allow batches (changed since start-up)
        live = [b for b in self.ring.batches() if b[0] == bno]
        if code == 503 and live and live[0][5]:
            # a commit or a ping to a subject no stream takes now (the stream changed): the batch lives on,
            # its commit goes again at the next tick to the subject most recently stored
            if live[0][1] == framing.BATCH_CLOSING:
                self._recommit.add(bno)
            return True
        if err_code == 10208 or code == 503:
            if live and not live[0][5]:
                self.trouble()   # a batch that never started: its start was denied or had no stream
            # the server forgot the batch (idle, restarted) or never had it (its start was denied or had
            # no stream, and so had its commit): its messages go again in a new batch, dedupe drops the
            # ones it had stored. Every later message of it gets the same answer: only the first one acts.
            if not live:
                return True
            pseqs = self._unseen(self.ring.batch_sent(bno))
            self._forget(bno)
            self.counters["batch_resends"] += len(pseqs)
            self.resend(pseqs)
            return True
        log.warning("NATS fast-ingest batch error %s (err_code %s) at seq %d: %s", code, err_code, seq, desc)
        return False
