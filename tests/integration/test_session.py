"""KalshiSession against the local exchange over real sockets: the full flow, authentication failures,
pings, a clean close, sharding and the connector API. Every wait is bounded in time."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict

import pytest
from exchange_helpers import wait_until
from session_helpers import CHANNELS, RecordingSink, book_order_ok, exchange_running, live_session, running

from ssmd_fast.config import EnvironmentConfig, ExchangeConfig, OrderbookConfig, TransportConfig
from ssmd_fast.errors import AuthError
from ssmd_fast.events import StatusEvent
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.connector import KalshiConnector, build_sessions
from ssmd_fast.normalize import F_DROP, F_DUPLICATE, F_SUPPRESSED

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def keys():
    private, public = generate_key_pair()
    return KalshiCredentials("test-key", private), public


# ------------------------------------------------------------------ the full flow


def test_full_flow_auth_subscriptions_snapshots_then_deltas_records_out(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 50_000, markets=6, rate=4000, books=3) as (ex, s, sink):
            books = ex.feed.markets[:3]
            await wait_until(lambda: len(sink.of_type("book_delta")) >= 30 and sink.of_type("trade"), 10,
                             "deltas and trades")
            stats, n_seen = s.stats(), len(sink.frames)
        assert ex.handshakes["101"] == 1
        conn = sink.frames[0][0]
        assert len(conn) == 12 and all(f[0] == conn for f in sink.frames)
        subscribed = [f for f in sink.frames if f[1] == "subscribed"]
        assert len(subscribed) == 4
        snaps = sink.of_type("book_snapshot")
        assert sorted(f[5] for f in snaps[:3]) == sorted(books)
        book_order_ok(sink.frames)
        assert {f[5] for f in sink.of_type("book_delta")} <= set(books)
        assert sink.of_type("ticker") and sink.of_type("market_lifecycle", "event_lifecycle")
        assert sink.records > 100 and all(f[4] == 0 for f in sink.frames)
        assert sink.kinds()[0] == "connect" and sink.kinds()[-1] == "disconnect"
        assert "unsubscribed" in [f[1] for f in sink.frames]       # close() unsubscribed first
        assert stats["connected"] and stats["subscribed"] and stats["gaps"] == 0
        assert stats["frames"] == n_seen and stats["batches"] < n_seen
        assert stats["last_frame_age"] is not None and stats["last_frame_age"] < 2.0

    asyncio.run(main())


def test_close_returns_quickly_and_stops_reconnecting(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 20_000, rate=2000, books=2) as (ex, s, sink):
            t0 = time.monotonic()
            await s.close()
            took = time.monotonic() - t0
            await asyncio.sleep(0.3)
        assert took < 1.0
        assert ex.handshakes["101"] == 1 and not ex.conns            # no reconnect after close
        assert [f[1] for f in sink.frames].count("unsubscribed") == 4
        assert s.stats()["connected"] is False

    asyncio.run(main())


def test_close_without_answers_is_bounded(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 20_000, rate=1000, record=False) as (ex, s, _):
            ex.set_faults("freeze-after=1")          # the exchange stops answering anything
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            await s.close(timeout=1.0)
            took = time.monotonic() - t0
        assert took < 1.5

    asyncio.run(main())


# ------------------------------------------------------------------ authentication


def test_bad_signature_401_is_reported_and_backed_off(keys, caplog):
    _, public = keys
    wrong = KalshiCredentials("test-key", generate_key_pair()[0])      # signs with another key

    async def main():
        async with live_session(wrong, public, 5_000, rate=1000, record=False, subscribe=False,
                                session=dict(backoff_initial=0.1, backoff_max=0.8)) as (ex, s, _):
            s.start()
            await asyncio.sleep(3.0)
            attempts = ex.handshakes["401"]
            stats = s.stats()
        return attempts, stats

    with caplog.at_level(logging.ERROR, logger="ssmd_fast.kalshi.session"):
        attempts, stats = asyncio.run(main())
    # equal-jitter delays 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, then 0.4-0.8 each: 5 to 9 tries in 3 s
    assert 4 <= attempts <= 10
    assert stats["auth_failures"] == attempts and not stats["connected"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("authentication rejected (HTTP 401): check the API key id and private key" in m for m in messages)


def test_403_at_handshake_backs_off_then_connects(keys, caplog):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 20_000, rate=1000, faults="reject-handshake=3", record=False,
                                subscribe=False, session=dict(backoff_initial=0.1, backoff_max=2.0)) as (ex, s, _):
            t0 = time.monotonic()
            await running(ex, s, timeout=10)
            took = time.monotonic() - t0
            stats = s.stats()
        return took, stats, dict(ex.handshakes)

    with caplog.at_level(logging.ERROR, logger="ssmd_fast.kalshi.session"):
        took, stats, handshakes = asyncio.run(main())
    assert handshakes == {"403": 3, "101": 1}
    assert stats["auth_failures"] == 3
    assert took >= 0.05 + 0.1 + 0.2          # at least half of each step of the curve 0.1, 0.2, 0.4
    assert any("authentication rejected (HTTP 403)" in r.getMessage() for r in caplog.records)


def test_connector_raises_auth_error(keys):
    _, public = keys
    wrong = KalshiCredentials("test-key", generate_key_pair()[0])

    async def main():
        async with exchange_running(public, 5_000, rate=1000) as ex:
            kc = KalshiConnector(wrong, url=ex.url, channels=CHANNELS)
            try:
                with pytest.raises(AuthError, match=r"authentication rejected \(HTTP 401\)"):
                    await kc.connect(timeout=5)
            finally:
                await kc.close()

    asyncio.run(main())


# ------------------------------------------------------------------ liveness


def test_pings_answered_and_own_pings_ponged(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 5_000, rate=50, ping_interval=0.2, record=False,
                                session=dict(stale_after=1.0, ping_interval=0.25)) as (_, s, _):
            await asyncio.sleep(1.5)
            lst = s.listener
            pings, pongs = lst.pings, lst.pongs
            stats = s.stats()
        assert pings >= 4 and pongs >= 3
        assert stats["reconnects"] == 0 and stats["stale"] == 0

    asyncio.run(main())


def test_quiet_feed_is_not_stale(keys):
    """No data at all for 3 x stale_after: the pongs of our own pings keep the session up."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 0, rate=1, ping_interval=60, record=False,   # no events, no server pings
                                session=dict(stale_after=0.6, ping_interval=0.2)) as (_, s, _):
            await asyncio.sleep(2.0)
            stats = s.stats()
        assert stats["stale"] == 0 and stats["reconnects"] == 0 and stats["pongs"] >= 5

    asyncio.run(main())


