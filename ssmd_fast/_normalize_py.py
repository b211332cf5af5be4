"""Pure-Python normalizer: the executable spec of docs/schema-v1.md, byte for byte as docs/design.md says.

The Cython normalizer (`_normalize.pyx`) is compared with this module record by record, so every choice
here is the contract. Parsing is `strict_json.loads` (exact numbers, strict RFC 8259); each record type
is a table of field rules, each rule turning the winning source into the JSON text of its output value.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring as _jstr

from ssmd_fast.errors import InvalidFrame
from ssmd_fast.strict_json import JsonError, minify, object_members
from ssmd_fast.strict_json import Number as _Num
from ssmd_fast.strict_json import loads as _loads

# The values mirror ssmd_fast/_normalize.pxd (a guard test compares them with the compiled module).
OUT_RECORD, OUT_CONTROL, OUT_OTHER, OUT_INVALID = 0, 1, 2, 3
K_TRADE, K_TICKER, K_BOOK_SNAPSHOT, K_BOOK_DELTA, K_MARKET_LIFECYCLE, K_EVENT_LIFECYCLE = 0, 1, 2, 3, 4, 5
K_SUBSCRIBED, K_OK, K_ERROR, K_UNSUBSCRIBED = 8, 9, 10, 11
K_NONE = 255
R_NONE, R_SIZE, R_UTF8, R_JSON, R_DEPTH, R_DUPLICATE_KEY = 0, 1, 2, 3, 4, 5
R_SHAPE, R_MISSING, R_TYPE, R_RANGE, R_TICKER, R_COUNT = 6, 7, 8, 9, 10, 11
F_DUPLICATE, F_SUPPRESSED, F_GAP, F_DROP = 1, 2, 4, 3

RECORD_TYPES = {K_TRADE: "trade", K_TICKER: "ticker", K_BOOK_SNAPSHOT: "book_snapshot",
                K_BOOK_DELTA: "book_delta", K_MARKET_LIFECYCLE: "market_lifecycle",
                K_EVENT_LIFECYCLE: "event_lifecycle"}
CONTROL_TYPES = {K_SUBSCRIBED: "subscribed", K_OK: "ok", K_ERROR: "error", K_UNSUBSCRIBED: "unsubscribed"}
REASONS = {R_SIZE: "size", R_UTF8: "utf8", R_JSON: "json", R_DEPTH: "depth",
           R_DUPLICATE_KEY: "duplicate_key", R_SHAPE: "shape", R_MISSING: "missing", R_TYPE: "type",
           R_RANGE: "range", R_TICKER: "ticker"}

MAX_FRAME = 1_048_576
MAX_DEPTH = 128
MAX_DIGITS = 40
RAW_INVALID_MAX = 256
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1


class _Bad(Exception):
    """Internal: a frame breaks a rule; ``code`` is its R_* value."""

    __slots__ = ("code",)

    def __init__(self, code: int):
        self.code = code


# ---------------------------------------------------------------------------------------------------
# Value rules. Converters take a present value and return its JSON text for the record, or raise _Bad.

_DEC_STR = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?\Z")
_NUM_TEXT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?\Z")
_TICKER = re.compile(r"[\x21-\x29\x2b-\x3d\x3f-\x7e]{1,1024}\Z")
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z")
_CENTS = ["0"] + [f"0.{c:02d}".rstrip("0") for c in range(1, 100)] + ["1"]
_HUGE_EXP = 10 ** 30  # beyond any exponent that can matter; stands in for exponents of 31+ digits


def _num_parts(s: str) -> tuple[bool, str, int]:
    """(negative, significant digits without leading/trailing zeros, exponent) of a JSON number."""
    neg, ip, fp, esign, edigits = _NUM_TEXT.match(s).groups()
    digits = ip + fp if fp else ip
    exp = -len(fp) if fp else 0
    sig = digits.lstrip("0")
    if not sig:
        return False, "", 0
    trimmed = sig.rstrip("0")
    exp += len(sig) - len(trimmed)
    if edigits:
        edigits = edigits.lstrip("0")
        e = _HUGE_EXP if len(edigits) > 30 else int(edigits) if edigits else 0
        exp += -e if esign == "-" else e
    return neg == "-", trimmed, exp


def _parts_digits(sig: str, exp: int) -> int:
    """How many digits the canonical form of sig * 10**exp has."""
    if not sig:
        return 1
    if exp >= 0:
        return len(sig) + exp
    return len(sig) if len(sig) + exp > 0 else 1 - exp


def _parts_text(neg: bool, sig: str, exp: int) -> str:
    if not sig:
        return "0"
    if exp >= 0:
        s = sig + "0" * exp
    else:
        p = len(sig) + exp
        s = sig[:p] + "." + sig[p:] if p > 0 else "0." + "0" * -p + sig
    return "-" + s if neg else s


def _dec_text(v: str) -> str:
    m = _DEC_STR.match(v)
    if m is None:
        raise _Bad(R_RANGE)
    neg, ip, fp = m.groups()
    ip = ip.lstrip("0") or "0"
    if fp:
        fp = fp.rstrip("0")
    if fp:
        if len(ip) + len(fp) > MAX_DIGITS:
            raise _Bad(R_RANGE)
        c = ip + "." + fp
    elif len(ip) > MAX_DIGITS:
        raise _Bad(R_RANGE)
    else:
        c = ip
    return "-" + c if neg and c != "0" else c


_DEC_CACHE: dict[str, str] = {}  # prices and sizes repeat a lot on the wire


def _dec(v) -> str:
    """Canonical text of a decimal source (a decimal string, or a JSON number taken exactly)."""
    t = type(v)
    if t is str:
        c = _DEC_CACHE.get(v)
        if c is None:
            c = _dec_text(v)
            if len(_DEC_CACHE) >= 4096:
                _DEC_CACHE.clear()
            _DEC_CACHE[v] = c
        return c
    if t is int:
        c = str(v)
        if len(c) - (v < 0) > MAX_DIGITS:
            raise _Bad(R_RANGE)
        return c
    if t is _Num:
        neg, sig, exp = _num_parts(v)
        if _parts_digits(sig, exp) > MAX_DIGITS:
            raise _Bad(R_RANGE)
        return _parts_text(neg, sig, exp)
    raise _Bad(R_TYPE)


def _int(v) -> int:
    """Integer rule: a JSON number with an exact integer value in int64."""
    t = type(v)
    if t is int:
        i = v
    elif t is _Num:
        neg, sig, exp = _num_parts(v)
        if not sig:
            return 0
        if exp < 0:
            raise _Bad(R_TYPE)
        if len(sig) + exp > 19:
            raise _Bad(R_RANGE)
        i = int(sig) * 10 ** exp
        if neg:
            i = -i
    else:
        raise _Bad(R_TYPE)
    if i < _I64_MIN or i > _I64_MAX:
        raise _Bad(R_RANGE)
    return i


def _price(v) -> str:
    c = _dec(v)
    if c[0] == "-" or (c[0] != "0" and c != "1"):
        raise _Bad(R_RANGE)
    return c


def _cents(v) -> str:
    i = _int(v)
    if i < 0 or i > 100:
        raise _Bad(R_RANGE)
    return _CENTS[i]


def _qty(v) -> str:
    return _dec(v)


def _qty_pos(v) -> str:
    c = _dec(v)
    if c[0] == "-" or c == "0":
        raise _Bad(R_RANGE)
    return c


def _qty_nonneg(v) -> str:
    c = _dec(v)
    if c[0] == "-":
        raise _Bad(R_RANGE)
    return c


def _integer(v) -> str:
    return str(_int(v))


def _count_pos(v) -> str:
    i = _int(v)
    if i <= 0:
        raise _Bad(R_RANGE)
    return str(i)


def _count_nonneg(v) -> str:
    i = _int(v)
    if i < 0:
        raise _Bad(R_RANGE)
    return str(i)


def _time_s(v) -> str:
    return str(_int(v) * 1_000_000_000)


def _time_ms(v) -> str:
    return str(_int(v) * 1_000_000)


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _time_rfc(v) -> str:
    if type(v) is not str:
        raise _Bad(R_TYPE)
    m = _RFC3339.match(v)
    if m is None:
        raise _Bad(R_RANGE)
    y, mo, d, h, mi, s, frac, osign, oh, om = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    if not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59:
        raise _Bad(R_RANGE)
    if not 1 <= d <= (29 if mo == 2 and _is_leap(y) else _MONTH_DAYS[mo]):
        raise _Bad(R_RANGE)
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    if osign is not None:
        oh, om = int(oh), int(om)
        if oh > 23 or om > 59:
            raise _Bad(R_RANGE)
        secs -= (oh * 3600 + om * 60) if osign == "+" else -(oh * 3600 + om * 60)
    ns = secs * 1_000_000_000
    if frac:
        ns += int(frac.ljust(9, "0"))
    return str(ns)


def _time_s_or_rfc(v) -> str:
    return _time_rfc(v) if type(v) is str else _time_s(v)


def _ticker(v) -> str:
    if type(v) is not str:
        raise _Bad(R_TYPE)
    if _TICKER.match(v) is None:
        raise _Bad(R_TICKER)
    return _jstr(v)


def _string(v) -> str:
    if type(v) is not str:
        raise _Bad(R_TYPE)
    return _jstr(v)


def _nonempty_string(v) -> str:
    if type(v) is not str:
        raise _Bad(R_TYPE)
    if not v:
        raise _Bad(R_RANGE)
    return _jstr(v)


def _series_ticker(v) -> str:
    return '""' if v == "" else _ticker(v)


def _yes_no(v) -> str:
    if type(v) is not str:
        raise _Bad(R_TYPE)
    if v == "yes":
        return '"yes"'
    if v == "no":
        return '"no"'
    raise _Bad(R_RANGE)


def _boolean(v) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    raise _Bad(R_TYPE)


def _settlement(v) -> str:
    """A string is dollars; an integer-valued JSON number is legacy cents; another number is dollars."""
    t = type(v)
    if t is int or (t is _Num and _num_parts(v)[2] >= 0):
        return _cents(v)
    if t is str or t is _Num:
        return _price(v)
    raise _Bad(R_TYPE)


# ---------------------------------------------------------------------------------------------------
# Field rules: (output key text, default, sources). A source is (key, converter, "" counts as absent);
# the first present source wins; none present gives the default (None: the field is required).

_LEVELS = object()  # default marker of a snapshot side: its sources follow the side rule in _levels


def _field(m: dict, default, sources) -> str:
    if default is _LEVELS:
        return _levels(m, sources)
    for key, conv, dollars in sources:
        v = m.get(key)
        if v is None or (dollars and v == ""):
            continue
        return conv(v)
    if default is None:
        raise _Bad(R_MISSING)
    return default


def _levels(m, sources):
    """A snapshot side: the first source whose key exists (`null` too) wins; levels sorted by price."""
    for key, price_conv, size_conv in sources:
        if key not in m:
            continue
        v = m[key]
        if type(v) is not list:
            raise _Bad(R_TYPE)
        levels, range_error = [], False
        for level in v:
            if type(level) is not list or len(level) != 2:
                raise _Bad(R_TYPE)
            try:
                levels.append((price_conv(level[0]), size_conv(level[1])))
            except _Bad as e:  # a type error later in the side takes precedence over a range error
                if e.code != R_RANGE:
                    raise
                range_error = True
                try:
                    size_conv(level[1])
                except _Bad as e2:
                    if e2.code != R_RANGE:
                        raise
        if range_error:
            raise _Bad(R_RANGE)
        # Canonical prices in [0, 1] ("0", "0.x...", "1") order as strings; sorted() is stable.
        levels.sort(key=_level_price, reverse=True)
        return "[" + ",".join(["[" + p + "," + s + "]" for p, s in levels]) + "]"
    return "[]"


def _level_price(level):
    return level[0]


def _src(key, conv):
    return (key, conv, key.endswith("_dollars"))


_TRADE = (
    ('{"type":"trade","feed":"kalshi","ticker":', None, (_src("market_ticker", _ticker),)),
    (',"trade_id":', None, (_src("trade_id", _nonempty_string),)),
    (',"price":', None, (_src("yes_price_dollars", _price), _src("yes_price", _cents),
                         _src("price", _cents))),
    (',"size":', None, (_src("count_fp", _qty_pos), _src("count", _count_pos))),
    (',"side":', None, (_src("taker_outcome_side", _yes_no), _src("taker_side", _yes_no),
                        _src("side", _yes_no))),
    (',"block":', "false", (_src("is_block_trade", _boolean),)),
    (',"ts":', "null", (_src("ts_ms", _time_ms), _src("ts", _time_s))),
)
_TICKER_FIELDS = (
    ('{"type":"ticker","feed":"kalshi","ticker":', None, (_src("market_ticker", _ticker),)),
    (',"yes_bid":', "null", (_src("yes_bid_dollars", _price), _src("yes_bid", _cents))),
    (',"yes_ask":', "null", (_src("yes_ask_dollars", _price), _src("yes_ask", _cents))),
    (',"last_price":', "null", (_src("price_dollars", _price), _src("price", _cents))),
    (',"yes_bid_size":', "null", (_src("yes_bid_size_fp", _qty),)),
    (',"yes_ask_size":', "null", (_src("yes_ask_size_fp", _qty),)),
    (',"last_trade_size":', "null", (_src("last_trade_size_fp", _qty),)),
    (',"volume":', "null", (_src("volume_fp", _qty), _src("volume", _integer))),
    (',"open_interest":', "null", (_src("open_interest_fp", _qty), _src("open_interest", _integer))),
    (',"dollar_volume":', "null", (_src("dollar_volume", _integer),)),
    (',"dollar_open_interest":', "null", (_src("dollar_open_interest", _integer),)),
    (',"ts":', "null", (_src("ts_ms", _time_ms), _src("time", _time_rfc), _src("ts", _time_s))),
)
_SNAPSHOT = (
    ('{"type":"book_snapshot","feed":"kalshi","ticker":', None, (_src("market_ticker", _ticker),)),
    (',"yes":', _LEVELS, (("yes_dollars_fp", _price, _qty_nonneg), ("yes_dollars", _price, _count_nonneg),
                          ("yes", _cents, _count_nonneg))),
    (',"no":', _LEVELS, (("no_dollars_fp", _price, _qty_nonneg), ("no_dollars", _price, _count_nonneg),
                         ("no", _cents, _count_nonneg))),
)
_DELTA = (
    ('{"type":"book_delta","feed":"kalshi","ticker":', None, (_src("market_ticker", _ticker),)),
    (',"side":', None, (_src("side", _yes_no),)),
    (',"price":', None, (_src("price_dollars", _price), _src("price", _cents))),
    (',"delta":', None, (_src("delta_fp", _qty), _src("delta", _integer))),
    (',"ts":', "null", (_src("ts_ms", _time_ms), _src("ts", _time_s_or_rfc))),
)
_MARKET_LIFECYCLE = (
    ('{"type":"market_lifecycle","feed":"kalshi","ticker":', None, (_src("market_ticker", _ticker),)),
    (',"event":', None, (_src("event_type", _string),)),
    (',"open_ts":', "null", (_src("open_ts", _time_s),)),
    (',"close_ts":', "null", (_src("close_ts", _time_s),)),
    (',"determination_ts":', "null", (_src("determination_ts", _time_s),)),
    (',"settled_ts":', "null", (_src("settled_ts", _time_s),)),
    (',"result":', "null", (_src("result", _string),)),
    (',"settlement_value":', "null", (_src("settlement_value", _settlement),)),
    (',"is_deactivated":', "null", (_src("is_deactivated", _boolean),)),
    (',"price_level_structure":', "null", (_src("price_level_structure", _string),)),
)
_EVENT_LIFECYCLE = (
    ('{"type":"event_lifecycle","feed":"kalshi","event_ticker":', None,
     (_src("event_ticker", _ticker),)),
    (',"series_ticker":', "null", (_src("series_ticker", _series_ticker),)),
    (',"title":', "null", (_src("title", _string),)),
    (',"subtitle":', "null", (_src("subtitle", _string), _src("sub_title", _string))),
    (',"collateral_return_type":', "null", (_src("collateral_return_type", _string),)),
    (',"strike_date":', "null", (_src("strike_date", _time_s),)),
    (',"strike_period":', "null", (_src("strike_period", _string),)),
)

# wire type -> (kind, field rules, key field)
_RECORD_RULES = {
    "trade": (K_TRADE, _TRADE, "market_ticker"),
    "ticker": (K_TICKER, _TICKER_FIELDS, "market_ticker"),
    "orderbook_snapshot": (K_BOOK_SNAPSHOT, _SNAPSHOT, "market_ticker"),
    "orderbook_delta": (K_BOOK_DELTA, _DELTA, "market_ticker"),
    "market_lifecycle_v2": (K_MARKET_LIFECYCLE, _MARKET_LIFECYCLE, "market_ticker"),
    "event_lifecycle": (K_EVENT_LIFECYCLE, _EVENT_LIFECYCLE, "event_ticker"),
}
_CONTROL_KINDS = {name: kind for kind, name in CONTROL_TYPES.items()}
_REASON_CODES = {name: code for code, name in REASONS.items()}
_INVALID_SIZE = (OUT_INVALID, K_NONE, R_SIZE, None, None, None, None, None, None, None)
_METADATA_KEYS = ("strike_type", "floor_strike", "cap_strike", "custom_strike", "yes_sub_title",
                  "no_sub_title", "title", "rules_primary", "rules_secondary")


def _envelope_id(v, low: int):
    """An envelope integer (sid, seq, id) in low..2^63-1, or None; never raises (controls, others)."""
    if v is None:
        return None
    try:
        i = _int(v)
    except _Bad:
        return None
    return i if i >= low else None


def _envelope_required_range(v):
    """sid/seq of a normalized type: when present, an integer in 1..2^63-1."""
    if v is None:
        return "null"
    if type(v) is int and 0 < v <= _I64_MAX:
        return str(v)
    i = _int(v)
    if i < 1:
        raise _Bad(R_RANGE)
    return str(i)


def _build(fields, o: dict, m: dict) -> list[str]:
    """The record's parts (key text, value text, ...); on any rule broken, the first reason in order."""
    parts: list[str] = []
    append = parts.append
    get = m.get
    try:
        for key_text, default, sources in fields:  # _field, inlined: this is the per-frame loop
            append(key_text)
            if default is _LEVELS:
                append(_levels(m, sources))
                continue
            for key, conv, dollars in sources:
                v = get(key)
                if v is None or (dollars and v == ""):
                    continue
                append(conv(v))
                break
            else:
                if default is None:
                    raise _Bad(R_MISSING)
                append(default)
        append(',"sid":')
        append(_envelope_required_range(o.get("sid")))
        append(',"seq":')
        append(_envelope_required_range(o.get("seq")))
    except _Bad as first:
        raise _Bad(_lowest_reason(fields, o, m, first.code))
    return parts


