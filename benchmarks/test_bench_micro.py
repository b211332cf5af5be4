"""Micro benchmarks of the hot path beyond the normalizer (pytest-benchmark), each with its baseline in the
same run: the listener batch path, subject and id encoding, publisher batch framing, the ack parser, the
spill's record reader (a replay's step).

    .venv/bin/python -m pytest benchmarks/test_bench_micro.py --benchmark-columns=min,median

Every round works on one block of generated frames (4096, the mixed session); ``extra_info`` carries
the unit count and ns per unit of the best round, which ``python -m benchmarks`` turns into ratios
(compiled vs its Python twin, or vs msgspec) and checks against ``benchmarks/thresholds.json``.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    pytest.skip("benchmarks of the compiled modules", allow_module_level=True)

from picows import WSMsgType  # noqa: E402
from picows.picows import _make_test_ws_frame  # noqa: E402

from ssmd_fast import _listener, _listener_py, _normalize, _normalize_py  # noqa: E402
from ssmd_fast.kalshi.generator import generate_session  # noqa: E402
from ssmd_fast.sinks import _framing, _framing_py, _spill, _spill_py  # noqa: E402
from ssmd_fast.sinks.subjects import SubjectEncoder  # noqa: E402

BLOCK = 4096
FRAMES = list(generate_session(BLOCK * 2, seed=5, markets=20))[-BLOCK:]
INBOX = b"_INBOX.bench"
PREFIX = b"bench.kalshi"
CONN = "c0ffee00beef"


def _per(benchmark, units: int, unit: str) -> None:
    benchmark.extra_info.update(units=units, unit=unit,
                                ns_per_unit_min=round(benchmark.stats.stats.min / units * 1e9, 1))


def _batch(mod):
    b = mod.FrameBatch()
    for f in FRAMES:
        b.add(f)
    return b


# --------------------------------------------------------------------------- normalizer peer


def test_normalize_msgspec_mixed(benchmark):
    """The msgspec schema-v1 peer on the mixed block (the compiled rows: test_bench_normalize.py)."""
    from benchmarks.baselines.msgspec_normalizer import MsgspecNormalizer

    norm = MsgspecNormalizer().normalize

    def run():
        for f in FRAMES:
            norm(f)

    benchmark(run)
    _per(benchmark, BLOCK, "frame")


# --------------------------------------------------------------------------- listener


def _counting_listener(impl: str):
    """(a BatchListener of ``impl`` over the compiled FrameBatch, the list whose [0] counts its frames)."""
    mod = _listener if impl == "cython" else _listener_py
    got = [0]

    def on_batch(batch):
        got[0] += len(batch)

    return mod.BatchListener(_normalize.FrameBatch(), on_batch), got


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_listener_frames_into_batch(benchmark, impl):
    """Text frames through ``BatchListener.on_ws_frame`` into the compiled FrameBatch (normalized there).
    picows' test frames are each the last of their read: one ``on_batch`` per frame, the worst case."""
    frames = [_make_test_ws_frame(WSMsgType.TEXT, f, True, False) for f in FRAMES]
    listener, got = _counting_listener(impl)
    on_frame = listener.on_ws_frame

    def run():
        for fr in frames:
            on_frame(None, fr)

    benchmark(run)
    assert got[0] % BLOCK == 0
    _per(benchmark, BLOCK, "frame")


def _wire(frames: list[bytes]) -> bytes:
    """Server->client text frames (unmasked, RFC 6455 section 5.2), as the local exchange frames them."""
    from ssmd_fast.kalshi.exchange_conn import ws_frame

    return b"".join(ws_frame(f) for f in frames)


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_listener_reads_through_feed(benchmark, impl):
    """The block's frames as the socket brings them, in reads of READ_SIZE bytes through
    ``BatchListener.feed`` (the session's path once it parses the reads itself): frames cut across
    reads, one ``on_batch`` per read, into the compiled FrameBatch (normalized there)."""
    from ssmd_fast.kalshi.session import READ_SIZE

    wire = _wire(FRAMES)
    listener, got = _counting_listener(impl)
    feed = listener.feed
    buf = bytearray(2 * READ_SIZE)
    reads = [wire[i:i + READ_SIZE] for i in range(0, len(wire), READ_SIZE)]

    def run():
        kept = 0
        for r in reads:
            buf[kept:kept + len(r)] = r
            kept = feed(buf, kept + len(r))

    benchmark(run)
    assert got[0] % BLOCK == 0
    _per(benchmark, BLOCK, "frame")


# --------------------------------------------------------------------------- subjects and ids


