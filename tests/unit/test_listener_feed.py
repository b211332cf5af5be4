"""The listener's own frame parser (``feed``: whole socket reads, after the session's reader took over from
picows), against both implementations: frames split at any byte, picows' refusals repeated, the compiled
parser and the twin alike on random streams, and the switch from picows over loopback."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows import WSMsgType, ws_connect, ws_create_server
from twins import twin_fixture

from ssmd_fast.kalshi.session import READ_SIZE, BoundedReads
from tests.unit.test_listener import MIB, MODULES, Collector, Script, _impl, trade, ws_frame

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

CLOSE, PING, PONG = int(WSMsgType.CLOSE), int(WSMsgType.PING), int(WSMsgType.PONG)


impl = twin_fixture(*MODULES)


class Peer:
    """Stands in for picows' WSTransport: records what the listener sends."""

    def __init__(self):
        self.sent: list[tuple] = []
        self.is_close_frame_sent = False
        self.disconnects = 0

    def send_pong(self, payload=b"") -> None:
        self.sent.append((PONG, bytes(payload)))

    def send_close(self, code=0, message=b"") -> None:
        self.sent.append((CLOSE, int(code), bytes(message or b"")))
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnects += 1


def listener(impl, **kw):
    norm, mod = impl
    got = Collector()
    lst = mod.BatchListener(norm.FrameBatch(), got, **kw)
    lst.transport = Peer()
    return lst, got


def feed_in_reads(lst, data: bytes, cuts) -> int:
    """``data`` arriving in reads that end at ``cuts`` (as BoundedReads does it); the bytes left kept."""
    buf, kept, start = bytearray(len(data) + 16), 0, 0
    for end in [*sorted(set(cuts)), len(data)]:
        if end <= start:
            continue
        buf[kept:kept + end - start] = data[start:end]
        kept = lst.feed(buf, kept + end - start)
        start = end
    return kept


def outcome(lst, got) -> tuple:
    """Everything a caller can observe of a run (frames in order, counters, what was sent)."""
    return (got.frames, lst.frames, lst.bytes, lst.binary_dropped, lst.pings, lst.pongs,
            lst.fragmented, lst.oversized, lst.close_code, lst.close_reason, lst.transport.sent,
            lst.transport.disconnects)


def mixed_stream() -> tuple[bytes, list[bytes]]:
    """Every kind of frame a server sends, with 7-, 16- and 64-bit lengths; and the messages it carries."""
    big = b'{"type":"note","msg":{"pad":"' + b"x" * 70_000 + b'"}}'   # a 64-bit length (kept whole: valid)
    mid = trade(9) + b" " * 300                                         # a 16-bit length
    whole = trade(7)
    data = b"".join(ws_frame(0x1, trade(s)) for s in range(1, 6))
    data += ws_frame(0x9, b"hb") + ws_frame(0x1, mid) + ws_frame(0x2, b"\x00\x01") + ws_frame(0xA, b"")
    data += ws_frame(0x1, whole[:9], fin=False) + ws_frame(0x9, b"") + ws_frame(0x0, whole[9:30], fin=False)
    data += ws_frame(0x0, whole[30:], fin=True) + ws_frame(0x1, big) + ws_frame(0x1, trade(8))
    return data, [*(trade(s) for s in range(1, 6)), mid, whole, big, trade(8)]


def test_one_read_and_every_split_give_the_same_frames(impl):
    data, messages = mixed_stream()
    lst, got = listener(impl)
    assert feed_in_reads(lst, data, []) == 0
    assert got.frames == messages and len(got.batches) == 1 == lst.batches     # one read, one batch
    assert (lst.pings, lst.pongs, lst.binary_dropped, lst.fragmented) == (2, 1, 1, 1)
    assert lst.transport.sent == [(PONG, b"hb"), (PONG, b"")]
    whole = outcome(lst, got)[2:]
    small = [i for i in range(len(data)) if i < 400 or len(data) - 400 < i]   # around the headers
    for cut in small[::3]:
        lst, got = listener(impl)
        assert feed_in_reads(lst, data, [cut]) == 0
        assert got.frames == messages and outcome(lst, got)[2:] == whole, cut


def test_a_partial_frame_is_kept_at_the_front(impl):
    lst, got = listener(impl)
    one, two = ws_frame(0x1, trade(1)), ws_frame(0x1, trade(2))
    buf = bytearray(one + two[:5] + bytes(100))
    assert lst.feed(buf, len(one) + 5) == 5 and buf[:5] == two[:5]
    buf[5:len(two)] = two[5:]
    assert lst.feed(buf, len(two)) == 0
    assert got.frames == [trade(1), trade(2)] and lst.batches == 2
    assert lst.feed(buf, 1) == 1 and lst.batches == 2          # not even a header: no batch
    with pytest.raises(ValueError):
        lst.feed(buf, len(buf) + 1)


