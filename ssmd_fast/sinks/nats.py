"""JetStreamPublisher: acknowledged JetStream publishing that never blocks the feed and never drops silently.

Data path (docs/design.md "Sinks"): ``submit(batch, conn)`` frames the batch into the ``PublishRing``
(compiled; one call per socket read) and, when connected, writes the frames that fit in the window in
one write, straight from the ring's memory when the socket takes it. By default the messages go into
JetStream fast-ingest batches (``fastingest.py``: nats-server 2.14+, stream ``allow_batched``; one flow
ack per ``FLOW`` messages instead of one ack each); with ``transport.batching: false``, an older server
or a stream that does not allow batches (``provision: verify``), every message gets its own ack. Acks are
parsed from the socket bytes into the ring (``AckParser``): no future, callback or Python object per
message. Only the rare things come back to Python: rejections, no-responders, gaps, ``-ERR``, a lost
connection.

Guarantees and what happens when NATS is away or slow:

- every data message carries a deterministic ``Nats-Msg-Id`` (``subjects.py``); resends and spill
  replays reuse it, so JetStream's duplicate window turns at-least-once into once-in-the-stream;
- a message unacked ``ack_timeout`` after its send is resent (same bytes and id; in fast-ingest mode
  first into a new batch, as after a reconnect, a gap or a batch the server forgot); new sends wait
  while resends are pending; no answer from the server for ``ack_timeout`` + 0.5 s (at most 2 x
  ``ack_timeout``) with messages in flight forces a reconnect (the server or the path is stalled:
  under 3 s at the default 2 s deadline); reconnects back off briefly (capped); a server's lame-duck
  notice (INFO ``ldm``: it is stopping its JetStream) closes the connection at once, so what is unacked
  goes out again in order on the next one instead of being parked on its "no responders" answers;
- ``submit`` never blocks: frames queue in memory up to ``memory_queue_bytes``; past that, or when the
  oldest message stayed unacked past ``retry_horizon``, everything unacked moves to the ``SpillFile``
  in order and new batches go there too, until the spill is replayed (oldest first, original ids)
  once NATS acks again (``spill_store.py``); past the spill cap a ``feed_stopped`` event is emitted and
  ``feed_stop_requested`` is set: the runner stops the WebSocket feed on purpose;
- server rejections (stream full with discard new, permissions, too large, no stream for the
  subject past ``retry_horizon``) are counted by kind and their messages go to the dead-letter
  spill (``{spill}/dead-letter``), never retried forever; a message answered "no responders" is
  parked out of the window (``parked.py``: retried on a slowing cadence, dead-lettered at
  ``retry_horizon``) so the rest of the stream keeps flowing;
- ``close(timeout)`` stops taking batches, commits the open fast-ingest batch, waits for acks (and
  parked messages) up to the timeout, spills what is left (fsync) and reports published / acked /
  duplicates (per-message acks only: a batch's acks do not say which messages were duplicates) /
  resent / spilled / rejected / lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import Callable

from ssmd_fast.config import TransportConfig
from ssmd_fast.errors import PublishError, StorageError
from ssmd_fast.events import StatusEvent
from ssmd_fast.logs import Throttle
from ssmd_fast.metrics import HistogramSample
from ssmd_fast.sinks import _framing_acks_py, framing, natsconn
from ssmd_fast.sinks.answers import ServerAnswers
from ssmd_fast.sinks.dead_reasons import DeadLetterReasons
from ssmd_fast.sinks.fastingest import FastIngest
from ssmd_fast.sinks.file import SinkReport
from ssmd_fast.sinks.flightwindow import FlightWindow
from ssmd_fast.sinks.natsconn import AuthFailed, ConnectError, Endpoint
from ssmd_fast.sinks.parked import ParkedMessages
from ssmd_fast.sinks.spill import SpillFile
from ssmd_fast.sinks.spill_store import MEMORY, SPILL, SpillStore
from ssmd_fast.sinks.stream import FAST_INGEST_VERSION, provision
from ssmd_fast.sinks.subjects import valid_subject

log = logging.getLogger(__name__)

BACKOFF_INITIAL, BACKOFF_MAX, AUTH_BACKOFF = 0.05, 1.0, 5.0

CLOSE_GRACE = 1.0            # close(): how long to wait for a reconnect before spilling
PING_INTERVAL = 2.0          # data connection keepalive (x2 unanswered = stale)
WRITE_CHUNK = 256 * 1024     # bytes per socket write
WATCHDOG_SLACK = 0.5         # the watchdog fires this long after the ack deadline (capped at 2 x the deadline)
LATENCY_LE_MIN_NS, LATENCY_LE_MAX_NS = 1 << 14, 1 << 34  # ack latency buckets exposed: 16 us .. 17 s
BATCH_LENGTH = 100_000       # messages per fast-ingest batch before it is committed and a new one opened


def backoff_delay(backoff: float) -> float:
    """The wait before the next attempt: half to all of ``backoff`` (which doubles from BACKOFF_INITIAL to
    BACKOFF_MAX), so connectors restarted together spread out and no wait exceeds BACKOFF_MAX."""
    return backoff * (0.5 + 0.5 * random.random())


class JetStreamPublisher(ServerAnswers, SpillStore):
    """The NATS sink (see the module docstring). Runs on the caller's event loop."""

    name = "nats"

    def __init__(self, cfg: TransportConfig, *, spill_dir: str | os.PathLike[str] | None = None,
                 feed: str = "kalshi", on_event: Callable[[StatusEvent], None] | None = None,
                 endpoint: Endpoint | None = None, client_name: str = "ssmd-fast", mode: str = "jetstream",
                 provision_stream: bool = True, clock: Callable[[], float] = time.monotonic,
                 batch_length: int = BATCH_LENGTH):
        if mode not in ("jetstream", "core"):
            raise ValueError("mode must be 'jetstream' or 'core' (core: benchmarks only, no acks)")
        self.cfg = cfg
        self.mode = mode
        self.endpoint = endpoint or Endpoint.from_config(cfg, name=client_name)
        self.on_event = on_event
        self.provision_stream = provision_stream and mode == "jetstream"
        self.clock = clock
        self.instance = secrets.token_hex(6)  # the "conn" of the publisher's own events
        self.inbox = b"_INBOX.ssmd" + secrets.token_hex(6).encode()
        # fast-ingest batches unless turned off; found unsupported (server, stream): per-message acks
        self.ring = framing.PublishRing(cfg.subject_prefix, self.inbox, feed=feed, raw="raw" in cfg.publish,
                                        normalized="normalized" in cfg.publish, acked=mode == "jetstream",
                                        fast=cfg.batching and mode == "jetstream", batch_max=batch_length)
        self.parser = framing.AckParser(self.ring, self.inbox)
        self.window = FlightWindow(cfg.window_min, cfg.window, cfg.ack_timeout)
        self.encoder = self.ring.encoder
        self.fast = FastIngest(self)
        self.parked = ParkedMessages(retry=cfg.ack_timeout, horizon=cfg.retry_horizon)
        self.per_message_why = "" if self.ring.fast else ("core mode" if mode == "core" else "transport.batching is off")
        self.spill_dir = os.fspath(spill_dir or cfg.spill.path or os.path.join("data", "spill"))
        self.spill: SpillFile | None = None
        self.dead: SpillFile | None = None
        self.dead_reasons: DeadLetterReasons | None = None
        self.conn: natsconn.DataConnection | None = None
        self.store = MEMORY
        self._throttle = Throttle(log)   # store changes can flap at every burst with a small memory queue
        self.feed_stop_requested = False
        self.feed_stop_why = ""          # why the feed was last asked to stop (for the runner's log line)
        self._spill_left = 0             # spill records left for the next start, counted at close
        self._carried = 0                # records a previous run left in the spill, counted at close
        self._stream_check: asyncio.Task | None = None   # provision: create: a deleted stream created again
        self._stream_checked_at = -1e9
        self.error: str | None = None          # the last condition that needs an operator (logged too)
        self.stream_report = None
        self._event_n: dict[str, int] = {}
        self._replay_loaded = 0                # spill records in the ring, not yet consumed
        self._corrupt_told = 0                 # SpillCorrupt ranges (spill and dead letters) evented so far
        self._replay_drain = False             # the next replay waits until none are
        self._closing = False
        self._stopping = False                 # close() is cancelling the background tasks
        self._closed = False
        self._tasks: list[asyncio.Task] = []
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._last_progress = 0.0
        self._last_acked = 0
        self.counters = {"accepted": 0, "spilled": 0, "replayed": 0, "dead_lettered": 0, "lost": 0,
                         "connects": 0, "disconnects": 0, "watchdog_reconnects": 0, "lame_duck": 0,
                         "resend_writes": 0, "late_submits": 0}
        self.rejected: dict[str, int] = {}
        self.lost_reasons: dict[str, int] = {}

    # ------------------------------------------------------------------ the sink interface

    def submit(self, batch, conn: str) -> None:
        """Frame a FrameBatch's publishable entries; never blocks, never raises for NATS trouble."""
        if self._closing:
            self._count_lost(len(batch), "submitted after close")
            self.counters["late_submits"] += 1
            return
        ring = self.ring
        if self.store == SPILL:
            start = ring.tail
            n = ring.add_batch(batch, conn)
            self._to_spill(ring.extract(start))
        else:
            n = ring.add_batch(batch, conn)
            if ring.queued_bytes + self.parked.bytes > self.cfg.memory_queue_bytes:
                self._enter_spill(f"the memory queue passed {self.cfg.memory_queue_bytes} bytes")
            elif ring.queued:
                self._pump()
        self.counters["accepted"] += n
        if ring.oversized:
            self._dead_letter_oversized()

    def submit_event(self, event: StatusEvent) -> None:
        """Publish a status event to ``{prefix}.events.{kind}`` (acked like data)."""
        conn = event.conn or self.instance
        n = self._event_n[conn] = self._event_n.get(conn, 0) + 1
        self.submit_message(self.encoder.event_subject(event.kind), self.encoder.event_msg_id(conn.encode(), n),
                            event.to_json())

    def submit_message(self, subject: bytes, msg_id: bytes, payload: bytes) -> None:
        """Publish one message (acked, resent and spilled like data); ``subject`` must be a literal
        subject and ``msg_id`` stable across resends (it is the dedupe key)."""
        if not valid_subject(subject) or not msg_id or not all(0x21 <= b <= 0x7E for b in msg_id):
            raise ValueError(f"not a literal subject and header-safe msg id: {subject!r}, {msg_id!r}")
        if self._closing:
            self._count_lost(1, "submitted after close")
            return
        self.counters["accepted"] += 1
        if self.store == SPILL:
            self._to_spill([(subject, msg_id, payload)])
        else:
            self.ring.add_message(subject, msg_id, payload)
            if self.ring.oversized:
                self._dead_letter_oversized()
            self._pump()

    async def start(self) -> None:
        """Open the spill files and connect in the background; returns at once."""
        if self.mode == "jetstream":
            # SpillFile makes its directory (0700) and names what fails: a makedirs of its own here was
            # a traceback for a file at transport.spill.path
            sp = self.cfg.spill
            self.spill = SpillFile(self.spill_dir, max_bytes=sp.max_bytes, fsync_every=sp.fsync_every,
                                   fsync_interval=sp.fsync_interval)
            # fsync as the spill does: every record is handed to the OS at once (a kill -9 keeps it), and a
            # burst of rejections (a full stream) must not fsync per message on the feed's event loop
            self.dead = SpillFile(os.path.join(self.spill_dir, "dead-letter"), max_bytes=sp.max_bytes,
                                  fsync_every=sp.fsync_every, fsync_interval=sp.fsync_interval)
            self.dead_reasons = DeadLetterReasons(self.dead.directory)
            if self.spill.pending_bytes:  # records may still be counted (large spills are checked in a thread)
                log.info("spill %s holds %d bytes from before: replayed once NATS acks",
                         self.spill_dir, self.spill.pending_bytes)
                self.store = SPILL
            self._report_corruption()
        self._last_progress = self.clock()
        self._tasks = [asyncio.create_task(self._run(), name="nats-publisher"),
                       asyncio.create_task(self._ticker(), name="nats-publisher-tick")]

    @property
    def tasks(self) -> list[asyncio.Task]:
        """The background tasks ``start`` made: the runner stops the run when one of them fails."""
        return list(self._tasks)

    async def wait_connected(self, timeout: float) -> bool:
        """True once the stream is provisioned and the data connection is up (tests, demo)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 10.0) -> SinkReport:
        """Stop taking batches, wait for acks up to ``timeout``, spill the rest (fsync), disconnect."""
        if self._closed:
            return self.report()
        self._closing = True
        deadline = self.clock() + timeout
        # wait for acks; while disconnected give a reconnect CLOSE_GRACE, then the spill is the safe place
        grace = self.clock() + min(timeout, CLOSE_GRACE)
        while (self.ring.head < self.ring.tail or len(self.parked)) and self.clock() < deadline \
                and self.mode == "jetstream":
            if self.conn is not None:
                self._pump()
                self._after_acks()
                if self.ring.fast:
                    self.fast.flush()   # the commit's answer settles the tail at once
            elif self.clock() > grace:
                break
            await asyncio.sleep(0.005)
        self._stopping = True
        if self._stream_check is not None:
            self._stream_check.cancel()
        for t in self._tasks:
            t.cancel()
        self._lost.set()  # wakes _run even if a swallowed cancel left it waiting on a live connection
        done, stuck = await asyncio.wait(self._tasks, timeout=1.0)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("publisher task %s ended with %r", t.get_name(), t.exception())
        if stuck:  # never let a stuck task hold the shutdown: report it and go on spilling
            log.error("publisher tasks did not stop within 1 s: %s", ", ".join(t.get_name() for t in stuck))
        if self.conn is not None:
            self.conn.close("publisher closed")
            self.conn = None
        self.fast.reset()
        self._consume_spill()
        left = self.ring.extract(include_spill=False) + self.parked.drain()
        if left and self.mode == "jetstream":
            self._to_spill(left, final=True)
        elif left:
            self._count_lost(len(left), "core mode: unsent at close")
        # what the next start replays, counted while the file is open (the closing report said 0)
        self._spill_left = self.spill.pending_records if self.spill is not None else 0
        self._carried = self._carried_over()
        if self.dead_reasons is not None:
            self._write_reasons()
        for f in (self.spill, self.dead):
            if f is not None:
                try:
                    f.flush(fsync=True)
                    f.close()
                except StorageError as exc:
                    self._fail(f"closing {f.directory}: {exc}")
        self._closed = True
        rep = self.report()
        log.info("NATS publisher closed: %s", rep.stats)
        return rep

    def report(self) -> SinkReport:
        s = self.stats()
        lost = s["lost"]
        detail = "; ".join(f"{n} {why}" for why, n in self.lost_reasons.items()) if lost else ""
        return SinkReport(self.name, written=s["acked"], lost=lost, detail=detail, stats=s)

    def stats(self) -> dict:
        r, p = self.ring, self.parser
        return {
            "connected": self.conn is not None, "store": self.store, "mode": self.mode,
            "published": self.counters["accepted"], "sent": r.sent, "acked": r.acked_count,
            "duplicates": p.duplicates, "resent": r.resent, "inflight": r.inflight, "window": self.window.size,
            "queued": r.queued,
            "queued_bytes": r.queued_bytes, "spilled": self.counters["spilled"],
            "replayed": self.counters["replayed"], "carried_over": self._carried if self._closed else self._carried_over(),
            "spill_pending": self._spill_left if self._closed else
                             self.spill.pending_records if self.spill is not None else 0,
            "spill_quarantined_bytes": sum(f.quarantined_bytes for f in (self.spill, self.dead) if f is not None),
            "rejected": dict(self.rejected), "dead_lettered": self.counters["dead_lettered"],
            "no_responders": p.no_responders, "ack_errors": p.errors, "stale_acks": p.stale,
            "parked": len(self.parked), "parked_total": self.parked.total, "gaps": p.gaps,
            "batching": "fast-ingest" if r.fast else f"per-message ({self.per_message_why})",
            "direct_bytes": r.direct_bytes, **self.fast.counters,
            "lost": self.counters["lost"], "lost_reasons": dict(self.lost_reasons),
            "connects": self.counters["connects"], "disconnects": self.counters["disconnects"],
            "watchdog_reconnects": self.counters["watchdog_reconnects"], "lame_duck": self.counters["lame_duck"],
            "feed_stop_requested": self.feed_stop_requested, "error": self.error,
        }

    def latency_histogram(self) -> HistogramSample:
        """``ack_latency_seconds``: batch receive -> JetStream ack, from the ring's C-level buckets, exposed
        at every power of two from 16 us to 17 s (the ring's buckets are 4x finer)."""
        counts = self.ring.latency_counts()
        buckets, cum = [], 0
        for i, c in enumerate(counts[:-1]):
            cum += c
            upper = _framing_acks_py.latency_upper_ns(i)
            if i % 4 == 0 and LATENCY_LE_MIN_NS <= upper <= LATENCY_LE_MAX_NS:  # bounds 2^k ns
                buckets.append((upper / 1e9, cum))
        buckets.append((float("inf"), cum + counts[-1]))
        return HistogramSample("ack_latency_seconds", buckets, self.ring.latency_sum_ns / 1e9)

    # ------------------------------------------------------------------ sending

    def _pump(self) -> None:
        """Write the queued frames that fit in the window, in writes of at most WRITE_CHUNK bytes while
        the transport takes them, unless resends are pending. A write goes straight from the ring to the
        socket while the transport holds nothing (what the socket does not take is copied to it)."""
        conn = self.conn
        if conn is None or self.ring.resends_pending:
            return
        ring, window, now, fast = self.ring, self.window.size, self.clock(), self.ring.fast
        wrote = False
        while conn.writable:
            if fast and not self.fast.ready(window):
                break
            data = ring.take(window, now, WRITE_CHUNK, conn.direct_fd())
            if data is None:
                break
            if data:
                conn.write(data)
            wrote = True
        if wrote and fast:
            self.fast.arm()

    def _on_read(self) -> None:
        """After each socket read: acks may have freed the window or retired spill records."""
        if self.ring.queued:
            self._pump()
        if self.store == SPILL or self._replay_loaded:
            self._after_acks()
        if self.ring.fast:
            self.fast.arm()

    # ------------------------------------------------------------------ background tasks

    async def _run(self) -> None:
        """Provision the stream once, then keep a data connection up (short capped backoff)."""
        backoff = BACKOFF_INITIAL
        attempt = 0
        while self.provision_stream and not self._closed:
            try:
                self.stream_report = await provision(self.cfg, self.endpoint, timeout=self.cfg.connect_timeout)
                self.error = None
                if not self.stream_report.batched:
                    self._per_message(f"stream {self.cfg.stream} does not take fast-ingest batches"
                                      if self.cfg.batching else "transport.batching is off")
                break
            except PublishError as exc:
                self._fail(str(exc), warn_once=True)
                await asyncio.sleep(backoff_delay(backoff))
                backoff = min(backoff * 2, BACKOFF_MAX)
        backoff = BACKOFF_INITIAL
        while not self._closed:  # close() cancels this task after its wait for acks
            try:
                conn = await natsconn.connect(
                    self.endpoint, attempt, self.parser, self.inbox, timeout=self.cfg.connect_timeout,
                    on_events=self._on_events, on_lost=self._on_lost, on_writable=self._pump,
                    ping_interval=PING_INTERVAL)
            except AuthFailed as exc:
                self._fail(str(exc), warn_once=True)
                await asyncio.sleep(AUTH_BACKOFF)
                attempt += 1
                continue
            except ConnectError as exc:
                log.debug("NATS connect attempt %d: %s", attempt, exc)
                await asyncio.sleep(backoff_delay(backoff))
                backoff = min(backoff * 2, BACKOFF_MAX)
                attempt += 1
                continue
            if self._stopping:
                # Python 3.11's wait_for can swallow close()'s cancel when the connect completes at the
                # same moment: never serve a connection opened during close (it would hang close()).
                conn.close("publisher closing")
                return
            backoff = BACKOFF_INITIAL
            self._on_connected(conn)
            await self._lost.wait()
            self._lost.clear()

    def _on_connected(self, conn) -> None:
        conn.on_read = self._on_read
        self.conn = conn
        self.counters["connects"] += 1
        self.ring.max_payload = conn.max_payload
        self._last_progress = self.clock()
        self._ready.set()
        if self.error and "refused the connection" in self.error:
            self.error = None
        log.info("NATS data connection up (%d in flight, %d queued, store %s)", self.ring.inflight,
                 self.ring.queued, self.store)
        if self.ring.fast and conn.server_version < FAST_INGEST_VERSION:
            self._per_message(f"nats-server {conn.server_info.get('version')} has no fast-ingest batches (2.14+)")
        # acks of the old connection are gone: everything unacked again (fast: into this connection's first batch)
        self.fast.reset()
        if self.ring.fast:
            self.fast.resend_all()
        else:
            data = self.ring.resend_all(self.clock())
            if data is not None:
                conn.write(data)
                self.counters["resend_writes"] += 1
        self._after_acks()
        self._pump()

    def _on_lost(self, reason: str) -> None:
        self.conn = None
        self._ready.clear()
        if not self._closing:
            self.counters["disconnects"] += 1
            log.warning("NATS data connection lost: %s", reason)
        self._lost.set()

    async def _ticker(self) -> None:
        interval = min(0.1, max(0.01, self.cfg.ack_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.tick()

    def tick(self) -> None:
        """The window's measure of the ack rate; deadlines: resend, watchdog, parked messages, retry horizon,
        replay, spill fsync."""
        now = self.clock()
        ring, cfg = self.ring, self.cfg
        self.window.sample(ring.acked_count, ring.tail != ring.head, now)
        answers = self.parser.replies  # the server is alive
        if answers != self._last_acked or ring.inflight == 0:
            self._last_acked = answers
            self._last_progress = now
        if self.conn is not None and ring.inflight:
            if ring.fast:
                self.fast.tick(now, cfg.ack_timeout)
            else:
                data = ring.resend_expired(now, cfg.ack_timeout)
                if data is not None:
                    self.conn.write(data)
                    self.counters["resend_writes"] += 1
            silent_for = min(2 * cfg.ack_timeout, cfg.ack_timeout + WATCHDOG_SLACK)
            if self.conn is not None and now - self._last_progress > silent_for:
                self.counters["watchdog_reconnects"] += 1
                self._last_progress = now
                self.conn.close(f"no answer for {silent_for:g} s with {ring.inflight} in flight")
        if len(self.parked) and self.parked.next_due() <= now:
            self._unpark(now)
        oldest = ring.oldest_unacked_sent()
        if oldest and now - oldest > cfg.retry_horizon and self.mode == "jetstream":
            self._enter_spill(f"messages unacked for more than {cfg.retry_horizon:g} s")
        if self.conn is not None:
            self._after_acks()
            self._pump()
        if self.spill is not None:
            self._report_corruption()
        if self.spill is not None and (self.spill.pending_records or self.feed_stop_requested):
            try:
                self.spill.flush()
            except StorageError as exc:
                self._fail(f"spill flush failed: {exc}")
        if self.feed_stop_requested:
            self._maybe_resume_feed()

    # ------------------------------------------------------------------ reporting

    def _emit(self, event: StatusEvent) -> None:
        if not self._closing:   # an answer read during close: too late for the stream, the files still get it
            self.submit_event(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not break publishing
                log.exception("status event listener failed")

    def _fail(self, message: str, warn_once: bool = False) -> None:
        if not (warn_once and self.error == message):
            log.error("NATS publisher: %s", message)
        self.error = message

    def _count_lost(self, n: int, why: str) -> None:
        if n:
            self.counters["lost"] += n
            self.lost_reasons[why] = self.lost_reasons.get(why, 0) + n
