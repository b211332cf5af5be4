"""The Sequencer, against both implementations (twin tests): per-sid seq, duplicates, gaps, book
suppression until a fresh snapshot, resync events and get_snapshot requests."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from twins import pair, twin_fixture

from ssmd_fast import sequencer
from ssmd_fast.events import StatusEvent
from ssmd_fast.normalize import F_DUPLICATE, F_GAP, F_SUPPRESSED

DATA = Path(__file__).resolve().parents[1] / "data" / "kalshi"
CONN = "0123456789ab"
RECV_TS = 1_771_079_400_123_456_789

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]


# the sequencer's twin and compiled module: _impl(name) and impl give (normalizer, sequencer) of one implementation
MODULES = ("ssmd_fast._sequencer_py", "ssmd_fast._sequencer")


def _impl(name: str):
    return pair(name, *MODULES)


impl = twin_fixture(*MODULES)


def test_guard_compiled_sequencer_loaded():
    """The facade uses the compiled module unless the twins are forced (a broken build must not pass)."""
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS"):
        assert sequencer.IMPLEMENTATION == "python"
    else:
        assert sequencer.IMPLEMENTATION == "cython"


# ------------------------------------------------------------------ frames


def snap(sid: int, seq: int, market: str, cmd_id: int | None = None) -> bytes:
    head = f'"id":{cmd_id},' if cmd_id is not None else ""
    return (f'{{{head}"type":"orderbook_snapshot","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{market}",'
            f'"market_id":"x","yes_dollars_fp":[["0.5000","10.00"]]}}}}').encode()


def delta(sid: int, seq: int, market: str) -> bytes:
    return (f'{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{market}",'
            f'"market_id":"x","price_dollars":"0.5000","delta_fp":"-1.00","side":"yes","ts_ms":1}}}}').encode()


def trade(sid: int, seq: int, market: str = "A") -> bytes:
    return (f'{{"type":"trade","sid":{sid},"seq":{seq},"msg":{{"trade_id":"t{seq}","market_ticker":"{market}",'
            f'"yes_price_dollars":"0.5","no_price_dollars":"0.5","count_fp":"1","taker_side":"yes","ts":1}}}}').encode()


def lifecycle(sid: int, seq: int, market: str = "A") -> bytes:
    return (f'{{"type":"market_lifecycle_v2","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{market}",'
            f'"event_type":"activated"}}}}').encode()


def fee(sid: int, seq: int) -> bytes:
    return f'{{"type":"event_fee_update","sid":{sid},"seq":{seq},"msg":{{"event_ticker":"E"}}}}'.encode()


def ticker(sid: int = 1, market: str = "A") -> bytes:
    return f'{{"type":"ticker","sid":{sid},"msg":{{"market_ticker":"{market}"}}}}'.encode()


def ok(cmd_id: int, sid: int, seq: int) -> bytes:
    return f'{{"id":{cmd_id},"sid":{sid},"seq":{seq},"type":"ok","msg":{{}}}}'.encode()


class Run:
    """A sequencer fed batch by batch, remembering every frame's flags."""

    def __init__(self, impl, **kw):
        self.norm, mod = impl
        self.seq = mod.Sequencer(CONN, **kw)
        self.flags: list[int] = []
        self.events: list[StatusEvent] = []
        self.requests: list[tuple[int, tuple[str, ...]]] = []
        self.resynced: list[int] = []
        self.controls: list[int] = []

    def feed(self, *frames: bytes, recv_ts: int = RECV_TS) -> list[int]:
        batch = self.norm.FrameBatch()
        batch.set_recv_ts(recv_ts)
        for f in frames:
            batch.add(f)
        new = self.seq.process(batch)
        events, requests, resynced = self.seq.take()
        assert new == len(events) + len(requests) + len(resynced)
        self.events += events
        self.requests += requests
        self.resynced += resynced
        self.controls = list(self.seq.controls)
        flags = [batch.flags(i) for i in range(len(batch))]
        self.flags += flags
        return flags


# ------------------------------------------------------------------ tests


def test_contiguous_book_passes_untouched(impl):
    r = Run(impl)
    assert r.feed(snap(3, 1, "A"), snap(3, 2, "B"), *(delta(3, s, "AB"[s % 2]) for s in range(3, 40))) == [0] * 39
    assert r.events == [] and r.requests == []
    assert r.seq.stats() == {"duplicates": 0, "gaps": 0, "suppressed": 0, "resyncs": 0}
    assert r.seq.last_seq(3) == 39


