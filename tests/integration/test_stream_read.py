"""stream_read.read_stream against reader.StreamReader (an ordered consumer on nats-py's client) on the same
streams, on a real nats-server: the demo and the drills trust it to say what the stream holds, so it must
agree with an independent client message for message (subject, id, stream sequence, bytes)."""

from __future__ import annotations

import asyncio
import socket
import time

import nats
import pytest

from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks.reader import ReadError, StreamReader
from ssmd_fast.sinks.stream_read import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AUTH = 'authorization { users = [ { user: "reader", password: "p@ss word" } ] }'
URL_AUTH = "reader:p%40ss%20word@"


async def nats_py_read_all(url: str, stream: str, subject_filter: str = ">") -> list:
    nc = await nats.connect(url)
    out = []
    try:
        async with StreamReader(nc, stream, subject_filter, from_start=True) as reader:
            info = await reader.consumer_info()     # delivered already + still pending: all there is
            total = (info.num_pending or 0) + (info.delivered.consumer_seq or 0)
            while len(out) < total:
                m = await reader.next(timeout=5.0)
                assert m is not None, f"nats-py read {len(out)} of {total}"
                out.append(m)
    finally:
        await nc.close()
    return out


async def fill(url: str, **connect) -> int:
    """A stream with what the connector's streams can hold and more: ids or none, several headers, empty
    and protocol-looking payloads, a message of 1.5 MB, unicode subjects' tokens, deleted messages (holes
    in the stream sequence)."""
    nc = await nats.connect(url, **connect)
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["p.>"])
    n = 0
    for i in range(6000):
        headers = {"Nats-Msg-Id": f"kalshi:trade:{i}:raw"} if i % 7 else None
        if i % 11 == 0:
            headers = {**(headers or {}), "X-Other": "a: b"}
        payload = [b'{"i":%d}' % i, b"", b"\r\nHMSG a 1 2 3\r\n", "é€".encode() * i][i % 4]
        await js.publish(f"p.{['json', 'norm', 'events'][i % 3]}.trade.KX_{i % 13}", payload, headers=headers)
        n += 1
    await js.publish("p.json.trade.BIG", b"z" * (1536 * 1024), headers={"Nats-Msg-Id": "big"})
    n += 1
    for seq in (2, 3, 500, 5999):
        await js.delete_msg("S", seq)
        n -= 1
    await nc.close()
    return n


def test_the_same_messages_as_nats_py():
    with NatsServer() as srv:
        n = asyncio.run(fill(srv.url))
        ours = asyncio.run(read_stream(srv.url, "S", timeout=60))
        # the reader's ephemeral consumer is deleted once it has read
        assert asyncio.run(_consumers(srv.url)) == 0
        theirs = asyncio.run(nats_py_read_all(srv.url, "S"))
        assert len(ours) == len(theirs) == n
        assert ours == theirs
        assert 2 not in [m.seq for m in ours] and ours[-1].data == b"z" * (1536 * 1024)
        filtered = asyncio.run(read_stream(srv.url, "S", "p.norm.>", timeout=60))
        assert filtered == asyncio.run(nats_py_read_all(srv.url, "S", "p.norm.>")) and len(filtered) > 1000


async def _consumers(url: str) -> int:
    nc = await nats.connect(url)
    try:
        for _ in range(20):
            n = (await nc.jetstream().stream_info("S")).state.consumer_count
            if n == 0:
                return 0
            await asyncio.sleep(0.1)
        return n
    finally:
        await nc.close()


def test_credentials_in_the_url_are_the_connection_credentials():
    with NatsServer(extra_config=AUTH) as srv:
        authed = srv.url.replace("//", "//" + URL_AUTH, 1)
        n = asyncio.run(fill(srv.url, user="reader", password="p@ss word"))
        assert len(asyncio.run(read_stream(authed, "S", timeout=60))) == n
        with pytest.raises(ReadError, match="cannot connect.*[Aa]uthorization") as err:
            asyncio.run(read_stream(srv.url.replace("//", "//reader:wrong@", 1), "S", timeout=10))
        assert "wrong" not in str(err.value)


def test_a_server_without_jetstream_is_an_error_not_an_empty_stream():
    # the API's "no responders" answer (a 503 status, no payload) was read as {}: 0 messages, so a
    # verification would have reported every message lost instead of saying why
    import subprocess

    from ssmd_fast.natsserver import find_nats_server, free_port

    port = free_port()
    proc = subprocess.Popen([find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):                        # up to 5 s for the port to open
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        with pytest.raises(ReadError, match="no responders .*JetStream"):
            asyncio.run(read_stream(f"nats://127.0.0.1:{port}", "S", timeout=10))
        with pytest.raises(ReadError, match="STREAM.NAMES: no responders"):
            asyncio.run(read_stream(f"nats://127.0.0.1:{port}", None, "p.>", timeout=10))
    finally:
        proc.kill()
        proc.wait(5)
