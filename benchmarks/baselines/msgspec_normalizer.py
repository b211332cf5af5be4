"""Peer implementations of schema v1 for benchmarks/compare_normalizers.py.

- `MsgspecNormalizer`: a careful msgspec implementation: a tagged union of typed frame structs
  (decimal sources as strings checked by canon(), integers as int, tickers checked, metadata as
  Raw), exact conversions without floats, and the record encoded from an ordered Struct with numbers
  as `msgspec.Raw` canonical text.
- `orjson_normalize` / `stdlib_normalize`: loads into dicts, the same exact conversions, then
  `orjson.dumps` (numbers as `orjson.Fragment`) or the record text joined from `json.dumps` strings.

All three memoize the decimal conversions (a session repeats the same price strings constantly).

All three produce the same record bytes as ssmd_fast for the frames they model (compare_normalizers
checks it over its corpus). What they do not model (control and other frames, unusual number forms,
anything invalid; for the dict paths also snapshots and lifecycles, whose metadata must be copied as
received) goes to the Python twin, which is rare in a recorded session. Duplicate keys and nesting
depth are not checked by these peers (the corpus has neither).
"""

from __future__ import annotations

import json
import re
from typing import Annotated

import msgspec
import orjson
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from ssmd_fast import _normalize_py as twin
from ssmd_fast.strict_json import minify

# Decimal strings, tickers and sides are checked by canon(), ticker() and the builders (cheaper than
# msgspec pattern constraints, which run a regex per field).
DEC = str
DOLLARS = str      # "" counts as absent
TICKER = str
SIDE = str
CENTS = Annotated[int, Meta(ge=0, le=100)]
I64 = Annotated[int, Meta(ge=-2**63, le=2**63 - 1)]
ID = Annotated[int, Meta(ge=1, le=2**63 - 1)]
COUNT = Annotated[int, Meta(ge=0, le=2**63 - 1)]
_CENT_TEXT = ["0"] + [f"0.{c:02d}".rstrip("0") for c in range(1, 100)] + ["1"]
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z")
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_META_KEYS = ("strike_type", "floor_strike", "cap_strike", "custom_strike", "yes_sub_title", "no_sub_title",
              "title", "rules_primary", "rules_secondary")


class Fallback(Exception):
    """A value outside what the baseline models: the twin decides."""


# --- exact conversions (shared) ----------------------------------------------------------------------

def canon(s: str) -> str:
    """A decimal string matching -?[0-9]+(\\.[0-9]+)? in canonical form (40 digits at most)."""
    neg = s[:1] == "-"
    ip, dot, fp = (s[1:] if neg else s).partition(".")
    if not (ip.isdigit() and ip.isascii()) or (dot and not (fp.isdigit() and fp.isascii())):
        raise Fallback
    ip = ip.lstrip("0") or "0"
    fp = fp.rstrip("0")
    if len(ip) + len(fp) > 40:
        raise Fallback
    c = ip + "." + fp if fp else ip
    return "-" + c if neg and c != "0" else c


def ticker(s: str) -> str:
    """The ticker rule: 1 to 1024 printable ASCII bytes, no space, '*' or '>'."""
    if not (0 < len(s) <= 1024 and s.isascii() and s.isprintable()) or " " in s or "*" in s or ">" in s:
        raise Fallback
    return s


def side(s: str | None) -> str | None:
    if s is not None and s != "yes" and s != "no":
        raise Fallback
    return s


def price(s: str) -> str:
    c = canon(s)
    if c[0] == "-" or (c[0] != "0" and c != "1"):
        raise Fallback
    return c


def positive(s: str) -> str:
    c = canon(s)
    if c[0] == "-" or c == "0":
        raise Fallback
    return c


def nonneg(s: str) -> str:
    c = canon(s)
    if c[0] == "-":
        raise Fallback
    return c


def rfc3339_ns(v: str) -> int:
    m = _RFC3339.match(v)
    if m is None:
        raise Fallback
    y, mo, d, h, mi, s, frac, osign, oh, om = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59 or not 1 <= d <= (29 if mo == 2 and leap else _MONTH_DAYS[mo]):
        raise Fallback
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo - 3 if mo > 2 else mo + 9) + 2) // 5 + d - 1
    secs = (era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468) * 86400 + h * 3600 + mi * 60 + s
    if osign is not None:
        if int(oh) > 23 or int(om) > 59:
            raise Fallback
        off = int(oh) * 3600 + int(om) * 60
        secs -= off if osign == "+" else -off
    return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def levels_text(levels, conv_price, conv_size) -> str:
    out = sorted(((conv_price(p), conv_size(s)) for p, s in levels), key=lambda lv: lv[0], reverse=True)
    return "[" + ",".join(["[" + p + "," + s + "]" for p, s in out]) + "]"


