"""The fault proxy itself, against a real echo server on loopback: every switch, while traffic flows."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop
from proxy import DOWN, UP, FaultProxy, ThreadedProxy

pytestmark = pytest.mark.timeout(30)


async def echo_server():
    """An echo server that also remembers how each connection ended (eof / reset)."""
    endings: list[str] = []

    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            endings.append("eof")
        except ConnectionResetError:
            endings.append("reset")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], endings


async def read_exactly(reader, n: int, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def nothing_arrives(reader, within: float) -> bool:
    """True when neither data nor EOF nor RST arrives within ``within`` seconds (a blackhole)."""
    try:
        await asyncio.wait_for(reader.read(1), within)
    except TimeoutError:
        return True
    return False


def run(coro):
    return uvloop.run(coro)


def test_pass_blackhole_and_new_connections_after_existing_only_blackhole():
    async def main():
        server, port, _ = await echo_server()
        proxy = await FaultProxy("127.0.0.1", port).start()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"hello")
        assert await read_exactly(r, 5) == b"hello"
        proxy.blackhole(existing_only=True)       # the live flow dies silently ...
        w.write(b"lost")
        assert await nothing_arrives(r, 0.5)
        r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
        w2.write(b"new")                          # ... new flows pass
        assert await read_exactly(r2, 3) == b"new"
        proxy.blackhole()                         # now every flow, new ones too
        w2.write(b"gone")
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)   # accepted, never answered
        w3.write(b"x")
        assert await nothing_arrives(r2, 0.3) and await nothing_arrives(r3, 0.3)
        proxy.pass_through()
        w.write(b"still dead")                    # a blackholed flow never comes back
        assert await nothing_arrives(r, 0.3)
        r4, w4 = await asyncio.open_connection("127.0.0.1", proxy.port)
        w4.write(b"back")
        assert await read_exactly(r4, 4) == b"back"
        assert proxy.stats.directions[UP].discarded >= len(b"lostgonex")
        for writer in (w, w2, w3, w4):
            writer.close()
        await proxy.close()
        server.close()
    run(main())


def test_pause_buffers_in_order_and_resume_flushes():
    async def main():
        server, port, _ = await echo_server()
        proxy = await FaultProxy("127.0.0.1", port).start()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.pause(DOWN)                          # the echo comes back but is held
        for k in range(100):
            w.write(b"%03d" % k)
        await w.drain()
        assert await nothing_arrives(r, 0.3)
        assert proxy.buffered() == 300
        proxy.resume(DOWN)
        assert await read_exactly(r, 300) == b"".join(b"%03d" % k for k in range(100))
        w.close()
        await proxy.close()
        server.close()
    run(main())


def test_latency_and_throttle_shape_the_flow():
    async def main():
        server, port, _ = await echo_server()
        proxy = await FaultProxy("127.0.0.1", port).start()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.latency(0.2, UP)
        t0 = time.monotonic()
        w.write(b"ping")
        await read_exactly(r, 4)
        rtt = time.monotonic() - t0
        proxy.latency(0.0, UP)
        proxy.throttle(200_000, DOWN)             # 200 kB/s: 100 kB take about 0.5 s
        t0 = time.monotonic()
        w.write(b"x" * 100_000)
        await read_exactly(r, 100_000)
        took = time.monotonic() - t0
        w.close()
        await proxy.close()
        server.close()
        print(f"\nproxy: rtt with 200 ms latency {rtt * 1000:.0f} ms; 100 kB at 200 kB/s in {took:.2f} s")
        assert 0.2 <= rtt < 0.4
        assert 0.4 <= took < 1.0
    run(main())


def test_reset_sends_rst_both_ways_and_refuse_closes_the_listener():
    async def main():
        server, port, endings = await echo_server()
        proxy = await FaultProxy("127.0.0.1", port).start()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"a")
        await read_exactly(r, 1)
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(r.read(1), 2)
        for _ in range(100):
            if endings:
                break
            await asyncio.sleep(0.01)
        assert endings == ["reset"]                # the server side saw an RST too
        await proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.accept()                       # same port again
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"b")
        assert await read_exactly(r, 1) == b"b"
        w.close()
        await proxy.close()
        server.close()
    run(main())


def test_upstream_down_gives_the_client_a_reset_and_the_threaded_proxy_is_driven_from_outside():
    async def main(tp: ThreadedProxy):
        try:     # the reset may already hit the connect
            r, _ = await asyncio.open_connection("127.0.0.1", tp.port)
            assert await asyncio.wait_for(r.read(1), 2) == b""
        except ConnectionResetError:
            pass
        for _ in range(100):
            if tp.stats.refused_upstream:
                break
            await asyncio.sleep(0.01)
        assert tp.stats.refused_upstream == 1

    from ssmd_fast.natsserver import free_port

    tp = ThreadedProxy("127.0.0.1", free_port())    # nothing listens upstream
    try:
        run(main(tp))
        tp.refuse()
        tp.accept()
        tp.latency(0.01)
        tp.pass_through()
    finally:
        tp.close()
