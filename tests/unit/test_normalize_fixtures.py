"""Every fixture frame normalizes as tests/data/kalshi/README.md says; selected records byte for byte.

Expected records (tests/data/normalize/expected_records.txt) were computed by hand from the schema;
the large snapshots are checked against an independent Decimal oracle written here.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from twins import normalizer_fixture

from ssmd_fast.errors import InvalidFrame
from ssmd_fast.normalize import (
    F_DROP,
    F_DUPLICATE,
    F_GAP,
    K_BOOK_DELTA,
    K_BOOK_SNAPSHOT,
    K_ERROR,
    K_EVENT_LIFECYCLE,
    K_MARKET_LIFECYCLE,
    K_NONE,
    K_OK,
    K_SUBSCRIBED,
    K_TICKER,
    K_TRADE,
    K_UNSUBSCRIBED,
    OUT_CONTROL,
    OUT_INVALID,
    OUT_OTHER,
    OUT_RECORD,
)

pytestmark = pytest.mark.twin

DATA = Path(__file__).parents[1] / "data"
KALSHI = DATA / "kalshi"
MANIFEST = json.loads((KALSHI / "MANIFEST.json").read_text())

RECORD_KINDS = {"trade": K_TRADE, "ticker": K_TICKER, "orderbook_snapshot": K_BOOK_SNAPSHOT,
                "orderbook_delta": K_BOOK_DELTA, "market_lifecycle_v2": K_MARKET_LIFECYCLE,
                "event_lifecycle": K_EVENT_LIFECYCLE}
RECORD_NAMES = {"trade": "trade", "ticker": "ticker", "orderbook_snapshot": "book_snapshot",
                "orderbook_delta": "book_delta", "market_lifecycle_v2": "market_lifecycle",
                "event_lifecycle": "event_lifecycle"}
CONTROL_KINDS = {"subscribed": K_SUBSCRIBED, "ok": K_OK, "error": K_ERROR, "unsubscribed": K_UNSUBSCRIBED}
CANONICAL_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


impl = normalizer_fixture()


def frames(name: str) -> list[bytes]:
    return (KALSHI / name).read_bytes().split(b"\n")[:-1]


def fixture_line(where: str) -> bytes:
    name, line = where.rsplit(":", 1)
    return frames(name)[int(line) - 1]


def expected_records() -> list[tuple[str, bytes]]:
    out = []
    for line in (DATA / "normalize" / "expected_records.txt").read_bytes().split(b"\n"):
        if line and not line.startswith(b"#"):
            where, record = line.split(b" ", 1)
            out.append((where.decode(), record))
    return out


# --- outcome of every line ---------------------------------------------------------------------------

@pytest.mark.parametrize("entry", MANIFEST["files"], ids=lambda f: f["file"])
def test_every_fixture_line_has_the_outcome_of_its_type(impl, entry):
    lines = frames(entry["file"])
    assert len(lines) == entry["lines"] == len(entry["rows"])
    batch = impl.FrameBatch()
    for row, frame in zip(entry["rows"], lines, strict=True):
        assert len(frame) == row["bytes"]
        i = len(batch)
        outcome = batch.add(frame)
        where = f"{entry['file']}:{row['line']}"
        wire_type = row["type"]
        if wire_type in RECORD_KINDS:
            assert outcome == OUT_RECORD, (where, batch.reason(i))
            assert batch.kind(i) == RECORD_KINDS[wire_type]
            assert batch.type_name(i) == RECORD_NAMES[wire_type]
            key = row.get("event_ticker") if wire_type == "event_lifecycle" else row.get("market_ticker")
            assert batch.key(i) == key.encode()
            record = json.loads(batch.record(i))
            assert record["type"] == RECORD_NAMES[wire_type] and record["feed"] == "kalshi"
            assert record["sid"] == row.get("sid") and record["seq"] == row.get("seq")
        elif wire_type in CONTROL_KINDS:
            assert outcome == OUT_CONTROL, where
            assert batch.kind(i) == CONTROL_KINDS[wire_type]
            assert batch.type_name(i) == wire_type
            assert batch.record(i) is None and batch.key(i) is None
            assert batch.control(i) == json.loads(frame)
        else:
            assert outcome == OUT_OTHER, where
            assert batch.kind(i) == K_NONE
            assert batch.type_name(i) == wire_type
            assert batch.key(i) == wire_type.encode()
            assert batch.record(i) is None
        assert batch.reason(i) is None
        assert batch.sid(i) == row.get("sid")
        assert batch.seq(i) == row.get("seq")
        assert batch.cmd_id(i) == row.get("id")
        assert batch.raw(i) == frame
        assert batch.flags(i) == 0


def test_normalize_frame_agrees_with_the_batch_on_every_line(impl):
    for entry in MANIFEST["files"]:
        batch = impl.FrameBatch()
        for frame in frames(entry["file"]):
            outcome = batch.add(frame)
            record = impl.normalize_frame(frame)
            if outcome == OUT_RECORD:
                assert record == batch.record(len(batch) - 1)
            else:
                assert record is None


def test_counts_over_the_whole_corpus_match_the_manifest(impl):
    batch = impl.FrameBatch()
    want = {"records": {}, "control": {}, "other": {}}
    total_bytes = 0
    for entry in MANIFEST["files"]:
        for frame in frames(entry["file"]):
            batch.add(frame)
            total_bytes += len(frame)
        batch.reset()  # counters are cumulative across reset()
        for row in entry["rows"]:
            t = row["type"]
            group, name = (("records", RECORD_NAMES[t]) if t in RECORD_KINDS else
                           ("control", t) if t in CONTROL_KINDS else ("other", t))
            want[group][name] = want[group].get(name, 0) + 1
    counts = batch.counts()
    assert len(batch) == 0
    assert counts["frames"] == sum(e["lines"] for e in MANIFEST["files"])
    assert counts["bytes"] == total_bytes
    assert counts["records"] == want["records"]
    assert counts["control"] == want["control"]
    assert counts["other"] == want["other"]
    assert counts["invalid"] == {}


def test_gap_and_duplicate_lines_are_still_valid_frames(impl):
    # Sequencing is the session's job: a frame after a gap normalizes like any other.
    gap = fixture_line("orderbook_delta.jsonl:16")
    record = json.loads(impl.normalize_frame(gap))
    assert (record["sid"], record["seq"]) == (7, 18)
    replay = frames("scenario_gap_resync.jsonl")
    batch = impl.FrameBatch()
    for frame in replay + replay[:3]:  # the first frames again, as duplicates
        batch.add(frame)
    assert batch.counts()["invalid"] == {}
    assert [batch.outcome(i) for i in range(20, 23)] == [batch.outcome(i) for i in range(3)]


# --- hand-computed records ---------------------------------------------------------------------------

@pytest.mark.parametrize("where,expected", expected_records(), ids=[w for w, _ in expected_records()])
def test_selected_records_byte_for_byte(impl, where, expected):
    assert impl.normalize_frame(fixture_line(where)) == expected


SPEC_EXAMPLES = [
    (b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"5d93...","market_ticker":"KXBTCD-26MAR1213-T69499.99",'
     b'"yes_price_dollars":"0.8900","no_price_dollars":"0.1100","count_fp":"3.00","taker_side":"yes",'
     b'"ts":1773331880}}',
     b'{"type":"trade","feed":"kalshi","ticker":"KXBTCD-26MAR1213-T69499.99","trade_id":"5d93...",'
     b'"price":0.89,"size":3,"side":"yes","block":false,"ts":1773331880000000000,"sid":3,"seq":1}'),
    (b'{"type":"orderbook_delta","sid":5,"seq":42,"msg":{"market_ticker":"KXBTCD-26FEB14-T100000","price":46,'
     b'"price_dollars":"0.46","delta":-50,"delta_fp":"-50.00","side":"yes","ts":"2026-02-14T15:30:00Z"}}',
     b'{"type":"book_delta","feed":"kalshi","ticker":"KXBTCD-26FEB14-T100000","side":"yes","price":0.46,'
     b'"delta":-50,"ts":1771083000000000000,"sid":5,"seq":42}'),
]


@pytest.mark.parametrize("frame,expected", SPEC_EXAMPLES, ids=["trade", "book_delta"])
def test_the_schema_examples(impl, frame, expected):
    assert impl.normalize_frame(frame) == expected


def _without(frame: bytes, key: str) -> bytes:
    msg = json.loads(frame, parse_float=Decimal)
    del msg["msg"][key]
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def test_ticker_time_rfc3339_with_offsets(impl):
    # Line 22 without ts_ms: `time` (microseconds) wins over `ts`; the same instant in other offsets.
    frame = _without(fixture_line("ticker.jsonl:22"), "ts_ms")
    assert json.loads(impl.normalize_frame(frame))["ts"] == 1784643300128125000
    z = b'"time":"2026-07-21T14:15:00.128125Z"'
    assert z in frame
    for same in (b'"time":"2026-07-21T16:15:00.128125+02:00"', b'"time":"2026-07-21T09:45:00.128125-04:30"',
                 b'"time":"2026-07-22T00:14:00.128125+09:59"', b'"time":"2026-07-21t14:15:00.128125z"'):
        assert json.loads(impl.normalize_frame(frame.replace(z, same)))["ts"] == 1784643300128125000
    frame = _without(frame, "time")
    assert json.loads(impl.normalize_frame(frame))["ts"] == 1784643300 * 10**9


def test_delta_ts_seconds_when_integer(impl):
    frame = fixture_line("orderbook_delta.jsonl:1").replace(b'"ts":"2026-02-14T14:30:00.212784Z"',
                                                             b'"ts":1771079400')
    assert json.loads(impl.normalize_frame(frame))["ts"] == 1771079400000000000


# --- snapshots against an independent Decimal oracle -----------------------------------------------

def oracle_side(msg: dict, side: str) -> list[list[Decimal]]:
    for key, cents in ((f"{side}_dollars_fp", False), (f"{side}_dollars", False), (side, True)):
        if key in msg:
            levels = [[Decimal(p) / 100 if cents else Decimal(p), Decimal(s)] for p, s in msg[key]]
            return sorted(levels, key=lambda lv: lv[0], reverse=True)  # stable for equal prices
    return []


def assert_canonical_numbers(record: bytes):
    text = record.decode()
    for s in re.findall(r'"(?:[^"\\]|\\.)*"|(-?[0-9][0-9.eE+-]*)', text):
        if s:
            assert CANONICAL_NUMBER.fullmatch(s) and s != "-0", (s, text[:200])


@pytest.mark.parametrize("line", range(1, 13))
def test_snapshot_levels_match_the_oracle(impl, line):
    frame = fixture_line(f"orderbook_snapshot.jsonl:{line}")
    record = impl.normalize_frame(frame)
    assert_canonical_numbers(record)
    got = json.loads(record, parse_float=Decimal)
    msg = json.loads(frame)["msg"]
    for side in ("yes", "no"):
        assert got[side] == oracle_side(msg, side), side
        prices = [p for p, _ in got[side]]
        assert prices == sorted(prices, reverse=True)


def test_the_711_level_snapshot_sorted_best_first(impl):
    frame = fixture_line("orderbook_snapshot.jsonl:7")
    assert len(frame) > 14_000
    got = json.loads(impl.normalize_frame(frame), parse_float=Decimal)
    levels = got["yes"] + got["no"]
    assert len(levels) == 711
    msg = json.loads(frame)
    assert len(got["yes"]) == len(msg["msg"].get("yes_dollars_fp", []))
    assert got["yes"][0][0] == max(Decimal(p) for p, _ in msg["msg"]["yes_dollars_fp"])
    assert all(Decimal("0.001") <= p <= 1 for p, _ in levels)


def test_six_array_snapshot_takes_the_fp_arrays(impl):
    frame = fixture_line("orderbook_snapshot.jsonl:3")
    got = json.loads(impl.normalize_frame(frame), parse_float=Decimal)
    msg = json.loads(frame)["msg"]
    assert got["yes"] == sorted([[Decimal(p), Decimal(s)] for p, s in msg["yes_dollars_fp"]], reverse=True)
    # Changing the legacy arrays changes nothing: only the winning source is read.
    mangled = frame.replace(b'"yes":[[', b'"yes":[["junk"],[')
    assert impl.normalize_frame(mangled) == impl.normalize_frame(frame)


def test_every_record_number_is_canonical(impl):
    for entry in MANIFEST["files"]:
        for frame in frames(entry["file"]):
            record = impl.normalize_frame(frame)
            if record is None:
                continue
            parsed = json.loads(record)
            if parsed["type"] == "market_lifecycle":
                parsed["metadata"] = None  # metadata numbers are copied as received
                record = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
            assert_canonical_numbers(record)


# --- FrameBatch API on the fixtures -----------------------------------------------------------------

def test_batch_keys_trade_ids_and_command_ids(impl):
    batch = impl.FrameBatch()
    batch.add(fixture_line("trade.jsonl:1"))
    batch.add(fixture_line("event_lifecycle.jsonl:4"))
    batch.add(fixture_line("orderbook_snapshot.jsonl:12"))
    batch.add(fixture_line("unknown.jsonl:1"))
    assert batch.key(0) == b"KXHIGHCHI-25OCT02-B80.5"
    assert batch.trade_id(0) == b"fe625f12-c48a-45c5-933c-5ae057febd0a"
    assert batch.key(1) == b"KXWCQUALIFY-26" and batch.trade_id(1) is None
    assert (batch.cmd_id(2), batch.sid(2), batch.seq(2)) == (9, 21, 15)
    assert batch.key(3) == b"ticker_v2" and batch.type_name(3) == "ticker_v2"
    assert batch.cmd_id(0) is None


def test_batch_reset_flags_and_jsonl(impl):
    batch = impl.FrameBatch()
    lines = frames("scenario_gap_resync.jsonl")
    for frame in lines:
        batch.add(frame)
    batch.add(b"not json")
    assert len(batch) == 21
    assert batch.outcome(20) == OUT_INVALID and batch.reason(20) == "json"
    assert batch.type_name(20) is None and batch.kind(20) == K_NONE
    records = [batch.record(i) for i in range(len(batch)) if batch.outcome(i) == OUT_RECORD]
    assert batch.records_jsonl() == b"".join(r + b"\n" for r in records)
    assert batch.raw_jsonl() == b"".join(f + b"\n" for f in lines)  # no invalid frame
    first_record = next(i for i in range(len(batch)) if batch.outcome(i) == OUT_RECORD)
    batch.set_flag(first_record, F_DUPLICATE)
    batch.set_flag(first_record + 1, F_GAP)  # F_GAP is kept: it is not in F_DROP
    assert batch.flags(first_record) == F_DUPLICATE
    assert batch.records_jsonl(F_DROP) == b"".join(r + b"\n" for r in records[1:])
    assert batch.records_jsonl(0) == b"".join(r + b"\n" for r in records)
    assert lines[first_record] + b"\n" not in batch.raw_jsonl()
    batch.reset()
    assert len(batch) == 0 and batch.records_jsonl() == b"" and batch.raw_jsonl() == b""
    assert batch.counts()["frames"] == 21 and batch.counts()["invalid"] == {"json": 1}
    with pytest.raises(IndexError):
        batch.outcome(0)


def test_raw_jsonl_replaces_cr_lf_whitespace(impl):
    batch = impl.FrameBatch()
    batch.add(b'{"type":"ok",\r\n"id":1}\r')
    assert batch.outcome(0) == OUT_CONTROL
    assert batch.raw(0) == b'{"type":"ok",\r\n"id":1}\r'
    assert batch.raw_jsonl() == b'{"type":"ok",  "id":1} \n'


def test_recv_ts_is_added_last_when_set(impl):
    batch = impl.FrameBatch()
    assert batch.recv_ts == 0
    frame = fixture_line("trade.jsonl:1")
    batch.add(frame)
    batch.set_recv_ts(1784643300123456789)
    assert batch.recv_ts == 1784643300123456789
    batch.add(frame)
    batch.set_recv_ts(0)
    batch.add(frame)
    plain = impl.normalize_frame(frame)
    assert batch.record(0) == plain == batch.record(2)
    assert batch.record(1) == plain[:-1] + b',"recv_ts":1784643300123456789}'


def test_recv_ts_follows_every_change(impl):
    """The compiled batch keeps the text of the last recv_ts it wrote (one per socket read): a new value,
    a return to an earlier one and the widest (19 digits) are each written as they are."""
    batch = impl.FrameBatch()
    frame = fixture_line("trade.jsonl:1")
    plain = impl.normalize_frame(frame)
    values = [5, 1784643300123456789, 1784643300123456790, 5, 2**63 - 1, 0, 5]
    for ts in values:
        batch.set_recv_ts(ts)
        batch.add(frame)
    for i, ts in enumerate(values):
        assert batch.record(i) == (plain if ts == 0 else plain[:-1] + b',"recv_ts":%d}' % ts), ts


def test_invalid_raw_keeps_at_most_256_bytes(impl):
    batch = impl.FrameBatch()
    bad = b'{"type":"trade","msg":{"x":"' + b"a" * 1000 + b'"}}'
    assert batch.add(bad) == OUT_INVALID
    assert batch.reason(0) == "missing"
    assert batch.raw(0) == bad[:256]
    assert batch.record(0) is None and batch.key(0) is None and batch.trade_id(0) is None


def test_batch_accepts_bytearray_and_memoryview(impl):
    frame = fixture_line("trade.jsonl:1")
    batch = impl.FrameBatch()
    batch.add(bytearray(frame))
    batch.add(memoryview(b"xx" + frame)[2:])
    assert batch.record(0) == batch.record(1) == impl.normalize_frame(frame)
    assert impl.normalize_frame(bytearray(frame)) == batch.record(0)


def test_add_lines_splits_on_lf_only(impl):
    data = (KALSHI / "trade.jsonl").read_bytes()
    batch, one_by_one = impl.FrameBatch(), impl.FrameBatch()
    assert batch.add_lines(data) == 30
    for frame in frames("trade.jsonl"):
        one_by_one.add(frame)
    assert batch.records_jsonl() == one_by_one.records_jsonl()
    batch.reset()
    assert batch.add_lines(b'{"type":"ok"}\r\n\n{"type":"ok",\r"id":2}') == 3  # CR kept; last line without LF
    assert [batch.outcome(i) for i in range(3)] == [OUT_CONTROL, OUT_INVALID, OUT_CONTROL]
    assert batch.raw(0) == b'{"type":"ok"}\r' and batch.cmd_id(2) == 2
    assert batch.add_lines(b"") == 0 and batch.add_lines(bytearray(b"\n")) == 1


def test_normalize_frame_raises_invalid_frame_with_the_reason(impl):
    with pytest.raises(InvalidFrame) as info:
        impl.normalize_frame(b'{"type":"trade","msg":[]}')
    assert info.value.reason == "shape"
