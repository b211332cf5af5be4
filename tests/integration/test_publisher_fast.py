"""The publisher's JetStream fast-ingest path against a real nats-server: batch rolls, a lost flow ack
(ping, then resend into a new batch), a reconnect mid-batch, rejections and parked messages, and the
fall back to per-message acks. Each checks the stream read back: stored = published, exactly once."""

from __future__ import annotations

import asyncio
import re

import nats
import pytest
import uvloop
from test_publisher import (
    CONN,
    STREAM,
    batches,
    check_stream,
    expected,
    full_stream,
    make_cfg,
    session,
    wait_for,
)

from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks import stream as stream_mod
from ssmd_fast.sinks.nats import JetStreamPublisher
from ssmd_fast.sinks.stream_read import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FLOW_ACK = re.compile(rb'MSG (_INBOX\.\S+b([0-9a-f]{8})\.\S+) (\d+) (\d+)\r\n\{"type":"ack"[^\r]*\}\r\n')


class LossyParser:
    """Wraps the publisher's ack parser: answers for which ``drop(batch, payload)`` is true never reach it
    (a lost ack: nothing else about the connection changes)."""

    def __init__(self, inner, drop):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_drop", drop)
        object.__setattr__(self, "dropped", 0)

    def feed(self, data, now_ns=0):
        def cut(m):
            if self._drop(int(m[2], 16), m[0]):
                object.__setattr__(self, "dropped", self.dropped + 1)
                return b""
            return m[0]
        return self._inner.feed(FLOW_ACK.sub(cut, bytes(data)), now_ns)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)


async def publish(pub, bl, pace: float = 0.0) -> None:
    for b in bl:
        pub.submit(b, CONN)
        await asyncio.sleep(pace)


async def settled(pub, timeout: float = 20) -> None:
    await wait_for(lambda: pub.ring.head == pub.ring.tail and not len(pub.parked), timeout, "everything acked")


async def run_through(pub, bl, pace: float = 0.0):
    """Start ``pub``, publish ``bl`` once connected, wait until all is acked, close: the close's report."""
    await pub.start()
    assert await pub.wait_connected(10)
    await publish(pub, bl, pace)
    await settled(pub)
    return await pub.close(10)


def test_batches_roll_at_their_length_and_store_everything_once(tmp_path):
    bl = batches(session(3000), size=25)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)), batch_length=500)
            rep = await run_through(pub, bl, 0.001)
            s = rep.stats
            assert s["batching"] == "fast-ingest" and rep.lost == 0 and s["acked"] == len(want)
            assert s["batches"] >= len(want) // 500 and s["commits"] >= s["batches"] - 1
            assert s["resent"] == 0 and s["direct_bytes"] > 0          # written from the ring's memory
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


def test_a_lost_flow_ack_is_asked_for_again_with_a_ping(tmp_path):
    bl = batches(session(1000), size=50)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=1.0))
            lost = []

            def drop(bno, msg):   # the first flow ack that would settle the last messages of the burst
                if not lost and b'"seq":%d,' % (len(want) // pub.ring.flow * pub.ring.flow) in msg:
                    lost.append(msg)
                    return True
                return False
            pub.parser = LossyParser(pub.parser, drop)
            rep = await run_through(pub, bl)
            s = rep.stats
            assert pub.parser.dropped == 1 and s["pings"] >= 1      # the ping brought the ack back ...
            assert s["resent"] == 0 and s["acked"] == len(want)     # ... before anything expired
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


def test_unanswered_batch_is_resent_into_a_new_batch_and_deduplicated(tmp_path):
    bl = batches(session(1000), size=50)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=0.5))
            # batch 1's flow acks after its start's never arrive (nor do the answers to its pings)
            pub.parser = LossyParser(pub.parser, lambda bno, msg: bno == 1 and b'"seq":0,' not in msg)
            rep = await run_through(pub, bl)
            s = rep.stats
            assert pub.parser.dropped > 0 and s["resent"] > 0 and s["watchdog_reconnects"] == 0
            assert s["acked"] == len(want) and rep.lost == 0
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)   # the resends were dropped
        uvloop.run(main())


def test_a_connection_lost_mid_batch_loses_and_duplicates_nothing(tmp_path):
    bl = batches(session(4000), size=20)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            assert await pub.wait_connected(10)
            half = len(bl) // 2
            await publish(pub, bl[:half - 1], 0.002)
            pub.submit(bl[half - 1], CONN)   # written at once; no ack can be read before the abort below
            assert pub.ring.inflight > 0 and pub.ring.batches()   # unacked messages in a live batch
            pub.conn.transport.abort()                 # mid-batch: its unacked messages go again
            await publish(pub, bl[half:], 0.002)
            assert await pub.wait_connected(10)
            await settled(pub)
            rep = await pub.close(10)
            s = rep.stats
            assert s["disconnects"] == 1 and s["connects"] == 2 and s["batching"] == "fast-ingest"
            assert rep.lost == 0 and s["acked"] == len(want)
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


