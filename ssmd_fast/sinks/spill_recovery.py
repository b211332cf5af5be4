"""SpillRecovery: what a ``SpillFile`` finds on disk when it opens (segments checked record by record, a
torn tail truncated, corruption reported, the cursor read), and the on-disk pieces both share.
The format is described in ``spill.py``.
"""

from __future__ import annotations

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


class SpillCorrupt(StorageError):
    """A record in the middle of the spill failed its length or CRC check."""

    def __init__(self, path: str, offset: int, reason: str, next_valid: int | None = None):
        self.path, self.offset, self.reason, self.next_valid = path, offset, reason, next_valid
        after = (f"; the next valid record starts at offset {next_valid}" if next_valid is not None
                 else "; no valid record follows in this segment")
        super().__init__(f"spill {path}: corrupt record at offset {offset} ({reason}){after}. "
                         f"Records before it were replayed; move the file away to go on")


def _os_error(what: str, path: str, exc: OSError) -> StorageError:
    name = errno.errorcode.get(exc.errno or 0, "E?")
    err = StorageError(f"spill {path}: {what}: {exc.strerror or exc} ({name})")
    err.path, err.errno = path, exc.errno
    return err


class _Segment:
    __slots__ = ("n", "path", "base", "length", "extra", "corrupt")

    def __init__(self, n: int, path: str, base: int, length: int = 0):
        self.n, self.path, self.base = n, path, base
        self.length = length   # readable bytes (the active segment's length lives in SpillFile._pos)
        self.extra = 0         # bytes on disk past a corruption (counted against max_bytes)
        self.corrupt: SpillCorrupt | None = None


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
        """Check every record of a segment; truncate a torn tail. Returns (records, (count, offset)
        of the records before the cursor offset)."""
        try:
            with open(seg.path, "r+b" if last else "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    return 0, (0, 0)
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    i, records, before_n, before_off, reason = scan_records(
                        data, size, -1 if cursor_off is None else cursor_off)
                    before = (before_n, before_off)
                    if cursor_off is not None and i <= cursor_off:
                        if cursor_off > i:
                            log.warning("spill %s: cursor offset %d past the last record (%d): clamped",
                                        seg.path, cursor_off, i)
                        before = (records, i)
                    elif cursor_off is not None and before[1] != cursor_off:
                        log.warning("spill %s: cursor offset %d is not a record boundary: replaying from %d",
                                    seg.path, cursor_off, before[1])
                    nxt = next_valid(data, i, size) if i < size else None
                seg.length = i
                if i < size:
                    if last and nxt is None:
                        f.truncate(i)
                        os.fsync(f.fileno())
                        self.dropped_torn_bytes += size - i
                        log.warning("spill %s: dropped %d bytes of a torn record at offset %d (a crash "
                                    "mid-write)", seg.path, size - i, i)
                    else:
                        seg.extra = size - i
                        seg.corrupt = SpillCorrupt(seg.path, i, reason, nxt)
                        log.error("%s", seg.corrupt)
                return records, before
        except OSError as exc:
            raise _os_error("cannot scan", seg.path, exc)

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
