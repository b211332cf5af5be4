"""Properties of the normalizer under generated input (hypothesis), for both implementations.

- any bytes give a record, None or InvalidFrame with a known reason, never another exception;
- plausible frames (the six types, with valid and hostile field values) give records that are strict
  JSON and obey the schema: key order, canonical numbers, ranges, ticker rule, sorted books;
- formatting is free: whitespace, key order and escapes of the input do not change the record;
- both implementations agree byte for byte (once the compiled one is built).
"""

from __future__ import annotations

import json
import os
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twins import IMPLEMENTATIONS, normalizer

from ssmd_fast.errors import InvalidFrame
from ssmd_fast.normalize import REASONS

pytestmark = [pytest.mark.twin, pytest.mark.timeout(300)]

KALSHI = Path(__file__).parents[1] / "data" / "kalshi"
FIXTURE_FRAMES = [f for p in sorted(KALSHI.glob("*.jsonl")) for f in p.read_bytes().split(b"\n")[:-1]]
# SSMD_FAST_HYPOTHESIS_EXAMPLES=5000 for a longer search than the default run
SETTINGS = settings(max_examples=int(os.environ.get("SSMD_FAST_HYPOTHESIS_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
I64_MAX = 2**63 - 1
TICKER = re.compile(r"[\x21-\x29\x2b-\x3d\x3f-\x7e]{1,1024}")
CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
KEY_ORDER = {
    "trade": "type feed ticker trade_id price size side block ts sid seq",
    "ticker": "type feed ticker yes_bid yes_ask last_price yes_bid_size yes_ask_size last_trade_size volume "
              "open_interest dollar_volume dollar_open_interest ts sid seq",
    "book_snapshot": "type feed ticker yes no sid seq",
    "book_delta": "type feed ticker side price delta ts sid seq",
    "market_lifecycle": "type feed ticker event open_ts close_ts determination_ts settled_ts result "
                        "settlement_value is_deactivated price_level_structure metadata sid seq",
    "event_lifecycle": "type feed event_ticker series_ticker title subtitle collateral_return_type "
                       "strike_date strike_period sid seq",
}


def outcome(impl, frame: bytes):
    """The record, None, or ("invalid", reason); any other exception fails the test."""
    try:
        return impl.normalize_frame(frame)
    except InvalidFrame as exc:
        assert exc.reason in REASONS.values()
        return ("invalid", exc.reason)


# --- strategies ---------------------------------------------------------------------------------------

class Raw(str):
    """JSON text to splice in as is (number forms json.dumps cannot write: 2.8E3, -0, 1e400)."""


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=12),
                         st.floats(allow_nan=False, allow_infinity=False),
                         st.sampled_from([Raw("2.8E3"), Raw("-0"), Raw("45.0"), Raw("1e400"), Raw("-0.0E-5")]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def decimal_text(low, high, places=4):
    """Decimal strings the way Kalshi writes them, plus the exact JSON number of the same value."""
    text = st.decimals(min_value=low, max_value=high, places=places, allow_nan=False).map(str)
    return st.one_of(text, text.map(lambda t: Raw(t.lstrip("-") if t.lstrip("-0.") == "" else t)))


prices = st.one_of(decimal_text(0, 1), st.sampled_from(["0.5500", "1.0000", "0.0020", "000.5", "-0.00", "1"]))
quantities = st.one_of(decimal_text(Decimal("0.01"), 10**7, 2), st.sampled_from(["0.11", "1e0", "25000.00"]))
signed = st.one_of(decimal_text(-(10**6), 10**6, 2),
                   st.sampled_from(["-0.00", "-0", "-54.00", Raw("-0.0"), Raw("1E39"), Raw("1E41"), Raw("-15E-40"),
                                    "9" * 40, "9" * 41, Raw("9" * 60)]))
cents = st.one_of(st.integers(0, 100), st.sampled_from([Raw("55.0"), Raw("5.5E1"), Raw("1E2"), Raw("-0")]))
counts = st.one_of(st.integers(1, 10**9), st.sampled_from([Raw("2.8E3"), Raw("45.0")]))
any_counts = st.one_of(st.integers(-(2**63), I64_MAX), st.sampled_from([Raw("-0"), Raw("2.8E3")]))
seconds = st.one_of(st.integers(-(2**63), I64_MAX), st.integers(0, 2 * 10**9))
offsets = st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 23),
                    st.integers(0, 59))
rfc3339 = st.builds(lambda d, frac, off, t: d.strftime("%Y-%m-%d") + t + d.strftime("%H:%M:%S") + frac + off,
                    st.datetimes(), st.sampled_from(["", ".5", ".000001", ".123456789"]),
                    st.one_of(st.sampled_from(["Z", "z"]), offsets), st.sampled_from("Tt"))
tickers = st.from_regex(r"[A-Z0-9][A-Z0-9.\-]{0,30}", fullmatch=True)
sides = st.sampled_from(["yes", "no"])
texts = st.text(max_size=8)
levels_fp = st.lists(st.tuples(prices, decimal_text(0, 10**6, 2)).map(list), max_size=6)
levels_dollars = st.lists(st.tuples(prices, st.integers(0, 10**6)).map(list), max_size=6)
levels_cents = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 10**6)).map(list), max_size=6)
NEAR_MISSES = st.sampled_from(["", "1e3", " 1", "1.0001", "-0.01", 101, -1, 1.5, "YES", "A B", "A*", "é", "x" * 1025,
                               "2024-02-29T23:59:60Z", "2025-02-29T00:00:00Z", "2026-02-14T15:30:00", [["0.5"]],
                               [[0.5, "1", 2]], 2**63, Raw("1E400"), Raw("0.5E0"), "0" * 41])
