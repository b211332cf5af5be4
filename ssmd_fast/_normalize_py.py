"""Pure-Python normalizer: the executable spec of docs/schema-v1.md, byte for byte as docs/design.md says.

The Cython normalizer (`_normalize.pyx`) is compared with this module record by record, so every choice
here is the contract. Parsing is `strict_json.loads` (exact numbers, strict RFC 8259); each record type
is a table of field rules, each rule turning the winning source into the JSON text of its output value.
"""

from __future__ import annotations

from ssmd_fast._normalize_values_py import (
    I64_MAX,
    R_COUNT,
    R_DEPTH,
    R_DUPLICATE_KEY,
    R_JSON,
    R_MISSING,
    R_NONE,
    R_RANGE,
    R_SHAPE,
    R_SIZE,
    R_TICKER,
    R_TYPE,
    R_UTF8,
    RuleBroken,
    boolean,
    cents,
    count_nonneg,
    count_pos,
    int_value,
    integer,
    nonempty_string,
    price,
    qty,
    qty_nonneg,
    qty_pos,
    series_ticker,
    settlement,
    string,
    ticker,
    time_ms,
    time_rfc,
    time_s,
    time_s_or_rfc,
    yes_no,
)
from ssmd_fast.errors import InvalidFrame
from ssmd_fast.strict_json import JsonError, minify, object_members
from ssmd_fast.strict_json import loads as _loads

# The values mirror ssmd_fast/_normalize.pxd (a guard test compares them with the compiled module);
# the R_* reason codes come from _normalize_values_py, with the rules that raise them.
OUT_RECORD, OUT_CONTROL, OUT_OTHER, OUT_INVALID = 0, 1, 2, 3
K_TRADE, K_TICKER, K_BOOK_SNAPSHOT, K_BOOK_DELTA, K_MARKET_LIFECYCLE, K_EVENT_LIFECYCLE = 0, 1, 2, 3, 4, 5
K_SUBSCRIBED, K_OK, K_ERROR, K_UNSUBSCRIBED = 8, 9, 10, 11
K_NONE = 255
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
RAW_INVALID_MAX = 256


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
        raise RuleBroken(R_MISSING)
    return default


def _levels(m, sources):
    """A snapshot side: the first source whose key exists (`null` too) wins; levels sorted by price."""
    for key, price_conv, size_conv in sources:
        if key not in m:
            continue
        v = m[key]
        if type(v) is not list:
            raise RuleBroken(R_TYPE)
        levels, range_error = [], False
        for level in v:
            if type(level) is not list or len(level) != 2:
                raise RuleBroken(R_TYPE)
            try:
                levels.append((price_conv(level[0]), size_conv(level[1])))
            except RuleBroken as e:  # a type error later in the side takes precedence over a range error
                if e.code != R_RANGE:
                    raise
                range_error = True
                try:
                    size_conv(level[1])
                except RuleBroken as e2:
                    if e2.code != R_RANGE:
                        raise
        if range_error:
            raise RuleBroken(R_RANGE)
        # Canonical prices in [0, 1] ("0", "0.x...", "1") order as strings; sorted() is stable.
        levels.sort(key=_level_price, reverse=True)
        return "[" + ",".join(["[" + p + "," + s + "]" for p, s in levels]) + "]"
    return "[]"


def _level_price(level):
    return level[0]


def _src(key, conv):
    return (key, conv, key.endswith("_dollars"))


