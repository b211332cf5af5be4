"""One Kalshi WebSocket connection over picows, kept alive: connect, subscribe, feed, watch, reconnect.

The session is the IO shell around the sans-IO ``KalshiProtocol``: it signs the handshake (fresh on
every connect), runs the reconnect loop with the core's backoff, and wires the hot path:

    BatchListener --batch--> on_batch: Sequencer.process -> control frames to the core
                                       -> events, resync requests -> sink.submit(batch, conn)

``on_batch`` is synchronous and never awaits; a sink copies what it needs (docs/design.md "Sinks").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Sequence

from picows import WSCloseCode, WSHandshakeError, WSMsgType, ws_connect

from ssmd_fast.events import StatusEvent
from ssmd_fast.kalshi.protocol import Emit, KalshiProtocol, Log, Ping, Reconnect, Send
from ssmd_fast.kalshi.shards import ConnectionPlan
from ssmd_fast.kalshi.watchdog import Failure
from ssmd_fast.listener import MAX_MESSAGE_SIZE, BatchListener
from ssmd_fast.logs import Throttle
from ssmd_fast.normalize import FrameBatch
from ssmd_fast.sequencer import Sequencer

log = logging.getLogger("ssmd_fast.kalshi.session")

# Bytes one socket read may bring (see BoundedReads).
READ_SIZE = 128 * 1024

_REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH,
                   errno.ENETUNREACH, errno.EPIPE}
# listener counters folded into the session totals when a connection ends
_LISTENER_COUNTERS = ("frames", "bytes", "batches", "binary_dropped", "pings", "pongs", "fragmented", "oversized")
_SEQUENCER_COUNTERS = ("duplicates", "gaps", "suppressed", "resyncs")


def classify_failure(exc: BaseException) -> tuple[Failure, int | None, str]:
    """``(failure, http_status, description)`` of a failed connection attempt."""
    if isinstance(exc, WSHandshakeError):
        response = exc.response
        if response is None:      # the peer went away during the handshake: as good as refused
            return Failure.REFUSED, None, f"handshake failed: {exc}"
        status = int(response.status)
        if status in (401, 403):
            return Failure.AUTH, status, f"HTTP {status}"
        return Failure.OTHER, status, f"handshake rejected (HTTP {status})"
    if isinstance(exc, ConnectionError) or (isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS):
        return Failure.REFUSED, None, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):
        return Failure.OTHER, None, "connect/handshake timed out"
    if isinstance(exc, ssl.SSLError):
        return Failure.OTHER, None, f"TLS: {exc}"
    return Failure.OTHER, None, f"{type(exc).__name__}: {exc}"


def make_ssl_context(url: str, ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext | None:
    """The TLS context for a ``wss://`` URL: system trust, plus ``ca_file`` for a private CA."""
    if not url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class BoundedReads(asyncio.BufferedProtocol):
    """Stands between the socket and picows' protocol: one read brings at most ``size`` bytes, and once
    picows' buffer holds no part of a frame, the reads go to the listener's own frame parser.

    Bounded: picows offers its whole read buffer to every read and doubles it whenever a read fills it,
    so after a backlog (a pause, a slow NATS, a replay at full speed) single reads of 1-2 MiB arrive:
    thousands of frames normalized into batch buffers of that size, framed into the publish log, then
    sent. Each stage then streams through megabytes that the previous one pushed out of the CPU's
    caches, and the buffers grow (page faults) to fit the burst. Bounded reads keep one read's frames,
    records and frames-to-send within the L2 cache and the buffers small; the event loop still reads
    up to 32 reads per turn (libuv), so a backlog costs one more read call per 128 KiB, nothing per frame.

    Parsed here: picows makes a ``WSFrame`` object and a listener call per frame (the connector used about
    8% less CPU per message without them, docs/performance.md). The listener's ``feed`` parses a whole
    read in one call, with picows' checks. The switch waits for a read after which picows' buffer is
    empty (``listener.clean``): the handshake's read may leave part of a frame there, which only picows
    can finish. picows keeps the connection's other work: sending, the close handshake we start,
    ``connection_lost`` and ``wait_disconnected``.
    """

    def __init__(self, inner, listener=None, size: int = READ_SIZE):
        self._inner, self._listener, self._size = inner, listener, size
        # the switch happened: a flag, not a swapped method (asyncio's TLS transport keeps the bound
        # methods it was given at set_protocol)
        self.parsing = False
        self._buf = bytearray(2 * size)
        self._kept = 0              # bytes of a partial frame at the front of _buf

    def get_buffer(self, sizehint: int):
        if not self.parsing:
            return self._inner.get_buffer(sizehint)[:self._size]
        if len(self._buf) - self._kept < self._size:      # a partial frame above `size`: room for it
            buf = bytearray(max(2 * len(self._buf), self._kept + self._size))
            buf[:self._kept] = memoryview(self._buf)[:self._kept]
            self._buf = buf
        elif self._kept == 0 and len(self._buf) > 2 * self._size:     # its room is no longer needed
            self._buf = bytearray(2 * self._size)
        return memoryview(self._buf)[self._kept:self._kept + self._size]

    def buffer_updated(self, nbytes: int) -> None:
        lst = self._listener
        if self.parsing:
            try:
                self._kept = lst.feed(self._buf, self._kept + nbytes)
            except Exception as exc:       # picows does the same when on_ws_frame raises: close, keep why
                self._kept = 0
                log.exception("reading a WebSocket frame failed; closing the connection")
                lst.fail(f"{type(exc).__name__}: {exc}")
            return
        if lst is not None:
            lst.clean = False
        self._inner.buffer_updated(nbytes)
        if lst is not None and lst.clean:
            self.parsing = True

    def connection_made(self, transport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class KalshiSession:
    """One connection (shard ``plan.index``) with its subscriptions, reconnecting until ``close()``."""

    def __init__(self, credentials, url: str, plan: ConnectionPlan, sinks: Sequence = (), *,
                 stale_after: float = 15.0, ping_interval: float = 5.0, backoff_initial: float = 0.25,
                 backoff_max: float = 30.0, handshake_timeout: float = 10.0, ca_file: str | None = None,
                 tls_verify: bool = True, command_timeout: float = 10.0, resync_timeout: float = 10.0,
                 healthy_after: float = 5.0, refused_retry_max: float = 0.75, rng=None,
                 on_event: Callable[[StatusEvent], None] | None = None):
        self.credentials = credentials
        self.url = url
        self.plan = plan
        self.shard = str(plan.index)
        self.sinks = list(sinks)
        self.on_event = on_event
        self.handshake_timeout = handshake_timeout
        self.ssl_context = make_ssl_context(url, ca_file, tls_verify)
        self.core = KalshiProtocol(plan.subscriptions, stale_after=stale_after, ping_interval=ping_interval,
                                   backoff_initial=backoff_initial, backoff_max=backoff_max,
                                   refused_retry_max=refused_retry_max, command_timeout=command_timeout,
                                   resync_timeout=resync_timeout, healthy_after=healthy_after, rng=rng)
        self.sequencer = Sequencer()
        self.batch = FrameBatch()
        self.conn: str | None = None
        self.transport = None
        self.listener = None
        self.tick_interval = min(0.5, ping_interval / 2, stale_after / 4)
        self._closing = False
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._unsubscribed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._disconnect_reason: str | None = None
        self._totals: dict[str, int] = dict.fromkeys(_LISTENER_COUNTERS + _SEQUENCER_COUNTERS, 0)
        self._counts_base = _merge_counts([])  # counts() of the batches handed away by swap_batch()
        self._next_delay = 0.0
        self.events_emitted = 0
        self.gap_events = 0           # "gaps" in stats(): every gap event, whatever found it (events.py)
        self.sink_errors = 0
        self._throttles: dict[str, Throttle] = {}   # Log.throttle key -> its Throttle (lines an outage repeats)
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"kalshi-session-{self.shard}")
        return self._task

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; returns once ``close()`` was called."""
        while not self._closing:
            try:
                transport, listener = await asyncio.wait_for(
                    ws_connect(self._make_listener, self.url, ssl_context=self.ssl_context,
                               extra_headers=self.credentials.websocket_headers(),
                               websocket_handshake_timeout=self.handshake_timeout,
                               # picows buffers a whole frame before handing it over, so its limit stays
                               # 1 MiB: a frame above it while picows still parses (the handshake's read,
                               # until BoundedReads switches to listener.feed, which skips such payloads
                               # and counts them invalid) closes the connection with 1009 and the session
                               # reconnects. A higher limit would let a peer make picows hold that much.
                               enable_auto_pong=False, max_frame_size=MAX_MESSAGE_SIZE,
                               logger_name=f"kalshi.{self.shard}",
                               # uvloop's own transports, not aiofastnet's: its socket transport, closed
                               # before its deferred add_reader ran, leaves a reader on its closed fd, and
                               # the next socket given that number can make libuv abort the process
                               # (docs/design.md, "fd reuse")
                               use_aiofastnet=False),
                    self.handshake_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure, status, detail = classify_failure(exc)
                self.last_error = detail
                delay, actions = self.core.on_connect_failed(failure, detail, time.monotonic(), status)
                self._apply(actions)
                await self._sleep(delay)
                continue
            if self._closing:       # close() was called while the handshake was in flight
                transport.disconnect()
                break
            if listener is None:    # picows returns (transport, None) when the peer closed during the handshake
                transport.disconnect()
                self.last_error = "connection closed during the WebSocket handshake"
                delay, actions = self.core.on_connect_failed(Failure.REFUSED, self.last_error, time.monotonic())
                self._apply(actions)
                await self._sleep(delay)
                continue
            try:
                await self._serve(transport)
            except asyncio.CancelledError:
                transport.disconnect(graceful=False)
                raise
            except Exception:      # a bug must cost a reconnect, not the feed
                log.exception("[shard %s] session failure; reconnecting", self.shard)
                transport.disconnect(graceful=False)
                self._next_delay = self.core.backoff.next_delay()
            if self._closing:
                break
            await self._sleep(self._next_delay)

    def _make_listener(self) -> BatchListener:
        """Called by picows once the handshake succeeded: a new connection, a new id."""
        self._fold()
        self.conn = secrets.token_hex(6)
        self.sequencer.reset(self.conn)
        self.listener = BatchListener(self.batch, self.on_batch)
        return self.listener

    async def _serve(self, transport) -> None:
        self.transport = transport
        sock = transport.underlying_transport
        sock.set_protocol(BoundedReads(sock.get_protocol(), self.listener))
        self._disconnect_reason = None
        self._unsubscribed.clear()
        self._apply(self.core.on_connected(self.conn, time.monotonic()))
        self._connected.set()
        ticker = asyncio.get_running_loop().create_task(self._tick_loop(transport))
        failure = Failure.OTHER
        try:
            await transport.wait_disconnected()
        except Exception as exc:      # picows refused a frame, or on_batch raised
            self._disconnect_reason = self._disconnect_reason or f"{type(exc).__name__}: {exc}"
        finally:
            ticker.cancel()
        reason = self._disconnect_reason or (self.listener.close_reason if self.listener else "") \
            or "connection closed by peer"
        self._connected.clear()
        self._subscribed.clear()
        # a lost connection is a gap for everything it carried until the resubscribe (the same events
        # as a subscription the server ended: protocol.subscription_gaps), so none is silent
        gaps = [] if self._closing else self.core.connection_gaps(reason)
        delay, actions = self.core.on_disconnected(reason, time.monotonic(), failure)
        self._next_delay = delay
        self._apply(actions)
        self._apply(gaps)
        self.transport = None

    async def _tick_loop(self, transport) -> None:
        while not transport.is_disconnected:
            await asyncio.sleep(self.tick_interval)
            if transport.is_disconnected:
                break
            lst = self.listener
            self._apply(self.core.on_tick(time.monotonic(), lst.last_frame_at if lst is not None else 0.0))

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less when ``close()`` is called."""
        self._wake.clear()
        if self._closing:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_subscribed(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def close(self, timeout: float = 2.0, gap: str = "") -> None:
        """Unsubscribe, close the socket and stop reconnecting; returns within about ``timeout``. With
        ``gap`` (why capture stops while the run goes on: the runner stopping the feed) the subscriptions'
        gap events are emitted too, as for a lost connection: the data until the next session is missing."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        transport = self.transport
        # taken before the unsubscribe replies clear the subscriptions' sids
        gaps = self.core.connection_gaps(gap, "the feed was stopped") if gap and transport is not None else []
        if transport is not None and not transport.is_disconnected:
            self._apply(self.core.close_commands(time.monotonic()))
            if not self.core.unsubscribed_all:
                try:    # replies in flight still reach the sinks; do not wait long for them
                    await asyncio.wait_for(self._unsubscribed.wait(), min(1.0, timeout / 2))
                except TimeoutError:
                    pass
            self._disconnect_reason = "closed by ssmd-fast"
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            try:
                await asyncio.wait_for(transport.wait_disconnected(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                transport.disconnect(graceful=False)
            except Exception:
                pass
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(task, max(0.05, deadline - time.monotonic()))
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._apply(gaps)       # after the frames still in flight: a gap starts where they end
        self._fold()

    # ------------------------------------------------------------------ the hot path

    def on_batch(self, batch) -> None:
        """One socket read: sequence, hand control frames to the core, then to the sinks (never awaits)."""
        seq = self.sequencer
        pending = seq.process(batch)        # non-zero: events, snapshot requests or resynced sids to take
        if seq.controls:                    # first: a resync request needs the sid a `subscribed` just bound
            now = time.monotonic()
            core = self.core
            for i in seq.controls:
                self._apply(core.on_control(batch.type_name(i), batch.control(i), now))
            if core.subscribed and not self._subscribed.is_set():
                self._subscribed.set()
            if core.unsubscribed_all:
                self._unsubscribed.set()
        reconnect = None
        if pending:
            reconnect = seq.tracker.reconnect       # set by a seq regression (rare: only with events)
            events, requests, resynced = seq.take()
            for ev in events:
                self._emit(ev)
            if requests or resynced:
                now = time.monotonic()
                for sid in resynced:
                    self.core.resync_done(sid)
                for sid, markets in requests:
                    self._apply(self.core.request_snapshot(sid, markets, now))
        conn = self.conn
        for sink in self.sinks:
            try:
                sink.submit(batch, conn)
            except Exception:      # one broken sink must not take the feed down for the others
                self.sink_errors += 1
                log.exception("[shard %s] sink %r failed on a batch", self.shard, sink)
        if reconnect:              # only a new connection gives the sid fresh message ids and books
            seq.tracker.reconnect = None
            self._apply([Log(logging.WARNING, f"{reconnect}; reconnecting"), Reconnect(reconnect)])

    def swap_batch(self):
        """Hand the listener's current batch away (the caller owns it) and give it a fresh one."""
        batch = self.batch
        self._counts_base = _merge_counts([self._counts_base, batch.counts()])
        self.batch = FrameBatch()
        if self.listener is not None:
            self.listener.batch = self.batch
        return batch

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: Iterable) -> None:
        for a in actions:
            if isinstance(a, Send):
                if self.transport is not None and not self.transport.is_disconnected:
                    self.transport.send(WSMsgType.TEXT, a.text.encode("utf-8"))
            elif isinstance(a, Ping):
                if self.transport is not None and not self.transport.is_disconnected:
                    self.transport.send_ping(b"ssmd")
            elif isinstance(a, Emit):
                last_seq = a.last_seq
                if a.kind == "gap" and last_seq is None and a.sid is not None:
                    # the core sees no data frames: the last seq received on the sid is the sequencer's
                    last_seq = self.sequencer.last_seq(a.sid)
                self._emit(StatusEvent(a.kind, self.conn or "", time.time_ns(), market=a.market, sid=a.sid,
                                       last_seq=last_seq, received_seq=a.received_seq, detail=a.detail))
            elif isinstance(a, Log):
                # a connection id only while that connection is up: between connections (connect
                # failures) the last one is dead and naming it would mislead
                where = f"shard {self.shard} conn {self.conn}" if self.transport is not None \
                    else f"shard {self.shard}"
                if a.throttle is not None:     # the key, not the text, decides what is a repeat
                    throttle = self._throttles.get(a.throttle)
                    if throttle is None:
                        throttle = self._throttles[a.throttle] = Throttle(log)
                    throttle.log(a.level, f"[{where}] %s", a.message)
                else:
                    log.log(a.level, "[%s] %s", where, a.message)
            elif isinstance(a, Reconnect):
                self._disconnect_reason = a.reason
                if self.transport is not None and not self.transport.is_disconnected:
                    self.transport.send_close(WSCloseCode.GOING_AWAY)
                    self.transport.disconnect(graceful=False)

    def _emit(self, event: StatusEvent) -> None:
        self.events_emitted += 1
        if event.kind == "gap":
            self.gap_events += 1
        for sink in self.sinks:
            try:
                sink.submit_event(event)
            except Exception:
                self.sink_errors += 1
                log.exception("[shard %s] sink %r failed on an event", self.shard, sink)
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------------ stats

    def _fold(self) -> None:
        """Add the finished connection's counters to the totals (listener and sequencer are per connection)."""
        lst, seq = self.listener, self.sequencer
        if lst is not None:
            for name in _LISTENER_COUNTERS:
                self._totals[name] += getattr(lst, name)
            self.listener = None
        for name in _SEQUENCER_COUNTERS:
            self._totals[name] += getattr(seq, name)
        seq.reset(self.conn or "")

    def stats(self) -> dict:
        lst, seq, core = self.listener, self.sequencer, self.core
        out: dict = {name: self._totals[name] + (getattr(lst, name) if lst is not None else 0)
                     for name in _LISTENER_COUNTERS}
        for name in _SEQUENCER_COUNTERS:
            out[name] = self._totals[name] + getattr(seq, name)
        # "gaps": the gap events emitted (one definition for the stats line, the report and the metric);
        # "seq_gaps": the seq gaps the sequencer detected (each is one gap event per affected market)
        out["seq_gaps"] = out["gaps"]
        out["gaps"] = self.gap_events
        counts = _merge_counts([self._counts_base, self.batch.counts()])
        now = time.monotonic()
        last = lst.last_frame_at if lst is not None and core.connected else 0.0
        out.update({
            "shard": self.shard,
            "conn": self.conn,
            "connected": core.connected,
            "subscribed": core.subscribed,
            "last_frame_age": (now - last) if last else None,
            "records": counts["records"],
            "control": counts["control"],
            "other": counts["other"],
            "invalid": counts["invalid"],
            "reconnects": core.reconnects,
            "auth_failures": core.auth_failures,
            "stale": core.stale_count,
            "renewals": core.renewals,
            "events": self.events_emitted,
            "sink_errors": self.sink_errors,
            "last_error": self.last_error,
        })
        return out

    def metric_samples(self) -> list:
        """Samples for ``MetricsCollector.add_source`` (families of ssmd_fast.metrics)."""
        from ssmd_fast.metrics import Sample

        st = self.stats()
        shard = {"shard": self.shard}
        out = [Sample(name, float(st[key]), shard) for name, key in (
            ("frames", "frames"), ("bytes", "bytes"), ("binary_frames", "binary_dropped"),
            ("duplicates", "duplicates"), ("gaps", "gaps"), ("seq_gaps", "seq_gaps"),
            ("suppressed", "suppressed"),
            ("resyncs", "resyncs"), ("reconnects", "reconnects"), ("stale", "stale"),
            ("auth_failures", "auth_failures"), ("connected", "connected"), ("subscribed", "subscribed"))]
        if st["last_frame_age"] is not None:
            out.append(Sample("last_frame_age_seconds", st["last_frame_age"], shard))
        for family, key, label in (("records", "records", "type"), ("control", "control", "type"),
                                   ("other", "other", "type"), ("invalid", "invalid", "reason")):
            out += [Sample(family, float(n), {"shard": self.shard, label: name}) for name, n in st[key].items()]
        return out


def _merge_counts(parts: list[dict]) -> dict:
    out: dict = {"frames": 0, "bytes": 0, "records": {}, "control": {}, "other": {}, "invalid": {}}
    for c in parts:
        out["frames"] += c["frames"]
        out["bytes"] += c["bytes"]
        for key in ("records", "control", "other", "invalid"):
            d = out[key]
            for name, n in c[key].items():
                d[name] = d.get(name, 0) + n
    return out
