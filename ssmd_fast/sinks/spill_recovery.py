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
import re
import time

from ssmd_fast.errors import StorageError
from ssmd_fast.sinks.spill_format import next_valid, scan_records

log = logging.getLogger("ssmd_fast.sinks.spill")

_SEGMENT_RE = re.compile(r"^spill-(\d{8})\.log$")
CURSOR_NAME = "cursor"
LOCK_NAME = "lock"
QUARANTINE_NAME = "quarantine"


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


class _Segment:
    __slots__ = ("n", "path", "base", "length", "holes")

    def __init__(self, n: int, path: str, base: int, length: int = 0):
        self.n, self.path, self.base = n, path, base
        self.length = length   # bytes (the active segment's length lives in SpillFile._pos)
        self.holes: list[tuple[int, int]] = []   # [start, end) offsets of quarantined bytes, in order

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


class SpillRecovery:
    """The opening half of ``SpillFile`` (a mixin: it reads and sets ``SpillFile``'s state)."""

    def _recover_state(self) -> None:
        """Segments, positions and cursor from what is on disk (the lock is held)."""
        d = self.directory
        found = sorted((int(m.group(1)), name) for name in os.listdir(d) if (m := _SEGMENT_RE.match(name)))
        cursor = self._load_cursor()
        cur_n, cur_off = cursor if cursor is not None else (found[0][0] if found else 0, 0)
        # Numbers only grow: a stale cursor must never point into a segment created after it.
        self._next_n = max([cur_n + 1] + [n + 1 for n, _ in found])
        last = found[-1][0] if found else None
        cursor_found = False
        t0 = time.monotonic()
        if len(found) > 4:  # over 256 MiB: say why the start waits (about 1 s per GiB when cached)
            log.info("spill %s: checking %d segments left by a previous run", d, len(found))
        for n, name in found:
            path = os.path.join(d, name)
            if n < cur_n:  # fully consumed; its deletion was interrupted by a crash
                os.unlink(path)
                continue
            seg = _Segment(n, path, self._pos)
            records, (before_n, before_off) = self._scan(seg, last=n == last,
                                                         cursor_off=cur_off if n == cur_n else None)
            self._segs.append(seg)
            self._pos += seg.length
            self._n += records
            if n == cur_n:
                cursor_found = True
                self._cpos = seg.base + before_off
                self._consumed_n = before_n
        if not cursor_found:  # the cursor's segment was consumed and deleted: start at the oldest left
            self._cpos = self._segs[0].base if self._segs else 0
        self._wpos = self._pos
        self.check_seconds = time.monotonic() - t0

    def _scan(self, seg: _Segment, *, last: bool, cursor_off: int | None) -> tuple[int, tuple[int, int]]:
        """Check every record of a segment: truncate a torn tail (the last segment's), quarantine corrupt
        bytes not yet consumed. Returns (records, (count, offset) of the records before the cursor)."""
        c = -1 if cursor_off is None else cursor_off
        try:
            with open(seg.path, "r+b" if last else "rb") as f:
                size = seg.length = os.fstat(f.fileno()).st_size
                if size == 0:
                    return 0, (0, 0)
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    records, before, at_cursor, s = 0, (0, 0), False, 0
                    while True:  # one pass per run of valid records; each ends at the segment's end or corruption
                        with memoryview(data)[s:] as part:
                            i, r, bn, boff, reason = scan_records(part, size - s, c - s if c >= s else -1)
                        i += s
                        if s <= c < i:
                            before, at_cursor = (records + bn, s + boff), True
                        records += r
                        if c >= i and not at_cursor:
                            before = (records, i)  # the cursor is at or past this run's end
                        if i == size:
                            break
                        nxt = next_valid(data, i, size)
                        if last and nxt is None:
                            f.truncate(i)
                            os.fsync(f.fileno())
                            seg.length = i
                            self.dropped_torn_bytes += size - i
                            log.warning("spill %s: dropped %d bytes of a torn record at offset %d (a crash "
                                        "mid-write)", seg.path, size - i, i)
                            break
                        end = size if nxt is None else nxt
                        if end > c:  # bytes before the cursor were replayed already: not set aside
                            start = max(i, c)
                            self._quarantine(seg, start, end, reason, data[start:end])
                            if c >= i and not at_cursor:
                                before, at_cursor = (records, start), True
                        if nxt is None:
                            break
                        s = nxt
                if cursor_off is not None and before[1] != c and not at_cursor:
                    log.warning("spill %s: cursor offset %d is not a record boundary: replaying from %d",
                                seg.path, c, before[1])
                return records, before
        except OSError as exc:
            raise _os_error("cannot scan", seg.path, exc)

    def _quarantine(self, seg: _Segment, start: int, end: int, reason: str, data) -> None:
        """Set bytes [start, end) of a segment aside: copied to ``quarantine/`` (for a post-mortem), then
        skipped by every read. Logged, counted, and kept in ``corruptions`` for the owner to report."""
        qpath: str | None = os.path.join(self.directory, QUARANTINE_NAME,
                                         f"{os.path.basename(seg.path)[:-4]}-at-{start}.bin")
        try:
            os.makedirs(os.path.dirname(qpath), mode=0o700, exist_ok=True)
            with open(qpath, "wb") as q:
                q.write(data)
        except OSError as exc:
            log.warning("%s", _os_error("cannot copy corrupt bytes", qpath, exc))
            qpath = None
        bisect.insort(seg.holes, (start, end))
        err = SpillCorrupt(seg.path, start, reason, end, qpath)
        self.corruptions.append(err)
        self.quarantined_bytes += end - start
        log.error("%s", err)

    def _quarantine_on_read(self, seg: _Segment, at: int, limit: int, reason: str) -> None:
        """A record that passed the check on open fails on read (the file changed since): set aside the
        bytes from it to the next valid record (``at`` and ``limit``: offsets in the segment's file)."""
        try:
            with open(seg.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= at:
                    self._quarantine(seg, at, limit, reason, b"")
                    return
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    nxt = next_valid(data, at, min(limit, size))
                    end = limit if nxt is None else nxt
                    self._quarantine(seg, at, end, reason, data[at:min(end, size)])
        except OSError as exc:
            raise _os_error("cannot read", seg.path, exc)

    def _load_cursor(self) -> tuple[int, int] | None:
        path = os.path.join(self.directory, CURSOR_NAME)
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
