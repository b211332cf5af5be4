"""The publisher when NATS goes away: kill -9 and restart, outages longer than the memory queue,
shutdown during an outage, a stalled server. Each prints sent / stored / lost / duplicated (run with -s)."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop
from test_publisher import CONN, STREAM, batches, check_stream, expected, make_cfg, session, wait_for

from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks.nats import JetStreamPublisher
from ssmd_fast.sinks.stream_read import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def figures(name: str, rep, stored, want) -> None:
    ids = [m.msg_id for m in stored]
    s = rep.stats
    print(f"\n[{name}] sent {len(want)}, stored {len(ids)}, lost {len(set(want) - set(ids))}, "
          f"dup in stream {len(ids) - len(set(ids))}, resent {s['resent']}, dup-acks {s['duplicates']}, "
          f"spilled {s['spilled']}, replayed {s['replayed']}, reconnects {s['connects'] - 1}, "
          f"watchdog {s['watchdog_reconnects']}")


async def feed(pub, bl, pace: float, during=None, at: int = -1) -> None:
    """Submit the batches ``pace`` seconds apart; run ``during()`` (blocking, in a thread) at batch ``at``."""
    loop = asyncio.get_running_loop()
    job = None
    for k, b in enumerate(bl):
        if k == at:
            job = loop.run_in_executor(None, during)
        pub.submit(b, CONN)
        await asyncio.sleep(pace)
    if job is not None:
        await job


def test_kill9_mid_stream_and_restart_on_the_same_store(tmp_path):
    bl = batches(session(12000), size=20)     # ~600 socket reads, ~24k messages (raw + normalized)
    want = expected(bl)
    srv = NatsServer().start()
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=0.5))
            await pub.start()
            assert await pub.wait_connected(10)
            await feed(pub, bl, 0.004, during=lambda: srv.restart(down_for=1.0), at=len(bl) // 3)
            assert await pub.wait_connected(15)
            await wait_for(lambda: pub.ring.head == pub.ring.tail and not pub.spill.pending_records, 30,
                           "everything acked after the restart")
            rep = await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            figures("kill -9, 1 s down", rep, stored, want)
            check_stream(stored, want)
            assert rep.lost == 0 and rep.stats["disconnects"] >= 1
        uvloop.run(main())
    finally:
        srv.close()


def test_outage_longer_than_the_memory_queue_spills_and_replays_in_order(tmp_path):
    bl = batches(session(6000), size=20)
    want = expected(bl)
    srv = NatsServer().start()
    try:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), memory_queue_bytes=64 * 1024, ack_timeout=0.3)
            events = []
            pub = JetStreamPublisher(cfg, on_event=events.append)
            await pub.start()
            assert await pub.wait_connected(10)
            first = len(bl) // 4
            await feed(pub, bl[:first], 0.002)
            await asyncio.get_running_loop().run_in_executor(None, srv.kill)
            await feed(pub, bl[first:], 0.001)  # NATS away: the memory queue overflows into the spill
            s = pub.stats()
            assert s["store"] == "spill" and s["spilled"] > 0 and s["spill_pending"] > 0
            assert [e.kind for e in events] == ["spill"]
            await asyncio.get_running_loop().run_in_executor(None, srv.start)
            assert await pub.wait_connected(15)
            await wait_for(lambda: pub.store == "memory" and pub.ring.head == pub.ring.tail, 30, "replay")
            rep = await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            spill_events = [m for m in stored if m.subject == "t.kalshi.events.spill"]
            assert len(spill_events) == 1 and b'"kind":"spill"' in spill_events[0].data
            stored = [m for m in stored if m.subject != "t.kalshi.events.spill"]
            figures("outage > memory queue", rep, stored, want)
            check_stream(stored, want)
            data = [m for m in stored if m.subject.startswith("t.kalshi.norm.book_delta.")]
            by_sid: dict[str, list[int]] = {}
            for m in data:  # per book (sid), deltas reached the stream in seq order: replay kept the order
                conn_sid, seq = m.msg_id.rsplit(":", 3)[1], int(m.msg_id.rsplit(":", 3)[2])
                by_sid.setdefault(conn_sid, []).append(seq)
            assert all(v == sorted(v) for v in by_sid.values())
            assert rep.lost == 0 and rep.stats["replayed"] > 0
        uvloop.run(main())
    finally:
        srv.close()


def test_close_during_an_outage_spills_and_the_next_start_replays(tmp_path):
    bl = batches(session(1500), size=25)
    want = expected(bl)
    srv = NatsServer().start()
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            assert await pub.wait_connected(10)
            await asyncio.get_running_loop().run_in_executor(None, srv.kill)
            await feed(pub, bl, 0.0)
            t0 = time.monotonic()
            rep = await pub.close(5)
            assert time.monotonic() - t0 < 2.5  # no waiting for a server that is gone
            assert rep.lost == 0 and rep.stats["spilled"] == len(want) and rep.written == 0
            assert rep.stats["spill_pending"] == len(want)      # what the next start replays (it said 0)
            await asyncio.get_running_loop().run_in_executor(None, srv.start)
            again = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))  # a restarted process
            await again.start()
            assert again.store == "spill"
            await wait_for(lambda: again.store == "memory" and again.ring.head == again.ring.tail, 20, "replay")
            rep2 = await again.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            figures("close during outage, restart", rep2, stored, want)
            check_stream(stored, want)
            assert rep2.stats["replayed"] == len(want)
            # the previous run's records are acked by this one, which published none itself: said as such
            assert rep.stats["carried_over"] == 0 and rep2.stats["published"] == 0
            assert rep2.stats["carried_over"] == rep2.stats["acked"] == len(want)
        uvloop.run(main())
    finally:
        srv.close()


def test_a_replay_cut_off_mid_way_loses_nothing_and_stores_each_record_once(tmp_path, monkeypatch):
    # The replay keeps two chunks in the ring (one in flight, the next read ahead). The server stalls
    # mid-replay past retry_horizon: the publisher drops what the ring held of the spill (still in the
    # file) and reads it again from the cursor once the server answers.
    from ssmd_fast.sinks import spill_store
    from ssmd_fast.sinks.spill import SpillFile

    monkeypatch.setattr(spill_store, "REPLAY_CHUNK", 500)
    want = expected(batches(session(15000), size=20))
    with SpillFile(tmp_path, max_bytes=2**30) as sp:
        sp.append_many((s.encode(), i.encode(), p) for i, (s, p) in want.items())
    srv = NatsServer().start()
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=0.25, retry_horizon=0.8))
            dropped_ahead = []
            enter_spill = pub._enter_spill

            def spy(why):   # what the spill had read ahead when the ring's spill messages were dropped
                dropped_ahead.append(pub.spill.read_ahead)
                enter_spill(why)
            pub._enter_spill = spy
            await pub.start()
            await wait_for(lambda: pub.stats()["replayed"] >= 3000, 20, "the replay under way")
            srv.pause()
            try:
                await wait_for(lambda: dropped_ahead, 10, "the retry horizon")
            finally:
                srv.resume()
            await wait_for(lambda: not pub.spill.pending_records and pub.ring.head == pub.ring.tail, 30,
                           "the replay after the stall")
            rep = await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            figures("replay cut off", rep, stored, want)
            check_stream(stored, want)
            assert [m.msg_id for m in stored] == list(want)       # in the spill's order
            assert max(dropped_ahead) > 0 and rep.lost == 0
        uvloop.run(main())
    finally:
        srv.close()


def test_a_stalled_server_is_detected_by_the_ack_watchdog(tmp_path):
    bl = batches(session(3000), size=20)
    want = expected(bl)
    srv = NatsServer().start()
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), ack_timeout=0.25))
            await pub.start()
            assert await pub.wait_connected(10)
            await feed(pub, bl[:50], 0.002)
            srv.pause()  # no FIN, no RST: only missing acks tell
            t0 = time.monotonic()
            try:
                await feed(pub, bl[50:100], 0.002)
                await wait_for(lambda: pub.stats()["disconnects"] >= 1, 5, "watchdog")
                detected = time.monotonic() - t0
            finally:
                srv.resume()
            await feed(pub, bl[100:], 0.001)
            await wait_for(lambda: pub.ring.head == pub.ring.tail and pub.store == "memory", 20, "recovery")
            rep = await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            figures(f"stalled server, detected in {detected:.2f} s", rep, stored, want)
            check_stream(stored, want)
            assert detected < 2.0
        uvloop.run(main())
    finally:
        srv.close()


def test_past_the_spill_cap_the_feed_is_stopped_on_purpose_and_nothing_is_dropped_silently(tmp_path):
    from ssmd_fast.config import SpillConfig
    from ssmd_fast.natsserver import free_port

    bl = batches(session(2000), size=20)
    srv = NatsServer(port=free_port())  # not started yet: NATS is away
    try:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), memory_queue_bytes=16 * 1024,
                           spill=SpillConfig(path=str(tmp_path), max_bytes=128 * 1024))
            events = []
            pub = JetStreamPublisher(cfg, on_event=events.append)
            await pub.start()
            await feed(pub, bl, 0.0)
            s = pub.stats()
            assert s["feed_stop_requested"] and [e.kind for e in events] == ["spill", "feed_stopped"]
            assert s["spilled"] > 0 and s["lost"] > 0 and "spill file is full" in " ".join(s["lost_reasons"])
            assert s["spilled"] + s["lost"] == s["published"]  # every message accounted for
            await asyncio.get_running_loop().run_in_executor(None, srv.start)
            await wait_for(lambda: not pub.feed_stop_requested and pub.store == "memory", 20, "feed may restart")
            rep = await pub.close(5)
            assert rep.lost == s["lost"] and "full" in rep.detail
            stored = await read_stream(srv.url, STREAM, timeout=20)
            assert len(stored) == len({m.msg_id for m in stored}) == s["spilled"]
            print(f"\n[spill cap] published {s['published']}, spilled {s['spilled']}, reported lost {rep.lost} "
                  f"({rep.detail}); after NATS came back: {len(stored)} stored, feed allowed again")
        uvloop.run(main())
    finally:
        srv.close()


def test_a_stream_deleted_while_running_is_created_again_and_nothing_is_dead_lettered(tmp_path, caplog):
    # provision: create owns the stream: deleted under a running connector, its messages found no responders,
    # waited out retry_horizon and went to the dead-letter file, with a warning every 0.1 s meanwhile
    import nats

    bl = batches(session(3000), size=20)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), retry_horizon=20.0))
            await pub.start()
            assert await pub.wait_connected(10)
            third = len(bl) // 3
            for b in bl[:third]:
                pub.submit(b, CONN)
            await wait_for(lambda: pub.ring.head == pub.ring.tail, 20, "the first third acked")
            nc = await nats.connect(srv.url)
            await nc.jetstream().delete_stream(STREAM)
            await nc.close()
            for b in bl[third:]:
                pub.submit(b, CONN)
                await asyncio.sleep(0.002)
            await wait_for(lambda: pub.ring.head == pub.ring.tail and not len(pub.parked), 20,
                           "the rest stored in the stream created again")
            rep = await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=30)
            assert rep.stats["dead_lettered"] == 0 and rep.lost == 0 and rep.stats["parked_total"] > 0
            # what the first third had stored went with the deleted stream; everything after it is there
            after = {mid for mid in want if mid not in {m.msg_id for m in stored}}
            assert {m.msg_id for m in stored} <= set(want)
            first_ids = set(expected(bl[:third]))
            assert after <= first_ids and len(stored) == len(want) - len(after)
        uvloop.run(main())
    assert "created again" in caplog.text


def test_rejections_are_told_once_per_interval_with_an_event(tmp_path, caplog):
    # a full stream rejects every message: one warning and one dead_letter status event per kind per 10 s,
    # each with the count so far (before: a warning at 1, 2, 4, 8, ... rejections, and no event at all)
    from test_publisher import full_stream

    events = []
    bl = batches(session(400))
    with NatsServer() as srv:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), provision="verify", publish=("normalized",))
            nc = await full_stream(srv.url, cfg, 10)
            pub = JetStreamPublisher(cfg, on_event=events.append)
            await pub.start()
            for b in bl:
                pub.submit(b, CONN)
            rep = await pub.close(10)
            await nc.close()
            return rep
        rep = uvloop.run(main())
    n = rep.stats["dead_lettered"]
    assert n > 300
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1 and "NATS rejected messages (stream_full): dead-lettered, 1 so far" in lines[0]
    dead = [e for e in events if e.kind == "dead_letter"]
    assert len(dead) == 1 and dead[0].detail.startswith("stream_full: 1 so far")