hostile = st.one_of(st.none(), json_values, NEAR_MISSES)

# wire type -> field -> strategy of valid values; REQUIRED: groups of which one source must be present
MSG_FIELDS = {
    "trade": {"market_ticker": tickers, "trade_id": texts.filter(bool), "yes_price_dollars": prices,
              "yes_price": cents, "price": cents, "count_fp": quantities, "count": counts, "taker_outcome_side": sides,
              "taker_side": sides, "side": sides, "is_block_trade": st.booleans(), "ts_ms": seconds, "ts": seconds},
    "ticker": {"market_ticker": tickers, "yes_bid_dollars": prices, "yes_bid": cents, "yes_ask_dollars": prices,
               "yes_ask": cents, "price_dollars": st.one_of(prices, st.just("")), "price": cents,
               "yes_bid_size_fp": signed, "yes_ask_size_fp": signed, "last_trade_size_fp": signed,
               "volume_fp": signed, "volume": any_counts, "open_interest_fp": signed, "open_interest": any_counts,
               "dollar_volume": any_counts, "dollar_open_interest": any_counts, "ts_ms": seconds, "time": rfc3339,
               "ts": seconds},
    "orderbook_snapshot": {"market_ticker": tickers, "yes_dollars_fp": levels_fp, "yes_dollars": levels_dollars,
                           "yes": levels_cents, "no_dollars_fp": levels_fp, "no_dollars": levels_dollars,
                           "no": levels_cents},
    "orderbook_delta": {"market_ticker": tickers, "side": sides, "price_dollars": prices, "price": cents,
                        "delta_fp": signed, "delta": any_counts, "ts_ms": seconds, "ts": st.one_of(rfc3339, seconds)},
    "market_lifecycle_v2": {"market_ticker": tickers, "event_type": st.sampled_from(["created", "metadata_updated",
                                                                                      "determined", "", "x"]),
                            "open_ts": seconds, "close_ts": seconds, "determination_ts": seconds,
                            "settled_ts": seconds, "result": texts, "settlement_value": st.one_of(prices, cents),
                            "is_deactivated": st.booleans(), "price_level_structure": texts,
                            "additional_metadata": json_values, "strike_type": texts, "floor_strike": json_values,
                            "title": texts, "rules_secondary": texts},
    "event_lifecycle": {"event_ticker": tickers, "series_ticker": st.one_of(tickers, st.just("")), "title": texts,
                        "subtitle": texts, "sub_title": texts, "collateral_return_type": texts,
                        "strike_date": seconds, "strike_period": texts},
}
REQUIRED = {
    "trade": [("market_ticker",), ("trade_id",), ("yes_price_dollars", "yes_price", "price"), ("count_fp", "count"),
              ("taker_outcome_side", "taker_side", "side")],
    "orderbook_delta": [("market_ticker",), ("side",), ("price_dollars", "price"), ("delta_fp", "delta")],
    "market_lifecycle_v2": [("market_ticker",), ("event_type",)],
    "event_lifecycle": [("event_ticker",)],
    "ticker": [("market_ticker",)], "orderbook_snapshot": [("market_ticker",)],
}