# ------------------------------------------------------------------ sharding and the connector


def test_sharding_puts_every_market_on_exactly_one_connection(keys):
    creds, public = keys

    async def main():
        async with exchange_running(public, 20_000, markets=10, rate=2000) as ex:
            books = ex.feed.markets[:7]
            cfg = EnvironmentConfig(
                name="t", feed="kalshi", transport=TransportConfig(type="none"),
                exchange=ExchangeConfig(url=ex.url, stale_after=3.0, ping_interval=0.5, backoff_initial=0.05,
                                        orderbook=OrderbookConfig(markets=tuple(books),
                                                                  max_markets_per_subscription=3)))
            sink = RecordingSink()
            sessions = build_sessions(cfg, creds, [sink])
            try:
                for s in sessions:
                    s.start()
                for s in sessions:
                    await s.wait_subscribed(5)
                await wait_until(lambda: len(sink.of_type("book_snapshot")) >= 7 and len(sink.of_type("ticker")) >= 5,
                                 5, "snapshots and tickers")
            finally:
                await asyncio.gather(*(s.close() for s in sessions))
        assert len(sessions) == 3 and ex.handshakes["101"] == 3
        by_conn: dict[str, set] = defaultdict(set)
        for conn, _typ, _sid, _seq, _fl, market in sink.of_type("book_snapshot", "book_delta"):
            by_conn[conn].add(market)
        assert len(by_conn) == 3
        seen = Counter(m for ms in by_conn.values() for m in ms)
        assert set(seen) == set(books) and set(seen.values()) == {1}
        tickers_by_conn = Counter(f[0] for f in sink.of_type("ticker"))
        assert len(tickers_by_conn) == 1                           # all-market channels on the first only
        assert sessions[0].conn in tickers_by_conn

    asyncio.run(main())


def test_connector_yields_owned_batches_and_events(keys):
    creds, public = keys

    async def main():
        async with exchange_running(public, 20_000, rate=3000) as ex:
            kc = KalshiConnector(creds, url=ex.url, orderbook_markets=ex.feed.markets[:2], stale_after=3.0,
                                 ping_interval=0.5)
            kept, events = [], []
            try:
                await kc.connect(timeout=5)
                async for item in kc.messages():
                    if isinstance(item, StatusEvent):
                        events.append(item)
                    else:
                        kept.append(item)
                    if sum(len(b) for b in kept) >= 500:
                        break
            finally:
                await kc.close()
        raws = [b.raw(i) for b in kept for i in range(len(b))]
        # batches stay valid after later reads: they are the consumer's, none was reset or reused
        assert len(raws) >= 500 and len({id(b) for b in kept}) == len(kept)
        types = Counter(json.loads(r)["type"] for r in raws)
        assert types["orderbook_snapshot"] == 2 and types["ticker"] > 0
        assert [e.kind for e in events][:1] == ["connect"]
        assert kc.stats()["dropped_frames"] == 0

    asyncio.run(main())


