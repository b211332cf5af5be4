"""SpillRecovery: what a ``SpillFile`` finds on disk when it opens (segments checked record by record, a
torn tail truncated, corrupt bytes set aside, the cursor read), and the on-disk pieces both share.
The format is described in ``spill.py``.
"""

from __future__ import annotations

import bisect
import errno
import json
import logging
import mmap
import os
import queue
import re
import threading
import time
from typing import NamedTuple

from ssmd_fast.errors import StorageError, makedirs_cause
from ssmd_fast.sinks.spill_format import next_valid, scan_records

log = logging.getLogger("ssmd_fast.sinks.spill")

_SEGMENT_RE = re.compile(r"^spill-(\d{8})\.log$")
CURSOR_NAME = "cursor"
LOCK_NAME = "lock"
QUARANTINE_NAME = "quarantine"
SYNC_CHECK_BYTES = 256 * 2**20   # more than this in the segments between the first and the last: checked in a thread


class SpillCorrupt(StorageError):
    """Bytes of a segment that are not valid records (a length or CRC check failed, from ``offset`` to
    ``end``): copied to ``quarantine`` (None if the copy failed) and skipped; the records in them are lost."""

    def __init__(self, path: str, offset: int, reason: str, end: int, quarantine: str | None = None):
        self.path, self.offset, self.reason, self.end, self.quarantine = path, offset, reason, end, quarantine
        kept = f"copied to {quarantine}" if quarantine else "not copied (see the warning before)"
        super().__init__(f"spill {path}: corrupt bytes at offsets {offset}-{end} ({reason}), {kept}; the "
                         f"records in them are lost, the replay goes on at offset {end}")


def _os_error(what: str, path: str, exc: OSError) -> StorageError:
    name = errno.errorcode.get(exc.errno or 0, "E?")
    err = StorageError(f"spill {path}: {what}: {exc.strerror or exc} ({name})")
    err.path, err.errno = path, exc.errno
    return err


def open_dir_error(what: str, path: str, exc: OSError) -> StorageError:
    """``_os_error`` for ``os.makedirs(path, exist_ok=True)`` (``errors.makedirs_cause``)."""
    return _os_error(what, path, makedirs_cause(exc))


class _Segment:
    __slots__ = ("n", "path", "base", "length", "holes", "checked")

    def __init__(self, n: int, path: str, base: int, length: int = 0):
        self.n, self.path, self.base = n, path, base
        self.length = length   # bytes (the active segment's length lives in SpillFile._pos)
        self.holes: list[tuple[int, int]] = []   # [start, end) offsets of quarantined bytes, in order
        self.checked = True    # False while the check on open runs in the background (reads stop here)

    def skip(self, off: int) -> int:
        """``off``, or the end of the quarantined bytes that start there."""
        for a, b in self.holes:
            if a == off:
                off = b
        return off

    def hole_after(self, off: int, default: int) -> int:
        """The offset of the first quarantined bytes after ``off``, else ``default`` (reads stop there)."""
        for a, _b in self.holes:
            if a > off:
                return min(a, default)
        return default


def load_cursor(directory: str) -> tuple[int, int] | None:
    """(segment, offset) of the first record not consumed, None if there is no usable cursor."""
    path = os.path.join(directory, CURSOR_NAME)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        n, off = doc["segment"], doc["offset"]
        if not (isinstance(n, int) and isinstance(off, int) and n >= 0 and off >= 0):
            raise ValueError("negative or non-integer value")
        return n, off
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_error("cannot read the cursor", path, exc)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("spill %s: unreadable cursor (%s): replaying from the oldest segment", path, exc)
        return None


class SegmentWalk(NamedTuple):
    records: int                  # valid records
    before: tuple[int, int]       # (count, offset) of the records before the cursor: where a replay goes on
    at_cursor: bool               # the cursor is at a record start, or in corrupt bytes (else: clamped)
    runs: list[tuple[int, int]]   # [start, stop) of each run of valid records
    corrupt: list[tuple[int, int, str]]   # (start, end, reason): bad bytes the cursor has not passed
    torn: int                     # the last segment: where a torn tail starts (no valid record after it), else -1