@pytest.mark.parametrize(("frame", "code", "why"), [
    (b"\x81\x85abcd" + b"hello", 1002, "a masked frame from the server"),
    (b"\x83\x00", 1002, "opcode 0x3"),
    (b"\x8b\x00", 1002, "opcode 0xb"),
    (b"\x09\x00", 1002, "a fragmented control frame"),
    (b"\x89\x7e\x00\x80" + b"p" * 128, 1002, "a control frame above 125 bytes"),
    (b"\x81\x7e\x00\x7d" + b"x" * 125, 1002, "invalid 16-bit length"),     # 125 fits 7 bits
    (b"\x81\x7f" + struct.pack("!Q", 65535) + b"x" * 65535, 1002, "invalid 64-bit length"),
    (b"\x81\x7f" + struct.pack("!Q", 1 << 63), 1002, "invalid 64-bit length"),
    (b"\xc1\x02{}", 1002, "reserved bits"),
    (b"\x81\x7f" + struct.pack("!Q", MIB + 1), 1009, f"a frame above {MIB} bytes ({MIB + 1} > {MIB})"),
    (b"\x88\x01\x03", 1002, "a 1-byte code"),
    (b"\x88\x02" + struct.pack("!H", 1005), 1002, "the invalid code 1005"),
    (b"\x88\x04" + struct.pack("!H", 1000) + b"\xff\xfe", 1007, "not UTF-8"),
])
def test_what_picows_refuses_is_refused_and_the_frames_before_are_kept(impl, frame, code, why):
    lst, got = listener(impl)
    data = ws_frame(0x1, trade(1)) + frame + ws_frame(0x1, trade(2))
    assert feed_in_reads(lst, data, []) == 0
    assert got.frames == [trade(1)]
    sent = lst.transport.sent
    assert len(sent) == 1 and sent[0][:2] == (CLOSE, code) and why in lst.close_reason
    assert lst.close_reason.startswith("refused: ") and lst.transport.disconnects == 1
    assert lst.oversized == (code == 1009)
    assert lst.feed(bytearray(ws_frame(0x1, trade(3))), len(ws_frame(0x1, trade(3)))) == 0   # dropped
    assert got.frames == [trade(1)]


def test_a_refused_frame_is_refused_from_its_header_alone(impl):
    """An oversized frame is refused before its payload arrives: nothing waits for a megabyte."""
    lst, got = listener(impl)
    head = b"\x81\x7f" + struct.pack("!Q", 5 * MIB)
    assert feed_in_reads(lst, ws_frame(0x1, trade(1)) + head, []) == 0
    assert lst.oversized == 1 and lst.transport.sent[0][:2] == (CLOSE, 1009)


def test_close_from_peer_is_answered_and_what_follows_is_dropped(impl):
    lst, got = listener(impl)
    data = ws_frame(0x1, trade(1)) + ws_frame(0x8, struct.pack("!H", 1001) + b"bye") + ws_frame(0x1, trade(2))
    assert feed_in_reads(lst, data, []) == 0
    assert got.frames == [trade(1)] and lst.close_code == 1001 and "1001" in lst.close_reason
    assert lst.transport.sent == [(CLOSE, 1000, b"")] and lst.transport.disconnects == 1
    lst, got = listener(impl)
    assert feed_in_reads(lst, ws_frame(0x8, b""), []) == 0 and lst.close_code == 0   # no code given


def test_a_fragmented_message_above_the_limit_is_refused(impl):
    lst, got = listener(impl, max_message_size=1000)
    data = ws_frame(0x1, b"x" * 600, fin=False) + ws_frame(0x0, b"y" * 600) + ws_frame(0x1, trade(1))
    assert feed_in_reads(lst, data, [300, 700]) == 0
    assert got.frames == [] and lst.oversized == 1 and "above 1000 bytes" in lst.close_reason
    assert lst.transport.sent[0][:2] == (CLOSE, 1009)


def test_fail_closes_with_the_reason(impl):
    lst, got = listener(impl)
    lst.fail("RuntimeError: a sink broke")
    assert lst.close_reason == "RuntimeError: a sink broke"
    assert lst.transport.sent[0][:2] == (CLOSE, 1011) and lst.transport.disconnects == 1
    assert lst.feed(bytearray(ws_frame(0x1, trade(1))), len(ws_frame(0x1, trade(1)))) == 0
    assert got.frames == []