# --- msgspec: typed frames -----------------------------------------------------------------------------

class TradeMsg(Struct):
    market_ticker: TICKER
    trade_id: Annotated[str, Meta(min_length=1)]
    yes_price_dollars: DOLLARS | None = None
    yes_price: CENTS | None = None
    price: CENTS | None = None
    count_fp: DEC | None = None
    count: Annotated[int, Meta(gt=0, le=2**63 - 1)] | None = None
    taker_outcome_side: SIDE | None = None
    taker_side: SIDE | None = None
    side: SIDE | None = None
    is_block_trade: bool | None = None
    ts_ms: I64 | None = None
    ts: I64 | None = None


class TickerMsg(Struct):
    market_ticker: TICKER
    yes_bid_dollars: DOLLARS | None = None
    yes_bid: CENTS | None = None
    yes_ask_dollars: DOLLARS | None = None
    yes_ask: CENTS | None = None
    price_dollars: DOLLARS | None = None
    price: CENTS | None = None
    yes_bid_size_fp: DEC | None = None
    yes_ask_size_fp: DEC | None = None
    last_trade_size_fp: DEC | None = None
    volume_fp: DEC | None = None
    volume: I64 | None = None
    open_interest_fp: DEC | None = None
    open_interest: I64 | None = None
    dollar_volume: I64 | None = None
    dollar_open_interest: I64 | None = None
    ts_ms: I64 | None = None
    time: str | None = None
    ts: I64 | None = None


class SnapshotMsg(Struct):
    market_ticker: TICKER
    yes_dollars_fp: list[tuple[DEC, DEC]] | UnsetType = UNSET
    yes_dollars: list[tuple[DEC, COUNT]] | UnsetType = UNSET
    yes: list[tuple[CENTS, COUNT]] | UnsetType = UNSET
    no_dollars_fp: list[tuple[DEC, DEC]] | UnsetType = UNSET
    no_dollars: list[tuple[DEC, COUNT]] | UnsetType = UNSET
    no: list[tuple[CENTS, COUNT]] | UnsetType = UNSET


class DeltaMsg(Struct):
    market_ticker: TICKER
    side: SIDE
    price_dollars: DOLLARS | None = None
    price: CENTS | None = None
    delta_fp: DEC | None = None
    delta: I64 | None = None
    ts_ms: I64 | None = None
    ts: str | I64 | None = None


class MarketLifecycleMsg(Struct):
    market_ticker: TICKER
    event_type: str
    open_ts: I64 | None = None
    close_ts: I64 | None = None
    determination_ts: I64 | None = None
    settled_ts: I64 | None = None
    result: str | None = None
    settlement_value: DEC | I64 | None = None
    is_deactivated: bool | None = None
    price_level_structure: str | None = None
    additional_metadata: Raw | UnsetType = UNSET
    strike_type: Raw | UnsetType = UNSET
    floor_strike: Raw | UnsetType = UNSET
    cap_strike: Raw | UnsetType = UNSET
    custom_strike: Raw | UnsetType = UNSET
    yes_sub_title: Raw | UnsetType = UNSET
    no_sub_title: Raw | UnsetType = UNSET
    title: Raw | UnsetType = UNSET
    rules_primary: Raw | UnsetType = UNSET
    rules_secondary: Raw | UnsetType = UNSET


class EventLifecycleMsg(Struct):
    event_ticker: TICKER
    series_ticker: str | None = None
    title: str | None = None
    subtitle: str | None = None
    sub_title: str | None = None
    collateral_return_type: str | None = None
    strike_date: I64 | None = None
    strike_period: str | None = None


class _Env(Struct, tag_field="type", kw_only=True):
    sid: ID | None = None
    seq: ID | None = None


class Trade(_Env, tag="trade"):
    msg: TradeMsg


class Ticker(_Env, tag="ticker"):
    msg: TickerMsg


class Snapshot(_Env, tag="orderbook_snapshot"):
    msg: SnapshotMsg


class Delta(_Env, tag="orderbook_delta"):
    msg: DeltaMsg


