"""Regression tests for the root causes the drills found in the shared mechanism (fast; part of make test).

- A peer that accepts the TCP connection and closes it before the WebSocket upgrade completes (a load
  balancer whose backend is down): picows' ``ws_connect`` then returns ``(transport, None)`` instead of
  raising. The session took that for a connection: connect/disconnect events under the previous
  connection's id, a reconnect counted, and the backoff of a failed *session* (growing to
  ``backoff_max``) instead of the short retry of a refused connect.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.session import KalshiSession
from ssmd_fast.kalshi.shards import plan_connections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


class Events:
    def __init__(self):
        self.events = []

    def submit(self, batch, conn):
        pass

    def submit_event(self, event):
        self.events.append(event)


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_a_peer_closing_during_the_handshake_is_a_failed_connect_not_a_connection(close):
    import socket
    import struct

    private, _ = generate_key_pair()
    accepted = []

    async def main():
        async def handle(reader, writer):
            accepted.append(1)
            await reader.read(100)                 # the upgrade request arrives, then the door shuts
            if close == "rst":
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = Events()
        plan = plan_connections(("ticker",))[0]
        s = KalshiSession(KalshiCredentials("k", private), f"ws://127.0.0.1:{port}/trade-api/ws/v2", plan, [sink],
                          backoff_initial=0.05, backoff_max=30.0, refused_retry_max=0.2)
        s.start()
        await asyncio.sleep(1.5)
        await s.close()
        server.close()
        return s, sink

    s, sink = uvloop.run(main())
    assert len(accepted) >= 4                      # retried at the refused pace (at most 0.2 s apart)
    assert sink.events == [] and s.core.connections == 0 and s.stats()["reconnects"] == 0
    assert "handshake" in (s.last_error or "")


# --------------------------------------------------------------------------- publisher


class FakeConn:
    """Stands in for the data connection in tick(): records writes and the close."""

    writable = True

    def __init__(self):
        self.writes, self.closed = 0, None

    def write(self, data: bytes) -> None:
        self.writes += 1

    def direct_fd(self) -> int:
        return -1   # no socket: every write goes through write()

    def close(self, reason: str) -> None:
        self.closed = reason


def _publisher(tmp_path, clock, **kw):
    from ssmd_fast.config import SpillConfig, TransportConfig
    from ssmd_fast.sinks.nats import JetStreamPublisher

    cfg = TransportConfig(type="nats", url=("nats://127.0.0.1:1",), stream="T", subject_prefix="t.kalshi",
                          spill=SpillConfig(path=str(tmp_path)), **kw)
    return JetStreamPublisher(cfg, clock=clock, provision_stream=False)


def test_the_ack_watchdog_declares_a_silent_link_dead_within_3_s_at_the_default_deadline(tmp_path):
    """F4: with ack_timeout 2 s the watchdog waited 2 x 2 s: a silent partition took 4 s to notice."""
    now = [1000.0]
    pub = _publisher(tmp_path, lambda: now[0])
    conn = pub.conn = FakeConn()
    pub.ring.add_message(b"t.kalshi.x", b"id-1", b"{}")
    pub.ring.open_batch()    # fast-ingest (the default): sends go into a batch
    pub.ring.take(pub.cfg.window, now[0])
    pub._last_progress = now[0]

    async def ticks():       # on a loop, as the publisher always runs (a resend arms the tail timer)
        for t, dead in ((1.0, False), (2.2, False), (2.4, False), (2.6, True)):
            now[0] = 1000.0 + t
            pub.tick()
            assert (conn.closed is not None) == dead, (t, conn.closed)
        pub.fast.reset()

    asyncio.run(ticks())
    assert pub.counters["watchdog_reconnects"] == 1 and pub.cfg.ack_timeout == 2.0


def test_dead_lettering_a_burst_of_rejections_does_not_fsync_per_message(tmp_path):
    """F7: the dead-letter file was fsync-ed per record, in the event loop: 20k rejections of a full
    stream stalled the loop (and the WebSocket reader on it) for 1.6-1.8 s at a time."""
    import time

    async def main():
        pub = _publisher(tmp_path, time.monotonic)
        await pub.start()
        try:
            for k in range(5000):     # one rejection per ack error, as they arrive
                pub._dead_letter([(b"t.kalshi.json.x.A", b"id-%d" % k, b"{}")], "stream_full")
            fsyncs = pub.dead.fsyncs
        finally:
            await pub.close(0.1)
        return pub, fsyncs

    pub, fsyncs = uvloop.run(main())
    assert pub.counters["dead_lettered"] == 5000
    assert fsyncs <= 5000 // 1000 + 50, f"{fsyncs} fsyncs for 5000 dead-lettered messages"


def test_a_burst_of_rejections_is_logged_in_summary_not_per_message(tmp_path, caplog):
    """F7: one warning per rejected message flooded the log (and the loop) when a stream filled up."""
    import logging
    import time

    async def main():
        pub = _publisher(tmp_path, time.monotonic, batching=False)   # per-message acks: all 3000 go out at once
        await pub.start()
        try:
            first = pub.ring.tail
            for k in range(3000):
                pub.ring.add_message(b"t.kalshi.json.x.A", b"id-%d" % k, b"{}")
            pub.ring.take(4096, time.monotonic())
            with caplog.at_level(logging.WARNING, logger="ssmd_fast.sinks.nats"):
                for pseq in range(first, first + 3000):
                    pub._reject(pseq, "stream_full")
        finally:
            await pub.close(0.1)
        return pub

    pub = uvloop.run(main())
    warnings = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert pub.rejected == {"stream_full": 3000} and pub.counters["dead_lettered"] == 3000
    # one line per kind per 10 s (logs.Throttle), saying how many so far (the next one says the rest)
    assert len(warnings) == 1 and "(stream_full): dead-lettered, 1 so far" in warnings[0].getMessage()
