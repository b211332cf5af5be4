"""SpillStore: the publisher's way to disk and back (mixed into ``JetStreamPublisher``, ``nats.py``).

While NATS is away or slow, every unacked message moves to the ``SpillFile`` in order and new batches
follow it there (``_enter_spill``); once NATS acks again the spill is replayed, oldest first with the
original subjects and ids, a chunk at a time as acks free the ring (``_after_acks``, ``_replay``), then
new batches go back to memory. Past the spill cap the feed is asked to stop (``_stop_feed``) and may
restart once the spill is half empty again. State and I/O live in ``JetStreamPublisher``.
"""

from __future__ import annotations

import logging

from ssmd_fast.errors import StorageError
from ssmd_fast.events import StatusEvent
from ssmd_fast.sinks import framing
from ssmd_fast.sinks.spill import SpillFull

log = logging.getLogger("ssmd_fast.sinks.nats")   # the publisher's log: operators follow one name

MEMORY, SPILL = "memory", "spill"
# A replay keeps up to REPLAY_RING spill records in the ring, read REPLAY_CHUNK at a time: the next chunks are
# read while the server stores the ones before (one 4,096-record chunk at a time, a replay waited a round trip
# and the batch's commit per chunk: 53-60k msgs/s here), and a step (read + load, about 1.2 us per record)
# holds the event loop about 1 ms, not 5.
REPLAY_CHUNK = 1024
REPLAY_RING = 4096


class SpillStore:
    """The spill-and-replay half of ``JetStreamPublisher``."""

    def _after_acks(self) -> None:
        self._consume_spill()
        # After a record too large to send, the ring drains first: only the record at the cursor can be
        # dead-lettered.
        loaded = self._replay_loaded
        room = loaded == 0 if self._replay_drain else loaded + REPLAY_CHUNK <= REPLAY_RING
        if self.store == SPILL and room and self.conn is not None and not self._closing:
            self._replay()


    def _enter_spill(self, why: str) -> None:
        """Move every unacked message to the spill, in order; new batches follow them there."""
        self._consume_spill()
        items = self.ring.extract(include_spill=False) + self.parked.drain()
        self._replay_loaded = 0  # spill-origin messages dropped from the ring are still in the file
        if self.spill is not None:
            self.spill.rewind()  # so the next replay reads them again
        if self.store != SPILL:
            self._throttle.log(logging.WARNING, "NATS publisher spilling to %s: %s", self.spill_dir, why)
            self.store = SPILL
            self._emit(StatusEvent("spill", self.instance, detail=why))
        self._to_spill(items)

    def _to_spill(self, items: list, final: bool = False) -> None:
        if not items:
            return
        if self.spill is None:
            self._count_lost(len(items), "no spill file (core mode)")
            return
        try:
            n = self.spill.append_many(items)
        except SpillFull as exc:
            n = exc.appended
            self._count_lost(len(items) - n, "dropped: the spill file is full")
            self._stop_feed(f"spill cap reached: {exc}")
        except StorageError as exc:
            self._count_lost(len(items), "dropped: the spill file cannot be written")
            self._fail(f"spill write failed: {exc}")
            self._stop_feed(f"spill write failed: {exc}")
            return
        self.counters["spilled"] += n
        if final:
            self.spill.flush(fsync=True)

    def _consume_spill(self) -> None:
        n = self.ring.pop_spill_retired()
        if n and self.spill is not None:
            self.spill.consume(n)
            self._replay_loaded -= n

    def _replay(self) -> None:
        """Load the next spill records into the ring (original subjects and ids) and send them."""
        self._replay_drain = False
        records = self._read_chunk()
        loaded = 0
        while records:   # None: the read failed, and the replay stays stopped there (nothing is skipped)
            loaded = self.ring.add_messages(records, framing.ORIGIN_SPILL)   # one call per chunk
            if loaded == len(records):
                break
            # too large for this server (its max_payload shrank since): only the record at the cursor can
            # be consumed out of band, so a later one waits to head the next chunk
            self.ring.pop_oversized()
            self.spill.unread(len(records) - loaded)
            if loaded:
                break
            if self._replay_loaded:      # records before it are still in flight: wait for their acks
                self._replay_drain = True
                return
            self._dead_letter([records[0]], "too_large", self._too_large_why())
            self.spill.consume(1)
            records = self._read_chunk()
        if records is not None:
            self._replay_loaded += loaded
            self.counters["replayed"] += loaded
            if self.spill.read_to_end:
                self.store = MEMORY  # everything left is in the ring: new batches can follow in memory
                self._throttle.log(logging.INFO, "NATS publisher: spill replayed, back to the memory queue")
            self._pump()
        self._report_corruption()  # bytes the read set aside (after the store is settled: it takes the event)

    def _read_chunk(self) -> list | None:
        try:
            return self.spill.read(REPLAY_CHUNK)
        except StorageError as exc:  # logged once; what was read before it is sent and consumed
            self._fail(f"spill replay stopped: {exc}", warn_once=True)
            return None

    def _maybe_resume_feed(self) -> None:
        """Clear ``feed_stop_requested`` once the spill takes writes again and is at most half full
        (the runner then restarts the feed with fresh subscriptions)."""
        sp = self.spill
        if sp is not None and sp.error is None and sp.pending_bytes <= sp.max_bytes // 2:
            self.feed_stop_requested = False
            log.warning("NATS publisher: the spill holds %d of %d bytes again: the feed may restart",
                        sp.pending_bytes, sp.max_bytes)

    def _report_corruption(self) -> None:
        """A ``spill_corrupt`` event per range the spill files set aside (on open, or found by a replay's
        read): the records in those bytes are missing from the stream."""
        if len(self.spill.corruptions) + len(self.dead.corruptions) == self._corrupt_told:
            return
        found = self.spill.corruptions + self.dead.corruptions
        for err in found[self._corrupt_told:]:
            self._emit(StatusEvent("spill_corrupt", self.instance, detail=str(err)))
        # their records cannot be counted (the bytes are corrupt): one per range, the least they held
        self._count_lost(len(found) - self._corrupt_told, "in corrupt spill bytes set aside (at least)")
        self._corrupt_told = len(found)

    def _stop_feed(self, why: str) -> None:
        if not self.feed_stop_requested:
            self.feed_stop_requested = True
            self.feed_stop_why = why
            log.error("NATS publisher: %s; the feed must stop (a gap until it restarts)", why)
            event = StatusEvent("feed_stopped", self.instance, detail=why)
            if self.on_event is not None:
                self.on_event(event)

    def _carried_over(self) -> int:
        """Records in the spill this run did not append: a previous run's (or requeued dead letters). This run
        acks them too, so acked can pass published (which counts this run's messages only). While a large
        spill is still checked in the background, the records found so far."""
        if self.spill is None:
            return 0
        return max(0, self.spill.stats()["appended"] - self.counters["spilled"])
