"""SpillFile: append/read/consume/restart, crash safety (kill -9, torn tails), the byte
cap, segments, the fsync policy and real disk errors (a full tmpfs, a read-only one, a bad path).

Runs with the compiled append path and again with SSMD_FAST_NO_EXTENSIONS=1 (make test)."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
from fs_helpers import fill_disk, hold_off_main_thread, small_tmpfs
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmd_fast.errors import StorageError
from ssmd_fast.sinks import _spill_py, spill
from ssmd_fast.sinks.spill import SpillFile, SpillFull, encode_record

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


def rec(i: int, size: int = 40) -> tuple[bytes, bytes, bytes]:
    payload = (b'{"i":%d,"pad":"' % i) + b"x" * size + b'"}'
    return b"dev.kalshi.json.trade.KX-%d" % (i % 7), b"kalshi:c0ffee:1:%d:raw" % i, payload


def segments(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("spill-*.log"))


def count_records(path: Path) -> int:
    data, off, n = path.read_bytes(), 0, 0
    while off < len(data):
        off += struct.unpack_from("<I", data, off)[0]
        n += 1
    assert off == len(data)
    return n


def read_all(sp: SpillFile, batch: int = 1000) -> list[tuple[bytes, bytes, bytes]]:
    out: list = []
    for _ in range(10_000):
        got = sp.read(batch)
        if not got:
            return out
        out.extend(got)
        sp.consume(len(got))
    raise AssertionError("read_all did not finish")


# ---------------------------------------------------------------------------- the implementation


def test_compiled_append_path_is_loaded_unless_disabled():
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS") == "1":
        assert spill.IMPLEMENTATION == "python"
    else:
        assert spill.IMPLEMENTATION == "cython", "ssmd_fast/sinks/_spill.pyx is not built (make build)"


def test_record_bytes_are_the_documented_format_in_both_implementations():
    subject, msg_id, payload = b"a.b.c", b"id-1", b'{"x":1}\r\n\x00\xff'
    body = struct.pack("<HH", 5, 4) + subject + msg_id + payload
    expected = struct.pack("<II", 12 + len(body) - 4, zlib.crc32(body)) + body
    assert _spill_py.encode_record(subject, msg_id, payload) == expected
    assert encode_record(subject, msg_id, payload) == expected
    for i in range(300):  # many lengths: the compiled CRC's 8-byte steps and their tails
        s, m, p = rec(i, size=i * 7 % 257)
        assert encode_record(s, m, p) == _spill_py.encode_record(s, m, p)
    with pytest.raises(ValueError):
        encode_record(b"s" * 70_000, b"id", b"")


def test_the_compiled_crc_is_zlibs():
    if spill.IMPLEMENTATION != "cython":
        pytest.skip("the pure-Python twin uses zlib.crc32 itself")
    from ssmd_fast.sinks import _spill

    data = os.urandom(4096)
    for n in list(range(40)) + [255, 256, 1000, 4096]:
        for seed in (0, 1, 0xFFFFFFFF, 0x12345678):
            assert _spill.crc32(data[:n], seed) == zlib.crc32(data[:n], seed)
    assert _spill.crc32(memoryview(data)[3:77]) == zlib.crc32(data[3:77])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=600)), max_size=12),
       st.integers(0, 20), st.data())
def test_both_read_paths_parse_the_same_records_and_stop_at_the_same_place(items, want, data):
    try:
        from ssmd_fast.sinks import _spill
    except ImportError:
        pytest.fail("ssmd_fast/sinks/_spill.pyx is not built (make build)")
    blob = bytearray(b"".join(_spill_py.encode_record(*it) for it in items))
    damage = data.draw(st.sampled_from(["none", "truncate", "flip"]))
    if blob and damage == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)):]
    elif blob and damage == "flip":
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    blob = bytes(blob)
    got = []
    for impl in (_spill_py, _spill):
        out, ends = [], []
        got.append((impl.parse_records(blob, want, out, ends, 1000), out, ends))
    assert got[0] == got[1]
    (used, took, bad), out, ends = got[0]
    if damage == "none":                   # intact: the first `want` records, whole, at their ends
        assert out == items[:want] and bad == -1 and took == len(out)
        assert ends == [1000 + sum(len(_spill_py.encode_record(*it)) for it in items[:k + 1]) for k in range(took)]
        assert used == (ends[-1] - 1000 if ends else 0)
    else:                                  # damaged: only intact records before the damage are handed out
        assert out == items[:took] and (bad == -1 or bad == used)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=600)), max_size=12),
       st.data())
def test_both_recovery_scans_find_the_same_records_stop_and_next_valid_record(items, data):
    try:
        from ssmd_fast.sinks import _spill
    except ImportError:
        pytest.fail("ssmd_fast/sinks/_spill.pyx is not built (make build)")
    sizes = [len(_spill_py.encode_record(*it)) for it in items]
    blob = bytearray(b"".join(_spill_py.encode_record(*it) for it in items))
    damage = data.draw(st.sampled_from(["none", "truncate", "flip", "zero-hole", "garbage"]))
    if blob and damage == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)):]
    elif blob and damage == "flip":
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif blob and damage == "zero-hole":                 # a lost page: a run of zeros, maybe to the end
        a = data.draw(st.integers(0, len(blob) - 1))
        b = data.draw(st.integers(a, len(blob)))
        blob[a:b] = bytes(b - a)
    elif damage == "garbage":
        blob += data.draw(st.binary(min_size=1, max_size=40))
    blob = bytes(blob)
    cursor = data.draw(st.integers(-1, len(blob) + 3))
    start = data.draw(st.integers(0, len(blob)))
    got = [(impl.scan_records(blob, len(blob), cursor), impl.next_valid(blob, start, len(blob)))
           for impl in (_spill_py, _spill)]
    assert got[0] == got[1]
    (stop, records, before_n, before_off, reason), _ = got[0]
    ends = [sum(sizes[:k + 1]) for k in range(len(sizes))]
    assert stop == (ends[records - 1] if records else 0) and (reason is None) == (stop == len(blob))
    if damage == "none":
        assert (stop, records) == (len(blob), len(items))
    # the last record start visited at or before the cursor: every valid one, and the invalid one at stop
    visited = ([0] + ends[:records])[:records + (stop < len(blob))]
    at_or_before = [(k, o) for k, o in enumerate(visited) if cursor >= 0 and o <= cursor]
    assert (before_n, before_off) == (at_or_before[-1] if at_or_before else (0, 0))


def test_the_compiled_recovery_scan_reads_a_segments_mmap_and_refuses_an_end_past_it(tmp_path):
    try:
        from ssmd_fast.sinks import _spill
    except ImportError:
        pytest.fail("ssmd_fast/sinks/_spill.pyx is not built (make build)")
    import mmap
    path = tmp_path / "seg"
    path.write_bytes(b"".join(encode_record(*rec(i)) for i in range(50)) + b"\0" * 100)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        size = len(m)
        assert _spill.scan_records(m, size, -1) == _spill_py.scan_records(m, size, -1)
        assert _spill.scan_records(m, size, -1)[1:2] == (50,)
        assert _spill.scan_records(m, size, -1)[4] == "bad length 0"
        assert _spill.next_valid(m, 0, size) == _spill_py.next_valid(m, 0, size) == len(encode_record(*rec(0)))
        with pytest.raises(ValueError, match="past the buffer"):
            _spill.scan_records(m, size + 1, -1)
        with pytest.raises(ValueError, match="past the buffer"):
            _spill.next_valid(m, 0, size + 1)
    # the mmap could be closed: no buffer stayed exported


def test_segment_bytes_equal_what_encode_record_gives(tmp_path):
    items = [rec(i) for i in range(50)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(items[:25])
        for it in items[25:]:
            sp.append(*it)
    (seg,) = segments(tmp_path)
    assert (tmp_path / seg).read_bytes() == b"".join(encode_record(*it) for it in items)


# ---------------------------------------------------------------------------- append / read / consume


def test_append_read_consume_and_restart(tmp_path):
    items = [rec(i) for i in range(500)]
    sp = SpillFile(tmp_path, max_bytes=1 << 20)
    assert sp.append_many(items[:300]) == 300
    for it in items[300:]:
        sp.append(*it)
    assert sp.pending_records == 500
    assert sp.pending_bytes == sum(len(encode_record(*it)) for it in items)
    first = sp.read(10)
    assert first == items[:10] and sp.read_ahead == 10
    assert sp.read(5) == items[10:15]  # each read goes on where the last stopped (a replay reads ahead)
    sp.rewind()
    assert sp.read_ahead == 0 and sp.read(10) == first  # until rewound: again from the cursor
    sp.consume(4)
    assert sp.read_ahead == 6 and sp.read(3) == items[10:13]
    sp.unread(5)                       # the last 5 read (items 8..12) come again
    assert sp.read_ahead == 4 and sp.read(2) == items[8:10]
    with pytest.raises(ValueError, match="unread"):
        sp.unread(7)
    assert sp.pending_records == 496
    sp.consume(6)
    assert sp.read_ahead == 0
    sp.close()

    sp = SpillFile(tmp_path, max_bytes=1 << 20)  # the cursor survived
    assert sp.pending_records == 490
    assert sp.read(1) == [items[10]]
    sp.rewind()
    sp.append(b"s", b"late", b"p")
    assert read_all(sp, batch=77) == items[10:] + [(b"s", b"late", b"p")]
    assert sp.pending_records == sp.pending_bytes == 0
    with pytest.raises(ValueError):
        sp.consume(1)
    sp.close()
    sp = SpillFile(tmp_path, max_bytes=1 << 20)
    assert sp.pending_records == 0 and sp.read(10) == []
    sp.close()


_OPS = st.lists(st.tuples(st.sampled_from(["append", "read", "consume", "unread", "rewind", "reopen"]),
                          st.integers(0, 40)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_reads_ahead_unreads_rewinds_and_consumes_follow_a_model(tmp_path_factory, ops):
    """Any sequence of appends, reads (each going on where the last stopped), unreads, rewinds, consumes
    and reopenings: the records read and kept are those of a list with a cursor and a read position."""
    d = tmp_path_factory.mktemp("spill")
    sp = SpillFile(d, max_bytes=1 << 24, segment_bytes=2048)   # small segments: reads cross them
    model, cur, ahead, k = [], 0, 0, 0                         # all appended; cursor; read, not consumed
    try:
        for op, n in ops:
            if op == "append":
                new = [rec(k + i) for i in range(n)]
                k += n
                sp.append_many(new)
                model += new
            elif op == "read":
                assert sp.read(n) == model[cur + ahead:cur + ahead + n]
                ahead += len(model[cur + ahead:cur + ahead + n])
            elif op == "consume":
                n = min(n, len(model) - cur)
                sp.consume(n)
                cur, ahead = cur + n, max(0, ahead - n)
            elif op == "unread":
                n = min(n, ahead)
                sp.unread(n)
                ahead -= n
            elif op == "rewind":
                sp.rewind()
                ahead = 0
            else:
                sp.close()
                sp = SpillFile(d, max_bytes=1 << 24, segment_bytes=2048)
                ahead = 0                                       # the cursor is kept, the read position not
            assert (sp.pending_records, sp.read_ahead) == (len(model) - cur, ahead)
        sp.rewind()
        assert read_all(sp, batch=7) == model[cur:]
    finally:
        sp.close()


def test_consume_without_read_and_accepts_other_bytes_like_payloads(tmp_path):
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append(b"s", b"id0", bytearray(b"from a bytearray"))
        sp.append(b"s", b"id1", memoryview(b"from a memoryview"))
        sp.append(b"s", b"id2", b"")
        sp.consume(1)  # no read() before: it walks the records itself
        assert sp.read(5) == [(b"s", b"id1", b"from a memoryview"), (b"s", b"id2", b"")]


def test_a_closed_spill_refuses_everything(tmp_path):
    sp = SpillFile(tmp_path, max_bytes=1 << 20)
    sp.append(*rec(1))
    sp.close()
    sp.close()  # twice is fine
    for call in (lambda: sp.append(*rec(2)), lambda: sp.append_many([rec(2)]), lambda: sp.read(1),
                 lambda: sp.consume(1)):
        with pytest.raises(StorageError, match="closed"):
            call()
    with SpillFile(tmp_path, max_bytes=1 << 20) as again:
        assert again.read(5) == [rec(1)]


def test_a_second_process_cannot_open_the_same_directory(tmp_path):
    with SpillFile(tmp_path, max_bytes=1 << 20), pytest.raises(StorageError, match="in use"):
        SpillFile(tmp_path, max_bytes=1 << 20)
    SpillFile(tmp_path, max_bytes=1 << 20).close()  # the lock went with close()


def test_a_record_larger_than_the_read_chunk(tmp_path):
    big = os.urandom(3 * 2**20)
    with SpillFile(tmp_path, max_bytes=64 << 20) as sp:
        sp.append(*rec(1))
        sp.append(b"big", b"id-big", big)
        sp.append(*rec(2))
        sp.flush()
    with SpillFile(tmp_path, max_bytes=64 << 20) as sp:
        assert read_all(sp, batch=2) == [rec(1), (b"big", b"id-big", big), rec(2)]


# ---------------------------------------------------------------------------- crash safety


def test_kill_9_loses_nothing_handed_to_the_os_and_keeps_the_cursor(tmp_path):
    # A real SIGKILL: records flushed to the OS survive, the consumed ones are not replayed.
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}, {str(ROOT / 'tests' / 'unit')!r}]
        from test_spill import rec
        from ssmd_fast.sinks.spill import SpillFile
        sp = SpillFile({str(tmp_path)!r}, max_bytes=1 << 24, fsync_every=0, fsync_interval=0,
                       segment_bytes=16384)
        for i in range(2000):
            sp.append(*rec(i))
        sp.flush()                      # handed to the OS, never fsync-ed
        sp.consume(len(sp.read(1234)))
        sp.append_many(rec(i) for i in range(2000, 3000))  # append_many hands its records over
        sp.append(*rec(99999))          # a single append stays in the user-space buffer: lost
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert res.returncode == -9, res.stderr.decode()
    with SpillFile(tmp_path, max_bytes=1 << 24, segment_bytes=16384) as sp:
        assert sp.pending_records == 3000 - 1234
        assert read_all(sp) == [rec(i) for i in range(1234, 3000)]


def _torn_setup(tmp_path: Path, n: int = 20) -> tuple[Path, list]:
    items = [rec(i) for i in range(n)]
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(items)
    (seg,) = segments(tmp_path)
    return tmp_path / seg, items


@pytest.mark.parametrize("tear", ["mid-header", "mid-payload", "bad-crc-last", "zero-hole"])
def test_a_torn_tail_is_truncated_on_open_and_logged(tmp_path, caplog, tear):
    path, items = _torn_setup(tmp_path)
    good = path.stat().st_size
    extra = encode_record(*rec(777))
    if tear == "mid-header":
        tail = extra[:7]
    elif tear == "mid-payload":
        tail = extra[:-5]
    elif tear == "bad-crc-last":  # the whole length written, the data not (power loss)
        tail = extra[:-3] + b"\0\0\0"
    else:  # the file size grew, the blocks stayed zero
        tail = b"\0" * 3000
    with open(path, "ab") as f:
        f.write(tail)
    caplog.set_level(logging.WARNING, logger="ssmd_fast.sinks.spill")
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert path.stat().st_size == good
        assert sp.stats()["dropped_torn_bytes"] == len(tail)
        assert f"dropped {len(tail)} bytes" in caplog.text
        sp.append(*rec(1000))  # appends go on after the cut
        assert read_all(sp) == items + [rec(1000)]


def test_a_read_that_fails_part_way_counts_nothing_as_read(tmp_path, monkeypatch):
    items = [rec(i) for i in range(60)]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=1024) as sp:
        sp.append_many(items)
        sp.flush()
        assert len(segments(tmp_path)) >= 2
        calls, real = [], os.pread

        def pread(fd, n, off):           # the disk fails on the second segment's read
            calls.append(off)
            if len(calls) == 2:
                raise OSError(5, "Input/output error")
            return real(fd, n, off)
        monkeypatch.setattr(os, "pread", pread)
        with pytest.raises(StorageError, match="cannot read"):
            sp.read(60)
        assert len(calls) == 2 and sp.read_ahead == 0
        assert sp.read(60) == items          # all again, from the cursor


def test_the_byte_cap_refuses_records_and_frees_space_as_they_are_consumed(tmp_path):
    first = [rec(i) for i in range(10, 60)]  # two-digit i: all the same size
    size = len(encode_record(*first[0]))
    cap = 50 * size
    with SpillFile(tmp_path, max_bytes=cap) as sp:
        for it in first:
            sp.append(*it)
        with pytest.raises(SpillFull, match="cap"):
            sp.append(*rec(60))
        with pytest.raises(SpillFull) as info:
            sp.append_many([rec(60)])
        assert info.value.appended == 0
        assert sp.pending_records == 50 and sp.stats()["full_rejects"] == 2
        assert sp.disk_bytes == cap
        assert read_all(sp) == first
        assert sp.disk_bytes == 0                           # all consumed: the space counts as free at once
        assert sp.wait_disk(5) and segments(tmp_path) == []     # and every segment is deleted in the background
        big = len(encode_record(*rec(100)))  # three-digit i: one byte more
        sp.append_many([rec(i) for i in range(100, 130)])
        fits = (cap - 30 * big) // big
        with pytest.raises(SpillFull) as info:
            sp.append_many([rec(i) for i in range(200, 240)])
        assert info.value.appended == fits
        assert read_all(sp) == [rec(i) for i in range(100, 130)] + [rec(i) for i in range(200, 200 + fits)]


def test_segments_rotate_and_are_deleted_once_consumed(tmp_path):
    items = [rec(i, size=60) for i in range(1000)]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=8192) as sp:
        sp.append_many(items)
        segs = segments(tmp_path)
        assert len(segs) >= 10
        assert all((tmp_path / s).stat().st_size <= 8192 for s in segs)
        assert segs == [f"spill-{n:08d}.log" for n in range(1, len(segs) + 1)]
        sp.read(450)
        sp.consume(450)
        assert sp.wait_disk(5)
        left = segments(tmp_path)
        assert len(left) < len(segs) and left == segs[-len(left):]
        per_seg = 8192 // len(encode_record(*items[0]))
        assert len(segs) - len(left) == 450 // per_seg
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=8192) as sp:
        assert sp.pending_records == 550
        assert read_all(sp) == items[450:]
        assert sp.wait_disk(5) and segments(tmp_path) == []
        sp.append(*rec(1))
        assert segments(tmp_path) == [f"spill-{len(segs) + 1:08d}.log"]  # numbers never reused


def test_a_segment_left_behind_by_a_crash_during_deletion_is_removed(tmp_path):
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        sp.append_many(rec(i) for i in range(200))
        first = segments(tmp_path)[0]
        data = (tmp_path / first).read_bytes()
        n_first = count_records(tmp_path / first)
        sp.consume(n_first)
        assert sp.wait_disk(5) and first not in segments(tmp_path)
    (tmp_path / first).write_bytes(data)  # as if the unlink had not happened
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        assert first not in segments(tmp_path)
        assert read_all(sp) == [rec(i) for i in range(n_first, 200)]


# ---------------------------------------------------------------------------- fsync policy


@pytest.fixture
def fsync_calls(monkeypatch):
    """The files of the real fsync calls (os.fstat of each descriptor; the real os.fsync still runs)."""
    calls: list[os.stat_result] = []
    real = os.fsync

    def counting(fd):
        calls.append(os.fstat(fd))
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_fsync_every_n_records_in_the_background(tmp_path, fsync_calls):
    with SpillFile(tmp_path, max_bytes=1 << 24, fsync_every=100, fsync_interval=0) as sp:
        sp.append(*rec(0))                          # creates the segment (and syncs the directory entry)
        fsync_calls.clear()
        sp.append_many(rec(i) for i in range(1, 99))
        assert sp.wait_disk(5) and sp.fsyncs == 0 and fsync_calls == []    # 99 records: not due yet
        sp.append_many([rec(99)])
        assert sp.wait_disk(5) and sp.fsyncs == 1 and len(fsync_calls) == 1
        seg = tmp_path / segments(tmp_path)[0]
        assert os.path.samestat(fsync_calls[0], seg.stat())   # the segment's file, through a duplicate
        # a fsync starts after everything appended so far was handed to the OS
        assert seg.stat().st_size == sum(len(encode_record(*rec(i))) for i in range(100))
        for i in range(100, 200):
            sp.append(*rec(i))
        assert sp.wait_disk(5) and sp.fsyncs == 2


def test_fsync_after_the_interval(tmp_path, fsync_calls):
    with SpillFile(tmp_path, max_bytes=1 << 24, fsync_every=0, fsync_interval=0.05) as sp:
        sp.append(*rec(0))  # the first append after an idle period starts one at once
        assert sp.wait_disk(5)
        base = sp.fsyncs
        seg = tmp_path / segments(tmp_path)[0]
        for i in range(1, 6):
            sp.append(*rec(i))
        assert sp.wait_disk(5) and sp.fsyncs == base  # within 50 ms: buffered
        size_before = seg.stat().st_size
        time.sleep(0.06)
        sp.append(*rec(6))
        assert sp.wait_disk(5) and sp.fsyncs == base + 1
        assert seg.stat().st_size > size_before
        assert seg.stat().st_size == sum(len(encode_record(*rec(i))) for i in range(7))


@pytest.fixture
def held_fsync(monkeypatch):
    """os.fsync outside the main thread waits for ``release`` (bounded) or raises ``fail`` if set."""
    state = hold_off_main_thread(monkeypatch, "fsync")
    yield state
    state["release"].set()


def test_appends_go_on_while_a_fsync_waits_for_the_disk(tmp_path, held_fsync):
    with SpillFile(tmp_path, max_bytes=1 << 24, fsync_every=10, fsync_interval=0) as sp:
        sp.append_many(rec(i) for i in range(10))             # due: the background fsync starts and is held
        assert held_fsync["entered"].wait(5)
        sp.append_many(rec(i) for i in range(10, 30))         # returns although that fsync has not
        assert not sp.wait_disk(0.05) and sp.fsyncs == 0    # still held
        assert [r[1] for r in sp.read(30)] == [rec(i)[1] for i in range(30)]
        held_fsync["release"].set()
        assert sp.wait_disk(5)
        assert sp.fsyncs == 2 and len(held_fsync["calls"]) == 2    # the held one, then the one requested meanwhile
        assert count_records(tmp_path / segments(tmp_path)[0]) == 30


def test_a_failed_background_fsync_refuses_the_next_appends_naming_the_segment(tmp_path, held_fsync, caplog):
    import errno

    held_fsync["fail"] = OSError(errno.EIO, "Input/output error")
    with SpillFile(tmp_path, max_bytes=1 << 24, fsync_every=10, fsync_interval=0) as sp:
        sp.append_many(rec(i) for i in range(10))             # accepted; its fsync fails in the background
        assert sp.wait_disk(5) and sp.fsyncs == 0
        sp.append_many(rec(i) for i in range(10, 20))         # accepted: the error is noticed after them
        assert sp.error is not None
        with pytest.raises(StorageError, match="cannot fsync") as info:
            sp.append(*rec(20))
        assert segments(tmp_path)[0] in str(info.value) and "Input/output error" in str(info.value)
        assert sp.pending_records == 20                       # nothing accepted was lost
        held_fsync["fail"] = None
        held_fsync["release"].set()


def test_no_fsync_policy_syncs_only_on_flush_and_close(tmp_path, fsync_calls):
    sp = SpillFile(tmp_path, max_bytes=1 << 24, fsync_every=0, fsync_interval=0)
    sp.append(*rec(0))  # creates the segment (and syncs the directory entry)
    fsync_calls.clear()
    sp.append_many(rec(i) for i in range(5000))
    assert sp.fsyncs == 0 and fsync_calls == []
    sp.flush()
    assert sp.fsyncs == 0
    sp.flush(fsync=True)
    assert sp.fsyncs == 1
    sp.close()
    assert sp.fsyncs == 2


# ---------------------------------------------------------------------------- disk errors


def test_a_full_disk_refuses_records_names_the_path_and_recovers(tmp_path, caplog):
    with small_tmpfs(tmp_path / "mnt", "128k") as mnt:
        d = mnt / "spill"
        sp = SpillFile(d, max_bytes=1 << 30, fsync_every=0, fsync_interval=0)
        sp.retry_interval = 0.05
        filler = fill_disk(mnt, leave=20_000)
        accepted = []
        caplog.set_level(logging.ERROR, logger="ssmd_fast.sinks.spill")
        with pytest.raises(StorageError) as info:
            for i in range(20_000):
                sp.append(*rec(i, size=300))
                accepted.append(rec(i, size=300))
                sp.flush()
        assert not isinstance(info.value, SpillFull)
        assert "No space left on device" in str(info.value) and str(d) in str(info.value)
        assert info.value.errno == 28
        assert sp.error is not None and caplog.text.count("No space left") == 1  # logged once
        # refused records were not accepted; accepted ones stay readable (from memory if need be)
        assert sp.pending_records == len(accepted)
        assert sp.read(100_000) == accepted
        with pytest.raises(StorageError):
            sp.append(b"s", b"refused", b"p")
        os.unlink(filler)
        time.sleep(0.06)
        sp.append(b"s", b"after", b"space came back")
        assert sp.error is None
        sp.close()
        with SpillFile(d, max_bytes=1 << 30) as sp:  # everything accepted reached the disk
            assert read_all(sp) == accepted + [(b"s", b"after", b"space came back")]


def test_a_full_disk_during_a_handoff_keeps_the_accepted_records(tmp_path):
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        sp = SpillFile(mnt / "spill", max_bytes=1 << 30, fsync_every=0, fsync_interval=0)
        filler = fill_disk(mnt, leave=100_000)
        accepted = 0
        with pytest.raises(StorageError) as info:
            for i in range(5000):  # buffered: the 256 KiB handoff fails inside an append
                sp.append(*rec(i, size=200))
                accepted += 1
        assert sp.pending_records == accepted > 0
        assert sp.read(accepted) == [rec(i, size=200) for i in range(accepted)]
        assert "No space left" in str(info.value)
        seg = mnt / "spill" / segments(mnt / "spill")[0]
        data = seg.read_bytes()  # only whole records on disk after the failed write
        off = 0
        while off < len(data):
            off += struct.unpack_from("<I", data, off)[0]
        assert off == len(data)
        os.unlink(filler)
        sp.flush()
        sp.close()
        with SpillFile(mnt / "spill", max_bytes=1 << 30) as sp:
            assert sp.pending_records == accepted


def test_unusable_directories_give_errors_naming_the_path(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StorageError) as got:         # said "File exists (EEXIST)"
        SpillFile(not_a_dir, max_bytes=1 << 20)
    assert str(got.value) == f"spill {not_a_dir}: cannot open the spill directory: Not a directory (ENOTDIR)"
    with pytest.raises(StorageError, match=str(not_a_dir / "spill")):
        SpillFile(not_a_dir / "spill", max_bytes=1 << 20)
    with small_tmpfs(tmp_path / "ro", "64k", read_only=True) as ro, \
            pytest.raises(StorageError, match=f"{ro / 'spill'}.*Read-only file system"):
        SpillFile(ro / "spill", max_bytes=1 << 20)