def test_subjects_and_ids_python(benchmark):
    """``SubjectEncoder`` (the spec in Python): both subjects and both ids of every record."""
    batch = _batch(_normalize)
    enc = SubjectEncoder(PREFIX)
    items = [(batch.kind(i), batch.key(i), batch.trade_id(i), batch.sid(i), batch.seq(i))
             for i in range(len(batch)) if batch.outcome(i) == _normalize.OUT_RECORD]
    conn = CONN.encode()

    def run():
        for n, (kind, key, tid, sid, seq) in enumerate(items):
            enc.raw_subject(kind, key)
            enc.norm_subject(kind, key)
            enc.frame_msg_id(conn, kind, tid, sid, seq, n, b"raw")
            enc.frame_msg_id(conn, kind, tid, sid, seq, n, b"norm")

    benchmark(run)
    _per(benchmark, 2 * len(items), "message")


# --------------------------------------------------------------------------- framing and acks


def _ring_and_batch(impl):
    fr = _framing if impl == "cython" else _framing_py
    norm = _normalize if impl == "cython" else _normalize_py
    return fr, fr.PublishRing(PREFIX, INBOX), _batch(norm)


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_publish_ring_add_batch(benchmark, impl):
    """``PublishRing.add_batch`` (subjects, ids, HPUB frames for raw + normalized) and the ``take`` of the
    write; the ring is emptied (acked) after each round, untimed, so every round starts alike."""
    fr, ring, batch = _ring_and_batch(impl)
    counts = []

    def setup():
        for p in range(ring.head, ring.send_next):
            ring.ack(p)

    def run():
        counts.append(ring.add_batch(batch, CONN))
        while ring.take(1 << 30, 0.0, 256 * 1024) is not None:
            pass

    benchmark.pedantic(run, setup=setup, rounds=20 if impl == "cython" else 3, iterations=1, warmup_rounds=1)
    _per(benchmark, counts[-1], "message")


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_ack_parser(benchmark, impl):
    """``AckParser.feed`` of one read holding the acks of a whole batch, resolved into the ring."""
    fr, ring, batch = _ring_and_batch(impl)
    state = {}

    def setup():
        for p in range(ring.head, ring.send_next):
            ring.ack(p)
        first = ring.tail
        n = ring.add_batch(batch, CONN)
        while ring.take(1 << 30, 0.0, 256 * 1024) is not None:
            pass
        state["data"] = b"".join(b"MSG %s.%d 1 %d\r\n%s\r\n" % (INBOX, p, len(body), body)
                                 for p in range(first, first + n)
                                 for body in [b'{"stream":"BENCH_KALSHI","seq":%d}' % p])
        state["n"] = n
        return (fr.AckParser(ring, INBOX),), {}

    def run(parser):
        parser.feed(state["data"])

    benchmark.pedantic(run, setup=setup, rounds=20 if impl == "cython" else 3, iterations=1, warmup_rounds=1)
    assert ring.inflight == 0
    _per(benchmark, state["n"], "ack")


def _spilled_block() -> tuple[list, bytes]:
    """The block's first 4,096 messages (raw + normalized) and their spill records, as a segment holds them."""
    _fr, ring, batch = _ring_and_batch("cython")
    ring.add_batch(batch, CONN)
    records = ring.extract()[:BLOCK]
    return records, b"".join(_spill_py.encode_record(*r) for r in records)


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_spill_parse_records(benchmark, impl):
    """``parse_records``: one replay step of the spill (4,096 records, the raw + normalized messages of the
    block, as spilled) checked and cut out of the segment's bytes."""
    records, data = _spilled_block()
    parse = (_spill if impl == "cython" else _spill_py).parse_records

    def run():
        out: list = []
        assert parse(data, BLOCK, out, [], 0) == (len(data), len(records), -1)

    benchmark.pedantic(run, rounds=20 if impl == "cython" else 5, iterations=1, warmup_rounds=1)
    _per(benchmark, len(records), "record")


@pytest.mark.parametrize("impl", ["cython", "python"])
def test_spill_scan_records(benchmark, impl):
    """``scan_records``: the check of a segment when a spill opens (every record's lengths and CRC, before
    capture starts), on the block's 4,096 records as spilled."""
    records, data = _spilled_block()
    scan = (_spill if impl == "cython" else _spill_py).scan_records

    def run():
        assert scan(data, len(data), -1) == (len(data), len(records), 0, 0, None)

    benchmark.pedantic(run, rounds=20 if impl == "cython" else 5, iterations=1, warmup_rounds=1)
    _per(benchmark, len(records), "record")