class MarketLifecycle(_Env, tag="market_lifecycle_v2"):
    msg: MarketLifecycleMsg


class EventLifecycle(_Env, tag="event_lifecycle"):
    msg: EventLifecycleMsg


class TradeRec(Struct):
    type: str
    feed: str
    ticker: str
    trade_id: str
    price: Raw
    size: Raw
    side: str
    block: bool
    ts: int | None
    sid: int | None
    seq: int | None


class TickerRec(Struct):
    type: str
    feed: str
    ticker: str
    yes_bid: Raw | None
    yes_ask: Raw | None
    last_price: Raw | None
    yes_bid_size: Raw | None
    yes_ask_size: Raw | None
    last_trade_size: Raw | None
    volume: Raw | None
    open_interest: Raw | None
    dollar_volume: int | None
    dollar_open_interest: int | None
    ts: int | None
    sid: int | None
    seq: int | None


class SnapshotRec(Struct):
    type: str
    feed: str
    ticker: str
    yes: Raw
    no: Raw
    sid: int | None
    seq: int | None


class DeltaRec(Struct):
    type: str
    feed: str
    ticker: str
    side: str
    price: Raw
    delta: Raw
    ts: int | None
    sid: int | None
    seq: int | None


class MarketLifecycleRec(Struct):
    type: str
    feed: str
    ticker: str
    event: str
    open_ts: int | None
    close_ts: int | None
    determination_ts: int | None
    settled_ts: int | None
    result: str | None
    settlement_value: Raw | None
    is_deactivated: bool | None
    price_level_structure: str | None
    metadata: Raw | None
    sid: int | None
    seq: int | None


class EventLifecycleRec(Struct):
    type: str
    feed: str
    event_ticker: str
    series_ticker: str | None
    title: str | None
    subtitle: str | None
    collateral_return_type: str | None
    strike_date: int | None
    strike_period: str | None
    sid: int | None
    seq: int | None


def _raw(text: str) -> Raw:
    return Raw(text.encode())


# Memoized conversions: prices and sizes repeat constantly in a session (bounded; cleared when full).
_PRICE_RAW: dict[str, Raw] = {}
_QTY_RAW: dict[str, Raw] = {}
_CENT_RAW = [_raw(c) for c in _CENT_TEXT]


def _memo(cache: dict, conv, s: str) -> Raw:
    r = cache.get(s)
    if r is None:
        if len(cache) > 200_000:
            cache.clear()
        r = cache[s] = _raw(conv(s))
    return r


_PRICE_TXT: dict[str, str] = {}
_QTY_TXT: dict[str, str] = {}


def _memo_text(cache: dict, conv, s: str) -> str:
    r = cache.get(s)
    if r is None:
        if len(cache) > 200_000:
            cache.clear()
        r = cache[s] = conv(s)
    return r


def _opt_price(dollars: str | None, cents: int | None) -> Raw | None:
    if dollars:
        return _memo(_PRICE_RAW, price, dollars)
    return None if cents is None else _CENT_RAW[cents]


def _qty(fp: str | None, legacy: int | None) -> Raw | None:
    if fp is not None:
        return _memo(_QTY_RAW, canon, fp)
    return None if legacy is None else _raw(str(legacy))


def _ns(v: int | None, scale: int) -> int | None:
    return None if v is None else v * scale


def _side_text(fp, dollars, cents) -> str:
    if fp is not UNSET:
        return levels_text(fp, price, nonneg)
    if dollars is not UNSET:
        return levels_text(dollars, price, str)
    if cents is not UNSET:
        return levels_text(cents, _CENT_TEXT.__getitem__, str)
    return "[]"


