"""The session generator: determinism, mix, strict JSON, seq per sid, book replay, eras, event API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from ssmd_fast.kalshi.generator import (
    CH_BOOK,
    CH_LIFECYCLE,
    CH_TICKER,
    CH_TRADE,
    SessionGenerator,
    generate_session,
    parse_mix,
)

DATA_TYPES = {"ticker", "orderbook_delta", "trade", "market_lifecycle_v2", "event_lifecycle"}


def _strict(name):
    raise ValueError(f"non-JSON constant {name}")


def parse(frame: bytes) -> dict:
    o = json.loads(frame.decode("utf-8"), parse_constant=_strict)
    assert isinstance(o, dict) and isinstance(o.get("type"), str), frame[:120]
    return o


def hundredths(s) -> int:
    q = Decimal(s) * 100
    assert q == q.to_integral_value(), s
    return int(q)


def ten_thousandths(s) -> int:
    q = Decimal(s) * 10000
    assert q == q.to_integral_value(), s
    return int(q)


def side_levels(msg: dict, side: str) -> dict[int, int]:
    """A snapshot side in exact units, checking that every present representation agrees."""
    out: dict[int, int] | None = None
    if f"{side}_dollars_fp" in msg:
        out = {ten_thousandths(p): hundredths(q) for p, q in msg[f"{side}_dollars_fp"]}
    if f"{side}_dollars" in msg:
        d = {ten_thousandths(p): q * 100 for p, q in msg[f"{side}_dollars"]}
        assert out is None or d == out
        out = d
    if side in msg:
        c = {p * 100: q * 100 for p, q in msg[side]}
        assert out is None or c == out
        out = c
    return out or {}


class SessionChecker:
    """check_session.py in small: seq per sid, snapshot before delta, non-negative uncrossed books,
    cents/dollars agreement, unique trade ids, time never going backwards."""

    def __init__(self):
        self.last_seq: dict[int, int] = {}
        self.books: dict[tuple[int, str], tuple[dict, dict]] = {}
        self.trade_ids: set[str] = set()
        self.last_ms = 0
        self.counts: Counter = Counter()

    def feed(self, frame: bytes) -> dict:
        o = parse(frame)
        typ = o["type"]
        self.counts[typ] += 1
        sid, seq, msg = o.get("sid"), o.get("seq"), o.get("msg")
        if typ == "subscribed":
            return o
        assert isinstance(sid, int) and sid >= 1
        if typ == "ticker":
            assert seq is None
        else:
            assert isinstance(seq, int), frame[:100]
            assert seq == self.last_seq.get(sid, 0) + 1, (sid, seq, self.last_seq.get(sid))
            self.last_seq[sid] = seq
        self._time(msg)
        if typ == "orderbook_snapshot":
            yes, no = side_levels(msg, "yes"), side_levels(msg, "no")
            assert all(q > 0 for q in yes.values()) and all(q > 0 for q in no.values())
            self.books[(sid, msg["market_ticker"])] = (yes, no)
            self._uncrossed(yes, no)
        elif typ == "orderbook_delta":
            key = (sid, msg["market_ticker"])
            assert key in self.books, f"delta before snapshot: {key}"
            p = ten_thousandths(msg["price_dollars"])
            if "price" in msg:
                assert msg["price"] * 100 == p
            d = hundredths(msg["delta_fp"]) if "delta_fp" in msg else msg["delta"] * 100
            if "delta" in msg:
                assert msg["delta"] * 100 == d
            yes, no = self.books[key]
            lv = yes if msg["side"] == "yes" else no
            nq = lv.get(p, 0) + d
            assert nq >= 0, f"level {msg['side']} {p} goes negative"
            if nq == 0:
                lv.pop(p, None)
            else:
                lv[p] = nq
            self._uncrossed(yes, no)
        elif typ == "trade":
            assert msg["trade_id"] not in self.trade_ids
            self.trade_ids.add(msg["trade_id"])
            if "yes_price" in msg:
                assert msg["yes_price"] * 100 == ten_thousandths(msg["yes_price_dollars"])
                assert msg["yes_price"] + msg["no_price"] == 100
            assert ten_thousandths(msg["yes_price_dollars"]) + ten_thousandths(msg["no_price_dollars"]) == 10000
        elif typ == "ticker":
            if "yes_bid" in msg:
                assert msg["yes_bid"] * 100 == ten_thousandths(msg["yes_bid_dollars"])
                assert msg["price"] * 100 == ten_thousandths(msg["price_dollars"])
            assert ten_thousandths(msg["yes_bid_dollars"]) < ten_thousandths(msg["yes_ask_dollars"])
        return o

    @staticmethod
    def _uncrossed(yes, no):
        if yes and no:
            assert max(yes) + max(no) < 10000, "crossed book"

    def _time(self, msg):
        # ts_ms where present; a frame with only seconds must not be earlier than the last second seen.
        if "ts_ms" in msg:
            t = msg["ts_ms"]
            assert t >= self.last_ms
            self.last_ms = t
        elif isinstance(msg.get("ts"), int):
            assert msg["ts"] >= self.last_ms // 1000
            self.last_ms = max(self.last_ms, msg["ts"] * 1000)


@pytest.fixture(scope="module")
def sessions() -> dict[str, list[bytes]]:
    return {era: list(generate_session(30000, seed=7, markets=12, era=era))
            for era in ("legacy", "both", "current", "mixed")}


def test_deterministic_same_arguments_same_bytes():
    a = list(generate_session(5000, seed=3, era="both"))
    b = list(generate_session(5000, seed=3, era="both"))
    c = list(generate_session(5000, seed=4, era="both"))
    assert a == b
    assert a != c
    assert len(a) == 5000
    assert list(generate_session(17, seed=3)) == a[:17]
    assert list(generate_session(0)) == []


def test_event_api_is_deterministic():
    e1 = SessionGenerator(seed=9, era="current").events(3000)
    e2 = SessionGenerator(seed=9, era="current").events(3000)
    assert e1 == e2


@pytest.mark.parametrize("era", ["legacy", "both", "current", "mixed"])
def test_session_is_valid(sessions, era):
    chk = SessionChecker()
    frames = sessions[era]
    for f in frames:
        assert b"\n" not in f
        chk.feed(f)
    # acks, then one snapshot per market, then data
    types = [parse(f)["type"] for f in frames[:30]]
    assert types[:15] == ["subscribed"] * 15
    assert types[15:27] == ["orderbook_snapshot"] * 12
    assert chk.counts["orderbook_snapshot"] == 12
    assert len(chk.trade_ids) == chk.counts["trade"] > 0


def test_mix_matches_the_default(sessions):
    counts = Counter(parse(f)["type"] for f in sessions["both"][27:])
    n = sum(counts.values())
    assert abs(counts["ticker"] / n - 0.55) < 0.02
    assert abs(counts["orderbook_delta"] / n - 0.30) < 0.02
    assert abs(counts["trade"] / n - 0.12) < 0.015
    life = counts["market_lifecycle_v2"] + counts["event_lifecycle"]
    assert abs(life / n - 0.03) < 0.01
    assert counts["event_lifecycle"] > 0
    assert set(counts) == DATA_TYPES


def test_custom_mix():
    frames = list(generate_session(20000, seed=2, markets=4, mix="ticker=0,orderbook_delta=1,trade=0,lifecycle=0"))
    types = Counter(parse(f)["type"] for f in frames)
    assert set(types) == {"subscribed", "orderbook_snapshot", "orderbook_delta"}
    with pytest.raises(ValueError):
        parse_mix("tickers=1")
    with pytest.raises(ValueError):
        parse_mix("ticker=0,orderbook_delta=0,trade=0,lifecycle=0")


def test_realistic_tickers(sessions):
    gen = SessionGenerator(markets=20)
    assert any("." in t for t in gen.tickers)
    assert all(re.fullmatch(r"KX[A-Z]+-26FEB1410-[TB][0-9]+(\.99)?", t) for t in gen.tickers), gen.tickers
    assert len(set(gen.tickers)) == 20
    life = [parse(f)["msg"] for f in sessions["current"] if b'"market_lifecycle_v2"' in f[:40]]
    assert {m["event_type"] for m in life} >= {"created", "activated", "determined", "settled"}


def _msgs(frames, typ):
    return [parse(f)["msg"] for f in frames if parse(f)["type"] == typ]


def test_eras_shapes(sessions):
    legacy, both, cur = sessions["legacy"], sessions["both"], sessions["current"]
    lt, bt, ct = _msgs(legacy, "trade"), _msgs(both, "trade"), _msgs(cur, "trade")
    assert all("count" in m and "yes_price" in m and "count_fp" not in m for m in lt)
    assert all("count" in m and "count_fp" in m for m in bt)
    assert all("count" not in m and "yes_price" not in m and "ts_ms" in m and "taker_book_side" in m for m in ct)
    cd = _msgs(cur, "orderbook_delta")
    assert all("price" not in m and "delta" not in m and "ts_ms" in m for m in cd)
    assert all(isinstance(m["ts"], str) for m in cd)
    ctk = _msgs(cur, "ticker")
    assert all("time" in m and "ts_ms" in m and "Clock" not in m and "yes_bid" not in m for m in ctk)
    assert all("Clock" in m and "yes_bid" in m for m in _msgs(legacy, "ticker"))
    # the current era has fractional sizes and sub-penny prices; the others only whole cents/contracts
    assert any(hundredths(m["count_fp"]) % 100 for m in ct)
    assert any(ten_thousandths(m["price_dollars"]) % 100 for m in cd)
    assert not any(ten_thousandths(m["price_dollars"]) % 100 for m in _msgs(both, "orderbook_delta"))
    assert any("settlement_value" in m for m in _msgs(cur, "market_lifecycle_v2"))


def test_mixed_era_alternates(sessions):
    deltas = _msgs(sessions["mixed"], "orderbook_delta")
    kinds = Counter(("ts_ms" in m, "delta_fp" in m, "delta" in m) for m in deltas)
    assert kinds.keys() == {(False, False, True), (False, True, True), (True, True, False)}


def test_snapshot_body_is_the_current_book():
    """Books replayed from the events equal snapshot_body() at any point of the stream."""
    gen = SessionGenerator(seed=5, markets=6, era="current")
    snaps = {t: json.loads(gen.snapshot_body(t)) for t in gen.tickers}
    books = {t: (side_levels(s, "yes"), side_levels(s, "no")) for t, s in snaps.items()}
    assert books == gen.books()
    for _ in range(20):
        for ch, market, typ, body, change in gen.events(997):
            msg = json.loads(body)
            assert ch in (CH_TICKER, CH_TRADE, CH_LIFECYCLE, CH_BOOK)
            assert isinstance(body, bytes) and body[:1] == b"{"
            if ch == CH_BOOK:
                assert typ == "orderbook_delta" and msg["market_ticker"] == market
                side, price, delta = change
                assert (side, price, delta) == (msg["side"], ten_thousandths(msg["price_dollars"]),
                                                hundredths(msg["delta_fp"]))
                lv = books[market][0 if side == "yes" else 1]
                lv[price] = lv.get(price, 0) + delta
                if lv[price] == 0:
                    del lv[price]
            else:
                assert change is None
                if ch in (CH_TICKER, CH_TRADE):
                    assert msg["market_ticker"] == market
                elif typ == "event_lifecycle":
                    assert msg["event_ticker"] == market
                else:
                    assert typ == "market_lifecycle_v2" and msg["market_ticker"] == market
        for t in gen.tickers:
            snap = json.loads(gen.snapshot_body(t))
            assert (side_levels(snap, "yes"), side_levels(snap, "no")) == books[t]
        assert books == gen.books()


def test_shared_book_uses_one_sid():
    chk = SessionChecker()
    frames = list(generate_session(5000, seed=1, markets=5, shared_book=True))
    for f in frames:
        chk.feed(f)
    snaps = [parse(f) for f in frames if b'"orderbook_snapshot"' in f[:30]]
    assert [(s["sid"], s["seq"]) for s in snaps] == [(4, k) for k in range(1, 6)]


def test_cli_writes_the_session(tmp_path):
    out = tmp_path / "s.jsonl"
    subprocess.run([sys.executable, "-m", "ssmd_fast.kalshi.generator", "--messages", "3000", "--seed", "11",
                    "--era", "current", "--markets", "7", "--out", str(out)], check=True, timeout=60)
    expected = b"".join(f + b"\n" for f in generate_session(3000, seed=11, era="current", markets=7))
    assert out.read_bytes() == expected


def test_bad_arguments():
    with pytest.raises(ValueError):
        SessionGenerator(era="future")
    with pytest.raises(ValueError):
        SessionGenerator(markets=0)
