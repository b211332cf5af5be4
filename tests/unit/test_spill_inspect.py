"""``ssmd-fast spill``: what a spill directory holds, read without changing it (also while a connector
holds the spill open), and the records a replay would send, in its order.

Runs with the compiled record format and again with SSMD_FAST_NO_EXTENSIONS=1 (make test)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_spill import rec, segments
from test_spill_corrupt import _flip

from ssmd_fast import cli
from ssmd_fast.sinks.spill import SpillFile, encode_record
from ssmd_fast.sinks.spill_inspect import inspect_spill, pending_records

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]


def _snapshot(d: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.rglob("*")) if p.is_file()}


def _run(capsysbinary, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["spill", *argv])
    got = capsysbinary.readouterr()
    return rc, got.out.decode(), got.err.decode()


def test_the_summary_and_the_records_of_a_spill_a_connector_holds_open(tmp_path, capsysbinary):
    items = [rec(i) for i in range(300)]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        sp.append_many(items)
        sp.consume(len(sp.read(10)))
    names = segments(tmp_path)
    assert len(names) > 8
    _flip(tmp_path / names[2], 30)                    # the first record of the third segment
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:   # sets it aside, holds the lock
        sp.append(*rec(300))
        sp.flush()
        before = _snapshot(tmp_path)
        rc, out, _ = _run(capsysbinary, str(tmp_path))
        assert rc == 0
        assert _snapshot(tmp_path) == before              # read-only: no byte or mtime changed
        offset = sum(len(encode_record(*it)) for it in items[:10])
        assert f"spill {tmp_path}: 290 records pending" in out and f"cursor: segment 1 offset {offset:,}" in out
        assert f"  {names[0]}" in out and "(10 replayed)" in out
        assert f"  {names[2]}" in out and "corrupt bytes 0-" in out and "(CRC mismatch): not replayable" in out
        assert f"  ... {len(names) - 4} segments, every record valid" in out   # 1, 2, 3 and the last listed
        assert "quarantine/: 1 file," in out and "  ... 1 segment, every record valid" in out
        rc, out, err = _run(capsysbinary, str(tmp_path), "--records", "5")
        assert out.encode().splitlines() == [b"%s %s %s" % it for it in items[10:15]]
        assert "5 records printed" in err
        everything = list(pending_records(inspect_spill(str(tmp_path))))
        assert len(everything) == 290 and everything == sp.read(1000)   # what the replay reads, in its order


def test_a_record_being_written_is_a_tail_not_corruption_and_is_left_alone(tmp_path, capsysbinary):
    items = [rec(i) for i in range(20)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(items)
    (name,) = segments(tmp_path)
    with open(tmp_path / name, "ab") as f:
        f.write(encode_record(*rec(20))[:25])             # half a record, as a writer mid-append
    size = (tmp_path / name).stat().st_size
    rc, out, _ = _run(capsysbinary, str(tmp_path))
    assert "20 records pending" in out and "25 bytes at the end are not a whole record" in out
    assert " in 1 segment; cursor" in out and f"{20:>10,} records" in out
    assert "corrupt" not in out and (tmp_path / name).stat().st_size == size
    assert list(pending_records(inspect_spill(str(tmp_path)))) == items


def test_corrupt_bytes_the_replay_already_passed_are_not_reported(tmp_path, capsysbinary):
    items = [rec(i) for i in range(20)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(items)
        sp.consume(12)
    (name,) = segments(tmp_path)
    _flip(tmp_path / name, 30)                             # record 0: replayed already
    _flip(tmp_path / name, sum(len(encode_record(*it)) for it in items[:15]) + 30)   # record 15: not yet
    rc, out, _ = _run(capsysbinary, str(tmp_path))
    assert "7 records pending" in out and out.count("corrupt bytes") == 1
    assert list(pending_records(inspect_spill(str(tmp_path)))) == items[12:15] + items[16:]


def test_dead_letters_through_the_environment_file(tmp_path, capsysbinary):
    spill_dir = tmp_path / "spill"
    with SpillFile(spill_dir / "dead-letter", max_bytes=1 << 20) as dead:
        dead.append(b"x.kalshi.json.trade.KX", b"kalshi:trade:t1:raw", b'{"too":"large"}')
    env = tmp_path / "env.yaml"
    env.write_text(textwrap.dedent(f"""\
        name: x
        feed: kalshi
        transport:
          type: nats
          url: [nats://127.0.0.1:4222]
          spill:
            path: {spill_dir}
        """))
    rc, out, _ = _run(capsysbinary, "--env", str(env), "--dead-letter", "-n", "10", "--raw")
    assert rc == 0 and out == '{"too":"large"}\n'
    rc, out, _ = _run(capsysbinary, "--env", str(env))
    assert out == f"spill {spill_dir}: empty\n"


def test_errors_name_the_directory(tmp_path, capsysbinary):
    rc, _, err = _run(capsysbinary, str(tmp_path / "nope"))
    assert rc == 1 and f"{tmp_path / 'nope'}: not a spill directory" in err
    with pytest.raises(SystemExit) as usage:       # an argument error: argparse's exit status 2
        _run(capsysbinary, str(tmp_path), "--records", "0")
    assert usage.value.code == 2 and "--records/-n: must be >= 1, got 0" in capsysbinary.readouterr().err.decode()
    (tmp_path / "a-file").write_bytes(b"x")
    rc, _, err = _run(capsysbinary, str(tmp_path / "a-file"))
    assert rc == 1 and f"{tmp_path / 'a-file'}: not a spill directory (not a directory)" in err


def test_dead_letters_are_requeued_behind_the_spill_only_while_the_connector_is_stopped(tmp_path, capsysbinary):
    pending, rejected = [rec(i) for i in range(50)], [rec(1000 + i, size=300) for i in range(30)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp, SpillFile(tmp_path / "dead-letter", max_bytes=1 << 20,
                                                                  segment_bytes=4096) as dead:
        sp.append_many(pending)
        dead.append_many(rejected)
        rc, _, err = _run(capsysbinary, str(tmp_path), "--requeue-dead-letters")   # both locks are held
        assert rc == 1 and "in use by another process" in err and "0 dead letters moved" in err
    rc, _, err = _run(capsysbinary, str(tmp_path), "--requeue-dead-letters")
    assert rc == 0 and "30 dead letters moved to the end of" in err
    assert list(pending_records(inspect_spill(str(tmp_path)))) == pending + rejected
    assert list(pending_records(inspect_spill(str(tmp_path / "dead-letter")))) == []
    rc, _, err = _run(capsysbinary, str(tmp_path), "--requeue-dead-letters")
    assert rc == 0 and "0 dead letters moved" in err
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert sp.read(1000) == pending + rejected


def test_requeued_dead_letters_stop_at_the_spills_cap_and_none_is_lost(tmp_path, capsysbinary):
    rejected = [rec(i, size=300) for i in range(100)]
    with SpillFile(tmp_path / "dead-letter", max_bytes=1 << 20, segment_bytes=4096) as dead:
        dead.append_many(rejected)
    from ssmd_fast.commands.spill import requeue_dead_letters
    from ssmd_fast.errors import SsmdError
    with pytest.raises(SsmdError, match="cap 16384"):
        requeue_dead_letters(str(tmp_path), 16384, chunk=10)
    moved = list(pending_records(inspect_spill(str(tmp_path))))
    left = list(pending_records(inspect_spill(str(tmp_path / "dead-letter"))))
    assert 0 < len(moved) < 100 and moved + left == rejected   # each record in exactly one place