_TRADE = (
    ('{"type":"trade","feed":"kalshi","ticker":', None, (_src("market_ticker", ticker),)),
    (',"trade_id":', None, (_src("trade_id", nonempty_string),)),
    (',"price":', None, (_src("yes_price_dollars", price), _src("yes_price", cents),
                         _src("price", cents))),
    (',"size":', None, (_src("count_fp", qty_pos), _src("count", count_pos))),
    (',"side":', None, (_src("taker_outcome_side", yes_no), _src("taker_side", yes_no),
                        _src("side", yes_no))),
    (',"block":', "false", (_src("is_block_trade", boolean),)),
    (',"ts":', "null", (_src("ts_ms", time_ms), _src("ts", time_s))),
)
_TICKER_FIELDS = (
    ('{"type":"ticker","feed":"kalshi","ticker":', None, (_src("market_ticker", ticker),)),
    (',"yes_bid":', "null", (_src("yes_bid_dollars", price), _src("yes_bid", cents))),
    (',"yes_ask":', "null", (_src("yes_ask_dollars", price), _src("yes_ask", cents))),
    (',"last_price":', "null", (_src("price_dollars", price), _src("price", cents))),
    (',"yes_bid_size":', "null", (_src("yes_bid_size_fp", qty),)),
    (',"yes_ask_size":', "null", (_src("yes_ask_size_fp", qty),)),
    (',"last_trade_size":', "null", (_src("last_trade_size_fp", qty),)),
    (',"volume":', "null", (_src("volume_fp", qty), _src("volume", integer))),
    (',"open_interest":', "null", (_src("open_interest_fp", qty), _src("open_interest", integer))),
    (',"dollar_volume":', "null", (_src("dollar_volume", integer),)),
    (',"dollar_open_interest":', "null", (_src("dollar_open_interest", integer),)),
    (',"ts":', "null", (_src("ts_ms", time_ms), _src("time", time_rfc), _src("ts", time_s))),
)
_SNAPSHOT = (
    ('{"type":"book_snapshot","feed":"kalshi","ticker":', None, (_src("market_ticker", ticker),)),
    (',"yes":', _LEVELS, (("yes_dollars_fp", price, qty_nonneg), ("yes_dollars", price, count_nonneg),
                          ("yes", cents, count_nonneg))),
    (',"no":', _LEVELS, (("no_dollars_fp", price, qty_nonneg), ("no_dollars", price, count_nonneg),
                         ("no", cents, count_nonneg))),
)
_DELTA = (
    ('{"type":"book_delta","feed":"kalshi","ticker":', None, (_src("market_ticker", ticker),)),
    (',"side":', None, (_src("side", yes_no),)),
    (',"price":', None, (_src("price_dollars", price), _src("price", cents))),
    (',"delta":', None, (_src("delta_fp", qty), _src("delta", integer))),
    (',"ts":', "null", (_src("ts_ms", time_ms), _src("ts", time_s_or_rfc))),
)
_MARKET_LIFECYCLE = (
    ('{"type":"market_lifecycle","feed":"kalshi","ticker":', None, (_src("market_ticker", ticker),)),
    (',"event":', None, (_src("event_type", string),)),
    (',"open_ts":', "null", (_src("open_ts", time_s),)),
    (',"close_ts":', "null", (_src("close_ts", time_s),)),
    (',"determination_ts":', "null", (_src("determination_ts", time_s),)),
    (',"settled_ts":', "null", (_src("settled_ts", time_s),)),
    (',"result":', "null", (_src("result", string),)),
    (',"settlement_value":', "null", (_src("settlement_value", settlement),)),
    (',"is_deactivated":', "null", (_src("is_deactivated", boolean),)),
    (',"price_level_structure":', "null", (_src("price_level_structure", string),)),
)
_EVENT_LIFECYCLE = (
    ('{"type":"event_lifecycle","feed":"kalshi","event_ticker":', None,
     (_src("event_ticker", ticker),)),
    (',"series_ticker":', "null", (_src("series_ticker", series_ticker),)),
    (',"title":', "null", (_src("title", string),)),
    (',"subtitle":', "null", (_src("subtitle", string), _src("sub_title", string))),
    (',"collateral_return_type":', "null", (_src("collateral_return_type", string),)),
    (',"strike_date":', "null", (_src("strike_date", time_s),)),
    (',"strike_period":', "null", (_src("strike_period", string),)),
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
        i = int_value(v)
    except RuleBroken:
        return None
    return i if i >= low else None


def _envelope_required_range(v):
    """sid/seq of a normalized type: when present, an integer in 1..2^63-1."""
    if v is None:
        return "null"
    if type(v) is int and 0 < v <= I64_MAX:
        return str(v)
    i = int_value(v)
    if i < 1:
        raise RuleBroken(R_RANGE)
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
                    raise RuleBroken(R_MISSING)
                append(default)
        append(',"sid":')
        append(_envelope_required_range(o.get("sid")))
        append(',"seq":')
        append(_envelope_required_range(o.get("seq")))
    except RuleBroken as first:
        raise RuleBroken(_lowest_reason(fields, o, m, first.code))
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
        except RuleBroken as e:
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
    except RuleBroken as e:
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
        return self._append(data, len(data), classify(data))

    def add_oversized(self, prefix, size: int) -> int:
        """A frame of ``size`` bytes of which only its first bytes, ``prefix``, were kept: the listener skips
        the payload of a frame above its limit rather than buffer it. Recorded as ``add`` records a frame
        above MAX_FRAME (OUT_INVALID, reason size, the first RAW_INVALID_MAX bytes, ``size`` counted)."""
        prefix = memoryview(prefix)
        if not 0 <= prefix.nbytes <= size:
            raise ValueError(f"a prefix of {prefix.nbytes} bytes for a frame of {size}")
        return self._append(prefix[:RAW_INVALID_MAX].tobytes(), size, _INVALID_SIZE)

    def _append(self, data: bytes, size: int, classified: tuple) -> int:
        outcome, kind, reason, record, key, trade_id, sid, seq, cmd_id, type_name = classified
        self._frames += 1
        self._bytes += size
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
        if not 0 <= ns <= I64_MAX:
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
        # the strict parser: it passed it, and keeps an integer past CPython's 4,300-digit int() limit as
        # text where json.loads raised (and took the whole read's frames with it)
        return _loads(e[_RAW])[0]

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

    def jsonl_lines(self, skip_flags: int = F_DROP) -> tuple[int, int]:
        """``(raw lines, record lines)`` that raw_jsonl() and records_jsonl() return for these flags."""
        kept = [e for e in self._entries if not e[_FLAGS] & skip_flags]
        return (sum(e[_OUTCOME] != OUT_INVALID for e in kept), sum(e[_RECORD] is not None for e in kept))

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
