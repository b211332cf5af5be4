"""The compiled normalizer and its Python twin agree byte for byte, entry by entry.

Every comparison runs both FrameBatch implementations over the same frames and compares, for every
entry: outcome, kind, reason, sid, seq, cmd_id, key, trade_id, raw, record, type_name, control(i);
then counts(), records_jsonl() and raw_jsonl(). Inputs: every fixture line, generated sessions of
every wire era (200,000+ frames), hypothesis-generated frames, and mutated or truncated fixture frames
(byte flips, truncation at every position, NULs, deep nesting, huge numbers, duplicate keys, UTF-8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ssmd_fast
from ssmd_fast.normalize import F_DUPLICATE, F_GAP, F_SUPPRESSED, OUT_CONTROL, load_implementation

pytestmark = pytest.mark.twin

ROOT = Path(__file__).resolve().parents[2]
KALSHI = ROOT / "tests" / "data" / "kalshi"
PYX = Path(ssmd_fast.__file__).parent / "_normalize.pyx"
NO_EXTENSIONS = os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")
if NO_EXTENSIONS or not PYX.exists():
    pytest.skip("the compiled normalizer is not selected (SSMD_FAST_NO_EXTENSIONS=1 or no .pyx)",
                allow_module_level=True)

CY = load_implementation("cython")  # an ImportError here fails the module: the build is broken
PY = load_implementation("python")


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_normalizer", ROOT / "benchmarks" / "fuzz_normalizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz_module()
FIXTURE_FRAMES = [line for path in sorted(KALSHI.glob("*.jsonl"))
                  for line in path.read_bytes().split(b"\n") if line]


def _entry(batch, i: int) -> tuple:
    control = batch.control(i) if batch.outcome(i) == OUT_CONTROL else None
    return (batch.outcome(i), batch.kind(i), batch.reason(i), batch.sid(i), batch.seq(i), batch.cmd_id(i),
            batch.key(i), batch.trade_id(i), batch.raw(i), batch.record(i), batch.type_name(i),
            batch.flags(i), control)


FIELDS = ("outcome", "kind", "reason", "sid", "seq", "cmd_id", "key", "trade_id", "raw", "record",
          "type_name", "flags", "control")


def assert_same(frames, *, recv_ts: int = 0, flag_every: int = 0, batches=None) -> None:
    """Both implementations over `frames` in one batch each; every entry and every bulk output equal."""
    cb, pb = batches or (CY.FrameBatch(), PY.FrameBatch())
    for b in (cb, pb):
        b.reset()
        b.set_recv_ts(recv_ts)
        for f in frames:
            b.add(f)
        if flag_every:  # the sinks skip flagged entries: both must skip the same ones
            for i in range(0, len(b), flag_every):
                b.set_flag(i, (F_DUPLICATE, F_SUPPRESSED, F_GAP)[i % 3])
    assert len(cb) == len(pb) == len(frames)
    for i, frame in enumerate(frames):
        a, p = _entry(cb, i), _entry(pb, i)
        if a != p:
            diff = {name: (x, y) for name, x, y in zip(FIELDS, a, p, strict=True) if x != y}
            pytest.fail(f"frame {i} differs: {frame[:400]!r}\n  compiled vs twin: {diff}")
    assert cb.counts() == pb.counts()
    assert cb.records_jsonl() == pb.records_jsonl()
    assert cb.raw_jsonl() == pb.raw_jsonl()
    assert cb.records_jsonl(0) == pb.records_jsonl(0)
    assert cb.raw_jsonl(0) == pb.raw_jsonl(0)
    for flags in (0, 3):  # the counts the file sink uses instead of scanning for newlines
        assert cb.jsonl_lines(flags) == pb.jsonl_lines(flags) == (
            cb.raw_jsonl(flags).count(b"\n"), cb.records_jsonl(flags).count(b"\n"))


def frame(wire_type: str, msg: str, env: str = '"sid":1,"seq":2') -> bytes:
    return f'{{"type":"{wire_type}",{env},"msg":{{{msg}}}}}'.encode()


SHORT = {  # one small valid frame of each record type, with every value kind in play
    "trade": frame("trade", '"market_ticker":"KX-A","trade_id":"t\\u00e9","yes_price":55,"count_fp":"3.50",'
                            '"taker_side":"no","is_block_trade":true,"ts_ms":1773331880123'),
    "ticker": frame("ticker", '"market_ticker":"KX.B","yes_bid_dollars":"0.0020","yes_ask":99,"price_dollars":"",'
                              '"price":0,"volume":-5,"dollar_volume":2.8E3,"time":"2026-07-19T15:45:00.5+01:30"'),
    "orderbook_snapshot": frame("orderbook_snapshot", '"market_ticker":"KX-C","yes_dollars":[["0.4",5],["0.45",0],'
                                                      '["0.4",2]],"no":[[3,1],[97,2]]'),
    "orderbook_delta": frame("orderbook_delta", '"market_ticker":"KX-D","side":"yes","price":46,"delta_fp":"-0.00",'
                                                '"ts":"2026-02-14T15:30:00Z"'),
    "market_lifecycle_v2": frame("market_lifecycle_v2", '"market_ticker":"KX-E","event_type":"metadata_updated",'
                                                        '"floor_strike": 1.50 ,"title":"a\\"b","settlement_value":1.0'),
    "event_lifecycle": frame("event_lifecycle", '"event_ticker":"KX-F","series_ticker":"","sub_title":"s",'
                                                '"strike_date":-1'),
}


# --- corpora ----------------------------------------------------------------------------------------

def test_every_fixture_line():
    assert len(FIXTURE_FRAMES) == 232
    assert_same(FIXTURE_FRAMES)
    assert_same(FIXTURE_FRAMES, recv_ts=1_771_079_400_123_456_789, flag_every=4)


@pytest.mark.parametrize("era,seed,n", [("both", 1, 60_000), ("current", 2, 60_000), ("legacy", 3, 40_000),
                                        ("mixed", 4, 40_000), ("both", 5, 10_000)])
@pytest.mark.timeout(300)
def test_generated_session(era, seed, n):
    """210,000 generated frames in all: batches of 4096 reused after reset(), as the listener does."""
    from ssmd_fast.kalshi.generator import generate_session

    frames = list(generate_session(n, seed=seed, markets=20, era=era, shared_book=seed == 5))
    batches = (CY.FrameBatch(), PY.FrameBatch())
    for k in range(0, len(frames), 4096):
        assert_same(frames[k:k + 4096], recv_ts=(k + 1) * 1000 if k % 8192 else 0, batches=batches)
    assert batches[0].counts() == batches[1].counts()
    assert batches[0].counts()["frames"] == n


def test_truncated_at_every_position():
    frames = [*SHORT.values(), FIXTURE_FRAMES[0], *(f for f in FIXTURE_FRAMES if b'"metadata_updated"' in f)]
    assert_same([f[:i] for f in frames for i in range(len(f) + 1)])


def test_byte_flips_and_special_bytes():
    rng = random.Random(11)
    out = []
    for f in FIXTURE_FRAMES + list(SHORT.values()):
        for _ in range(40):
            i = rng.randrange(len(f))
            out.append(f[:i] + bytes([f[i] ^ (1 << rng.randrange(8))]) + f[i + 1:])
            out.append(f[:i] + bytes([rng.choice(FUZZ.SPECIAL_BYTES)]) + f[i + 1:])
    assert_same(out)


def test_nul_and_escape_insertions():
    tokens = (b"\\u0000", b"\x00", b"\\u001f", b"\\ud800", b"\\ud83d\\ude00", b"\\/", b"\\\\", b'\\"', b"\xef\xbb\xbf")
    out = []
    for f in SHORT.values():
        quotes = [i for i, c in enumerate(f) if c == 0x22]
        for i in quotes:
            for tok in tokens:
                out += [f[:i] + tok + f[i:], f[:i + 1] + tok + f[i + 1:]]
    assert_same(out)


def test_deep_nesting():
    out = []
    for k in (126, 127, 128, 129, 130, 500, 5000):
        for inner in (b"1", b"[]", b"{}", b'{"a":1,"a":2}', b'"s"'):
            arr, obj = b"[" * k + inner + b"]" * k, b'{"a":' * k + inner + b"}" * k
            for v in (arr, obj):
                out.append(v)
                out.append(v + b",")                                   # syntax error after the depth
                out.append(v[:-1])                                     # unbalanced
                out.append(b'{"type":"ok","x":' + v + b"}")
                out.append(frame("trade", '"market_ticker":"KX","x":' + v.decode() + ',"x":1'))
                out.append(frame("ticker", '"market_ticker":"KX","x":' + v.decode()))
                out.append(b'{"type":"ok","d":1,"d":2,"x":' + v + b"}")  # duplicate before the depth
    assert_same(out)


NUMBERS = ["0", "-0", "1", "100", "101", "-1", "1.5", "0.45", "2.8E3", "45.0", "1e2", "1E+2", "5e-1", "1e0",
           "1E00", "0e5", "1e400", "1e-400", "-1e400", "9223372036854775807", "9223372036854775808",
           "-9223372036854775808", "-9223372036854775809", "18446744073709551616", "1" + "0" * 39,
           "1" + "0" * 40, "0." + "0" * 38 + "1", "0." + "0" * 39 + "1", "1" * 4301, "1" * 5000 + ".5",
           "1e99999999999999999999999999", "1e-99999999999999999999999999", "0.000e99999999999999999",
           "123456789012345678901234567890e-29", "10000000000000000000000e-22", "-0.0", "1.0e19", "9.2e18"]


def test_huge_and_odd_numbers_in_every_numeric_field():
    out = []
    msg_fields = ("yes_price", "price", "count", "count_fp", "yes_price_dollars", "ts", "ts_ms", "yes_bid",
                  "volume", "dollar_volume", "delta", "delta_fp", "price_dollars", "settlement_value",
                  "open_ts", "strike_date", "yes_bid_size_fp")
    for num in NUMBERS:
        for f in SHORT.values():
            for env in (f'"sid":{num},"seq":2', f'"sid":1,"seq":{num}', f'"sid":1,"seq":2,"id":{num}'):
                out.append(f.replace(b'"sid":1,"seq":2', env.encode(), 1))
            for name in msg_fields:
                out.append(f.replace(b'"msg":{', f'"msg":{{"{name}":{num},'.encode(), 1))
                out.append(f.replace(b'"msg":{', f'"msg":{{"{name}":"{num}",'.encode(), 1))
        out.append(frame("orderbook_snapshot", f'"market_ticker":"KX","yes_dollars_fp":[["{num}",{num}],[{num},"1"]]'))
        out.append(frame("orderbook_snapshot", f'"market_ticker":"KX","no":[[{num},{num}],[50,1]]'))
    assert_same(out)


def test_duplicate_keys_everywhere():
    many = ",".join(f'"k{i}":{i}' for i in range(300))
    out = [
        b'{"type":"ok","type":"ok"}', b'{"type":"ok","ty\\u0070e":"ok"}', b'{"t\\u0079pe":"ok","type":"x"}',
        frame("trade", '"market_ticker":"KX","market_ticker":"KX"'),
        frame("trade", '"market_ticker":"KX","market\\u005fticker":"KX"'),
        frame("trade", '"market_ticker":"KX","x":1,"x":2'),
        frame("trade", '"market_ticker":"KX","x":{"a":1,"b":{"c":1,"c":1}}'),
        frame("trade", '"market_ticker":"KX","x":[{"a":1},{"a":1}]'),           # same key, two objects: fine
        b'{"type":"ticker","sid":1,"msg":{"market_ticker":"KX"},"msg":{}}',
        b'{"type":"ok","x":{' + many.encode() + b"}}",
        b'{"type":"ok","x":{' + many.encode() + b',"k7":1}}',
        b'{"type":"ok","x":{' + many.encode() + b',"k\\u0037":1}}',
        b'{"type":"ok","x":{' + many.encode() + b',"k299":1},"y":1,"y":2}',
        b'{"type":"ok","x":{' + ",".join(f'"{"a" * i}":1' for i in range(1, 60)).encode() + b',"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":1}}',
        b'{"type":"ok","\\u00e9":1,"\xc3\xa9":2}', b'{"type":"ok","\\ud83d\\ude00":1,"\xf0\x9f\x98\x80":2}',
        b'{"type":"ok","":1,"":2}', b'{"type":"ok","a":1,"a":2,"b":[1,}',
    ]
    for f in SHORT.values():  # repeat each named member of each short frame
        body = f[f.index(b'"msg":{') + 7:-2]
        for member in body.split(b',"'):
            member = member if member.startswith(b'"') else b'"' + member
            out.append(f[:-2] + b"," + member + b"}}")
    assert_same(out)


def test_utf8_bom_size_and_shapes():
    big = b'{"type":"ok","pad":"' + b"x" * (1_048_576 - 24) + b'"}'
    assert len(big) == 1_048_574
    out = [
        b"\xef\xbb\xbf" + SHORT["trade"], b" \xef\xbb\xbf{}", b'{"type":"ok","s":"\xef\xbb\xbf"}',
        b'{"type":"ok","s":"\xc0\x80"}', b'{"type":"ok","s":"\xe0\x80\x80"}', b'{"type":"ok","s":"\xed\xa0\x80"}',
        b'{"type":"ok","s":"\xf4\x90\x80\x80"}', b'{"type":"ok","s":"\xf0\x80\x80\x80"}', b'{"type":"ok","s":"\xff"}',
        b'{"type":"ok" \xff', b'{"type":"ok",}\xff', b'{"type":"ok"}\xc3', b'{"type":"ok"}  ', b"", b" ", b"{}",
        b"[]", b'"ok"', b"1", b"null", b'{"type":1}', b'{"type":null}', b'{"type":"trade"}', b'{"type":"trade","msg":[]}',
        b'{"type":"trade","msg":null}', b'{"type":""}', b'{"type":"TICKER"}', b'{"type":"ticker "}', b'{"type":"\\u0000"}',
        b'{"type":"ok"}\n', b'\r\n{"type":"ok"}\r\n', b'{"type":"ok"}\x00', b"NaN", b'{"type":"ok","x":NaN}',
        b'{"type":"ok","x":-Infinity}', b'{"type":"ok","x":01}', b'{"type":"ok","x":.5}', b'{"type":"ok","x":1.}',
        b'{"type":"ok","x":+1}', b"{'type':'ok'}", b'{"type":"ok"}//', b'{"type":"ok","x":"\t"}',
        b'["x","type":"ok"]', b'[1,"type":"ok"]', b'[{"type":"ok"},"sid":1]',  # key-like bytes in arrays
        frame("trade", '"yes":[1,"market_ticker":"KX"]'), frame("trade", '"x":[1],"market_ticker":"KX"'),
        big, big[:-2] + b'  "}', big + b" ", big + b"  ", big + b"   ", big[:-2] + b'x"}', b"[" * 1_048_577,
    ]
    assert_same(out)


def test_fuzz_mutations():
    mut = FUZZ.Mutator(FUZZ.seed_frames(generated=2000, seed=9), 9)
    frames = [mut.frame() for _ in range(20_000)]
    for k in range(0, len(frames), 2000):
        assert_same(frames[k:k + 2000])


def test_api_edges():
    frames = list(SHORT.values()) + FIXTURE_FRAMES[:40]
    for impl in (CY, PY):
        b = impl.FrameBatch()
        for f in frames:
            b.add(bytearray(f))
            b.add(memoryview(f))
            b.add(memoryview(bytes(c for c in f for _ in (0, 1)))[::2])  # not contiguous
        with pytest.raises(IndexError):
            b.outcome(len(b))
        with pytest.raises(IndexError):
            b.record(-1)
        with pytest.raises(ValueError):
            b.set_recv_ts(-1)
        with pytest.raises(ValueError):
            b.set_recv_ts(2**63)
        b.set_recv_ts(7)
        assert b.recv_ts == 7
        b.reset()
        assert len(b) == 0 and b.counts()["frames"] == 3 * len(frames)
    cb = CY.FrameBatch()
    assert cb.add_lines(b"\n".join(frames) + b"\n") == len(frames)
    lines = CY.FrameBatch()
    for f in frames:
        lines.add(f)
    assert cb.records_jsonl() == lines.records_jsonl() and cb.raw_jsonl() == lines.raw_jsonl()
    assert CY.FrameBatch().add_lines(b"a\n\nb") == 3


# --- hypothesis -------------------------------------------------------------------------------------

def _jstr(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _text(**kw):
    return st.text(st.characters(exclude_categories=("Cs",)), **kw)  # no lone surrogates: UTF-8 bytes


decimal_text = st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,6})?", fullmatch=True)
number_text = st.from_regex(r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
rfc_text = st.builds(
    lambda y, mo, d, h, mi, s, f, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{f}{z}",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60),
    st.integers(0, 60), st.sampled_from(["", ".1", ".123456789", ".1234567890"]),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+24:00", "+05:60", "", "+0530"]))
scalar = st.one_of(
    decimal_text.map(_jstr), number_text, st.integers(-5, 105).map(str), st.integers(-2**64, 2**64).map(str),
    rfc_text.map(_jstr), _text(max_size=12).map(_jstr), st.sampled_from(FUZZ.VALUES).map(bytes.decode),
    st.sampled_from(["true", "false", "null", '""', '"yes"', '"no"', '"KX-1"', '"KX 1"']))
level = st.lists(st.one_of(decimal_text.map(_jstr), number_text, st.integers(-1, 101).map(str)),
                 min_size=0, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
value = st.one_of(scalar, scalar, st.lists(level, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
                  st.dictionaries(st.sampled_from(["a", "b", "title"]), scalar, max_size=3).map(
                      lambda d: "{" + ",".join(f"{_jstr(k)}:{v}" for k, v in d.items()) + "}"))
ws = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n"])

# Mostly valid values of each source kind, in every form the schema accepts.
dollars = st.one_of(st.integers(0, 10000).map(lambda c: f"{c // 10000}.{c % 10000:04d}").map(_jstr),
                    st.sampled_from(['"0"', '"1"', '"0.5"', '"00.10"', '"1.0"', '"0.0020"', '""', "0.45", "5e-1",
                                     "1", r'"0.\u0035"', '"-0.00"']))
cents = st.one_of(st.integers(0, 100).map(str), st.sampled_from(["5.0", "2.5E1", "-0", "1e2"]))
qty = st.one_of(decimal_text.map(_jstr), number_text, st.sampled_from(['"0.11"', '"3.00"', '"-54.00"']))
count = st.one_of(st.integers(-2, 10**9).map(str), st.sampled_from(["2.8E3", "45.0"]))
secs = st.one_of(st.integers(-10**10, 10**11).map(str), st.sampled_from(["9223372036854775807", "1.7e9"]))
ticker = st.one_of(st.text(alphabet="ABCKXZ0123456789-._", min_size=1, max_size=30).map(_jstr),
                   st.sampled_from([r'"KX\u002dA"', r'"K\"X"', r'"K\\X"', '"KX A"', '""', r'"\u00e9"']))
text = st.one_of(_text(max_size=20).map(_jstr), st.sampled_from(['""', r'"a\u0000b"', r'"\ud83d\ude00\/"']))
yes_no = st.sampled_from(['"yes"', '"no"', r'"y\u0065s"', '"No"'])
boolean = st.sampled_from(["true", "false"])
side_levels = st.lists(st.tuples(dollars, qty), max_size=8).map(
    lambda xs: "[" + ",".join(f"[{p},{s}]" for p, s in xs) + "]")
cent_levels = st.lists(st.tuples(cents, count), max_size=8).map(
    lambda xs: "[" + ",".join(f"[{p},{s}]" for p, s in xs) + "]")
metadata = st.dictionaries(st.sampled_from(["title", "floor_strike", "x"]), scalar, max_size=3).map(
    lambda d: "{ " + " , ".join(f"{_jstr(k)} : {v}" for k, v in d.items()) + " }")
RECORD_FIELDS = {  # (name, strategy, required)
    "trade": [("market_ticker", ticker, 1), ("trade_id", text, 1), ("yes_price_dollars", dollars, 0),
              ("yes_price", cents, 1), ("price", cents, 0), ("count_fp", qty, 0), ("count", count, 1),
              ("taker_outcome_side", yes_no, 0), ("taker_side", yes_no, 1), ("side", yes_no, 0),
              ("is_block_trade", boolean, 0), ("ts_ms", secs, 0), ("ts", secs, 0)],
    "ticker": [("market_ticker", ticker, 1), ("yes_bid_dollars", dollars, 0), ("yes_bid", cents, 0),
               ("yes_ask_dollars", dollars, 0), ("yes_ask", cents, 0), ("price_dollars", dollars, 0),
               ("price", cents, 0), ("yes_bid_size_fp", qty, 0), ("last_trade_size_fp", qty, 0),
               ("volume_fp", qty, 0), ("volume", count, 0), ("open_interest", count, 0),
               ("dollar_volume", count, 0), ("ts_ms", secs, 0), ("time", rfc_text.map(_jstr), 0),
               ("ts", secs, 0), ("Clock", count, 0)],
    "orderbook_snapshot": [("market_ticker", ticker, 1), ("yes_dollars_fp", side_levels, 0),
                           ("yes", cent_levels, 0), ("no_dollars", side_levels, 0), ("no", cent_levels, 0)],
    "orderbook_delta": [("market_ticker", ticker, 1), ("side", yes_no, 1), ("price_dollars", dollars, 0),
                        ("price", cents, 1), ("delta_fp", qty, 0), ("delta", count, 1),
                        ("ts", st.one_of(rfc_text.map(_jstr), secs), 0), ("ts_ms", secs, 0)],
    "market_lifecycle_v2": [("market_ticker", ticker, 1),
                            ("event_type", st.sampled_from(['"created"', '"metadata_updated"', '""']), 1),
                            ("open_ts", secs, 0), ("determination_ts", secs, 0), ("result", text, 0),
                            ("settlement_value", st.one_of(dollars, cents), 0), ("is_deactivated", boolean, 0),
                            ("price_level_structure", text, 0), ("additional_metadata", metadata, 0),
                            ("floor_strike", scalar, 0), ("title", text, 0), ("custom_strike", metadata, 0)],
    "event_lifecycle": [("event_ticker", ticker, 1), ("series_ticker", st.one_of(ticker, text), 0),
                        ("title", text, 0), ("subtitle", text, 0), ("sub_title", text, 0),
                        ("collateral_return_type", text, 0), ("strike_date", secs, 0),
                        ("strike_period", text, 0)],
}
OTHER_TYPES = ["subscribed", "ok", "error", "unsubscribed", "fill", "", "TICKER", "tr\\u0061de"]


@st.composite
def kalshi_frames(draw) -> bytes:
    """A frame of a record type with valid required members and some optional ones; now and then a
    member dropped, its value replaced by any value, or a member repeated; other types now and then."""
    wire = draw(st.sampled_from(list(RECORD_FIELDS) * 3 + OTHER_TYPES))
    members = []
    for name, strategy, required in RECORD_FIELDS.get(wire, RECORD_FIELDS["trade"]):
        if (required and draw(st.integers(0, 30))) or draw(st.integers(0, 2)) == 0:
            v = draw(value) if draw(st.integers(0, 12)) == 0 else draw(strategy)
            members.append((name, v))
    members = draw(st.permutations(members)) if draw(st.booleans()) else members
    if members and draw(st.integers(0, 40)) == 0:
        members.append(members[0])
    sep = draw(ws)
    msg = "{" + ",".join(f"{sep}{_jstr(k)}{draw(ws)}:{v}" for k, v in members) + "}"
    env = [("type", _jstr(wire).replace("\\\\u", "\\u"))]
    for name in ("sid", "seq", "id"):
        if draw(st.integers(0, 3)):
            env.append((name, draw(st.integers(-1, 2**63).map(str)) if draw(st.integers(0, 4)) else draw(scalar)))
    env.append(("msg", msg if draw(st.integers(0, 20)) else draw(value)))
    if draw(st.integers(0, 3)) == 0:
        env = draw(st.permutations(env))
    return ("{" + ",".join(f"{draw(ws)}{_jstr(k)}:{draw(ws)}{v}" for k, v in env) + draw(ws) + "}").encode()


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(kalshi_frames(), min_size=1, max_size=8))
def test_hypothesis_kalshi_like_frames(frames):
    assert_same(frames)


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | number_text | _text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(_text(max_size=5), c, max_size=4),
                    max_leaves=20))
def test_hypothesis_json_values(v):
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    assert_same([text.encode(), json.dumps({"type": "ok", "v": v}).encode(),
                 json.dumps({"type": "trade", "msg": {"market_ticker": "KX", "x": v}}).encode()])


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, len(FIXTURE_FRAMES) - 1), st.integers(0, 400))
def test_hypothesis_bytes(blob, k, at):
    f = FIXTURE_FRAMES[k]
    at = min(at, len(f))
    assert_same([blob, f[:at] + blob + f[at:], f[:at] + blob])
