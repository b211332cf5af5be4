"""Why dead letters are in the dead-letter file (``sinks/dead_reasons.py``), and what ``ssmd-fast spill
--dead-letter`` says about it: the publisher adds the letters up per kind and writes a line per interval;
a requeue makes the earlier reasons history."""

from __future__ import annotations

import json

import pytest
from test_spill import rec
from test_spill_inspect import _run

from ssmd_fast.sinks.dead_reasons import REASONS_NAME, DeadLetterReasons, mark_requeued, read_reasons
from ssmd_fast.sinks.spill import SpillFile

pytestmark = pytest.mark.timeout(30)


def _lines(d) -> list[dict]:
    return [json.loads(x) for x in (d / REASONS_NAME).read_text().splitlines()]


def test_letters_are_added_up_per_kind_and_written_when_told(tmp_path):
    clock = [1_765_152_000.25]
    r = DeadLetterReasons(str(tmp_path), clock=lambda: clock[0])
    r.note("stream_full", "maximum messages exceeded (err_code 10077)", [rec(1), rec(2)])
    r.note("permissions", "Permissions Violation for Publish to x.y", [rec(3)])
    r.note("stream_full", "maximum bytes exceeded (err_code 10078)", [rec(4)])
    assert not (tmp_path / REASONS_NAME).exists()      # nothing written until the interval's line
    r.write("stream_full")
    (line,) = _lines(tmp_path)
    assert line == {"at": "2025-12-08T00:00:00.250Z", "kind": "stream_full", "count": 3,
                    "first_id": rec(1)[1].decode(), "last_id": rec(4)[1].decode(),
                    "why": "maximum bytes exceeded (err_code 10078)"}   # the latest answer
    r.note("stream_full", "", [rec(5)])
    clock[0] += 10
    r.close()                                           # every kind still open
    assert [(x["kind"], x["count"], x["at"]) for x in _lines(tmp_path)[1:]] == [
        ("permissions", 1, "2025-12-08T00:00:10.250Z"), ("stream_full", 1, "2025-12-08T00:00:10.250Z")]
    r.close()
    assert len(_lines(tmp_path)) == 3                   # nothing twice


def test_the_summary_adds_up_the_lines_since_the_last_requeue_and_skips_a_torn_one(tmp_path):
    r = DeadLetterReasons(str(tmp_path), clock=lambda: 1_765_152_000.0)
    r.note("too_large", "", [rec(1)])
    r.close()
    mark_requeued(str(tmp_path), 1, clock=lambda: 1_765_152_001.0)
    r = DeadLetterReasons(str(tmp_path), clock=lambda: 1_765_152_002.0)
    r.note("stream_full", "maximum messages exceeded", [rec(2), rec(3)])
    r.write()
    r = DeadLetterReasons(str(tmp_path), clock=lambda: 1_765_152_012.0)
    r.note("stream_full", "", [rec(4)])
    r.write()
    with open(tmp_path / REASONS_NAME, "a") as f:
        f.write('{"at": "2025-12-08T00:00:13.000Z", "kind": "stream_fu')     # a crash in the middle of a line
    s = read_reasons(str(tmp_path))
    assert s.kinds == {"stream_full": {"count": 3, "first_at": "2025-12-08T00:00:02.000Z",
                                       "last_at": "2025-12-08T00:00:12.000Z", "why": "maximum messages exceeded",
                                       "example": rec(2)[1].decode()}}
    assert s.unreadable == 1
    assert s.lines()[1].startswith("    stream_full: 3 messages, 2025-12-08T00:00:02.000Z to 2025-12-08T00:00:12.000Z: "
                                   "maximum messages exceeded (e.g. ")
    assert read_reasons(str(tmp_path / "none")).lines() == ["  reasons: none recorded"]


def test_spill_dead_letter_shows_the_reasons_and_a_requeue_makes_them_history(tmp_path, capsysbinary):
    dead_dir = tmp_path / "dead-letter"
    with SpillFile(dead_dir, max_bytes=1 << 20) as dead:
        dead.append_many([rec(i) for i in range(4)])
    r = DeadLetterReasons(str(dead_dir))
    r.note("stream_full", "maximum messages exceeded (err_code 10077)", [rec(i) for i in range(4)])
    r.close()
    rc, out, _ = _run(capsysbinary, str(tmp_path), "--dead-letter")
    assert rc == 0 and "4 records pending" in out
    assert "stream_full: 4 messages" in out and "maximum messages exceeded (err_code 10077)" in out
    rc, _, err = _run(capsysbinary, str(tmp_path), "--requeue-dead-letters")
    assert rc == 0 and "4 dead letters moved" in err
    assert _lines(dead_dir)[-1]["requeued"] == 4
    rc, out, _ = _run(capsysbinary, str(tmp_path), "--dead-letter")
    assert rc == 0 and "reasons" not in out and "stream_full" not in out        # empty: nothing to explain
    assert read_reasons(str(dead_dir)).kinds == {}
