"""JetStreamPublisher against a real nats-server: contents, ids, dedupe, rejections, provisioning, start-up."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
import uvloop
from nats.js import api

from ssmd_fast import normalize
from ssmd_fast.config import SpillConfig, TransportConfig
from ssmd_fast.events import StatusEvent
from ssmd_fast.kalshi.generator import generate_session
from ssmd_fast.natsserver import NatsServer, free_port
from ssmd_fast.sinks import stream as stream_mod
from ssmd_fast.sinks.nats import JetStreamPublisher
from ssmd_fast.sinks.spill import encode_record
from ssmd_fast.sinks.stream_read import read_stream
from ssmd_fast.sinks.subjects import SubjectEncoder, takes_counter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PREFIX = "t.kalshi"
STREAM = "T_KALSHI"
CONN = "c0ffee000001"


def make_cfg(url: str, spill_path: str, **kw) -> TransportConfig:
    base = dict(type="nats", url=(url,), stream=STREAM, subject_prefix=PREFIX, duplicate_window=120.0,
                ack_timeout=0.5, retry_horizon=30.0, spill=SpillConfig(path=spill_path, fsync_every=100))
    base.update(kw)
    return TransportConfig(**base)


def batches(frames: list[bytes], size: int = 40) -> list:
    out = []
    for k in range(0, len(frames), size):
        b = normalize.FrameBatch()
        for f in frames[k:k + size]:
            b.add(f)
        out.append(b)
    return out


def expected(batch_list, conn: str = CONN, forms=("raw", "normalized")) -> dict[str, tuple[str, bytes]]:
    """msg id -> (subject, payload) per docs/design.md, computed from the batch API and subjects.py."""
    enc, out, counter, c = SubjectEncoder(PREFIX), {}, 0, conn.encode()
    for batch in batch_list:
        for i in range(len(batch)):
            if batch.flags(i) & normalize.F_DUPLICATE:       # not published; a withheld delta: raw only
                continue
            o, kind, seq = batch.outcome(i), batch.kind(i), batch.seq(i)
            if o == normalize.OUT_RECORD:
                tid = batch.trade_id(i) if kind == normalize.K_TRADE else None
                if takes_counter(kind, tid, batch.sid(i), seq):
                    counter += 1
                if "raw" in forms:
                    mid = enc.frame_msg_id(c, kind, tid, batch.sid(i), seq, counter, b"raw")
                    out[mid.decode()] = (enc.raw_subject(kind, batch.key(i)).decode(), batch.raw(i))
                if "normalized" in forms and not batch.flags(i) & normalize.F_SUPPRESSED:
                    mid = enc.frame_msg_id(c, kind, tid, batch.sid(i), seq, counter, b"norm")
                    out[mid.decode()] = (enc.norm_subject(kind, batch.key(i)).decode(), batch.record(i))
            elif o == normalize.OUT_OTHER and "raw" in forms:
                if takes_counter(-1, None, batch.sid(i), seq):
                    counter += 1
                mid = enc.frame_msg_id(c, -1, None, batch.sid(i), seq, counter, b"raw")
                out[mid.decode()] = (enc.other_subject(batch.key(i)).decode(), batch.raw(i))
    return out


def check_stream(stored, want: dict) -> None:
    """Stored = expected: same ids, no duplicates, subject and bytes exact."""
    ids = [m.msg_id for m in stored]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates in the stream"
    missing = set(want) - set(ids)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:3]}"
    assert len(ids) == len(want)
    for m in stored:
        assert (m.subject, m.data) == want[m.msg_id]


async def wait_for(cond, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


async def full_stream(url: str, cfg, max_msgs: int):
    """The connector's stream made beforehand with ``max_msgs`` and discard new (``provision: verify`` keeps
    it); the NATS connection, to read it back."""
    nc = await nats.connect(url)
    want = stream_mod.wanted_config(cfg)
    want.max_msgs, want.discard = max_msgs, api.DiscardPolicy.NEW
    await nc.jetstream().add_stream(want)
    return nc


def session(n: int, seed: int = 1) -> list[bytes]:
    return list(generate_session(n, seed=seed, markets=12))


# ---------------------------------------------------------------------- contents and ids


def test_stored_messages_equal_published(tmp_path):
    bl = batches(session(3000))
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            assert await pub.wait_connected(10)
            for b in bl:
                pub.submit(b, CONN)
                await asyncio.sleep(0)
            rep = await pub.close(10)
            assert rep.lost == 0 and rep.written == len(want) == rep.stats["published"]
            assert rep.stats["spilled"] == 0 and rep.stats["duplicates"] == 0
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


@pytest.mark.parametrize("forms", [("raw",), ("normalized",)])
def test_publish_selects_raw_or_normalized(tmp_path, forms):
    bl = batches(session(300))
    want = expected(bl, forms=forms)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), publish=forms))
            await pub.start()
            for b in bl:
                pub.submit(b, CONN)
            await pub.close(10)
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


@pytest.mark.parametrize("batching", [False, True])
def test_resend_of_stored_ids_is_dropped_by_the_server_and_counted(tmp_path, batching):
    bl = batches(session(400))
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), batching=batching))
            await pub.start()
            for b in bl:
                pub.submit(b, CONN)
            await wait_for(lambda: pub.ring.acked_count == len(want), 10, "first acks")
            pub2 = JetStreamPublisher(make_cfg(srv.url, str(tmp_path / "second"), batching=batching))  # same ids
            await pub2.start()
            for b in bl:
                pub2.submit(b, CONN)
            rep2 = await pub2.close(10)
            await pub.close(5)
            assert rep2.stats["batching"].startswith("fast-ingest" if batching else "per-message")
            # per-message acks flag each duplicate; a batch's flow acks do not say which messages were
            assert rep2.stats["acked"] == len(want) and rep2.stats["duplicates"] == (0 if batching else len(want))
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())


def test_dotted_and_odd_keys_give_valid_single_token_subjects(tmp_path):
    frames = [
        b'{"type":"trade","sid":1,"seq":1,"msg":{"trade_id":"t-1","market_ticker":"KXBTCD-26MAR1213-T69499.99",'
        b'"yes_price_dollars":"0.5","count_fp":"1","taker_side":"yes","ts":1}}',
        b'{"type":"trade","sid":1,"seq":2,"msg":{"trade_id":"t\\r\\n2","market_ticker":"A.B.C",'
        b'"yes_price_dollars":"0.5","count_fp":"1","taker_side":"no","ts":2}}',
        b'{"type":"x y","sid":2,"seq":1}', b'{"type":"*","seq":3}', b'{"type":">"}', b'{"type":""}',
        '{"type":"Zürich.x"}'.encode(), b'{"type":"a\\r\\nPUB x 1"}', b'{"type":"' + b"L" * 3000 + b'"}',
    ]
    bl = batches(frames)
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            pub.submit(bl[0], CONN)
            rep = await pub.close(10)
            assert rep.stats["rejected"] == {} and rep.lost == 0
            stored = await read_stream(srv.url, STREAM, timeout=20)
            check_stream(stored, want)
            for m in stored:
                toks = m.subject.split(".")
                assert len(toks) == 5 and all(toks), m.subject
                assert not any(t in ("*", ">") for t in toks) and m.subject.isascii()
                assert not any(c.isspace() for c in m.subject)
            assert "kalshi:trade:t%0D%0A2:raw" in {m.msg_id for m in stored}
        uvloop.run(main())


def test_status_events_are_published_with_per_connection_ids(tmp_path):
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            pub.submit_event(StatusEvent("gap", "aaaaaaaaaaaa", sid=3, last_seq=5, received_seq=9))
            pub.submit_event(StatusEvent("stale", "aaaaaaaaaaaa"))
            pub.submit_event(StatusEvent("connect", "bbbbbbbbbbbb"))
            await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=20)
            assert [(m.subject, m.msg_id) for m in stored] == [
                ("t.kalshi.events.gap", "kalshi:event:aaaaaaaaaaaa:1"),
                ("t.kalshi.events.stale", "kalshi:event:aaaaaaaaaaaa:2"),
                ("t.kalshi.events.connect", "kalshi:event:bbbbbbbbbbbb:1")]
            assert b'"last_seq":5' in stored[0].data
        uvloop.run(main())


# ---------------------------------------------------------------------- start-up and provisioning


def test_start_with_nats_down_returns_at_once_and_capture_goes_on(tmp_path):
    port = free_port()
    bl = batches(session(600))
    want = expected(bl)
    srv = NatsServer(port=port)
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            t0 = time.perf_counter()
            await pub.start()
            assert time.perf_counter() - t0 < 0.1
            for b in bl:  # captured while NATS is down
                pub.submit(b, CONN)
                await asyncio.sleep(0)
            assert pub.stats()["published"] == len(want) and not pub.stats()["connected"]
            await asyncio.sleep(0.3)
            await asyncio.get_running_loop().run_in_executor(None, srv.start)
            assert await pub.wait_connected(15)
            await wait_for(lambda: pub.ring.acked_count == len(want), 15, "acks after NATS came up")
            rep = await pub.close(10)
            assert rep.lost == 0
            check_stream(await read_stream(srv.url, STREAM, timeout=20), want)
        uvloop.run(main())
    finally:
        srv.close()


def test_provision_create_update_and_verify(tmp_path):
    with NatsServer() as srv:
        async def main():
            from ssmd_fast.sinks.natsconn import Endpoint
            cfg = make_cfg(srv.url, str(tmp_path), max_age=3600.0, duplicate_window=60.0)
            ep = Endpoint.from_config(cfg)
            verify = make_cfg(srv.url, str(tmp_path), provision="verify")
            with pytest.raises(stream_mod.StreamMismatch, match="does not exist"):
                await stream_mod.provision(verify, ep)
            assert (await stream_mod.provision(cfg, ep)).action == "created"
            assert (await stream_mod.provision(cfg, ep)).action == "unchanged"
            longer = make_cfg(srv.url, str(tmp_path), max_age=7200.0, duplicate_window=60.0)
            rep = await stream_mod.provision(longer, ep)
            assert rep.action == "updated" and "max_age" in rep.differences[0]
            rep = await stream_mod.provision(make_cfg(srv.url, str(tmp_path), provision="verify",
                                                      max_age=7200.0, duplicate_window=60.0), ep)
            assert rep.action == "verified" and rep.differences == []
            other = make_cfg(srv.url, str(tmp_path), provision="verify", subject_prefix="other.kalshi")
            with pytest.raises(stream_mod.StreamMismatch, match="do not cover other.kalshi"):
                await stream_mod.provision(other, ep)
            nc = await nats.connect(srv.url)
            info = await nc.jetstream().stream_info(STREAM)
            assert info.config.subjects == ["t.kalshi.>"] and info.config.storage == api.StorageType.FILE
            assert info.config.max_age == 7200.0 and info.config.duplicate_window == 60.0
            await nc.close()
        uvloop.run(main())


def test_provision_failure_is_reported_and_capture_continues(tmp_path):
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path), provision="verify"))
            await pub.start()
            pub.submit(batches(session(50))[0], CONN)
            assert not await pub.wait_connected(1.0)
            assert "does not exist" in pub.stats()["error"]
            rep = await pub.close(1)
            assert rep.lost == 0 and rep.stats["spilled"] == rep.stats["published"] > 0
        uvloop.run(main())


# ---------------------------------------------------------------------- rejections


def test_stream_full_with_discard_new_is_dead_lettered_without_hanging(tmp_path):
    bl = batches(session(60))
    with NatsServer() as srv:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), provision="verify", publish=("normalized",))
            nc = await full_stream(srv.url, cfg, 10)
            pub = JetStreamPublisher(cfg)
            await pub.start()
            for b in bl:
                pub.submit(b, CONN)
            t0 = time.monotonic()
            rep = await pub.close(10)
            assert time.monotonic() - t0 < 3
            n = rep.stats["published"]
            assert rep.stats["acked"] == 10 and rep.stats["rejected"] == {"stream_full": n - 10}
            assert rep.stats["dead_lettered"] == n - 10 and rep.stats["inflight"] == 0 and rep.lost == 0
            assert (await nc.jetstream().stream_info(STREAM)).state.messages == 10
            await nc.close()
            from ssmd_fast.sinks.spill import SpillFile
            with SpillFile(tmp_path / "dead-letter", max_bytes=2**30) as dead:
                assert dead.pending_records == n - 10
            # why they are there, beside them: the server's answer (the records keep the spill's format)
            from ssmd_fast.sinks.dead_reasons import read_reasons
            (kind,) = read_reasons(str(tmp_path / "dead-letter")).kinds.items()
            assert kind[0] == "stream_full" and kind[1]["count"] == n - 10
            assert "maximum messages" in kind[1]["why"] and "err_code 10077" in kind[1]["why"]
        uvloop.run(main())


@pytest.mark.parametrize("chunk", [4096, 4, 3])
def test_spilled_records_too_large_for_the_server_are_dead_lettered_on_replay_the_rest_stored(tmp_path, monkeypatch,
                                                                                               chunk):
    # a spill from a run against a server whose max_payload was larger: the replay sets aside what this one
    # refuses, wherever it is in a chunk (first, in the middle, several in a row, heading a chunk read while
    # the one before is in flight), and stores the rest in order
    from ssmd_fast.sinks import spill_store
    from ssmd_fast.sinks.spill import SpillFile

    monkeypatch.setattr(spill_store, "REPLAY_CHUNK", chunk)

    sizes = [10, 9000, 10, 10, 9000, 9000, 10] + [10] * 20 + [9000]
    items = [(f"{PREFIX}.json.trade.KX{k % 3}".encode(), b"kalshi:spilled:%d:raw" % k, b'{"k":%d,"p":"%s"}' % (k, b"x" * n))
             for k, n in enumerate(sizes)]
    with SpillFile(tmp_path, max_bytes=2**30) as sp:
        sp.append_many(items)
    small = {i.decode(): (s.decode(), p) for s, i, p in items if len(p) < 4096}
    with NatsServer(extra_config="max_payload: 4096") as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            assert await pub.wait_connected(10)
            await wait_for(lambda: not pub.spill.pending_records and pub.ring.head == pub.ring.tail, 20,
                           "the replay")
            rep = await pub.close(10)
            big = len(items) - len(small)
            assert rep.stats["rejected"] == {"too_large": big} and rep.stats["dead_lettered"] == big
            stored = await read_stream(srv.url, STREAM, timeout=20)
            events = [m for m in stored if ".events." in m.subject]
            stored = [m for m in stored if ".events." not in m.subject]
            # the event, told while replaying, went through the spill too
            assert rep.stats["replayed"] == len(small) + len(events) and rep.lost == 0
            check_stream(stored, small)
            assert [m.msg_id for m in stored] == list(small)          # in the spill's order
            # the stream says what is missing from it: a dead_letter status event
            assert [m.subject for m in events] == [f"{PREFIX}.events.dead_letter"]
            assert b'"detail":"too_large: 1 so far' in events[0].data
            with SpillFile(tmp_path / "dead-letter", max_bytes=2**30) as dead:
                assert dead.read(100) == [it for it in items if len(it[2]) >= 4096]
            from ssmd_fast.sinks.dead_reasons import read_reasons
            reasons = read_reasons(str(tmp_path / "dead-letter")).kinds
            assert reasons["too_large"]["count"] == big and "max_payload (4,096 bytes)" in reasons["too_large"]["why"]
        uvloop.run(main())


def _spill_of_40(tmp_path, monkeypatch, chunk: int):
    """40 records spilled, the replay reading ``chunk`` at a time: (items, segment path, offset of record 23)."""
    from ssmd_fast.sinks import spill_store
    from ssmd_fast.sinks.spill import SpillFile, encode_record

    monkeypatch.setattr(spill_store, "REPLAY_CHUNK", chunk)
    items = [(f"{PREFIX}.json.trade.KX{k % 3}".encode(), b"kalshi:spilled:%d:raw" % k, b'{"k":%d}' % k)
             for k in range(40)]
    with SpillFile(tmp_path, max_bytes=2**30) as sp:
        sp.append_many(items)
    (seg,) = tmp_path.glob("spill-*.log")
    return items, seg, sum(len(encode_record(*it)) for it in items[:23])


def _stored_data_and_events(stored) -> tuple[list[str], list]:
    data = [m.msg_id for m in stored if ".events." not in m.subject]
    return data, [m for m in stored if m.subject == f"{PREFIX}.events.spill_corrupt"]


@pytest.mark.parametrize("chunk", [4096, 5])
def test_a_corrupt_spill_record_is_set_aside_and_every_other_record_is_stored_in_order(tmp_path, monkeypatch,
                                                                                        caplog, chunk):
    # found by the check on open: the record's bytes go to quarantine/, a spill_corrupt event says so, and
    # the records before and after it are stored in order (also when read in several chunks ahead of acks)
    items, seg, bad = _spill_of_40(tmp_path, monkeypatch, chunk)
    data = bytearray(seg.read_bytes())
    data[bad + 20] ^= 0x40                              # record 23's subject: its CRC fails
    seg.write_bytes(bytes(data))
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()
            assert await pub.wait_connected(10)
            await wait_for(lambda: pub.store == "memory" and pub.ring.head == pub.ring.tail, 20, "the replay")
            assert pub.stats()["replayed"] == 39 + 1    # and the event, spilled behind them
            assert pub.stats()["spill_quarantined_bytes"] == len(encode_record(*items[23]))
            assert f"corrupt bytes at offsets {bad}-" in caplog.text
            rep = await pub.close(10)
            assert rep.lost == 1 and rep.detail == "1 in corrupt spill bytes set aside (at least)"   # exit code 1
            stored, events = _stored_data_and_events(await read_stream(srv.url, STREAM, timeout=20))
            assert stored == [it[1].decode() for k, it in enumerate(items) if k != 23]
            (event,) = events
            assert f"offsets {bad}-" in json.loads(event.data)["detail"] and "quarantine" in event.data.decode()
        uvloop.run(main())


@pytest.mark.parametrize("chunk", [4096, 5])
def test_a_spill_record_that_rots_after_open_is_set_aside_by_the_replay(tmp_path, monkeypatch, chunk):
    # the spill was checked whole on open; a record changed on disk after that is found by the replay's
    # read, set aside, and the replay goes on: the other 39 are stored in order, and the publisher goes
    # back to the memory queue once the spill is empty
    items, seg, bad = _spill_of_40(tmp_path, monkeypatch, chunk)
    srv = NatsServer()                                  # not started yet: the replay waits for it
    try:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            await pub.start()                           # the spill is opened and checked here
            with open(seg, "r+b") as f:                 # then record 23 rots
                f.seek(bad + 20)
                b = f.read(1)
                f.seek(bad + 20)
                f.write(bytes([b[0] ^ 0x40]))
            await asyncio.get_running_loop().run_in_executor(None, srv.start)
            await wait_for(lambda: pub.stats()["spill_quarantined_bytes"], 20, "the corrupt record set aside")
            await wait_for(lambda: pub.store == "memory" and pub.spill.pending_records == 0
                           and pub.ring.head == pub.ring.tail, 20, "the rest of the replay")
            await pub.close(10)
            stored, events = _stored_data_and_events(await read_stream(srv.url, STREAM, timeout=20))
            assert stored == [it[1].decode() for k, it in enumerate(items) if k != 23]
            (event,) = events
            assert "CRC mismatch on read" in json.loads(event.data)["detail"]
        uvloop.run(main())
    finally:
        srv.close()


def test_a_large_spill_checked_in_the_background_is_replayed_whole_in_order(tmp_path, monkeypatch):
    # start() returns while the segments between the first and the last are still being checked; the
    # replay stores the first segment, waits for the check, then stores the rest, in order
    import threading

    from ssmd_fast.sinks import spill_recovery
    from ssmd_fast.sinks.spill import SpillFile

    release, real = threading.Event(), spill_recovery.scan_records

    def scan(*args):
        if threading.current_thread().name == "spill-check":
            release.wait(20)
        return real(*args)
    monkeypatch.setattr(spill_recovery, "SYNC_CHECK_BYTES", 0)
    monkeypatch.setattr(spill_recovery, "scan_records", scan)
    items = [(f"{PREFIX}.json.trade.KX{k % 3}".encode(), b"kalshi:spilled:%d:raw" % k, b'{"k":%d}' % k)
             for k in range(3000)]
    with SpillFile(tmp_path, max_bytes=2**30, segment_bytes=8192) as sp:
        sp.append_many(items)
    with NatsServer() as srv:
        async def main():
            pub = JetStreamPublisher(make_cfg(srv.url, str(tmp_path)))
            try:
                await pub.start()
                assert pub.spill.stats()["unchecked_segments"] > 10 and pub.store == "spill"
                assert await pub.wait_connected(10)
                await wait_for(lambda: 0 < pub.stats()["replayed"] == pub.stats()["acked"], 20,
                               "the first segment stored")
                first = pub.stats()["replayed"]
                await asyncio.sleep(0.3)                         # ticks: the replay waits for the check
                assert pub.store == "spill" and pub.stats()["replayed"] == first < 300
                release.set()
                await wait_for(lambda: pub.store == "memory" and pub.ring.head == pub.ring.tail, 20, "the rest")
            finally:
                release.set()
                await pub.close(10)
            stored = await read_stream(srv.url, STREAM, timeout=20)
            assert [m.msg_id for m in stored] == [it[1].decode() for it in items]
        uvloop.run(main())


def test_permission_violations_are_dead_lettered(tmp_path):
    conf = ('authorization { users = [ { user: "pub", password: "pw", permissions: { '
            'publish: { allow: [">"], deny: ["t.kalshi.json.other.>"] } } } ] }')
    frames = [b'{"type":"fill","sid":5,"seq":%d,"msg":{}}' % k for k in range(1, 6)] + session(40)
    with NatsServer(extra_config=conf) as srv:
        async def main():
            import os
            os.environ["SSMD_TEST_NATS_PW"] = "pw"
            from ssmd_fast.config import NatsAuthConfig
            cfg = make_cfg(srv.url, str(tmp_path), auth=NatsAuthConfig(user="pub", password_env="SSMD_TEST_NATS_PW"))
            pub = JetStreamPublisher(cfg)
            await pub.start()
            for b in batches(frames):
                pub.submit(b, CONN)
            rep = await pub.close(10)
            assert rep.stats["rejected"] == {"permissions": 5} and rep.stats["dead_lettered"] == 5
            assert rep.stats["acked"] == rep.stats["published"] - 5 and rep.stats["inflight"] == 0
            from ssmd_fast.sinks.dead_reasons import read_reasons
            (kind,) = read_reasons(str(tmp_path / "dead-letter")).kinds.items()
            assert kind[0] == "permissions" and kind[1]["count"] == 5
            assert "permissions violation for publish" in kind[1]["why"].lower()
            assert "t.kalshi.json.other." in kind[1]["why"] and kind[1]["example"].startswith("kalshi:")
        uvloop.run(main())


def test_no_stream_for_the_subject_is_dead_lettered_after_the_retry_horizon(tmp_path):
    with NatsServer() as srv:
        async def main():
            cfg = make_cfg(srv.url, str(tmp_path), ack_timeout=0.1, retry_horizon=0.6)
            pub = JetStreamPublisher(cfg, provision_stream=False)
            await pub.start()
            pub.submit(batches(session(20))[0], CONN)
            n = pub.stats()["published"]
            await wait_for(lambda: pub.stats()["dead_lettered"] == n, 5, "dead-lettering")
            rep = await pub.close(2)
            # the dead_letter status event found no stream either: it waits out the horizon too
            assert rep.stats["published"] == n + 1
            assert rep.stats["rejected"] == {"no_stream": n + 1} and rep.stats["no_responders"] >= n
            assert rep.stats["inflight"] == 0 and rep.lost == 0 and rep.stats["spilled"] == 0
        uvloop.run(main())