@st.composite
def plausible_frames(draw) -> dict:
    """A frame of a normalized type with valid fields (each optional one present or not), then zero to two
    hostile edits (a value replaced by null, any JSON value or a near miss, or removed)."""
    wire_type = draw(st.sampled_from(list(MSG_FIELDS) * 3 + ["ok", "error", "fill", "ticker_v2"]))
    spec = MSG_FIELDS.get(wire_type, MSG_FIELDS["trade"])
    chosen = {key for key in spec if draw(st.booleans())}
    for group in REQUIRED.get(wire_type, []):
        if not chosen.intersection(group):
            chosen.add(draw(st.sampled_from(group)))
    msg = {key: draw(strategy) for key, strategy in spec.items() if key in chosen}
    frame: dict = {"type": wire_type}
    for key in ("sid", "seq", "id"):
        if draw(st.booleans()):
            frame[key] = draw(st.integers(1, I64_MAX) if key != "id" else st.integers(0, 99))
    for target in draw(st.lists(st.sampled_from(sorted(spec) + ["sid", "seq"]), max_size=2)):
        where = frame if target in ("sid", "seq") else msg
        if draw(st.booleans()):
            where[target] = draw(hostile)
        else:
            where.pop(target, None)
    frame["msg"] = draw(json_values) if draw(st.integers(0, 19)) == 10 else msg
    return frame


