"""The stream readers against a real nats-server: stream_read.read_stream and the ordered StreamReader."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks.reader import ReadError, StreamMessage, StreamReader
from ssmd_fast.sinks.stream_read import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

STREAM = "DEV_KALSHI"


@pytest.fixture(scope="module")
def server():
    with NatsServer() as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


async def fill(url: str, stream: str, n: int, start: int = 0, *, create: bool = True) -> list[tuple]:
    """Publish n messages alternating raw/norm subjects with ids; returns (subject, id, payload)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    if create:
        try:
            await js.delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(name=stream, subjects=["dev.kalshi.>"])
    sent = []
    for i in range(start, start + n):
        form = "json" if i % 2 == 0 else "norm"
        subject = f"dev.kalshi.{form}.trade.KX-{i % 5}"
        msg_id = f"kalshi:trade:t{i}:{'raw' if form == 'json' else 'norm'}"
        payload = b'{"i":%d}' % i
        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        assert not ack.duplicate
        sent.append((subject, msg_id, payload))
    await nc.close()
    return sent


def test_read_stream_reads_everything_in_order_with_ids_and_seqs(server):
    sent = run(fill(server.url, STREAM, 3000))
    got = run(read_stream(server.url, STREAM, "dev.kalshi.>", timeout=30))
    assert [(m.subject, m.msg_id, m.data) for m in got] == sent
    assert [m.seq for m in got] == list(range(1, 3001))
    assert isinstance(got[0], StreamMessage)


def test_read_stream_with_a_subject_filter(server):
    sent = run(fill(server.url, STREAM, 400))
    got = run(read_stream(server.url, STREAM, "dev.kalshi.norm.>", timeout=30))
    assert [(m.subject, m.msg_id, m.data) for m in got] == [s for s in sent if ".norm." in s[0]]
    assert [m.seq for m in got] == list(range(2, 401, 2))
    got = run(read_stream(server.url, None, "dev.kalshi.json.trade.KX-3", timeout=30))  # stream looked up
    assert [m.data for m in got] == [p for s, _, p in sent if s == "dev.kalshi.json.trade.KX-3"]


def test_read_stream_of_an_empty_filter_returns_at_once(server):
    run(fill(server.url, STREAM, 10))
    t0 = time.monotonic()
    assert run(read_stream(server.url, STREAM, "dev.kalshi.nothing.>", timeout=30)) == []
    assert time.monotonic() - t0 < 5


def test_read_stream_errors_are_bounded_and_clear(server):
    run(fill(server.url, STREAM, 10))
    with pytest.raises(ReadError, match="NOPE.*not found"):
        run(read_stream(server.url, "NOPE", "dev.kalshi.>", timeout=10))
    t0 = time.monotonic()
    with NatsServer() as gone:
        url = gone.url
    with pytest.raises(ReadError, match="cannot connect"):
        run(read_stream(url, STREAM, "dev.kalshi.>", timeout=3))
    assert time.monotonic() - t0 < 10


def test_stream_reader_new_only_then_live(server):
    run(fill(server.url, STREAM, 50))

    async def main():
        nc = await nats.connect(server.url)
        async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=False) as reader:
            assert await reader.next(timeout=0.3) is None  # the 50 stored ones are not delivered
            sent = await fill(server.url, STREAM, 20, start=1000, create=False)
            got = [m async for m in reader.messages(count=20)]
        await nc.close()
        return sent, got

    sent, got = run(main())
    assert [(m.subject, m.msg_id, m.data) for m in got] == sent
    assert [m.seq for m in got] == list(range(51, 71))


@pytest.mark.slow
def test_stream_reader_survives_a_server_restart(tmp_path):
    with NatsServer(store_dir=tmp_path) as srv:
        run(fill(srv.url, STREAM, 100))

        async def main():
            nc = await nats.connect(srv.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=True) as reader:
                first = [m async for m in reader.messages(count=100)]
                await asyncio.to_thread(srv.restart)
                sent = await fill(srv.url, STREAM, 30, start=500, create=False)
                later = []
                deadline = time.monotonic() + 30
                while len(later) < 30 and time.monotonic() < deadline:
                    m = await reader.next(timeout=1.0)
                    if m is not None:
                        later.append(m)
            await nc.close()
            return first, sent, later

        first, sent, later = run(main())
        assert [m.seq for m in first] == list(range(1, 101))
        assert [(m.subject, m.msg_id, m.data) for m in later] == sent
        assert [m.seq for m in later] == list(range(101, 131))