def test_duplicates_are_flagged_and_counted(impl):
    r = Run(impl)
    r.feed(snap(3, 1, "A"), delta(3, 2, "A"), delta(3, 3, "A"))
    assert r.feed(delta(3, 3, "A"), delta(3, 4, "A"), delta(3, 4, "A")) == [F_DUPLICATE, 0, F_DUPLICATE]
    assert r.seq.duplicates == 2 and r.seq.gaps == 0 and r.events == []
    assert r.seq.last_seq(3) == 4 and r.seq.tracker.reconnect is None


def test_a_regression_is_a_gap_that_drops_the_sid_until_the_session_reconnects(impl):
    # a renumbered subscription: its later frames would reuse message ids and patch a stale book
    r = Run(impl)
    r.feed(snap(3, 1, "A"), delta(3, 2, "A"), delta(3, 3, "A"), trade(4, 1))
    assert r.feed(delta(3, 2, "A"), delta(3, 3, "A"), delta(3, 4, "A"), trade(4, 2)) == \
        [F_DUPLICATE, F_DUPLICATE, F_DUPLICATE, 0]
    (gap,) = r.events
    assert (gap.kind, gap.sid, gap.last_seq, gap.received_seq) == ("gap", 3, 3, 2)
    assert "seq regression 3 -> 2" in gap.detail
    assert r.seq.gaps == 1 and r.seq.duplicates == 3
    assert r.seq.tracker.reconnect == "seq regression on sid 3: 3 -> 2"
    assert r.seq.last_seq(3) is None and r.seq.last_seq(4) == 2    # a regressed sid has no last seq to tell
    r.seq.reset("next")                                  # the new connection starts clean
    assert r.seq.tracker.reconnect is None and r.feed(snap(3, 1, "A")) == [0]


def test_a_lone_old_frame_is_dropped_and_the_sid_goes_on(impl):
    # kalshi-protocol.md: "Duplicate/old (seq <= last) = drop"; trades and lifecycle gaps are report only.
    # One straggler is not a renumbering: the frames after it (last + 1 on) are kept, no reconnect.
    r = Run(impl)
    r.feed(trade(7, 1), trade(7, 2), trade(7, 3), snap(3, 1, "A"), delta(3, 2, "A"))
    assert r.feed(trade(7, 2), trade(7, 4), trade(7, 5), delta(3, 1, "A"), delta(3, 3, "A")) == \
        [F_DUPLICATE, 0, 0, F_DUPLICATE, 0]
    assert r.events == [] and r.seq.tracker.reconnect is None
    assert r.seq.duplicates == 2 and r.seq.gaps == 0 and r.seq.last_seq(7) == 5 and r.seq.last_seq(3) == 3
    # across batches: the old frame ends one read, the next read decides
    assert r.feed(trade(7, 3)) == [F_DUPLICATE] and r.feed(trade(7, 6)) == [0]
    assert r.seq.tracker.reconnect is None
    # two frames behind in a row: the numbering went back (a duplicate after the old one counts)
    assert r.feed(trade(7, 1), trade(7, 6), trade(7, 7)) == [F_DUPLICATE, F_DUPLICATE, F_DUPLICATE]
    (gap,) = r.events
    assert (gap.sid, gap.last_seq, gap.received_seq) == (7, 6, 1)
    assert r.seq.tracker.reconnect == "seq regression on sid 7: 6 -> 1"


