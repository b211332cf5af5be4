"""The batch listener, against both implementations (twin tests): picows test frames, then real frames
from a picows server on 127.0.0.1 written in one go (one socket read -> one batch)."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest
from picows import WSError, WSListener, WSMsgType, ws_connect, ws_create_server
from picows.picows import _make_test_ws_frame
from twins import pair, twin_fixture

from ssmd_fast import listener

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

MIB = 1 << 20


# the listener's twin and compiled module: _impl(name) and impl give (normalizer, listener) of one implementation
MODULES = ("ssmd_fast._listener_py", "ssmd_fast._listener")


def _impl(name: str):
    return pair(name, *MODULES)


impl = twin_fixture(*MODULES)


def test_guard_compiled_listener_loaded():
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS"):
        assert listener.IMPLEMENTATION == "python"
    else:
        assert listener.IMPLEMENTATION == "cython"


def trade(seq: int) -> bytes:
    return (f'{{"type":"trade","sid":4,"seq":{seq},"msg":{{"trade_id":"t{seq}","market_ticker":"A",'
            f'"yes_price_dollars":"0.5","no_price_dollars":"0.5","count_fp":"1","taker_side":"yes","ts":1}}}}').encode()


class Collector:
    """on_batch: copies what each call saw (the listener resets the batch afterwards)."""

    def __init__(self):
        self.batches: list[list[bytes]] = []
        self.recv_ts: list[int] = []
        self.records: list[bytes] = []

    def __call__(self, batch) -> None:
        self.batches.append([batch.raw(i) for i in range(len(batch))])
        self.recv_ts.append(batch.recv_ts)
        self.records += [batch.record(i) for i in range(len(batch)) if batch.record(i) is not None]

    @property
    def frames(self) -> list[bytes]:
        return [f for b in self.batches for f in b]


# ------------------------------------------------------------------ picows test frames


def test_text_frames_go_into_the_batch_with_recv_ts(impl):
    norm, mod = impl
    got = Collector()
    lst = mod.BatchListener(norm.FrameBatch(), got)
    t0, m0 = time.time_ns(), time.monotonic()
    for seq in (1, 2, 3):
        lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, trade(seq), True, False))
    assert got.frames == [trade(1), trade(2), trade(3)]
    assert len(got.batches) == 3 == lst.batches          # every test frame is last_in_buffer
    assert all(t0 <= ts <= time.time_ns() for ts in got.recv_ts)
    assert all(r.endswith(b',"recv_ts":%d}' % ts) for r, ts in zip(got.records, got.recv_ts, strict=True))
    assert m0 <= lst.last_frame_at <= time.monotonic()
    assert (lst.frames, lst.bytes) == (3, sum(len(trade(s)) for s in (1, 2, 3)))
    assert len(lst.batch) == 0                            # reset after the call


def test_binary_frames_are_counted_and_dropped(impl):
    norm, mod = impl
    got = Collector()
    lst = mod.BatchListener(norm.FrameBatch(), got)
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.BINARY, b"\x00\x01", True, False))
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.BINARY, b"\x00", False, False))
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.CONTINUATION, b"\x01", True, False))
    assert got.batches == [] and lst.binary_dropped == 2 and lst.frames == 0


def test_fragmented_message_is_reassembled(impl):
    norm, mod = impl
    got = Collector()
    lst = mod.BatchListener(norm.FrameBatch(), got)
    whole = trade(7)
    parts = [whole[:10], whole[10:50], whole[50:]]
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, parts[0], False, False))
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.PONG, b"", True, False))     # control frames interleave
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.CONTINUATION, parts[1], False, False))
    assert got.batches == []
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.CONTINUATION, parts[2], True, False))
    assert got.frames == [whole] and lst.fragmented == 1 and lst.pongs == 1
    assert len(got.records) == 1


def test_on_batch_may_swap_the_batch(impl):
    norm, mod = impl
    kept = []

    def take(batch):
        kept.append(batch)
        lst.batch = norm.FrameBatch()

    lst = mod.BatchListener(norm.FrameBatch(), take)
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, trade(1), True, False))
    lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, trade(2), True, False))
    assert [b.raw(0) for b in kept] == [trade(1), trade(2)]     # the handed-off batches were not reset


# ------------------------------------------------------------------ real frames over loopback


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server->client frame (unmasked), RFC 6455 section 5.2."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class Script(WSListener):
    """Server side: writes ``data`` in one write on connect and records what the client sends."""

    def __init__(self, data: bytes, ping_client: bool = False):
        super().__init__()
        self.data = data
        self.received: list[tuple[int, bytes]] = []
        self.ping_client = ping_client

    def on_ws_connected(self, transport):
        transport.underlying_transport.write(self.data)

    def on_ws_frame(self, transport, frame):
        self.received.append((int(frame.msg_type), frame.get_payload_as_bytes()))


async def _session(impl, data: bytes, *, linger: float = 0.3, client_ping: bool = False):
    norm, mod = impl
    script = Script(data)
    server = await ws_create_server(lambda _req: script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got = Collector()
    got.error = None
    try:
        transport, lst = await ws_connect(lambda: mod.BatchListener(norm.FrameBatch(), got),
                                          f"ws://127.0.0.1:{port}/trade-api/ws/v2",
                                          enable_auto_pong=False, max_frame_size=MIB)
        if client_ping:
            transport.send_ping(b"ssmd")
        try:
            await asyncio.wait_for(transport.wait_disconnected(), linger)
        except WSError as exc:      # picows re-raises its own refusal (e.g. max_frame_size)
            got.error = exc
        except TimeoutError:
            transport.disconnect()
            await asyncio.wait_for(transport.wait_disconnected(), 5)
    finally:
        server.close()
        await server.wait_closed()
    return got, lst, script


def test_one_write_becomes_few_batches_and_pings_are_answered(impl):
    frames = [trade(s) for s in range(1, 41)]
    whole = trade(41)
    data = b"".join(ws_frame(0x1, f) for f in frames)
    data += ws_frame(0x2, b"\xff\xfe")                                   # binary: dropped
    data += ws_frame(0x1, whole[:20], fin=False) + ws_frame(0x9, b"heartbeat")
    data += ws_frame(0x0, whole[20:], fin=True)
    data += ws_frame(0x9, b"heartbeat")                                   # a ping closes the read
    got, lst, script = asyncio.run(_session(impl, data))
    assert got.frames == [*frames, whole]
    assert 1 <= len(got.batches) < 10                                    # batched per read, not per frame
    assert lst.batches == len(got.batches) and lst.frames == 41
    assert lst.binary_dropped == 1 and lst.pings == 2 and lst.fragmented == 1
    assert script.received.count((int(WSMsgType.PONG), b"heartbeat")) == 2
    assert len(got.records) == 41 and all(b'"recv_ts":' in r for r in got.records)


def test_pong_refreshes_liveness(impl):
    got, lst, script = asyncio.run(_session(impl, b"", client_ping=True))
    assert lst.pongs == 1 and got.batches == []
    assert lst.last_frame_at > 0


def test_frame_above_1mib_is_refused_by_picows(impl):
    """picows' own limit, before the session's reader takes over (kalshi/session.py): it closes with 1009."""
    data = ws_frame(0x1, trade(1)) + ws_frame(0x1, b"x" * (MIB + 1))
    got, lst, script = asyncio.run(_session(impl, data, linger=5.0))
    assert got.frames == [trade(1)]                                      # what came before is kept
    assert "1048577 > 1048576" in str(got.error)
    assert any(t == int(WSMsgType.CLOSE) and b[:2] == struct.pack("!H", 1009) for t, b in script.received)


def test_fragmented_message_above_1mib_is_invalid_and_the_connection_goes_on(impl):
    """Frames under picows' limit, a message above 1 MiB: an invalid frame (size), its first 256 bytes kept."""
    half = b"x" * (600 * 1024)
    data = ws_frame(0x1, trade(1)) + ws_frame(0x1, half, fin=False) + ws_frame(0x0, half, fin=True)
    data += ws_frame(0x1, trade(2))
    got, lst, script = asyncio.run(_session(impl, data))
    assert got.frames == [trade(1), half[:256], trade(2)] and lst.oversized == 1 and lst.fragmented == 0
    assert lst.batch.counts()["invalid"] == {"size": 1} and lst.close_reason == ""
    assert not any(t == int(WSMsgType.CLOSE) for t, _ in script.received)      # not closed by the client


def test_close_from_peer_is_answered_and_recorded(impl):
    data = ws_frame(0x1, trade(1)) + ws_frame(0x8, struct.pack("!H", 1001) + b"bye")
    got, lst, script = asyncio.run(_session(impl, data, linger=5.0))
    assert got.frames == [trade(1)]
    assert lst.close_code == 1001 and "1001" in lst.close_reason
    assert any(t == int(WSMsgType.CLOSE) for t, _ in script.received)