def test_rejected_messages_in_a_batch_are_dead_lettered_and_the_batch_goes_on(tmp_path):
    bl = batches(session(200))
    with NatsServer() as srv:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), provision="verify", publish=("normalized",))
            nc = await full_stream(srv.url, cfg, 50)
            pub = JetStreamPublisher(cfg)
            await pub.start()
            await publish(pub, bl)
            rep = await pub.close(10)
            n, s = rep.stats["published"], rep.stats
            assert s["batching"] == "fast-ingest" and s["batches"] == 1 and s["resent"] == 0
            assert s["acked"] == 50 and s["rejected"] == {"stream_full": n - 50} == {"stream_full": s["dead_lettered"]}
            from ssmd_fast.sinks.dead_reasons import read_reasons
            (kind,) = read_reasons(str(tmp_path / "dead-letter")).kinds.items()
            assert kind[0] == "stream_full" and kind[1]["count"] == n - 50 and "maximum messages" in kind[1]["why"]
            assert (await nc.jetstream().stream_info(STREAM)).state.messages == 50
            await nc.close()
        uvloop.run(main())


def test_no_responders_are_parked_so_the_rest_flows_then_dead_lettered(tmp_path):
    """The stream stops storing the normalized subjects mid-run: those messages leave the window at once."""
    bl = batches(session(1500), size=25)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=0.3, retry_horizon=1.5))
            await pub.start()
            assert await pub.wait_connected(10)
            await publish(pub, bl[:10])
            await settled(pub)
            nc = await nats.connect(srv.url)
            info = await nc.jetstream().stream_info(STREAM)
            info.config.subjects = ["t.kalshi.json.>"]
            await nc.jetstream().update_stream(info.config)
            await nc.close()
            await publish(pub, bl[10:], 0.001)
            await wait_for(lambda: pub.ring.head == pub.ring.tail, 5, "the json messages stored")
            assert len(pub.parked) > 0                        # the norm ones wait outside the window
            await wait_for(lambda: not len(pub.parked), 10, "dead-lettering at the retry horizon")
            rep = await pub.close(5)
            s = rep.stats
            assert s["rejected"] == {"no_stream": s["dead_lettered"]} and s["dead_lettered"] > 0 and rep.lost == 0
            stored = await read_stream(srv.url, STREAM, timeout=20)
            assert len(stored) + s["dead_lettered"] == s["published"] and len({m.msg_id for m in stored}) == len(stored)
        uvloop.run(main())


@pytest.mark.parametrize("how", ["config", "verify", "mid-run"])
def test_per_message_acks_when_batches_are_off_unsupported_or_turned_off(tmp_path, how):
    bl = batches(session(800), size=20)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), batching=how != "config",
                           provision="verify" if how == "verify" else "create")
            nc = await nats.connect(srv.url)
            if how == "verify":   # a stream made elsewhere without allow_batched
                await nc.jetstream().add_stream(stream_mod.wanted_config(cfg, batched=False))
            pub = JetStreamPublisher(cfg)
            await pub.start()
            assert await pub.wait_connected(10)
            await publish(pub, bl[:len(bl) // 2], 0.002)
            if how == "mid-run":  # someone turns batches off on the stream
                info = await nc.jetstream().stream_info(STREAM)
                info.config.allow_batched = False
                await nc.jetstream().update_stream(info.config)
            await publish(pub, bl[len(bl) // 2:], 0.002)
            await settled(pub)
            rep = await pub.close(10)
            await nc.close()
            s = rep.stats
            assert s["batching"].startswith("per-message") and rep.lost == 0 and s["acked"] == len(want)
            assert (s["batches"] > 0) == (how == "mid-run")
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


def test_the_window_follows_the_ack_rate_from_window_min_up_to_window(tmp_path):
    """A backlog far beyond window_min, submitted at once: after a sample of the server's ack rate the window
    grows, more messages go unacked at once than window_min allows, never more than transport.window, and
    everything is stored once without a resend (FlightWindow)."""
    bl = batches(session(30000), size=200)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), window_min=500, window=6000, ack_timeout=2.0))
            await pub.start()
            assert await pub.wait_connected(10)
            for b in bl:
                pub.submit(b, CONN)
            peak, sizes = 0, {pub.window.size}
            for _ in range(20_000):                       # bounded: ~1 ms a turn
                if pub.ring.head == pub.ring.tail:
                    break
                peak = max(peak, pub.ring.inflight)
                sizes.add(pub.window.size)
                await asyncio.sleep(0.001)
            rep = await pub.close(10)
            assert max(sizes) == 6000, sizes              # from 500 (its start) to the cap
            assert 500 < peak <= 6000
            assert rep.lost == 0 and rep.stats["resent"] == 0 and rep.written == len(want)
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())
