"""SpillFile's check on open: the first segment (where the replay starts) and the last (where appends go
on) before ``SpillFile()`` returns; the segments between, when large, in a thread, so that a large spill
does not hold capture back. Reads stop at the first segment not checked yet; nothing is read unchecked.

Runs with the compiled scan and again with SSMD_FAST_NO_EXTENSIONS=1 (make test)."""

from __future__ import annotations

import logging
import threading

import pytest
from test_spill import count_records, read_all, rec, segments

from ssmd_fast.errors import StorageError
from ssmd_fast.sinks import spill_recovery
from ssmd_fast.sinks.spill import SpillFile, encode_record

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

SEG = 4096


@pytest.fixture
def held_check(monkeypatch):
    """Every spill's segments between the first and the last are checked in the background, and that check
    waits for ``release.set()`` (the sessions' event loop would go on meanwhile)."""
    release = threading.Event()
    real = spill_recovery.scan_records

    def scan(*args):
        if threading.current_thread().name == "spill-check":
            assert release.wait(20), "the test never released the check"
        return real(*args)
    monkeypatch.setattr(spill_recovery, "SYNC_CHECK_BYTES", 0)
    monkeypatch.setattr(spill_recovery, "scan_records", scan)
    yield release
    release.set()


def _spill(tmp_path, n: int = 300) -> list:
    items = [rec(i) for i in range(n)]
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:
        sp.append_many(items)
    assert len(segments(tmp_path)) > 5
    return items


def test_a_large_spill_opens_at_once_and_its_middle_is_read_once_checked(tmp_path, held_check, caplog):
    items = _spill(tmp_path)
    names = segments(tmp_path)
    first, last = count_records(tmp_path / names[0]), count_records(tmp_path / names[-1])
    caplog.set_level(logging.INFO, logger="ssmd_fast.sinks.spill")
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:   # returns while the check waits
        assert f"{len(names) - 2} segments" in caplog.text and "checked in the background" in caplog.text
        assert sp.stats()["unchecked_segments"] == len(names) - 2
        assert sp.pending_records == first + last           # the records counted so far
        assert sp.pending_bytes == sum((tmp_path / n).stat().st_size for n in names)
        sp.append(*rec(1000))                              # capture goes on: appends are taken
        got = sp.read(1000)
        assert got == items[:first] and not sp.read_to_end  # the read stops at the first unchecked segment
        assert sp.read(1000) == []
        sp.consume(len(got))
        held_check.set()
        assert sp.wait_checked(20)
        assert sp.pending_records == len(items) - first + 1 and sp.stats()["unchecked_segments"] == 0
        assert read_all(sp, batch=17) == items[first:] + [rec(1000)]
        assert sp.read_to_end and sp.pending_records == 0
    assert f"{len(names) - 2} segments checked in" in caplog.text


def test_the_background_check_sets_corrupt_bytes_aside_before_they_are_read(tmp_path, held_check):
    items = _spill(tmp_path)
    names = segments(tmp_path)
    victim = tmp_path / names[3]
    before = sum(count_records(tmp_path / n) for n in names[:3])
    with open(victim, "r+b") as f:                        # the victim's second record
        f.seek(len(encode_record(*items[before])) + 20)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:
        assert sp.corruptions == []
        held_check.set()
        assert sp.wait_checked(20)
        got = read_all(sp, batch=50)
        assert got == items[:before + 1] + items[before + 2:]
        (err,) = sp.corruptions
        assert err.path == str(victim) and err.reason == "CRC mismatch"   # the check's, not a read's


def test_closing_while_the_check_runs_stops_it_and_a_reopen_finds_everything(tmp_path, held_check):
    items = _spill(tmp_path)
    sp = SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG)
    threading.Timer(0.2, held_check.set).start()           # close() waits for the segment being checked
    sp.close()
    assert not sp._checker.is_alive()
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:
        assert sp.wait_checked(20) and sp.pending_records == len(items)
        assert read_all(sp) == items


def test_a_failed_background_check_stops_the_reads_at_that_segment_with_the_error(tmp_path, monkeypatch):
    items = _spill(tmp_path)
    first = count_records(tmp_path / segments(tmp_path)[0])
    real = spill_recovery.scan_records

    def scan(*args):
        if threading.current_thread().name == "spill-check":
            raise OSError(5, "Input/output error")
        return real(*args)
    monkeypatch.setattr(spill_recovery, "SYNC_CHECK_BYTES", 0)
    monkeypatch.setattr(spill_recovery, "scan_records", scan)
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:
        assert not sp.wait_checked(20)
        assert sp.read(1000) == items[:first]               # what precedes it is handed out
        with pytest.raises(StorageError, match=r"cannot scan: Input/output error \(EIO\)"):
            sp.read(1000)


def test_a_small_spill_is_checked_whole_before_open_returns(tmp_path):
    items = _spill(tmp_path)   # about 36 KiB: under SYNC_CHECK_BYTES
    with SpillFile(tmp_path, max_bytes=1 << 20, segment_bytes=SEG) as sp:
        assert sp._checker is None and sp.pending_records == len(items)
