"""docs/schema-v1.md rule by rule: every invalid reason and its precedence, every value rule, the output
forms. Runs against both implementations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twins import normalizer_fixture, twin_pass

import ssmd_fast
import ssmd_fast.normalize as facade
from ssmd_fast import _normalize_py
from ssmd_fast.errors import InvalidFrame
from ssmd_fast.normalize import OUT_CONTROL, OUT_INVALID, OUT_OTHER, load_implementation

pytestmark = pytest.mark.twin

I64_MAX = 2**63 - 1


impl = normalizer_fixture()


BASE = {
    "trade": {"market_ticker": '"KX-A"', "trade_id": '"t-1"', "yes_price_dollars": '"0.5500"',
              "count_fp": '"3.00"', "taker_side": '"yes"', "ts": "1773331880"},
    "ticker": {"market_ticker": '"KX-A"', "price_dollars": '"0.5000"'},
    "orderbook_snapshot": {"market_ticker": '"KX-A"', "yes_dollars_fp": '[["0.4800","10.00"]]'},
    "orderbook_delta": {"market_ticker": '"KX-A"', "price_dollars": '"0.4600"', "delta_fp": '"-5.00"',
                        "side": '"yes"'},
    "market_lifecycle_v2": {"market_ticker": '"KX-A"', "event_type": '"activated"'},
    "event_lifecycle": {"event_ticker": '"KX-E"'},
}


def make(wire_type: str, env: str = '"sid":1,"seq":2', **fields: str | None) -> bytes:
    """A frame of ``wire_type`` from the base fields; values are raw JSON text, None drops the key."""
    msg = dict(BASE[wire_type])
    msg.update(fields)
    body = ",".join(f'"{k}":{v}' for k, v in msg.items() if v is not None)
    return f'{{"type":"{wire_type}",{env}{"," if env else ""}"msg":{{{body}}}}}'.encode()


def reason(impl, frame: bytes) -> str | None:
    try:
        impl.normalize_frame(frame)
    except InvalidFrame as exc:
        return exc.reason
    return None


def fields(impl, frame: bytes) -> dict:
    """The record with every number as its literal text (to check canonical forms exactly)."""
    return json.loads(impl.normalize_frame(frame), parse_float=str, parse_int=str)


def field(impl, frame: bytes, name: str):
    return fields(impl, frame)[name]


# --- constants and implementation selection ---------------------------------------------------------

def test_constants_mirror_the_pxd():
    pxd = (Path(ssmd_fast.__file__).parent / "_normalize.pxd").read_text()
    import re

    declared = dict(re.findall(r"^\s+((?:OUT|K|R|F)_[A-Z_]+) = (\d+)", pxd, re.M))
    assert len(declared) >= 30
    for name, value in declared.items():
        assert getattr(_normalize_py, name) == int(value), name
        assert getattr(facade, name) == int(value), name
    assert facade.RECORD_TYPES[facade.K_BOOK_DELTA] == "book_delta"
    assert facade.REASONS[facade.R_DUPLICATE_KEY] == "duplicate_key"
    assert list(facade.REASONS) == list(range(1, facade.R_COUNT))


def test_compiled_module_is_used_when_built():
    if not twin_pass():
        assert not facade.COMPILED_MISSING, facade.COMPILED_IMPORT_ERROR
        assert facade.IMPLEMENTATION == "cython"
        compiled = load_implementation("cython")
        for name in dir(_normalize_py):
            if name[:2] in ("K_", "R_", "F_") or name.startswith("OUT_"):
                assert getattr(compiled, name, getattr(_normalize_py, name)) == getattr(_normalize_py, name)
    else:
        assert facade.IMPLEMENTATION == "python" and not facade.COMPILED_MISSING
    with pytest.raises(ValueError):
        load_implementation("rust")


# --- invalid frames, one reason each ----------------------------------------------------------------

OK = b'{"type":"ok","id":1}'
INVALID = {
    "size": [b'{"type":"ok","pad":"' + b"a" * 1_048_560 + b'"}', b"\xff" * 1_048_577],
    "utf8": [b'{"type":"ok","a":"\xff"}', b'{"type":"ok","a":"\xc0\xaf"}', b'{"type":"ok","a":"\xed\xa0\x80"}',
             b'{"type":"ok","a":"\xf4\x90\x80\x80"}', b'{"type":"ok","a":"\xe2\x82"}',
             b"\xef\xbb\xbf" + OK, b'{"type":"ok","a":"\xe0\x80\xaf"}', b"\xff{"],
    "json": [b"", b" ", b"\r\n", b'{"type":"ok","a":NaN}', b'{"type":"ok","a":Infinity}',
             b'{"type":"ok","a":-Infinity}', b'{"type":"ok"/*c*/}', b'{"type":"ok","a":[1,]}',
             b'{"type":"ok",}', b"{'type':'ok'}", b'{"type":"ok","a":01}', b'{"type":"ok","a":-01}',
             b'{"type":"ok","a":+1}', b'{"type":"ok","a":.5}', b'{"type":"ok","a":1.}', b'{"type":"ok","a":1e}',
             b'{"type":"ok","a":"\x01"}', b'{"type":"ok","a":"\t"}', b'{"type":"ok","a":"\\x"}',
             b'{"type":"ok","a":"\\u12"}', b'{"type":"ok","a":"\\ud800"}', b'{"type":"ok","a":"\\udc00"}',
             b'{"type":"ok","a":"\\ud800\\u0041"}', b'{"type":"ok","\\udfff":1}', OK + b" x", OK + OK,
             OK + b"\x0b", b"\xc2\xa0" + OK, b'{\xef\xbb\xbf"type":"ok"}', OK + b"\xef\xbb\xbf",
             b'{"type":"ok","a":tru}', b'{"type":"ok","a":True}', b'{"type":"ok" "a":1}', b'{"type" "ok"}',
             b'["unterminated', b'{"type":"ok","a":"\\u00zz"}', b"[" * 200 + b"]" * 199,
             b'{"type":"ok","a":1,"a":2,}', b'{"type":"ok","a":1,"a":NaN}', b"[" * 300 + b"1,]" + b"]" * 299],
    "depth": [b"[" * 129 + b"]" * 129, b'{"type":"ok","x":' + b"[" * 128 + b"]" * 128 + b"}",
              b'{"type":"ok","x":' + b'{"a":' * 128 + b"1" + b"}" * 128 + b"}",
              b"[" * 200 + b'{"a":1,"a":1}' + b"]" * 200, b"[" * 100_000 + b"]" * 100_000],
    "duplicate_key": [b'{"type":"ok","type":"ok"}', b'{"type":"ok","ty\\u0070e":"ok"}',
                      b'{"type":"ok","m":{"a":1,"b":{"c":[{"d":1,"d":2}]}}}', b'[{"a":1,"a":1}]',
                      b'{"type":"fill","msg":{"x":1,"\\u0078":2}}', b'{"type":"trade","sid":1,"sid":1,"msg":{}}',
                      make("trade").replace(b'"count_fp"', b'"count_fp":"1","count_fp"')],
    "shape": [b"[]", b'"ok"', b"1", b"null", b"true", b"{}", b'{"type":null}', b'{"type":1}',
              b'{"type":["ok"]}', b'{"Type":"ok"}', b'{"type":"trade"}', b'{"type":"trade","msg":null}',
              b'{"type":"trade","msg":[]}', b'{"type":"ticker","msg":"x"}', b'{"type":"orderbook_delta","msg":1}'],
}


@pytest.mark.parametrize("code,frame", [(c, f) for c, frames in INVALID.items() for f in frames],
                         ids=[f"{c}-{i}" for c, frames in INVALID.items() for i in range(len(frames))])
def test_invalid_frames_and_their_reason(impl, code, frame):
    assert reason(impl, frame) == code
    batch = impl.FrameBatch()
    assert batch.add(frame) == OUT_INVALID
    assert batch.reason(0) == code and batch.record(0) is None and batch.type_name(0) is None
    assert batch.counts()["invalid"] == {code: 1}


def test_frame_size_limit_is_exact(impl):
    frame = b'{"type":"ok","pad":"' + b"a" * 1_048_554 + b'"}'
    assert len(frame) == 1_048_576 and reason(impl, frame) is None
    assert reason(impl, frame + b" ") == "size"
    assert reason(impl, b'{"type":"ok"}' + b" " * (1_048_576 - 13)) is None  # trailing whitespace counts


def test_add_oversized_is_add_of_a_frame_above_the_limit(impl):
    """The listener skips a payload above its limit and keeps its start: the same entry and counts as add()."""
    big = b'{"type":"trade","sid":3,"seq":9,"msg":{"pad":"' + b"x" * (1_048_576 + 10) + b'"}}'
    whole, cut = impl.FrameBatch(), impl.FrameBatch()
    assert whole.add(big) == OUT_INVALID
    assert cut.add_oversized(big[:300], len(big)) == cut.add_oversized(memoryview(big)[:40], len(big)) == OUT_INVALID
    assert cut.raw(0) == whole.raw(0) == big[:256] and cut.raw(1) == big[:40]
    assert [(b.reason(0), b.sid(0), b.seq(0), b.record(0)) for b in (whole, cut)] == [("size", None, None, None)] * 2
    assert cut.counts() == {**whole.counts(), "frames": 2, "bytes": 2 * len(big), "invalid": {"size": 2}}
    with pytest.raises(ValueError):
        cut.add_oversized(b"abc", 2)


def test_depth_limit_is_exact(impl):
    assert reason(impl, b'{"type":"ok","x":' + b"[" * 127 + b"]" * 127 + b"}") is None  # 128 levels
    assert reason(impl, b"[" * 128 + b"]" * 128) == "shape"  # valid 128-deep array, not an object
    assert reason(impl, b'{"type":"ok","x":[' + b"[1]," * 2000 + b"[2]]}") is None  # wide, not deep


def test_valid_json_forms(impl):
    for frame in (b' \t\r\n{ "type" : "ok" , "id" : 1 } \r\n', b'{"type":"ok","a":"\\ud83d\\ude00"}',
                  b'{"type":"ok","a":"\\\\ud800"}', b'{"type":"ok","a":"\xef\xbb\xbf\xe2\x80\xa8\x7f"}',
                  b'{"type":"ok","a":[1E400,-0,0.0e-0,1e+2,123456789012345678901234567890]}',
                  b'{"type":"ok","n":' + b"9" * 5000 + b"}", b'{"type":"ok","a":{},"b":[],"c":[{}]}',
                  b'{"type":"ok","a":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"}'):
        batch = impl.FrameBatch()
        assert batch.add(frame) == OUT_CONTROL, frame[:60]


# --- precedence ---------------------------------------------------------------------------------------

PRECEDENCE = [
    ("size", b'{"type":"ok","a":"\xff' + b"[" * 200 + b"a" * 1_048_576),  # size over utf8/json/depth
    ("utf8", b"[" * 200 + b"\xff"),  # utf8 over json and depth
    ("json", b'[{"a":1,"a":2}' + b"[" * 200 + b"]" * 200),  # json over depth and duplicate_key
    ("depth", b'[{"a":1,"a":2},' + b"[" * 200 + b"]" * 200 + b"]"),  # depth over duplicate_key
    ("duplicate_key", b'[{"type":"trade","type":"trade"}]'),  # duplicate_key over shape
    ("shape", b'{"type":"trade","sid":"x","msg":null}'),  # shape over type (envelope)
    ("missing", make("trade", market_ticker=None, count_fp="true", taker_side='"maybe"')),  # over type, range
    ("missing", make("trade", trade_id=None, env='"sid":"1"')),  # missing over an envelope type
    ("type", make("trade", yes_price_dollars='"1.5"', taker_side="5")),  # type over range
    ("type", make("trade", market_ticker='""', count_fp="true")),  # type over ticker
    ("range", make("trade", market_ticker='"bad ticker"', yes_price_dollars='"2"')),  # range over ticker
    ("range", make("orderbook_delta", env='"sid":0,"seq":1', market_ticker='"*"')),  # envelope range
    ("type", make("orderbook_snapshot", yes_dollars_fp='[["2.0","1"],["0.5",1,2]]')),  # later level's type
    ("type", make("orderbook_snapshot", yes_dollars_fp='[["2.0",true]]')),  # size type beats price range
    ("range", make("orderbook_snapshot", yes_dollars_fp='[["0.5","-1"]]', market_ticker='" "')),
]


@pytest.mark.parametrize("code,frame", PRECEDENCE, ids=[f"{c}-{i}" for i, (c, _) in enumerate(PRECEDENCE)])
def test_the_first_reason_in_the_list_wins(impl, code, frame):
    assert reason(impl, frame) == code


# --- classification -----------------------------------------------------------------------------------

def test_types_classify_by_exact_name(impl):
    batch = impl.FrameBatch()
    for t in ("", "TICKER", "ticker ", "Trade", "orderbook_delta_v2", "fill", "ticker_v2", "é"):
        i = len(batch)
        assert batch.add(json.dumps({"type": t, "msg": "anything", "sid": "x"}).encode()) == OUT_OTHER
        assert batch.type_name(i) == t and batch.key(i) == t.encode()
    assert batch.counts()["other"]["TICKER"] == 1
    assert batch.add(b'{"type":"tr\\u0061de","msg":{"market_ticker":"A","trade_id":"t","price":5,'
                     b'"count":1,"side":"no"}}') == facade.OUT_RECORD


def test_control_and_other_fields_are_not_checked(impl):
    batch = impl.FrameBatch()
    frame = b'{"type":"ok","id":-1,"sid":"s","seq":0,"msg":{"price":"junk","market_ticker":"*"}}'
    assert batch.add(frame) == OUT_CONTROL
    assert (batch.sid(0), batch.seq(0), batch.cmd_id(0)) == (None, None, None)
    assert batch.add(b'{"type":"error","id":0,"sid":9223372036854775807,"seq":2.0E0}') == OUT_CONTROL
    assert (batch.cmd_id(1), batch.sid(1), batch.seq(1)) == (0, I64_MAX, 2)
    assert batch.add(b'{"type":"subscribed","id":9223372036854775808,"sid":1.5}') == OUT_CONTROL
    assert (batch.cmd_id(2), batch.sid(2)) == (None, None)
    assert batch.add(b'{"type":"user_order","msg":{"market_ticker":"bad ticker"}}') == OUT_OTHER
    assert impl.normalize_frame(b'{"type":"ok"}') is None


def test_a_control_frame_with_an_integer_past_the_int_limit_is_handed_over(impl):
    # valid JSON, so a control frame the session consumes: json.loads raised on its 5,000 digits (CPython's
    # int() limit is 4,300), and the exception took the whole socket read's frames with it
    batch = impl.FrameBatch()
    frame = b'{"id":1,"type":"ok","sid":3,"seq":4,"msg":{"note":' + b"1" * 5000 + b',"x":0.5}}'
    assert batch.add(frame) == OUT_CONTROL
    body = batch.control(0)
    assert (body["type"], body["id"], body["sid"], body["seq"]) == ("ok", 1, 3, 4)
    assert body["msg"]["note"] == "1" * 5000 and not isinstance(body["msg"]["note"], int)


def test_unnamed_fields_are_ignored_whatever_their_values(impl):
    frame = make("trade", no_price='"x"', market_id="[[[{}]]]", Clock="1E999", yes_price_dollarz="-5")
    assert field(impl, frame, "price") == "0.55"


# --- present / first present wins -------------------------------------------------------------------

def test_first_present_wins_and_later_sources_are_ignored(impl):
    assert field(impl, make("trade", yes_price='"junk"', price="900"), "price") == "0.55"
    assert field(impl, make("trade", yes_price_dollars="null", yes_price="27"), "price") == "0.27"
    assert field(impl, make("trade", yes_price_dollars='""', yes_price="27"), "price") == "0.27"
    assert field(impl, make("trade", yes_price_dollars=None, price="29"), "price") == "0.29"
    assert field(impl, make("trade", yes_price_dollars='""', yes_price="null", price="3"), "price") == "0.03"
    assert reason(impl, make("trade", yes_price_dollars='""')) == "missing"
    assert reason(impl, make("trade", yes_price_dollars='"0.5x"', yes_price="50")) == "range"
    assert field(impl, make("trade", count_fp="null", count="7"), "size") == "7"
    assert reason(impl, make("trade", count_fp='""', count="7")) == "range"  # "" is absent for _dollars only
    assert field(impl, make("trade", taker_outcome_side='"no"', taker_side='"yes"'), "side") == "no"
    assert field(impl, make("trade", taker_side=None, side='"no"'), "side") == "no"
    assert field(impl, make("trade", ts_ms="1773331880123", ts='"junk"'), "ts") == "1773331880123000000"
    assert field(impl, make("trade", ts="null"), "ts") is None
    assert field(impl, make("trade", is_block_trade="null"), "block") is False
    assert field(impl, make("trade", is_block_trade="true"), "block") is True
    assert reason(impl, make("trade", is_block_trade='"true"')) == "type"
    assert field(impl, make("ticker", price_dollars='""', price="0"), "last_price") == "0"
    assert field(impl, make("ticker", price_dollars='""'), "last_price") is None
    assert field(impl, make("ticker", yes_bid_dollars="null", yes_bid="null"), "yes_bid") is None
    assert field(impl, make("ticker", volume_fp="null", volume="12"), "volume") == "12"
    assert field(impl, make("event_lifecycle", subtitle="null", sub_title='"s"'), "subtitle") == "s"


def test_null_and_absent_envelope(impl):
    rec = fields(impl, make("trade", env='"sid":null'))
    assert rec["sid"] is None and rec["seq"] is None
    rec = fields(impl, make("ticker", env=""))
    assert rec["sid"] is None and rec["seq"] is None
    assert fields(impl, make("trade", env=f'"sid":{I64_MAX},"seq":1'))["sid"] == str(I64_MAX)
    for env, code in (('"sid":0', "range"), ('"seq":-1', "range"), (f'"sid":{I64_MAX + 1}', "range"),
                      ('"sid":"1"', "type"), ('"seq":1.5', "type"), ('"sid":true', "type"), ('"seq":[]', "type")):
        assert reason(impl, make("trade", env=env)) == code, env
    assert fields(impl, make("trade", env='"sid":1E1,"seq":3.0'))["sid"] == "10"


def test_snapshot_sides(impl):
    rec = fields(impl, make("orderbook_snapshot", yes_dollars_fp=None))
    assert rec["yes"] == [] and rec["no"] == []
    frame = make("orderbook_snapshot", yes_dollars_fp='[["0.1","1"],["0.3","3"],["0.2","2"],["0.3","4"]]')
    assert fields(impl, frame)["yes"] == [["0.3", "3"], ["0.3", "4"], ["0.2", "2"], ["0.1", "1"]]
    assert fields(impl, make("orderbook_snapshot", yes_dollars_fp="[]", yes="[[5,1]]"))["yes"] == []
    assert fields(impl, make("orderbook_snapshot", yes_dollars_fp=None, yes_dollars='[["0.05",0]]'))["yes"] == [
        ["0.05", "0"]]
    assert fields(impl, make("orderbook_snapshot", yes_dollars_fp=None, yes="[[100,2],[0,1]]"))["yes"] == [
        ["1", "2"], ["0", "1"]]
    assert fields(impl, make("orderbook_snapshot", no_dollars_fp='[[0.25,2.5E1]]'))["no"] == [["0.25", "25"]]
    cases = [
        ("type", {"yes_dollars_fp": "null", "yes_dollars": '[["0.1",1]]'}),  # a null side source wins
        ("type", {"yes_dollars_fp": None, "yes_dollars": "null", "yes": "[[1,1]]"}),
        ("type", {"no": "null"}), ("type", {"yes_dollars_fp": '""'}), ("type", {"yes_dollars_fp": "{}"}),
        ("type", {"yes_dollars_fp": '["0.1","1"]'}), ("type", {"yes_dollars_fp": '[["0.1"]]'}),
        ("type", {"yes_dollars_fp": '[["0.1","1","2"]]'}), ("type", {"yes_dollars_fp": '[[null,"1"]]'}),
        ("type", {"yes_dollars_fp": None, "yes_dollars": '[["0.1","1"]]'}),  # counts are integers there
        ("type", {"yes_dollars_fp": None, "yes": '[["1",1]]'}), ("type", {"yes_dollars_fp": None, "yes": "[[1.5,1]]"}),
        ("range", {"yes_dollars_fp": '[["",""]]'}), ("range", {"yes_dollars_fp": '[["1.01","1"]]'}),
        ("range", {"yes_dollars_fp": '[["0.1","-0.01"]]'}), ("range", {"yes_dollars_fp": None, "yes": "[[101,1]]"}),
        ("range", {"yes_dollars_fp": None, "yes": "[[1,-1]]"}),
    ]
    for code, over in cases:
        assert reason(impl, make("orderbook_snapshot", **over)) == code, over
    assert fields(impl, make("orderbook_snapshot", yes_dollars_fp='[["0.1","-0.00"]]'))["yes"] == [["0.1", "0"]]


# --- ticker strings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ticker,ok", [
    ('"KXBTCD-26MAR1213-T69499.99"', True), ('"!"', True), ('"' + "A" * 1024 + '"', True),
    ('"' + "A" * 1025 + '"', False), ('""', False), ('"A B"', False), ('"A*"', False), ('"A>"', False),
    ('"A\\u0000"', False), ('"A\\t"', False), ('"\\u007f"', False), ('"Ã©"', False), ('"é"', False),
    ('"\\u0041\\u002E"', True), ('"A\\"B"', True), ('"A\\\\B"', True), ('"~{}|"', True),
])
def test_ticker_rule(impl, ticker, ok):
    for frame in (make("trade", market_ticker=ticker), make("event_lifecycle", event_ticker=ticker),
                  make("event_lifecycle", series_ticker=ticker)):
        code = reason(impl, frame)
        if ok:
            assert code is None
        elif ticker == '""' and b"series_ticker" in frame:
            assert code is None  # an empty series_ticker is allowed
        else:
            assert code == "ticker", (ticker, frame[:80])


def test_ticker_output_and_key_are_unescaped(impl):
    batch = impl.FrameBatch()
    batch.add(make("trade", market_ticker='"K\\u0058-\\"A\\"\\/"'))
    assert batch.key(0) == b'KX-"A"/'
    assert b'"ticker":"KX-\\"A\\"/"' in batch.record(0)
    assert reason(impl, make("trade", market_ticker="5")) == "type"
    assert reason(impl, make("trade", market_ticker="null")) == "missing"
    assert field(impl, make("event_lifecycle", series_ticker="null"), "series_ticker") is None


# --- decimals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source,out", [
    ('"0.5500"', "0.55"), ('"1.0000"', "1"), ('"0.0020"', "0.002"), ('"000.5"', "0.5"), ('"0"', "0"),
    ('"-0"', "0"), ('"-0.00"', "0"), ('"0.0"', "0"), ('"00"', "0"), ('"1"', "1"), ('"0.100000000"', "0.1"),
    ("0.45", "0.45"), ("4.5E-1", "0.45"), ("45e-2", "0.45"), ("1", "1"), ("0", "0"), ("-0", "0"), ("1.0", "1"),
    ("0.0000000000000000000000000000000000000001", None), ('"1.00000000000000000000000000000000000000001"', None),
])
def test_price_decimals(impl, source, out):
    frame = make("trade", yes_price_dollars=source)
    if out is None:
        assert reason(impl, frame) == "range"
    else:
        assert field(impl, frame, "price") == out


@pytest.mark.parametrize("source", ['"1e3"', '" 1"', '"1 "', '"+1"', '".5"', '"1."', '"NaN"', '"0x1"', '"1,0"',
                                    '"\\uff11"', '"--1"', '"1.2.3"', '"Infinity"', '"0.5\\u0000"', '"-"', '"."'])
def test_strings_off_the_decimal_pattern_are_range(impl, source):
    assert reason(impl, make("trade", yes_price_dollars=source)) == "range"
    assert reason(impl, make("orderbook_delta", delta_fp=source)) == "range"
    assert reason(impl, make("ticker", volume_fp=source)) == "range"


@pytest.mark.parametrize("source", ['"1.0001"', '"-0.01"', '"2"', "1.5", "-1", "2", "1E1", '"-1"'])
def test_prices_outside_zero_one_are_range(impl, source):
    assert reason(impl, make("trade", yes_price_dollars=source)) == "range"
    assert reason(impl, make("orderbook_delta", price_dollars=source)) == "range"
    assert reason(impl, make("ticker", yes_ask_dollars=source)) == "range"


@pytest.mark.parametrize("source,out", [
    ('"-54.00"', "-54"), ('"-0.00"', "0"), ('"10.00"', "10"), ('"-1.65"', "-1.65"),
    ('"' + "9" * 40 + '"', "9" * 40), ('"-' + "9" * 40 + '"', "-" + "9" * 40), ('"' + "0" * 100 + '1.5"', "1.5"),
    ('"0.' + "0" * 38 + '1"', "0." + "0" * 38 + "1"), ("1E39", "1" + "0" * 39), ("-2.50E1", "-25"),
    ("1E-39", "0." + "0" * 38 + "1"), ("123456789.123456789", "123456789.123456789"),
    ('"' + "9" * 41 + '"', None), ('"0.' + "0" * 39 + '1"', None), ("1E40", None), ("1E-40", None),
    ("1E400", None), ("1E-999999999999999999999999999999999999", None), ("1" + "0" * 5000, None),
])
def test_delta_decimals_and_the_40_digit_limit(impl, source, out):
    frame = make("orderbook_delta", delta_fp=source)
    if out is None:
        assert reason(impl, frame) == "range"
    else:
        assert field(impl, frame, "delta") == out


def test_quantity_signs(impl):
    assert reason(impl, make("trade", count_fp='"0.00"')) == "range"  # size > 0
    assert reason(impl, make("trade", count_fp='"-1"')) == "range"
    assert reason(impl, make("trade", count_fp=None, count="0")) == "range"
    assert field(impl, make("trade", count_fp='"0.01"'), "size") == "0.01"
    assert field(impl, make("ticker", volume_fp='"-3.50"'), "volume") == "-3.5"  # ticker quantities: any sign
    assert field(impl, make("ticker", open_interest="-4"), "open_interest") == "-4"
    assert field(impl, make("ticker", yes_bid_size_fp='"-1"'), "yes_bid_size") == "-1"
    assert field(impl, make("orderbook_delta", delta_fp=None, delta="-0"), "delta") == "0"
    assert reason(impl, make("ticker", volume_fp='""')) == "range"


# --- integers and cents ---------------------------------------------------------------------------------

@pytest.mark.parametrize("source,out", [
    ("55", "0.55"), ("5", "0.05"), ("100", "1"), ("0", "0"), ("-0", "0"), ("50", "0.5"), ("55.0", "0.55"),
    ("5.5E1", "0.55"), ("5500e-2", "0.55"), ("1E2", "1"), ("101", None), ("-1", None), ("1E3", None),
    ("55.5", "type"), ('"55"', "type"), ("true", "type"), ("[55]", "type"), ("1E-400", "type"),
    ("92233720368547758080", None),
])
def test_cents(impl, source, out):
    frame = make("trade", yes_price_dollars=None, yes_price=source)
    if out is None:
        assert reason(impl, frame) == "range"
    elif out == "type":
        assert reason(impl, frame) == "type"
    else:
        assert field(impl, frame, "price") == out


@pytest.mark.parametrize("source,out", [
    ("2.8E3", "2800"), ("45.0", "45"), ("-0", "0"), ("0.0", "0"), ("2.85E3", "2850"), ("28000E-1", "2800"),
    (str(I64_MAX), str(I64_MAX)), (str(-(2**63)), str(-(2**63))), ("9007199254740993", "9007199254740993"), ("9.223372036854775807E18", str(I64_MAX)),
    (str(I64_MAX + 1), "range"), (str(-(2**63) - 1), "range"), ("1E19", "range"), ("1E400", "range"),
    ("9" * 5000, "range"), ("1.5", "type"), ("2.85E1", "type"), ('"45"', "type"), ("false", "type"), ("{}", "type"),
])
def test_integer_rule(impl, source, out):
    frame = make("ticker", dollar_volume=source)
    if out in ("range", "type"):
        assert reason(impl, frame) == out
    else:
        assert field(impl, frame, "dollar_volume") == out


# --- times ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,ns", [
    ("2026-02-14T15:30:00Z", 1771083000 * 10**9), ("2026-02-14t15:30:00z", 1771083000 * 10**9),
    ("2026-02-14T15:30:00.5Z", 1771083000 * 10**9 + 500_000_000),
    ("2026-02-14T15:30:00.123456789Z", 1771083000 * 10**9 + 123456789),
    ("2026-02-14T15:30:00.000000001+00:00", 1771083000 * 10**9 + 1),
    ("2026-02-14T10:30:00-05:00", 1771083000 * 10**9), ("2026-02-15T01:00:00+09:30", 1771083000 * 10**9),
    ("2026-02-14T15:30:00-00:00", 1771083000 * 10**9), ("2026-02-15T15:29:00+23:59", 1771083000 * 10**9),
    ("1970-01-01T00:00:00Z", 0), ("1969-12-31T23:59:59.999999999Z", -1),
    ("0001-01-01T00:00:00Z", -62135596800 * 10**9), ("9999-12-31T23:59:59.999999999Z", 253402300799999999999),
    ("2024-02-29T00:00:00Z", 1709164800 * 10**9), ("2000-02-29T12:00:00Z", 951825600 * 10**9),
    ("1970-01-01T00:00:00+23:59", -86340 * 10**9),
])
def test_rfc3339_times(impl, text, ns):
    assert field(impl, make("orderbook_delta", ts=f'"{text}"'), "ts") == str(ns)
    assert field(impl, make("ticker", time=f'"{text}"', ts="1"), "ts") == str(ns)


@pytest.mark.parametrize("text", [
    "2026-02-14T23:59:60Z", "2026-02-14T24:00:00Z", "2026-02-14T12:60:00Z", "2025-02-29T00:00:00Z",
    "2100-02-29T00:00:00Z", "2026-02-30T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-02-14T15:30:00.1234567890Z", "2026-02-14T15:30:00.Z",
    "2026-02-14T15:30:00", "2026-02-14 15:30:00Z", "2026-02-14T15:30Z", "2026-2-14T15:30:00Z",
    "2026-02-14T15:30:00+24:00", "2026-02-14T15:30:00+05:60", "2026-02-14T15:30:00+0500", "2026-02-14T15:30:00+05",
    "2026-02-14T15:30:00ZZ", " 2026-02-14T15:30:00Z", "+2026-02-14T15:30:00Z", "20260214T153000Z",
    "2026-02-14T15:30:00,5Z", "2026-02-14T15:30:00.5UTC", "", "\\u0032026-02-14T15:30:00Z\\u0000",
])
def test_bad_rfc3339_times_are_range(impl, text):
    assert reason(impl, make("orderbook_delta", ts=f'"{text}"')) == "range"
    assert reason(impl, make("ticker", time=f'"{text}"')) == "range"


def test_time_sources_and_types(impl):
    assert field(impl, make("orderbook_delta", ts="1771083000"), "ts") == "1771083000000000000"
    assert field(impl, make("orderbook_delta", ts_ms="-1", ts='"x"'), "ts") == "-1000000"
    assert field(impl, make("ticker", time="null", ts="5"), "ts") == "5000000000"
    assert reason(impl, make("ticker", time="1771083000")) == "type"
    assert reason(impl, make("orderbook_delta", ts="true")) == "type"
    assert reason(impl, make("orderbook_delta", ts="1.5")) == "type"
    assert reason(impl, make("trade", ts='"2026-02-14T15:30:00Z"')) == "type"  # trade ts: integer seconds only
    assert field(impl, make("trade", ts="-86400"), "ts") == "-86400000000000"
    far = make("event_lifecycle", strike_date=str(I64_MAX))
    assert field(impl, far, "strike_date") == str(I64_MAX * 10**9)  # beyond 64 bits, written in full
    assert field(impl, make("trade", ts_ms=str(-(2**63))), "ts") == str(-(2**63) * 10**6)
    assert field(impl, make("market_lifecycle_v2", settled_ts="2.0E0"), "settled_ts") == "2000000000"
    assert reason(impl, make("market_lifecycle_v2", open_ts=str(I64_MAX + 1))) == "range"


# --- strings, booleans, lifecycle -------------------------------------------------------------------------

def test_strings_are_decoded_and_rewritten(impl):
    frame = make("trade", trade_id='"a\\u0000b\\"c\\\\d\\/e\\u00e9\\t\\u2028\\u007f\\ud83d\\ude00\\u001F"')
    record = impl.normalize_frame(frame)
    assert '"trade_id":"a\\u0000b\\"c\\\\d/eé\\t\u2028\x7f😀\\u001f"'.encode() in record
    batch = impl.FrameBatch()
    batch.add(frame)
    assert batch.trade_id(0) == "a\x00b\"c\\d/eé\t\u2028\x7f😀\x1f".encode()
    assert reason(impl, make("trade", trade_id='""')) == "range"
    assert reason(impl, make("trade", trade_id="1")) == "type"
    assert reason(impl, make("trade", taker_side='"YES"')) == "range"
    assert reason(impl, make("trade", taker_side='""')) == "range"
    assert reason(impl, make("orderbook_delta", side='"bid"')) == "range"
    assert reason(impl, make("orderbook_delta", side=None)) == "missing"
    assert field(impl, make("event_lifecycle", title='"\\u00e9"'), "title") == "é"
    assert reason(impl, make("event_lifecycle", title="1")) == "type"
    assert reason(impl, make("event_lifecycle", strike_period="[]")) == "type"


def test_escaped_keys_are_the_same_keys(impl):
    frame = b'{"ty\\u0070e":"trade","\\u0073id":4,"msg":{"market\\u005fticker":"A","trade_id":"t",' \
            b'"yes_price":5,"count":2,"\\u0073ide":"no"}}'
    rec = fields(impl, frame)
    assert (rec["ticker"], rec["price"], rec["side"], rec["sid"]) == ("A", "0.05", "no", "4")


@pytest.mark.parametrize("source,out", [
    ('"1.0000"', "1"), ('"0.0000"', "0"), ('"0.4370"', "0.437"), ("100", "1"), ("1", "0.01"), ("1.0", "0.01"),
    ("50", "0.5"), ("0.5", "0.5"), ("5E-1", "0.5"), ("null", None), ('""', "range"), ('"1.5"', "range"),
    ("101", "range"), ("1.5", "range"), ("-1", "range"), ("true", "type"), ("[1]", "type"), ('"5E-1"', "range"),
])
def test_settlement_value(impl, source, out):
    frame = make("market_lifecycle_v2", settlement_value=source)
    if out in ("range", "type"):
        assert reason(impl, frame) == out
    else:
        assert field(impl, frame, "settlement_value") == out


def test_lifecycle_fields(impl):
    rec = fields(impl, make("market_lifecycle_v2", event_type='""', result='""', is_deactivated="false",
                            price_level_structure='"tapered_deci_cent"'))
    assert (rec["event"], rec["result"], rec["is_deactivated"]) == ("", "", False)
    assert rec["price_level_structure"] == "tapered_deci_cent" and rec["metadata"] is None
    assert reason(impl, make("market_lifecycle_v2", event_type=None)) == "missing"
    assert reason(impl, make("market_lifecycle_v2", event_type="1")) == "type"
    assert reason(impl, make("market_lifecycle_v2", is_deactivated='"yes"')) == "type"
    assert reason(impl, make("market_lifecycle_v2", result="0")) == "type"


def metadata(impl, frame: bytes) -> bytes:
    record = impl.normalize_frame(frame)
    return record[record.index(b',"metadata":') + 12:record.index(b',"sid":')]


def test_metadata_copied_as_received_minus_whitespace(impl):
    raw = '{ "a" : [ 1.50E2 , -0 , "x  y" ] ,\r\n\t"b" : "\\u00e9\\n" , "c" : { } , "d":null }'
    frame = make("market_lifecycle_v2", additional_metadata=raw)
    assert metadata(impl, frame) == b'{"a":[1.50E2,-0,"x  y"],"b":"\\u00e9\\n","c":{},"d":null}'
    for value in ('"text"', "12.50", "[]", "true", "{}"):
        assert metadata(impl, make("market_lifecycle_v2", additional_metadata=value)) == value.encode()
    updated = make("market_lifecycle_v2", event_type='"metadata_updated"', additional_metadata="[1]",
                   title='"t"')
    assert metadata(impl, updated) == b"[1]"  # additional_metadata wins


def test_metadata_updated_object(impl):
    frame = make("market_lifecycle_v2", event_type='"metadata_updated"', rules_secondary='""',
                 title='"T \\u00e9"', cap_strike="1.0E2", floor_strike="null", custom_strike='{ "k" : 1 }',
                 strike_type='"between"', name='"not listed"', additional_metadata="null")
    assert metadata(impl, frame) == (b'{"strike_type":"between","floor_strike":null,"cap_strike":1.0E2,'
                                     b'"custom_strike":{"k":1},"title":"T \\u00e9","rules_secondary":""}')
    assert metadata(impl, make("market_lifecycle_v2", event_type='"metadata_updated"')) == b"{}"
    escaped = make("market_lifecycle_v2", event_type='"metadata_updated"').replace(
        b'"msg":{', b'"msg":{"yes\\u005fsub_title" : "above",')
    assert metadata(impl, escaped) == b'{"yes_sub_title":"above"}'
    assert metadata(impl, make("market_lifecycle_v2", title='"t"')) == b"null"  # not metadata_updated


def test_metadata_with_whitespace_around_the_message(impl):
    frame = (b' { "type" : "market_lifecycle_v2" , "msg" : { "market_ticker" : "A" , "event_type" : '
             b'"created" , "additional_metadata" : [ "a b" , { "c" : 1 } ] } , "sid" : 1 } ')
    assert metadata(impl, frame) == b'["a b",{"c":1}]'


def test_key_order_of_every_record_type(impl):
    orders = {
        "trade": "type feed ticker trade_id price size side block ts sid seq",
        "ticker": "type feed ticker yes_bid yes_ask last_price yes_bid_size yes_ask_size last_trade_size volume "
                  "open_interest dollar_volume dollar_open_interest ts sid seq",
        "orderbook_snapshot": "type feed ticker yes no sid seq",
        "orderbook_delta": "type feed ticker side price delta ts sid seq",
        "market_lifecycle_v2": "type feed ticker event open_ts close_ts determination_ts settled_ts result "
                               "settlement_value is_deactivated price_level_structure metadata sid seq",
        "event_lifecycle": "type feed event_ticker series_ticker title subtitle collateral_return_type "
                           "strike_date strike_period sid seq",
    }
    for wire_type, order in orders.items():
        record = impl.normalize_frame(make(wire_type))
        assert list(json.loads(record)) == order.split()
        assert b" " not in record and b"\n" not in record


def test_learned_key_prediction_never_accepts_broken_json(impl):
    """Regression: after learning 'msg' then 'seq' on ticker frames, the compiled scanner once accepted
    a container closing inside an array msg ({"type":"ticker","msg":[{},"seq":1]}) as valid JSON."""
    batch = impl.FrameBatch()
    good = b'{"type":"ticker","sid":1,"msg":{"market_ticker":"A","yes_bid_dollars":"0.5"},"seq":7}'
    for _ in range(3):      # let the compiled normalizer learn the layout (key prediction, templates)
        assert batch.add(good) == 0
    for frame in (b'{"type":"ticker","msg":[{},"seq":1]}', b'{"type":"ticker","msg":[{"a":1},"seq":1]}',
                  b'{"type":"ticker","msg":{"market_ticker":"A"},"seq":1,]}'):
        assert reason(impl, frame) == "json"
        assert batch.add(frame) == OUT_INVALID and batch.reason(len(batch) - 1) == "json"
    assert batch.add(good) == 0 and batch.record(len(batch) - 1) == batch.record(0)