def _lowest_reason(fields, o, m, code: int) -> int:
    # Rules are pure, so re-running them all to find the lowest code is safe (and only costs on errors).
    checks = [(_field, m, default, sources) for _, default, sources in fields]
    checks += [(_envelope_one, o, "sid", None), (_envelope_one, o, "seq", None)]
    for rule, a, b, c in checks:
        if code == R_MISSING:
            break
        try:
            rule(a, b, c)
        except _Bad as e:
            code = min(code, e.code)
    return code


def _envelope_one(o, key, _unused):
    return _envelope_required_range(o.get(key))


def _metadata(text: str, m: dict) -> str:
    """`metadata`: additional_metadata as received (minus whitespace), or the metadata_updated fields."""
    want_object = m.get("additional_metadata") is None and m.get("event_type") == "metadata_updated"
    if m.get("additional_metadata") is None and not want_object:
        return "null"
    for key, start, _ in object_members(text, 0):
        if key == "msg":
            msg_start = start
            break
    spans = {key: (s, e) for key, s, e in object_members(text, msg_start)}
    if not want_object:
        s, e = spans["additional_metadata"]
        return minify(text[s:e])
    items = [f'"{k}":{minify(text[spans[k][0]:spans[k][1]])}' for k in _METADATA_KEYS if k in spans]
    return "{" + ",".join(items) + "}"


