"""The listener's own frame parser (``feed``: whole socket reads, after the session's reader took over from
picows), against both implementations: frames split at any byte, picows' refusals repeated, the compiled
parser and the twin alike on random streams, and the switch from picows over loopback."""

from __future__ import annotations

import asyncio
import importlib
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


class Outcomes(Collector):
    """Also keeps each entry's (outcome, reason) and lets ``seq`` (a Sequencer) check each batch."""

    def __init__(self, seq=None):
        super().__init__()
        self.outcomes: list[tuple] = []
        self.flags: list[int] = []
        self.seq = seq

    def __call__(self, batch) -> None:
        super().__call__(batch)
        self.outcomes += [(batch.outcome(i), batch.reason(i)) for i in range(len(batch))]
        if self.seq is not None:
            self.seq.process(batch)
            self.flags += [batch.flags(i) for i in range(len(batch))]


def listener(impl, got=None, **kw):
    norm, mod = impl
    got = Collector() if got is None else got
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
    (b"\xc1\x7f" + struct.pack("!Q", MIB + 1) + b"x" * 300, 1002, "reserved bits"),    # above the limit too
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
    assert lst.oversized == 0
    assert lst.feed(bytearray(ws_frame(0x1, trade(3))), len(ws_frame(0x1, trade(3)))) == 0   # dropped
    assert got.frames == [trade(1)]


def test_close_from_peer_is_answered_and_what_follows_is_dropped(impl):
    lst, got = listener(impl)
    data = ws_frame(0x1, trade(1)) + ws_frame(0x8, struct.pack("!H", 1001) + b"bye") + ws_frame(0x1, trade(2))
    assert feed_in_reads(lst, data, []) == 0
    assert got.frames == [trade(1)] and lst.close_code == 1001 and "1001" in lst.close_reason
    assert lst.transport.sent == [(CLOSE, 1000, b"")] and lst.transport.disconnects == 1
    lst, got = listener(impl)
    assert feed_in_reads(lst, ws_frame(0x8, b""), []) == 0 and lst.close_code == 0   # no code given


# ------------------------------------------------------------------ messages above the limit: invalid (size), not fatal

RECORD, INVALID = 0, 3
BIG = b'{"type":"trade","sid":4,"seq":50,"msg":{"pad":"' + bytes(range(65, 91)) * 41_000 + b'"}}'   # > 1 MiB


def feed_bounded(lst, data: bytes, cuts) -> tuple[int, int]:
    """``data`` in reads ending at ``cuts``, each into a buffer of the bytes kept plus the read (as
    BoundedReads does it); returns (bytes kept at the end, most bytes kept after any read)."""
    kept, most, start, buf = 0, 0, 0, bytearray()
    for end in [*sorted(set(cuts)), len(data)]:
        if end <= start:
            continue
        buf = bytearray(buf[:kept]) + data[start:end]
        kept = lst.feed(buf, len(buf))
        most = max(most, kept)
        start = end
    return kept, most


def around(frame_start: int, width: int = 300) -> list[int]:
    """Byte-by-byte reads around a frame's header and its first bytes."""
    return list(range(max(frame_start - 5, 0), frame_start + width))


def assert_big_was_invalid(lst, got, size: int = len(BIG), raw: bytes = BIG[:256]) -> None:
    assert got.outcomes == [(RECORD, None), (INVALID, "size"), (RECORD, None)]
    assert got.frames == [trade(1), raw, trade(2)] and len(got.records) == 2
    assert CLOSE not in [s[0] for s in lst.transport.sent]
    assert lst.transport.disconnects == 0 and lst.close_reason == ""
    assert (lst.oversized, lst.frames, lst.bytes) == (1, 3, len(trade(1)) + size + len(trade(2)))
    counts = lst.batch.counts()
    assert counts["invalid"] == {"size": 1} and counts["bytes"] == lst.bytes


@pytest.mark.parametrize("reads", ["one", "64KiB", "bytewise"])
def test_a_text_frame_above_the_limit_is_invalid_and_the_connection_goes_on(impl, reads):
    """normalized-schema v1: above 1 MiB a frame is invalid (size), counted, and the next frames are
    processed; its payload is skipped as it arrives, never buffered (the bytes kept stay under a header
    and the 256 bytes the batch keeps, whatever the reads)."""
    first, big = ws_frame(0x1, trade(1)), ws_frame(0x1, BIG)
    data = first + big + ws_frame(0x1, trade(2))
    cuts = {"one": [], "64KiB": range(0, len(data), 64 * 1024),
            "bytewise": [*around(len(first)), *around(len(first) + len(big), 20)]}[reads]
    lst, got = listener(impl, Outcomes())
    kept, most = feed_bounded(lst, data, cuts)
    assert kept == 0 and most <= 10 + 256
    assert_big_was_invalid(lst, got)
    assert len(got.batches) == {"one": 1, "64KiB": 2, "bytewise": 3}[reads]   # each batch: the frames ended in it


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, len(BIG) + 400), max_size=12), near=st.lists(st.integers(-20, 300), max_size=6))
def test_a_text_frame_above_the_limit_in_any_reads(cuts, near):
    first = ws_frame(0x1, trade(1))
    data = first + ws_frame(0x1, BIG) + ws_frame(0x1, trade(2))
    for name in ("cython", "python"):
        lst, got = listener(_impl(name), Outcomes())
        kept, most = feed_bounded(lst, data, [c for c in [*cuts, *(len(first) + k for k in near)] if 0 < c < len(data)])
        assert kept == 0 and most <= 10 + 256
        assert_big_was_invalid(lst, got)