def walk_segment(data, size: int, cursor_off: int = -1, last: bool = False) -> SegmentWalk:
    """Every record of ``data[0:size]`` (a segment's mmap) checked: the runs of valid records and the bad
    bytes between them (each ends at the next valid record; in the ``last`` segment, bad bytes with no
    valid record after them are a torn tail). Shared by the check on open and ``ssmd-fast spill``."""
    c = cursor_off
    records, before, at_cursor, s, torn = 0, (0, 0), False, 0, -1
    runs: list[tuple[int, int]] = []
    corrupt: list[tuple[int, int, str]] = []
    while True:
        with memoryview(data)[s:] as part:
            i, r, bn, boff, reason = scan_records(part, size - s, c - s if c >= s else -1)
        i += s
        runs.append((s, i))
        if s <= c < i:
            before, at_cursor = (records + bn, s + boff), True
        records += r
        if c >= i and not at_cursor:
            before = (records, i)  # the cursor is at or past this run's end
        if i == size:
            break
        nxt = next_valid(data, i, size)
        if last and nxt is None:
            torn = i
            if before[1] > i:  # the cursor was in the torn bytes
                before, at_cursor = (before[0], i), False
            break
        end = size if nxt is None else nxt
        if end > c:  # bytes before the cursor were replayed already: they no longer matter
            corrupt.append((max(i, c), end, reason))
            if c >= i and not at_cursor:
                before, at_cursor = (records, c), True   # in corrupt bytes: the replay goes on from the cursor
        if nxt is None:
            break
        s = nxt
    return SegmentWalk(records, before, at_cursor, runs, corrupt, torn)