def _build(f) -> Struct:
    m = f.msg
    t = type(f)
    if t is Ticker:
        ts = _ns(m.ts_ms, 1_000_000) if m.ts_ms is not None else (
            rfc3339_ns(m.time) if m.time is not None else _ns(m.ts, 1_000_000_000))
        return TickerRec("ticker", "kalshi", ticker(m.market_ticker), _opt_price(m.yes_bid_dollars, m.yes_bid),
                         _opt_price(m.yes_ask_dollars, m.yes_ask), _opt_price(m.price_dollars, m.price),
                         _qty(m.yes_bid_size_fp, None), _qty(m.yes_ask_size_fp, None),
                         _qty(m.last_trade_size_fp, None), _qty(m.volume_fp, m.volume),
                         _qty(m.open_interest_fp, m.open_interest), m.dollar_volume, m.dollar_open_interest,
                         ts, f.sid, f.seq)
    if t is Delta:
        p = _opt_price(m.price_dollars, m.price)
        d = _qty(m.delta_fp, m.delta)
        if p is None or d is None:
            raise Fallback
        ts = m.ts
        ts = _ns(m.ts_ms, 1_000_000) if m.ts_ms is not None else (
            rfc3339_ns(ts) if type(ts) is str else _ns(ts, 1_000_000_000))
        return DeltaRec("book_delta", "kalshi", ticker(m.market_ticker), side(m.side), p, d, ts, f.sid, f.seq)
    if t is Trade:
        p = _opt_price(m.yes_price_dollars, m.yes_price if m.yes_price is not None else m.price)
        size = _raw(positive(m.count_fp)) if m.count_fp is not None else (
            None if m.count is None else _raw(str(m.count)))
        sd = m.taker_outcome_side or m.taker_side or m.side
        if p is None or size is None or side(sd) is None:
            raise Fallback
        ts = _ns(m.ts_ms, 1_000_000) if m.ts_ms is not None else _ns(m.ts, 1_000_000_000)
        return TradeRec("trade", "kalshi", ticker(m.market_ticker), m.trade_id, p, size, sd, bool(m.is_block_trade),
                        ts, f.sid, f.seq)
    if t is Snapshot:
        return SnapshotRec("book_snapshot", "kalshi", ticker(m.market_ticker),
                           _raw(_side_text(m.yes_dollars_fp, m.yes_dollars, m.yes)),
                           _raw(_side_text(m.no_dollars_fp, m.no_dollars, m.no)), f.sid, f.seq)
    if t is MarketLifecycle:
        sv = m.settlement_value
        sv = None if sv is None else _raw(_CENT_TEXT[sv] if type(sv) is int and 0 <= sv <= 100 else price(str(sv)))
        am = m.additional_metadata
        if am is not UNSET and bytes(am) != b"null":
            meta = _raw(minify(bytes(am).decode()))
        elif m.event_type == "metadata_updated":
            items = [f'"{k}":{minify(bytes(getattr(m, k)).decode())}' for k in _META_KEYS
                     if getattr(m, k) is not UNSET]
            meta = _raw("{" + ",".join(items) + "}")
        else:
            meta = None
        return MarketLifecycleRec("market_lifecycle", "kalshi", ticker(m.market_ticker), m.event_type,
                                  _ns(m.open_ts, 1_000_000_000), _ns(m.close_ts, 1_000_000_000),
                                  _ns(m.determination_ts, 1_000_000_000), _ns(m.settled_ts, 1_000_000_000),
                                  m.result, sv, m.is_deactivated, m.price_level_structure, meta, f.sid, f.seq)
    st = m.series_ticker
    if st:
        ticker(st)
    return EventLifecycleRec("event_lifecycle", "kalshi", ticker(m.event_ticker), st, m.title,
                             m.subtitle if m.subtitle is not None else m.sub_title, m.collateral_return_type,
                             _ns(m.strike_date, 1_000_000_000), m.strike_period, f.sid, f.seq)


class MsgspecNormalizer:
    """normalize(frame) -> record bytes, None for control/other frames; InvalidFrame for invalid ones."""

    def __init__(self):
        self._decode = msgspec.json.Decoder(Trade | Ticker | Snapshot | Delta | MarketLifecycle | EventLifecycle).decode
        self._encode = msgspec.json.Encoder().encode

    def normalize(self, frame: bytes) -> bytes | None:
        try:
            return self._encode(_build(self._decode(frame)))
        except (msgspec.ValidationError, msgspec.DecodeError, Fallback):
            return twin.normalize_frame(frame)


# --- orjson and stdlib json: dicts -----------------------------------------------------------------------