def test_book_gap_suppresses_all_markets_of_the_sid_until_each_snapshot(impl):
    r = Run(impl)
    r.feed(snap(21, 1, "A"), snap(21, 2, "B"), delta(21, 3, "A"), delta(21, 4, "B"))
    # seq 5 is lost
    flags = r.feed(delta(21, 6, "A"), delta(21, 7, "B"), ticker(), delta(21, 8, "A"))
    assert flags == [F_GAP | F_SUPPRESSED, F_SUPPRESSED, 0, F_SUPPRESSED]
    # one gap event per book made invalid (events.py: market is one affected market), one seq gap counted
    assert [(g.kind, g.conn, g.time_ns, g.sid, g.last_seq, g.received_seq, g.market) for g in r.events] == \
        [("gap", CONN, RECV_TS, 21, 4, 6, "A"), ("gap", CONN, RECV_TS, 21, 4, 6, "B")]
    assert all("2 book(s) of sid 21" in g.detail for g in r.events)
    assert r.requests == [(21, ("A", "B"))]
    assert r.seq.invalid_sids() == [21]
    # the get_snapshot reply for A continues the sid's seq: A is valid again, B is not
    flags = r.feed(snap(21, 9, "A", cmd_id=9), delta(21, 10, "A"), delta(21, 11, "B"))
    assert flags == [0, 0, F_SUPPRESSED]
    assert [(e.kind, e.market, e.sid, e.received_seq) for e in r.events[2:]] == [("resync", "A", 21, 9)]
    assert r.resynced == []
    flags = r.feed(snap(21, 12, "B", cmd_id=9), delta(21, 13, "B"), delta(21, 14, "A"))
    assert flags == [0, 0, 0]
    assert [e.market for e in r.events if e.kind == "resync"] == ["A", "B"]
    assert r.resynced == [21] and r.seq.invalid_sids() == []
    assert r.seq.stats() == {"duplicates": 0, "gaps": 1, "suppressed": 4, "resyncs": 2}


def test_trade_and_lifecycle_gaps_are_reported_not_suppressed(impl):
    r = Run(impl)
    r.feed(trade(4, 1), trade(4, 2), lifecycle(5, 1), fee(5, 2), lifecycle(5, 3))
    assert r.events == []                      # event_fee_update (not normalized) still takes a seq
    flags = r.feed(trade(4, 5, "X"), trade(4, 6), lifecycle(5, 5))
    assert flags == [F_GAP, 0, F_GAP]
    # market null: the frames lost may be of any market (X only revealed the gap)
    assert [(e.kind, e.sid, e.last_seq, e.received_seq, e.market) for e in r.events] == \
        [("gap", 4, 2, 5, None), ("gap", 5, 3, 5, None)]
    assert r.events[0].detail == "trade: 2 frame(s) missing"
    assert r.events[1].detail.startswith("lifecycle")
    assert r.requests == [] and r.seq.suppressed == 0 and r.seq.gaps == 2


def test_ok_and_unsubscribed_advance_only_when_contiguous(impl):
    r = Run(impl)
    r.feed(snap(3, 1, "A"), delta(3, 2, "A"))
    r.feed(ok(7, 3, 3))                         # takes seq 3
    assert r.seq.last_seq(3) == 3
    r.feed(ok(8, 3, 9))                         # not contiguous: ignored for gap purposes
    assert r.seq.last_seq(3) == 3
    assert r.feed(delta(3, 4, "A")) == [0] and r.events == []
    r.feed(b'{"id":9,"sid":3,"seq":5,"type":"unsubscribed"}')
    assert r.seq.last_seq(3) == 5


def test_control_indices_are_collected_for_the_protocol_core(impl):
    r = Run(impl)
    r.feed(b'{"id":1,"type":"subscribed","msg":{"channel":"trade","sid":4}}', trade(4, 1),
           b'{"id":2,"type":"error","msg":{"code":7,"msg":"Unknown subscription ID"}}', ticker(), ok(3, 4, 2))
    assert r.controls == [0, 2, 4]
    r.feed(ticker())
    assert r.controls == []


def test_first_seq_must_be_one_on_a_live_sid(impl):
    r = Run(impl)
    flags = r.feed(delta(3, 4, "A"))            # the snapshot (seq 1) and more are missing
    assert flags == [F_GAP | F_SUPPRESSED]
    assert r.events[0].last_seq is None and r.events[0].received_seq == 4
    assert r.requests == [(3, ("A",))]
    loose = Run(impl, strict_start=False)       # recorded files start mid-stream
    assert loose.feed(trade(1, 16), trade(1, 17)) == [0, 0] and loose.events == []


def test_unusable_book_frame_invalidates_the_book(impl):
    r = Run(impl)
    r.feed(snap(3, 1, "A"), delta(3, 2, "A"))
    bad = b'{"type":"orderbook_delta","sid":3,"seq":3,"msg":{"market_ticker":"A"}}'
    assert r.feed(bad, delta(3, 4, "A")) == [F_GAP, F_SUPPRESSED]
    assert r.events[0].kind == "gap" and "unusable (missing)" in r.events[0].detail
    assert r.requests == [(3, ("A",))]