class SpillRecovery:
    """The opening half of ``SpillFile`` (a mixin: it reads and sets ``SpillFile``'s state)."""

    def _recover_state(self) -> None:
        """Segments, positions and cursor from what is on disk (the lock is held)."""
        d = self.directory
        found = sorted((int(m.group(1)), name) for name in os.listdir(d) if (m := _SEGMENT_RE.match(name)))
        cursor = load_cursor(d)
        cur_n, cur_off = cursor if cursor is not None else (found[0][0] if found else 0, 0)
        # Numbers only grow: a stale cursor must never point into a segment created after it.
        self._next_n = max([cur_n + 1] + [n + 1 for n, _ in found])
        segs = []
        for n, name in found:
            path = os.path.join(d, name)
            if n < cur_n:  # fully consumed; its deletion was interrupted by a crash
                os.unlink(path)
                continue
            segs.append(_Segment(n, path, 0))
        t0 = time.monotonic()
        # The replay starts in the first segment and appends go on in the last: both are checked now. Those
        # between are checked in a thread when they are many (about 1 s per GiB from the page cache), so
        # that capture starts at once; reads stop at the first segment not yet checked.
        later = segs[1:-1]
        for seg in later:
            try:
                seg.length = os.stat(seg.path).st_size
            except OSError as exc:
                raise _os_error("cannot scan", seg.path, exc)
        later_bytes = sum(seg.length for seg in later)
        if later_bytes <= SYNC_CHECK_BYTES:
            later = []
        for seg in segs:
            seg.base = self._pos
            if later and later[0].n <= seg.n <= later[-1].n:
                seg.checked = False
            else:
                at_cursor = seg.n == cur_n
                seg.length, records, (before_n, before_off), aside = self._scan(
                    seg, last=seg is segs[-1], cursor_off=cur_off if at_cursor else None)
                for bad in aside:
                    self._set_aside(seg, *bad)
                self._n += records
                if at_cursor:
                    self._consumed_n = before_n
                    self._cpos = seg.base + before_off
            self._segs.append(seg)
            self._pos += seg.length
        if not segs or segs[0].n != cur_n:  # the cursor's segment was consumed and deleted: the oldest left
            self._cpos = segs[0].base if segs else 0
        self._wpos = self._pos
        self.check_seconds = time.monotonic() - t0
        if later:
            log.info("spill %s: %d segments (%.2f GiB) left by a previous run are checked in the background; "
                     "the replay follows the check", d, len(later), later_bytes / 2**30)
            self._check_in_background(later)

    def _scan(self, seg: _Segment, *, last: bool, cursor_off: int | None) -> tuple[int, int, tuple[int, int], list]:
        """Check every record of a segment: truncate a torn tail (the last segment's), copy corrupt bytes not
        yet consumed to quarantine/ (``_set_aside`` records them: this runs in the checking thread too).
        Returns (length, records, (count, offset) of the records before the cursor, [(start, end, reason,
        quarantine path)])."""
        c = -1 if cursor_off is None else cursor_off
        aside: list[tuple[int, int, str, str | None]] = []
        try:
            with open(seg.path, "r+b" if last else "rb") as f:
                size = length = os.fstat(f.fileno()).st_size
                if size == 0:
                    return 0, 0, (0, 0), aside
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    walk = walk_segment(data, size, c, last)
                    aside = [(a, b, why, self._copy_aside(seg, a, data[a:b])) for a, b, why in walk.corrupt]
                if walk.torn >= 0:
                    length = walk.torn
                    f.truncate(length)
                    os.fsync(f.fileno())
                    self.dropped_torn_bytes += size - length
                    log.warning("spill %s: dropped %d bytes of a torn record at offset %d (a crash mid-write)",
                                seg.path, size - length, length)
                if cursor_off is not None and walk.before[1] != c and not walk.at_cursor:
                    log.warning("spill %s: cursor offset %d is not a record boundary: replaying from %d",
                                seg.path, c, walk.before[1])
                return length, walk.records, walk.before, aside
        except OSError as exc:
            raise _os_error("cannot scan", seg.path, exc)

    def _check_in_background(self, segs: list[_Segment]) -> None:
        """Check ``segs`` in a thread (the compiled scan releases the GIL); the results are applied on the
        owner's thread by ``_apply_checks``, called by the reads and the counts."""
        self._unchecked = len(segs)
        stop = self._check_stop = threading.Event()
        results = self._checks = queue.SimpleQueue()

        def run() -> None:
            t0 = time.monotonic()
            for seg in segs:
                if stop.is_set():
                    return
                try:
                    _length, records, _before, aside = self._scan(seg, last=False, cursor_off=None)
                    results.put((seg, records, aside, None))
                except StorageError as exc:
                    results.put((seg, 0, [], exc))
                    return
            log.info("spill %s: %d segments checked in %.2f s", self.directory, len(segs), time.monotonic() - t0)

        self._checker = threading.Thread(target=run, name="spill-check", daemon=True)
        self._checker.start()

    def _apply_checks(self) -> None:
        while self._unchecked:
            try:
                seg, records, aside, err = self._checks.get_nowait()
            except queue.Empty:
                return
            if err is not None:
                self._check_error = err  # reads raise it at this segment
                log.error("%s", err)
                return
            for bad in aside:
                self._set_aside(seg, *bad)
            self._n += records
            self._sync_at_n += records  # records found, not appended: the fsync policy counts appends
            seg.checked = True
            self._unchecked -= 1

    def wait_checked(self, timeout: float | None = None) -> bool:
        """Until the segments checked in the background are checked (False on timeout or a failed check)."""
        if self._checker is not None:
            self._checker.join(timeout)
        self._apply_checks()
        return not self._unchecked

    def _stop_checks(self) -> None:
        if self._checker is not None:
            self._check_stop.set()
            self._checker.join()

    def _copy_aside(self, seg: _Segment, start: int, data) -> str | None:
        """Corrupt bytes of a segment into ``quarantine/``, for a post-mortem; the path, or None if it failed."""
        qpath = os.path.join(self.directory, QUARANTINE_NAME, f"{os.path.basename(seg.path)[:-4]}-at-{start}.bin")
        try:
            os.makedirs(os.path.dirname(qpath), mode=0o700, exist_ok=True)
            with open(qpath, "wb") as q:
                q.write(data)
            return qpath
        except OSError as exc:
            log.warning("%s", _os_error("cannot copy corrupt bytes", qpath, exc))
            return None

    def _set_aside(self, seg: _Segment, start: int, end: int, reason: str, qpath: str | None) -> None:
        """Bytes [start, end) of a segment are skipped by every read from now on; logged, counted, and kept
        in ``corruptions`` for the owner to report."""
        bisect.insort(seg.holes, (start, end))
        err = SpillCorrupt(seg.path, start, reason, end, qpath)
        self.corruptions.append(err)
        self.quarantined_bytes += end - start
        log.error("%s", err)

    def _set_aside_on_read(self, seg: _Segment, at: int, limit: int, reason: str) -> None:
        """A record that passed the check on open fails on read (the file changed since): set aside the
        bytes from it to the next valid record (``at`` and ``limit``: offsets in the segment's file)."""
        try:
            with open(seg.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= at:
                    self._set_aside(seg, at, limit, reason, self._copy_aside(seg, at, b""))
                    return
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    nxt = next_valid(data, at, min(limit, size))
                    end = limit if nxt is None else nxt
                    self._set_aside(seg, at, end, reason, self._copy_aside(seg, at, data[at:min(end, size)]))
        except OSError as exc:
            raise _os_error("cannot read", seg.path, exc)