def _dict_fields(o: dict, num, text) -> list:
    """(key, value) pairs of the record of a decoded frame; num/text wrap numbers and strings."""
    t = o.get("type")
    m = o.get("msg")
    if type(m) is not dict:
        raise Fallback
    g = m.get

    def dollars(k):
        v = g(k)
        if v is None or v == "":
            return None
        if type(v) is not str:
            raise Fallback
        return num(_memo_text(_PRICE_TXT, price, v))

    def cents(k):
        v = g(k)
        if v is None:
            return None
        if type(v) is not int or not 0 <= v <= 100:
            raise Fallback
        return num(_CENT_TEXT[v])

    def qty(k, legacy=None):
        v = g(k)
        if v is not None:
            if type(v) is not str:
                raise Fallback
            return num(_memo_text(_QTY_TXT, canon, v))
        v = g(legacy) if legacy else None
        if v is None:
            return None
        if type(v) is not int:
            raise Fallback
        return num(str(v))

    def integer(k, scale=1):
        v = g(k)
        if v is None:
            return None
        if type(v) is not int:
            raise Fallback
        return v * scale

    def string(k):
        v = g(k)
        if v is not None and type(v) is not str:
            raise Fallback
        return None if v is None else text(v)

    tk = g("event_ticker" if t == "event_lifecycle" else "market_ticker")
    if type(tk) is not str:
        raise Fallback
    ticker(tk)
    env = [("sid", o.get("sid")), ("seq", o.get("seq"))]
    for _, v in env:
        if v is not None and (type(v) is not int or v < 1):
            raise Fallback
    if t == "ticker":
        ts = integer("ts_ms", 1_000_000)
        if ts is None:
            ts = rfc3339_ns(g("time")) if g("time") is not None else integer("ts", 1_000_000_000)
        return [("type", text("ticker")), ("feed", text("kalshi")), ("ticker", text(tk)),
                ("yes_bid", dollars("yes_bid_dollars") or cents("yes_bid")),
                ("yes_ask", dollars("yes_ask_dollars") or cents("yes_ask")),
                ("last_price", dollars("price_dollars") or cents("price")),
                ("yes_bid_size", qty("yes_bid_size_fp")), ("yes_ask_size", qty("yes_ask_size_fp")),
                ("last_trade_size", qty("last_trade_size_fp")), ("volume", qty("volume_fp", "volume")),
                ("open_interest", qty("open_interest_fp", "open_interest")),
                ("dollar_volume", integer("dollar_volume")), ("dollar_open_interest", integer("dollar_open_interest")),
                ("ts", ts)] + env
    if t == "orderbook_delta":
        side, p, d = g("side"), dollars("price_dollars") or cents("price"), qty("delta_fp", "delta")
        if side not in ("yes", "no") or p is None or d is None:
            raise Fallback
        ts = integer("ts_ms", 1_000_000)
        if ts is None:
            v = g("ts")
            ts = rfc3339_ns(v) if type(v) is str else integer("ts", 1_000_000_000)
        return [("type", text("book_delta")), ("feed", text("kalshi")), ("ticker", text(tk)), ("side", text(side)),
                ("price", p), ("delta", d), ("ts", ts)] + env
    if t == "trade":
        p = dollars("yes_price_dollars") or cents("yes_price") or cents("price")
        size = qty("count_fp", "count")
        side = g("taker_outcome_side") or g("taker_side") or g("side")
        tid = g("trade_id")
        if p is None or size is None or side not in ("yes", "no") or type(tid) is not str or not tid:
            raise Fallback
        ts = integer("ts_ms", 1_000_000)
        if ts is None:
            ts = integer("ts", 1_000_000_000)
        block = g("is_block_trade")
        if block is not None and type(block) is not bool:
            raise Fallback
        return [("type", text("trade")), ("feed", text("kalshi")), ("ticker", text(tk)), ("trade_id", text(tid)),
                ("price", p), ("size", size), ("side", text(side)), ("block", bool(block)), ("ts", ts)] + env
    raise Fallback  # snapshots and lifecycles: the twin (rare in a session)


def orjson_normalize(frame: bytes) -> bytes | None:
    try:
        return orjson.dumps(dict(_dict_fields(orjson.loads(frame), orjson.Fragment, str)))
    except (orjson.JSONDecodeError, Fallback, TypeError, AttributeError):
        return twin.normalize_frame(frame)


_JSON_LOADS = json.JSONDecoder().decode
_JSON_STR = json.encoder.encode_basestring
_LITERAL = {None: "null", True: "true", False: "false"}


def _stdlib_value(v) -> str:
    if type(v) is int:
        return str(v)
    if type(v) is str:
        return v
    return _LITERAL[v]


def stdlib_normalize(frame: bytes) -> bytes | None:
    try:
        fields = _dict_fields(_JSON_LOADS(frame.decode()), str, _JSON_STR)
    except (ValueError, Fallback, TypeError, AttributeError):
        return twin.normalize_frame(frame)
    return ("{" + ",".join([f'"{k}":{_stdlib_value(v)}' for k, v in fields]) + "}").encode()