def test_resubscribe_fallback_new_sid_snapshot_counts_as_resync(impl):
    """scenario_gap_resync.jsonl: gap on sid 31, unsubscribe, new sid 32 with a fresh snapshot."""
    r = Run(impl)
    lines = [line for line in (DATA / "scenario_gap_resync.jsonl").read_bytes().split(b"\n") if line]
    r.feed(*lines[:9])
    assert r.seq.gaps == 1 and r.requests and r.requests[0][0] == 31
    r.feed(*lines[9:])
    resyncs = [e for e in r.events if e.kind == "resync"]
    assert [(e.sid, e.market) for e in resyncs] == [(32, "KXBTCD-26FEB1417-T70249.99")]
    # nothing on the new sid was held back
    types = [json.loads(line)["type"] for line in lines]
    sids = [json.loads(line).get("sid") for line in lines]
    for i, (t, sid) in enumerate(zip(types, sids, strict=True)):
        if sid == 32 and t.startswith("orderbook"):
            assert r.flags[i] == 0


def test_fixture_sid7_gap_at_line_16(impl):
    """orderbook_delta.jsonl lines 1-18 after snapshot line 1: seq 17 is lost."""
    r = Run(impl)
    snaps = (DATA / "orderbook_snapshot.jsonl").read_bytes().split(b"\n")
    deltas = (DATA / "orderbook_delta.jsonl").read_bytes().split(b"\n")
    flags = r.feed(snaps[0], *deltas[:18])
    assert flags[:16] == [0] * 16
    assert flags[16:] == [F_GAP | F_SUPPRESSED, F_SUPPRESSED, F_SUPPRESSED]
    (gap,) = r.events
    assert (gap.sid, gap.last_seq, gap.received_seq) == (7, 16, 18)


def test_state_is_per_connection(impl):
    r = Run(impl)
    r.feed(trade(4, 1), trade(4, 2))
    r.seq.reset("fedcba987654")
    assert r.seq.last_seq(4) is None and r.seq.gaps == 0
    r.feed(trade(4, 1))
    assert r.events == []
    r.feed(trade(4, 3))
    assert r.events[0].conn == "fedcba987654"


def test_event_time_falls_back_to_the_clock_without_recv_ts(impl):
    r = Run(impl)
    r.feed(trade(4, 1))
    r.feed(trade(4, 3), recv_ts=0)
    assert r.events[0].time_ns > 1_600_000_000 * 10**9


def _random_stream(rng: random.Random, n: int) -> list[list[bytes]]:
    """Batches of frames on 2 book sids, a trade sid and a lifecycle sid with random loss/dups."""
    seqs = {10: 0, 11: 0, 12: 0, 13: 0}
    markets = {10: ["A", "B", "C"], 11: ["D"]}
    out: list[bytes] = []
    for sid in (10, 11):
        for m in markets[sid]:
            seqs[sid] += 1
            out.append(snap(sid, seqs[sid], m))
    for _ in range(n):
        sid = rng.choice((10, 10, 11, 12, 13))
        seqs[sid] += 1
        s = seqs[sid]
        if sid in markets:
            m = rng.choice(markets[sid])
            frame = snap(sid, s, m) if rng.random() < 0.05 else delta(sid, s, m)
        else:
            frame = trade(sid, s) if sid == 12 else lifecycle(sid, s)
        roll = rng.random()
        if roll < 0.03:
            continue                                  # lost
        out.append(frame)
        if roll > 0.97:
            out.append(frame)                         # duplicated
        if rng.random() < 0.02:
            out.append(ok(99, sid, s + rng.choice((0, 1, 5))))
    batches, i = [], 0
    while i < len(out):
        k = rng.randint(1, 40)
        batches.append(out[i:i + k])
        i += k
    return batches


def test_compiled_and_python_agree_on_random_streams():
    cy, py = _impl("cython"), _impl("python")
    rng = random.Random(20260712)
    for _ in range(20):
        stream = _random_stream(rng, 600)
        runs = [Run(cy), Run(py)]
        for batch in stream:
            for run in runs:
                run.feed(*batch)
        a, b = runs
        assert a.flags == b.flags
        assert [e.to_json() for e in a.events] == [e.to_json() for e in b.events]
        assert a.requests == b.requests and a.resynced == b.resynced
        assert a.seq.stats() == b.seq.stats()
        assert a.seq.stats()["gaps"] > 0 and a.seq.stats()["duplicates"] > 0
