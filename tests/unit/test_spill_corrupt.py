"""SpillFile and corrupt bytes: found by the check on open or by a read after it, copied to
``quarantine/``, skipped, logged and counted; every record outside them is replayed, in order, and a
spill with corrupt bytes goes on taking and replaying records (a second outage does not stall behind them).

Runs with the compiled record format and again with SSMD_FAST_NO_EXTENSIONS=1 (make test)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_spill import count_records, read_all, rec, segments

from ssmd_fast.sinks.spill import SpillFile, encode_record

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]


def _one_segment(tmp_path: Path, n: int = 20) -> tuple[Path, list, list[int]]:
    """n records in one segment: (its path, the records, the offset of each record and the end)."""
    items = [rec(i) for i in range(n)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(items)
    (seg,) = segments(tmp_path)
    offs = [0]
    for it in items:
        offs.append(offs[-1] + len(encode_record(*it)))
    return tmp_path / seg, items, offs


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_corrupt_bytes_in_the_middle_are_set_aside_and_the_records_after_them_replay(tmp_path, caplog):
    path, items, offs = _one_segment(tmp_path)
    original = path.read_bytes()
    _flip(path, offs[8] + 30)  # inside record 8's subject/id: its CRC fails, records 9.. are fine
    caplog.set_level(logging.ERROR, logger="ssmd_fast.sinks.spill")
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        (err,) = sp.corruptions
        assert (err.path, err.offset, err.end, err.reason) == (str(path), offs[8], offs[9], "CRC mismatch")
        assert f"corrupt bytes at offsets {offs[8]}-{offs[9]} (CRC mismatch)" in caplog.text
        assert err.quarantine == str(tmp_path / "quarantine" / f"{path.stem}-at-{offs[8]}.bin")
        bad = bytearray(original[offs[8]:offs[9]])
        bad[30] ^= 0x40
        assert Path(err.quarantine).read_bytes() == bytes(bad)   # the bytes as found, for a post-mortem
        assert path.stat().st_size == offs[-1]                  # not truncated: it was not a torn tail
        assert sp.pending_records == 19
        assert sp.stats()["corrupt_ranges"] == 1 and sp.stats()["quarantined_bytes"] == offs[9] - offs[8]
        assert read_all(sp, batch=3) == items[:8] + items[9:]
        # a second outage: new records are spilled and replayed (nothing waits behind the corruption)
        sp.append_many([rec(500), rec(501)])
        assert read_all(sp) == [rec(500), rec(501)]
        assert sp.pending_records == 0 and sp.pending_bytes == 0
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:   # the cursor is past the corrupt bytes: not set aside again
        assert sp.corruptions == [] and sp.pending_records == 0


@pytest.mark.parametrize("consumed", [0, 5, 8, 9])
def test_a_restart_sets_aside_only_corrupt_bytes_the_cursor_has_not_passed(tmp_path, consumed):
    path, items, offs = _one_segment(tmp_path)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        got = sp.read(consumed)
        sp.consume(len(got))
    _flip(path, offs[8] + 30)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert len(sp.corruptions) == (1 if consumed <= 8 else 0)
        assert read_all(sp, batch=4) == [it for k, it in enumerate(items) if k >= consumed and k != 8]


def test_corrupt_bytes_across_the_cursor_are_set_aside_from_the_cursor_on(tmp_path):
    path, items, offs = _one_segment(tmp_path)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.consume(8)
    _flip(path, offs[7] + 30)   # a replayed record and the one after it: one run of corrupt bytes
    _flip(path, offs[8] + 30)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        (err,) = sp.corruptions
        assert (err.offset, err.end) == (offs[8], offs[9]) and sp.quarantined_bytes == offs[9] - offs[8]
        assert sp.pending_records == 11 and read_all(sp) == items[9:]


def test_a_record_that_rots_after_open_is_set_aside_by_the_read_and_the_read_goes_on(tmp_path):
    path, items, offs = _one_segment(tmp_path, n=30)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:       # checked whole on open
        assert sp.read(3) == items[:3]
        _flip(path, offs[12] + 30)                           # then record 12 rots on disk
        assert sp.read(100) == items[3:12] + items[13:]      # read ahead, over the rotten record
        (err,) = sp.corruptions
        assert (err.offset, err.end, err.reason) == (offs[12], offs[13], "CRC mismatch on read")
        assert Path(err.quarantine).stat().st_size == offs[13] - offs[12]
        sp.consume(29)
        assert sp.pending_records == 0 and sp.read(10) == []


def test_a_segment_cut_short_after_open_sets_the_missing_bytes_aside(tmp_path):
    path, items, offs = _one_segment(tmp_path, n=30)
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append(*rec(99))
        sp.flush()
        with open(path, "r+b") as f:                        # another process truncates it mid-record 20
            f.truncate(offs[20] + 7)
        assert read_all(sp, batch=8) == items[:20]
        (err,) = sp.corruptions
        assert (err.offset, err.end) == (offs[20], offs[-1] + len(encode_record(*rec(99))))
        assert "runs past the end of the segment on read" in err.reason


def test_a_zeroed_range_in_the_middle_is_set_aside_not_truncated(tmp_path):
    path, items, offs = _one_segment(tmp_path, n=40)
    data = bytearray(path.read_bytes())
    data[offs[10]:offs[13]] = bytes(offs[13] - offs[10])    # records 10..12 zeroed, as by a lost page
    path.write_bytes(bytes(data))
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert path.stat().st_size == offs[-1]
        (err,) = sp.corruptions
        assert (err.offset, err.end) == (offs[10], offs[13])
        assert Path(err.quarantine).read_bytes() == bytes(offs[13] - offs[10])
        assert read_all(sp) == items[:10] + items[13:]


def test_a_segment_whose_rest_is_corrupt_is_replayed_up_to_it_then_deleted(tmp_path):
    items = [rec(i) for i in range(400)]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        sp.append_many(items)
    segs = segments(tmp_path)
    assert len(segs) > 5
    victim = tmp_path / segs[1]
    in_first, in_victim = count_records(tmp_path / segs[0]), count_records(victim)
    data = bytearray(victim.read_bytes())
    first_len = struct.unpack_from("<I", data)[0]
    data[first_len:] = b"\xee" * (len(data) - first_len)    # all of it after its first record
    victim.write_bytes(bytes(data))
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        (err,) = sp.corruptions
        assert (err.path, err.offset, err.end) == (str(victim), first_len, len(data))
        assert read_all(sp, batch=7) == items[:in_first + 1] + items[in_first + in_victim:]
        assert sp.wait_disk(10) and sp.disk_bytes == 0
        assert segments(tmp_path) == []                          # the corrupt segment was deleted once passed


@settings(max_examples=40, deadline=None)
@given(st.integers(20, 120), st.integers(0, 119), st.lists(st.integers(0, 1 << 30), min_size=1, max_size=4),
       st.integers(1, 50))
def test_any_corrupt_bytes_lose_only_the_records_they_hit(tmp_path_factory, n, consumed, flips, batch):
    # records over several segments, some consumed, then bytes flipped anywhere: every record not hit and
    # not consumed is read back in order; each record hit is set aside (or, the last one, cut as a torn tail)
    d = tmp_path_factory.mktemp("spill")
    items = [rec(i, size=i * 13 % 90) for i in range(n)]
    consumed = min(consumed, n)
    where: list[tuple[str, int]] = []   # (segment, offset) of each record
    with SpillFile(d, max_bytes=1 << 22, segment_bytes=4096) as sp:
        for it in items:
            sp.append(*it)
            sp.flush()
            where.append((segments(d)[-1], sp._pos - sp._active.base - len(encode_record(*it))))
        sp.consume(consumed)
    hit, flipped = set(), set()
    for f in flips:
        k = f % n
        name, off = where[k]
        at = off + f % len(encode_record(*items[k]))
        if (d / name).exists() and (name, at) not in flipped:  # consumed segments are deleted
            _flip(d / name, at)
            flipped.add((name, at))
            hit.add(k)
    with SpillFile(d, max_bytes=1 << 22, segment_bytes=4096) as sp:
        got = read_all(sp, batch=batch)
        lost = {k for k in hit if k >= consumed}
        assert got == [it for k, it in enumerate(items) if k >= consumed and k not in lost]
        set_aside = sum(len(encode_record(*items[k])) for k in lost)
        assert sp.quarantined_bytes + sp.dropped_torn_bytes == set_aside
        assert sp.pending_records == 0