# ------------------------------------------------------------------ the compiled parser and the twin

_frames = st.one_of(
    st.tuples(st.just(0x1), st.sampled_from([trade(1), trade(2), b'{"type":"x"}', b"not json", b""]),
              st.booleans()),
    st.tuples(st.sampled_from([0x0, 0x2]), st.binary(max_size=300), st.booleans()),
    st.tuples(st.sampled_from([0x9, 0xA]), st.binary(max_size=125), st.just(True)),
    st.tuples(st.just(0x8), st.sampled_from([b"", struct.pack("!H", 1000), struct.pack("!H", 4000) + b"ok",
                                             b"\x03", struct.pack("!H", 1000) + b"\xff"]), st.just(True)),
    st.tuples(st.just(-1), st.sampled_from([b"\x83\x00", b"\xc1\x00", b"\x81\xfe\x00\x01",
                                            b"\x81\x7e\x00\x05hello"]), st.just(True)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_frames, max_size=25), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_the_compiled_parser_and_the_twin_agree(frames, cuts):
    """Any stream (text, fragments, binary, pings, closes, bad headers), in any reads: the same outcome."""
    compiled = _impl("cython")  # skipped in the twin pass: it ran in the compiled one
    data = b"".join(payload if op < 0 else ws_frame(op, payload, fin) for op, payload, fin in frames)
    results = []
    for implementation in (compiled, _impl("python")):
        lst, got = listener(implementation, max_message_size=2000)
        kept = feed_in_reads(lst, data, [c for c in cuts if c < len(data)])
        results.append((kept, outcome(lst, got)))
    assert results[0] == results[1]


# ------------------------------------------------------------------ the switch from picows, over loopback


class Paced(Script):
    """Writes ``first`` on connect, then each of ``later`` once the client's text frame says so."""

    def __init__(self, first: bytes, later: list[bytes]):
        super().__init__(first)
        self.later = list(later)

    def on_ws_frame(self, transport, frame):
        super().on_ws_frame(transport, frame)
        if frame.msg_type == WSMsgType.TEXT and self.later:
            transport.underlying_transport.write(self.later.pop(0))


def test_the_reader_takes_over_after_a_clean_read(impl):
    """picows parses the first read; after it the session's reader hands whole reads to ``feed``, with
    frames cut across reads, pings answered and the peer's CLOSE answered, as before the switch."""
    norm, mod = impl
    data, messages = mixed_stream()
    huge = b'{"type":"note","msg":{"pad":"' + b"y" * (3 * READ_SIZE) + b'"}}'     # the reader's buffer grows
    # the first chunk through the reader ends on a frame boundary (the switch), the others cut frames
    later = [ws_frame(0x1, trade(100)), data[:1000], data[1000:50_000],
             data[50_000:] + ws_frame(0x1, huge) + ws_frame(0x1, trade(101)) + ws_frame(0x8, struct.pack("!H", 1001))]

    async def main():
        script = Paced(ws_frame(0x1, trade(0)), later)
        server = await ws_create_server(lambda _req: script, "127.0.0.1", 0)
        got = Collector()
        transport = None
        try:
            transport, lst = await ws_connect(lambda: mod.BatchListener(norm.FrameBatch(), got),
                                              f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/",
                                              enable_auto_pong=False, max_frame_size=MIB)
            sock = transport.underlying_transport
            reads = BoundedReads(sock.get_protocol(), lst)
            sock.set_protocol(reads)
            switched = []
            for _ in later:                         # the first read through `reads` goes to picows
                n = len(got.frames)
                transport.send(WSMsgType.TEXT, b"next")
                for _ in range(200):                # bounded: until the chunk's frames arrived
                    await asyncio.sleep(0.01)
                    if len(got.frames) > n or transport.is_disconnected:
                        break
                switched.append(reads.parsing)
            await asyncio.wait_for(transport.wait_disconnected(), 5)
        finally:
            if transport is not None:
                transport.disconnect()
            server.close()
            await server.wait_closed()
        assert switched == [True] * 4           # picows' buffer ended clean after the first chunk
        return got, lst, script

    got, lst, script = asyncio.run(main())
    assert got.frames == [trade(0), trade(100), *messages, huge, trade(101)]
    assert lst.close_code == 1001 and (lst.pings, lst.pongs, lst.fragmented) == (2, 1, 1)
    assert script.received.count((PONG, b"hb")) == 1 and any(t == CLOSE for t, _ in script.received)
