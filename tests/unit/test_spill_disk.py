"""The spill's disk work off the event loop (spill_disk.BackgroundDisk): consumed segments deleted in the
background, the cursor written in place and fsynced in the background, and what happens when those calls
are slow or fail. Runs with the compiled append path and again with SSMD_FAST_NO_EXTENSIONS=1."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from fs_helpers import hold_off_main_thread

from ssmd_fast.sinks.spill import CURSOR_WIDTH, SpillFile
from ssmd_fast.sinks.spill_disk import BackgroundDisk

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]


def rec(i: int) -> tuple[bytes, bytes, bytes]:
    return b"dev.kalshi.json.trade.KX", b"kalshi:c0ffee:1:%d:raw" % i, b'{"i":%d,"pad":"%s"}' % (i, b"x" * 60)


def segments(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("spill-*.log"))


def cursor_of(d: Path) -> dict:
    return json.loads((d / "cursor").read_bytes())


@pytest.fixture
def held(monkeypatch):
    states: list[dict] = []

    def hold(name: str) -> dict:
        states.append(hold_off_main_thread(monkeypatch, name))
        return states[-1]

    yield hold
    for st in states:
        st["release"].set()


def test_a_slow_segment_deletion_does_not_hold_up_consume(tmp_path, held):
    unlink = held("unlink")
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        sp.append_many(rec(i) for i in range(300))
        segs = segments(tmp_path)
        got = sp.read(300)
        sp.consume(150)                                  # returns while the first deletion is held
        assert unlink["entered"].wait(5)
        assert not sp.wait_disk(0.05)
        sp.rewind()
        assert sp.pending_records == 150 and sp.read(150) == got[150:]
        sp.append(*rec(300))                             # appends go on too
        assert segments(tmp_path)[0] == segs[0]          # still there: its deletion is held
        unlink["release"].set()
        assert sp.wait_disk(5)
        left = [s for s in segments(tmp_path) if s in segs]     # (the append may have opened a new one)
        assert segs[0] not in left and left == segs[len(segs) - len(left):]
        assert [os.path.basename(p) for p in unlink["calls"]] == [s for s in segs if s not in left]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        assert [r[1] for r in sp.read(1000)] == [rec(i)[1] for i in range(150, 301)]


def test_close_waits_for_the_deletions_it_was_asked_for(tmp_path, held):
    unlink = held("unlink")
    sp = SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    sp.append_many(rec(i) for i in range(300))
    sp.consume(len(sp.read(300)))
    assert unlink["entered"].wait(5) and segments(tmp_path)
    threading.Timer(0.2, unlink["release"].set).start()
    sp.close()                                       # returns once the held deletion and the rest are done
    assert unlink["release"].is_set() and segments(tmp_path) == []


def test_a_failed_deletion_is_logged_and_the_feed_goes_on(tmp_path, held, caplog):
    unlink = held("unlink")
    unlink["fail"] = OSError(errno.EROFS, "Read-only file system")
    caplog.set_level(logging.WARNING, logger="ssmd_fast.sinks.spill")
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:
        sp.append_many(rec(i) for i in range(300))
        first = segments(tmp_path)[0]
        sp.consume(len(sp.read(100)))
        assert sp.wait_disk(5)
        assert f"spill {tmp_path / first}: cannot delete consumed segment: Read-only file system (EROFS)" \
            in caplog.text
        sp.append(*rec(300))
        assert sp.pending_records == 201
    unlink["fail"] = None
    unlink["release"].set()
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as sp:   # the cursor is past it: deleted
        assert sp.wait_disk(5) and first not in segments(tmp_path)
        assert [r[1] for r in sp.read(1000)] == [rec(i)[1] for i in range(100, 301)]


def test_the_cursor_is_written_in_place_at_every_consume(tmp_path):
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=4096, fsync_interval=3600) as sp:
        sp.append_many(rec(i) for i in range(300))
        inode = (tmp_path / "cursor").stat().st_ino
        positions = []
        for n in (1, 10, 100):
            sp.consume(n)
            assert (tmp_path / "cursor").stat().st_ino == inode        # the same file: no rename
            assert (tmp_path / "cursor").stat().st_size == CURSOR_WIDTH
            positions.append((cursor_of(tmp_path)["segment"], cursor_of(tmp_path)["offset"]))
        assert positions == sorted(set(positions))                   # it moved at every consume
        assert not (tmp_path / "cursor.tmp").exists()


def test_the_periodic_cursor_fsync_runs_in_the_background(tmp_path, held):
    fsync = held("fsync")
    with SpillFile(tmp_path, max_bytes=1 << 20, fsync_every=0, fsync_interval=0.3) as sp:
        sp.append_many(rec(i) for i in range(50))    # within fsync_interval of the open: no segment fsync
        time.sleep(0.35)                             # past it: the next consume syncs the cursor
        for _ in range(5):
            sp.consume(1)                            # the first one starts a cursor fsync, which is held
        assert fsync["entered"].wait(5)
        assert os.path.samestat(os.fstat(fsync["calls"][0]), os.stat(tmp_path / "cursor"))
        assert cursor_of(tmp_path)["offset"] > 0 and sp.pending_records == 45
        assert not sp.wait_disk(0.05)
        fsync["release"].set()
        assert sp.wait_disk(5)
        assert sp.fsyncs == 0                        # the segment's fsyncs are counted apart


def test_a_failed_cursor_fsync_is_a_warning_not_an_error(tmp_path, held, caplog):
    fsync = held("fsync")
    fsync["fail"] = OSError(errno.EIO, "Input/output error")
    caplog.set_level(logging.WARNING, logger="ssmd_fast.sinks.spill")
    with SpillFile(tmp_path, max_bytes=1 << 20, fsync_every=0, fsync_interval=0.3) as sp:
        sp.append_many(rec(i) for i in range(50))
        time.sleep(0.35)
        sp.consume(1)                                # its cursor fsync fails in the background
        assert sp.wait_disk(5) and len(fsync["calls"]) == 1
        sp.consume(1)                                # takes the background error: logged once
        assert caplog.text.count(f"spill {tmp_path / 'cursor'}: cannot write the cursor: Input/output error (EIO)") == 1
        assert sp.error is None                      # appends are not refused for it
        sp.append(*rec(50))
        fsync["fail"] = None
        fsync["release"].set()
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert sp.pending_records == 49


def test_an_older_cursor_file_is_read_and_replaced(tmp_path):
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        sp.append_many(rec(i) for i in range(20))
        seg = int(segments(tmp_path)[0][6:14])
    # what versions before the in-place cursor wrote: compact JSON, replaced by rename
    off = sum(len(b"".join(rec(i))) + 12 for i in range(7))
    (tmp_path / "cursor").write_bytes(json.dumps({"segment": seg, "offset": off}).encode() + b"\n")
    with SpillFile(tmp_path, max_bytes=1 << 20) as sp:
        assert sp.pending_records == 13
        assert (tmp_path / "cursor").stat().st_size == CURSOR_WIDTH
        assert cursor_of(tmp_path) == {"segment": seg, "offset": off}


def test_background_disk_serves_every_request_before_it_stops(tmp_path):
    disk = BackgroundDisk("t")
    paths = [tmp_path / f"f{i}" for i in range(20)]
    for p in paths:
        p.write_bytes(b"x")
    fd = os.open(paths[0], os.O_RDONLY)
    try:
        for p in paths:
            disk.unlink(str(p))
        disk.fsync(fd, "a")
        disk.fsync(fd, "b")
        disk.unlink(str(tmp_path / "missing"))       # a missing file is fine
        disk.stop()
    finally:
        os.close(fd)
    assert not any(p.exists() for p in paths)
    assert disk.unlinked == 21 and disk.done["a"] + disk.done["b"] == 2
    assert disk.take_error("a") is None
    late = tmp_path / "late"
    late.write_bytes(b"x")
    disk.unlink(str(late))                           # after stop: done at once, not left to a thread
    assert not late.exists()