def dump(value, *, indent=None, ensure_ascii=False, shuffle: random.Random | None = None) -> str:
    """JSON text of a generated frame; Raw values spliced in verbatim, keys optionally shuffled."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = list(value.items())
        if shuffle:
            shuffle.shuffle(items)
        sep = " , " if indent else ","
        colon = " :\t" if indent else ":"
        return "{" + sep.join(json.dumps(k, ensure_ascii=ensure_ascii) + colon +
                              dump(v, indent=indent, ensure_ascii=ensure_ascii, shuffle=shuffle)
                              for k, v in items) + "}"
    if isinstance(value, list):
        sep = " ,\r\n " if indent else ","
        return "[" + sep.join(dump(v, indent=indent, ensure_ascii=ensure_ascii, shuffle=shuffle) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


# --- schema checks on a record ------------------------------------------------------------------------

def _reject_constant(name):
    raise ValueError(name)


def check_record(record: bytes) -> None:
    rec = json.loads(record, parse_float=Decimal, parse_constant=_reject_constant)
    assert rec["feed"] == "kalshi"
    assert list(rec) == KEY_ORDER[rec["type"]].split()
    text = record.decode()
    if rec["type"] == "market_lifecycle":  # metadata numbers are copied as received
        text = text[:text.index(',"metadata":')] + text[text.rindex(',"sid":'):]
    for token in re.findall(r'"(?:[^"\\]|\\.)*"|(-?[0-9][0-9.eE+-]*)', text):
        if token:  # canonical, no negative zero, at most 40 digits (times and integers have fewer)
            assert CANONICAL.fullmatch(token) and token != "-0", token
            assert sum(c.isdigit() for c in token) <= 40, token
    for key in ("sid", "seq"):
        assert rec[key] is None or (type(rec[key]) is int and 1 <= rec[key] <= I64_MAX)
    ticker = rec.get("ticker", rec.get("event_ticker"))
    assert TICKER.fullmatch(ticker)
    for key in ("price", "yes_bid", "yes_ask", "last_price", "settlement_value"):
        if rec.get(key) is not None:
            assert 0 <= rec[key] <= 1, (key, rec[key])
    for key in ("ts", "open_ts", "close_ts", "determination_ts", "settled_ts", "strike_date", "dollar_volume"):
        assert rec.get(key) is None or type(rec[key]) is int
    t = rec["type"]
    if t == "trade":
        assert rec["size"] > 0 and rec["side"] in ("yes", "no") and type(rec["block"]) is bool and rec["trade_id"]
    elif t == "book_delta":
        assert rec["side"] in ("yes", "no") and rec["price"] is not None and rec["delta"] is not None
    elif t == "book_snapshot":
        for side in ("yes", "no"):
            prices = [p for p, _ in rec[side]]
            assert prices == sorted(prices, reverse=True)
            assert all(0 <= p <= 1 and s >= 0 for p, s in rec[side])
    elif t == "event_lifecycle":
        assert rec["series_ticker"] in (None, "") or TICKER.fullmatch(rec["series_ticker"])


# --- properties ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_reason(impl, data):
    impl = normalizer(impl)
    result = outcome(impl, data)
    if isinstance(result, bytes):
        check_record(result)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@SETTINGS
@given(st.sampled_from(FIXTURE_FRAMES), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                                           st.sampled_from("ird")), min_size=1, max_size=4))
def test_mutated_fixture_frames_never_crash(impl, frame, edits):
    impl = normalizer(impl)
    data = bytearray(frame)
    for pos, byte, op in edits:
        pos %= len(data) + 1
        if op == "i":
            data[pos:pos] = bytes([byte])
        elif op == "r" and pos < len(data):
            data[pos] = byte
        elif op == "d":
            del data[pos:pos + 1]
    result = outcome(impl, bytes(data))
    if isinstance(result, bytes):
        check_record(result)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@SETTINGS
@given(plausible_frames(), st.randoms(use_true_random=False))
def test_plausible_frames_obey_the_schema_whatever_their_formatting(impl, frame, rnd):
    impl = normalizer(impl)
    compact = dump(frame).encode()
    result = outcome(impl, compact)
    if isinstance(result, bytes):
        check_record(result)
    # Whitespace, key order and \u escapes of the input never change the outcome.
    loose = dump(frame, indent=True, ensure_ascii=True, shuffle=rnd).encode()
    other = outcome(impl, b" \r\n" + loose + b"\t")
    if isinstance(result, bytes) and b'"type":"market_lifecycle"' in result:
        # metadata is copied as received (escapes kept): compare it as a JSON value
        assert isinstance(other, bytes)
        assert json.loads(other, parse_float=Decimal) == json.loads(result, parse_float=Decimal)
    elif len(compact) <= 1_048_576 and len(loose) + 4 <= 1_048_576:
        assert other == result


@SETTINGS
@given(st.one_of(plausible_frames().map(lambda f: dump(f).encode()), st.binary(max_size=200),
                 st.sampled_from(FIXTURE_FRAMES)))
def test_both_implementations_agree_byte_for_byte(frame):
    python, cython = normalizer("python"), normalizer("cython")
    assert outcome(cython, frame) == outcome(python, frame)
    pb, cb = python.FrameBatch(), cython.FrameBatch()
    pb.add(frame)
    cb.add(frame)
    for method in ("outcome", "kind", "type_name", "reason", "sid", "seq", "cmd_id", "raw", "record", "key",
                   "trade_id"):
        assert getattr(cb, method)(0) == getattr(pb, method)(0), method
    assert cb.counts() == pb.counts()