def classify(data: bytes):
    """Normalize one frame: (outcome, kind, reason, record_text, key, trade_id, sid, seq, cmd_id, type).

    ``record_text`` is the compact record without its closing brace (``recv_ts`` may follow).
    """
    if len(data) > MAX_FRAME:
        return _INVALID_SIZE
    try:
        o, text = _loads(data, MAX_DEPTH)
    except JsonError as e:
        return OUT_INVALID, K_NONE, _REASON_CODES[e.reason], None, None, None, None, None, None, None
    if type(o) is not dict:
        return OUT_INVALID, K_NONE, R_SHAPE, None, None, None, None, None, None, None
    sid = _envelope_id(o.get("sid"), 1)
    seq = _envelope_id(o.get("seq"), 1)
    cmd_id = _envelope_id(o.get("id"), 0)
    t = o.get("type")
    if type(t) is not str:
        return OUT_INVALID, K_NONE, R_SHAPE, None, None, None, sid, seq, cmd_id, None
    rules = _RECORD_RULES.get(t)
    if rules is None:
        kind = _CONTROL_KINDS.get(t)
        if kind is not None:
            return OUT_CONTROL, kind, R_NONE, None, None, None, sid, seq, cmd_id, t
        return OUT_OTHER, K_NONE, R_NONE, None, t.encode("utf-8"), None, sid, seq, cmd_id, t
    kind, fields, key_field = rules
    m = o.get("msg")
    if type(m) is not dict:
        return OUT_INVALID, K_NONE, R_SHAPE, None, None, None, sid, seq, cmd_id, None
    try:
        parts = _build(fields, o, m)
    except _Bad as e:
        return OUT_INVALID, K_NONE, e.code, None, None, None, sid, seq, cmd_id, None
    if kind == K_MARKET_LIFECYCLE:
        parts.insert(-4, ',"metadata":')
        parts.insert(-4, _metadata(text, m))
    trade_id = m["trade_id"].encode("utf-8") if kind == K_TRADE else None
    return (OUT_RECORD, kind, R_NONE, "".join(parts), m[key_field].encode("ascii"), trade_id,
            sid, seq, cmd_id, RECORD_TYPES[kind])