def test_connector_slow_consumer_overflow_is_counted_and_reported(keys):
    creds, public = keys

    async def main():
        async with exchange_running(public, 30_000, rate=0) as ex:          # as fast as the socket takes it
            kc = KalshiConnector(creds, url=ex.url, max_batches=4, stale_after=5.0)
            items = []
            try:
                await kc.connect(timeout=5)
                await asyncio.sleep(0.5)                               # consume nothing for a while
                deadline = time.monotonic() + 5
                async for item in kc.messages():
                    items.append(item)
                    if isinstance(item, StatusEvent) and item.kind == "gap" or time.monotonic() > deadline:
                        break
                stats = kc.stats()
            finally:
                await kc.close()
        gaps = [i for i in items if isinstance(i, StatusEvent) and i.kind == "gap"]
        assert stats["dropped_frames"] > 0 and stats["dropped_batches"] > 0
        assert gaps and gaps[0].detail.startswith("consumer overflow:") and "frames dropped" in gaps[0].detail
        assert sum(1 for i in items if not isinstance(i, StatusEvent)) <= 4 + 1

    asyncio.run(main())


def test_flags_mark_what_sinks_skip(keys):
    """Sanity of the contract with the sinks: F_DROP = duplicate | suppressed."""
    assert F_DROP == F_DUPLICATE | F_SUPPRESSED


def test_reads_after_a_backlog_are_bounded(keys):
    """The socket fills while the session's reads are paused (a slow sink, NATS away); once reading again
    each socket read, so each batch, brings at most READ_SIZE bytes of frames, and nothing is lost."""
    from ssmd_fast.kalshi.session import READ_SIZE

    creds, public = keys

    class BatchSizes:
        def __init__(self):
            self.sizes: list[int] = []

        def submit(self, batch, conn) -> None:
            self.sizes.append(sum(len(batch.raw(i)) for i in range(len(batch))))

        def submit_event(self, event) -> None:
            pass

    async def main():
        async with live_session(creds, public, 30_000, markets=6, rate=0, books=2) as (ex, s, sink):
            sizes = BatchSizes()
            s.sinks.append(sizes)
            s.transport.underlying_transport.pause_reading()
            await asyncio.sleep(0.5)                  # the exchange fills the socket buffers meanwhile
            s.transport.underlying_transport.resume_reading()

            def caught_up() -> bool:
                st = ex.stats()
                return st["position"] >= st["events"] and len(sink.frames) == st["frames_total"]

            await wait_until(caught_up, 20, "every frame the exchange sent")
            assert s.transport.underlying_transport.get_protocol().parsing   # the listener parsed the reads
        assert max(sizes.sizes) <= READ_SIZE
        assert sum(x > READ_SIZE // 2 for x in sizes.sizes) >= 5       # the backlog came in full reads
        assert len(sink.frames) > 10_000 and all(f[4] == 0 for f in sink.frames)  # no gap, no duplicate
        assert s.stats()["gaps"] == 0

    asyncio.run(main())


def test_an_error_past_on_batch_costs_a_reconnect_with_its_reason(keys):
    """Once the listener parses the reads itself, an exception out of on_batch is handled as picows
    handles one out of on_ws_frame: the connection is closed (1011), the reason kept, the session
    reconnects, and frames flow on the new connection."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 40_000, markets=4, rate=4000) as (ex, s, sink):
            await wait_until(lambda: s.transport.underlying_transport.get_protocol().parsing, 10, "the switch")
            first, lst = s.conn, s.listener

            def broken(batch):
                lst.on_batch = s.on_batch                # once
                raise RuntimeError("a broken stage")

            lst.on_batch = broken
            await wait_until(lambda: s.conn != first and s.core.subscribed, 15, "the reconnect")
            n = len(sink.frames)
            await wait_until(lambda: len(sink.frames) > n + 100, 10, "frames on the new connection")
        return sink, s

    sink, s = asyncio.run(main())
    gone = [e for e in sink.events if e.kind == "disconnect"]
    assert gone and "RuntimeError: a broken stage" in gone[0].detail, gone
    assert s.stats()["reconnects"] >= 1


def test_a_close_with_a_gap_marks_every_subscription_as_a_lost_connection_would(keys):
    # the runner stops the feed on purpose when the publisher can hold no more (spill cap): the data until
    # the feed restarts is missing, and its gap markers must say so, per market (it gave a feed_stopped
    # event and the disconnects only, and "gaps" stayed 0)
    creds, public = keys

    async def main():
        async with live_session(creds, public, 20_000, rate=2000, books=2) as (ex, s, sink):
            books = ex.feed.markets[:2]
            await wait_until(lambda: len(sink.of_type("book_delta")) >= 5, 10, "deltas")
            await s.close(gap="spill cap reached")
            gaps = [e for e in sink.events if e.kind == "gap"]
            stats = s.stats()
        assert {e.market for e in gaps if e.market is not None} == set(books)
        assert all(e.detail.startswith("the feed was stopped (spill cap reached)") for e in gaps)
        assert any(e.market is None for e in gaps)               # the all-market channels
        assert stats["gaps"] == len(gaps)
        assert [e for e in gaps if e.market in books][0].last_seq is not None
    asyncio.run(main())