@pytest.mark.parametrize("parts", [
    [b"a" * 100, b"b" * (MIB - 50), b"c" * 100],            # the limit passed by the last fragment's frame
    [b"a" * 100, b"b" * (2 * MIB), b"c" * 10],              # a fragment itself above the limit (skipped)
    [b"a" * (MIB // 2)] * 3,                                 # the limit passed in the middle
])
def test_a_fragmented_text_message_above_the_limit_is_invalid_and_the_connection_goes_on(impl, parts):
    message = b"".join(parts)
    total, held = 0, 0      # a fragment that keeps the message under the limit is held until it is whole
    for p in parts:
        total += len(p)
        held = max(held, len(p) if total <= MIB else 0)
    data = ws_frame(0x1, trade(1)) + ws_frame(0x1, parts[0], fin=False) + ws_frame(0x9, b"hb")
    data += b"".join(ws_frame(0x0, p, fin=k == len(parts) - 1) for k, p in enumerate(parts[1:], 1))
    data += ws_frame(0x1, trade(2))
    for cuts in ([], range(0, len(data), 64 * 1024)):
        lst, got = listener(impl, Outcomes())
        kept, most = feed_bounded(lst, data, cuts)
        assert kept == 0 and most <= 10 + max(held, 256)
        assert_big_was_invalid(lst, got, len(message), message[:256])
        assert lst.fragmented == 0 and lst.pings == 1 and lst.transport.sent == [(PONG, b"hb")]


def test_a_fragmented_message_above_a_small_limit_keeps_its_first_bytes(impl):
    lst, got = listener(impl, Outcomes(), max_message_size=1000)
    data = ws_frame(0x1, trade(1)) + ws_frame(0x1, b"x" * 600, fin=False) + ws_frame(0x0, b"y" * 600)
    data += ws_frame(0x1, trade(2))
    assert feed_in_reads(lst, data, [300, 700]) == 0
    assert_big_was_invalid(lst, got, 1200, b"x" * 256)
    lst, got = listener(impl, Outcomes(), max_message_size=1000)      # a first fragment shorter than 256
    data = ws_frame(0x1, trade(1)) + ws_frame(0x1, b"x" * 100, fin=False) + ws_frame(0x0, b"y" * 2000)
    data += ws_frame(0x1, trade(2))
    assert feed_in_reads(lst, data, range(0, len(data), 7)) == 0
    assert_big_was_invalid(lst, got, 2100, b"x" * 100 + b"y" * 156)


def test_a_binary_frame_above_the_limit_is_dropped_and_the_connection_goes_on(impl):
    whole = ws_frame(0x2, BIG)
    parts = ws_frame(0x2, b"z" * 10, fin=False) + ws_frame(0x0, BIG, fin=False) + ws_frame(0x0, b"z")
    data = ws_frame(0x1, trade(1)) + whole + parts + ws_frame(0x1, trade(2))
    for cuts in ([], range(0, len(data), 64 * 1024), around(len(ws_frame(0x1, trade(1))))):
        lst, got = listener(impl, Outcomes())
        kept, most = feed_bounded(lst, data, cuts)
        assert kept == 0 and most <= 10 + 256
        assert got.frames == [trade(1), trade(2)] and lst.transport.sent == []
        assert (lst.binary_dropped, lst.oversized, lst.frames) == (2, 2, 2)


def test_a_book_frame_lost_to_the_limit_is_a_gap_for_the_sequencer(impl):
    """An oversized frame is never parsed (its sid and seq unknown): the sequencer skips it and the next
    frame of its sid, seq + 2, is the gap that invalidates the books."""
    norm, mod = impl
    seq_mod = importlib.import_module("ssmd_fast._sequencer_py" if mod.IMPLEMENTATION == "python"
                                      else "ssmd_fast._sequencer")
    book = b'{"type":"orderbook_%s","sid":7,"seq":%d,"msg":{"market_ticker":"M","market_id":"x",%s}}'
    snap = book % (b"snapshot", 1, b'"yes_dollars_fp":[["0.5000","10.00"]]')
    delta = book % (b"delta", 3, b'"price_dollars":"0.5000","delta_fp":"-1.00","side":"yes","ts_ms":1')
    huge = book % (b"delta", 2, b'"pad":"' + b"p" * MIB + b'"')
    sequencer = seq_mod.Sequencer("c1")
    lst, got = listener(impl, Outcomes(sequencer))
    data = ws_frame(0x1, snap) + ws_frame(0x1, huge) + ws_frame(0x1, delta)
    assert feed_bounded(lst, data, range(0, len(data), 64 * 1024))[0] == 0
    assert got.outcomes == [(RECORD, None), (INVALID, "size"), (RECORD, None)]
    events, requests, _ = sequencer.take()
    assert got.flags[2] & norm.F_GAP and requests == [(7, ("M",))] and sequencer.invalid_sids() == [7]
    assert [e.kind for e in events] == ["gap"] and "seq gap 1 -> 3" in events[0].detail


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
    # above the 2,000-byte limit of the test: skipped, whole or in fragments
    st.tuples(st.sampled_from([0x0, 0x1, 0x2]), st.sampled_from([b"L" * 2001, b"M" * 5000, trade(3) * 30]),
              st.booleans()),
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