def normalize_frame(frame) -> bytes | None:
    """The normalized record of one frame (compact JSON), None for control/other frames.

    Raises `InvalidFrame(reason)` for an invalid frame.
    """
    out = classify(bytes(frame))
    if out[0] == OUT_RECORD:
        return (out[3] + "}").encode("utf-8")
    if out[0] == OUT_INVALID:
        raise InvalidFrame(REASONS[out[2]])
    return None




# entry fields (a list per frame; flags are set later by the sequencer)
_OUTCOME, _KIND, _REASON, _FLAGS, _RAW, _RECORD, _KEY, _TRADE_ID, _SID, _SEQ, _CMD_ID, _TYPE = range(12)


class FrameBatch:
    """A reusable batch of normalized frames (docs/design.md "FrameBatch"); the twin of the Cython one."""

    __slots__ = ("_entries", "_recv_ts", "_suffix", "_frames", "_bytes", "_n_kind", "_n_reason", "_n_other")

    def __init__(self):
        self._entries: list[list] = []
        self._recv_ts = 0
        self._suffix = "}"
        self._frames = 0
        self._bytes = 0
        self._n_kind = [0] * 16
        self._n_reason = [0] * R_COUNT
        self._n_other: dict[str, int] = {}

    def add(self, frame) -> int:
        """Normalize one frame (bytes, bytearray or memoryview) and append it; returns its outcome."""
        data = frame if type(frame) is bytes else memoryview(frame).tobytes()
        outcome, kind, reason, record, key, trade_id, sid, seq, cmd_id, type_name = classify(data)
        self._frames += 1
        self._bytes += len(data)
        if outcome == OUT_RECORD:
            record = (record + self._suffix).encode("utf-8")
            self._n_kind[kind] += 1
        elif outcome == OUT_INVALID:
            data = data[:RAW_INVALID_MAX]
            self._n_reason[reason] += 1
        elif outcome == OUT_CONTROL:
            self._n_kind[kind] += 1
        else:
            self._n_other[type_name] = self._n_other.get(type_name, 0) + 1
        self._entries.append([outcome, kind, reason, 0, data, record, key, trade_id, sid, seq, cmd_id,
                              type_name])
        return outcome

    def add_lines(self, buffer) -> int:
        """Add one frame per LF-terminated line of a JSONL buffer (a CR before the LF stays in the frame;
        a last line without LF counts too); returns the number of frames added."""
        lines = memoryview(buffer).tobytes().split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        for line in lines:
            self.add(line)
        return len(lines)

    def reset(self) -> None:
        """Forget the entries; keep the cumulative counters and recv_ts."""
        self._entries.clear()

    def set_recv_ts(self, ns: int) -> None:
        """Records added from now on carry ``"recv_ts": ns``; 0 omits it."""
        ns = int(ns)
        if not 0 <= ns <= _I64_MAX:
            raise ValueError(f"recv_ts out of range: {ns}")
        self._recv_ts = ns
        self._suffix = f',"recv_ts":{ns}}}' if ns else "}"

    @property
    def recv_ts(self) -> int:
        return self._recv_ts

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, i: int) -> list:
        if not 0 <= i < len(self._entries):
            raise IndexError(f"frame index {i} out of range 0..{len(self._entries) - 1}")
        return self._entries[i]

    def outcome(self, i: int) -> int:
        return self._entry(i)[_OUTCOME]

    def kind(self, i: int) -> int:
        return self._entry(i)[_KIND]

    def type_name(self, i: int) -> str | None:
        return self._entry(i)[_TYPE]

    def reason(self, i: int) -> str | None:
        code = self._entry(i)[_REASON]
        return REASONS[code] if code else None

    def sid(self, i: int) -> int | None:
        return self._entry(i)[_SID]

    def seq(self, i: int) -> int | None:
        return self._entry(i)[_SEQ]

    def cmd_id(self, i: int) -> int | None:
        return self._entry(i)[_CMD_ID]

    def flags(self, i: int) -> int:
        return self._entry(i)[_FLAGS]

    def set_flag(self, i: int, f: int) -> None:
        self._entry(i)[_FLAGS] |= f

    def raw(self, i: int) -> bytes:
        return self._entry(i)[_RAW]

    def record(self, i: int) -> bytes | None:
        return self._entry(i)[_RECORD]

    def key(self, i: int) -> bytes | None:
        return self._entry(i)[_KEY]

    def trade_id(self, i: int) -> bytes | None:
        return self._entry(i)[_TRADE_ID]

    def control(self, i: int) -> dict | None:
        e = self._entry(i)
        if e[_OUTCOME] != OUT_CONTROL:
            return None
        return json.loads(e[_RAW])

    def counts(self) -> dict:
        """Cumulative counts since creation; categories that never occurred are left out."""
        n_kind, n_reason = self._n_kind, self._n_reason
        return {
            "frames": self._frames,
            "bytes": self._bytes,
            "records": {name: n_kind[k] for k, name in RECORD_TYPES.items() if n_kind[k]},
            "control": {name: n_kind[k] for k, name in CONTROL_TYPES.items() if n_kind[k]},
            "other": dict(self._n_other),
            "invalid": {name: n_reason[r] for r, name in REASONS.items() if n_reason[r]},
        }

    def records_jsonl(self, skip_flags: int = F_DROP) -> bytes:
        """The records not flagged with any of ``skip_flags``, each followed by a newline."""
        return b"".join([e[_RECORD] + b"\n" for e in self._entries
                         if e[_RECORD] is not None and not e[_FLAGS] & skip_flags])

    def raw_jsonl(self, skip_flags: int = F_DROP) -> bytes:
        """Raw frames of records, controls and others not flagged, one per line (CR/LF become spaces)."""
        lines = []
        for e in self._entries:
            if e[_OUTCOME] == OUT_INVALID or e[_FLAGS] & skip_flags:
                continue
            raw = e[_RAW]
            if b"\n" in raw or b"\r" in raw:
                raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
            lines.append(raw + b"\n")
        return b"".join(lines)
