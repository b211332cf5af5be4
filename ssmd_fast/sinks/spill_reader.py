"""SpillReader: the replay side of ``SpillFile`` (a mixin: it reads ``SpillFile``'s state): reads that
continue where the last one stopped (read-ahead), ``unread``/``rewind``, and the skip over bytes set aside
as corrupt (found on open, or by a read here). The format is described in ``spill.py``.
"""

from __future__ import annotations

import os

from ssmd_fast.errors import StorageError
from ssmd_fast.sinks.spill_format import HEADER, HEADER_SIZE, parse_records
from ssmd_fast.sinks.spill_recovery import _os_error, _Segment

_READ_CHUNK = 1 << 20   # at most per pread (a larger record is read whole)
_MIN_READ = 16384


class SpillReader:
    """Reading does not consume: see ``spill.py``."""

    # bytes per record of the last read, plus headroom: a read of n records preads about n of them, not
    # _READ_CHUNK (a replay reads 1,024 records of ~300 bytes at a time: 1 MiB was 3x the bytes it used)
    _record_guess = 512

    def read(self, max_records: int) -> list[tuple[bytes, bytes, bytes]]:
        """The next records not yet read (up to max_records), oldest first, without consuming them: the
        first read starts at the cursor, each later one where the previous stopped, until ``rewind()``."""
        if self._closed:
            raise StorageError(f"spill {self.directory}: closed")
        if self._unchecked:
            self._apply_checks()
        out: list[tuple[bytes, bytes, bytes]] = []
        ends = self._read_ends
        mark = len(ends)
        pos = ends[-1] if mark > self._read_i else self._cpos
        try:
            for seg in self._segs:
                if len(out) >= max_records:
                    break
                seg_end = self._pos if seg is self._active else seg.base + seg.length
                if pos < seg_end and not seg.checked:  # its check on open runs in the background
                    if self._check_error is not None and not out:
                        raise self._check_error
                    break
                if pos < seg_end:
                    pos = self._read_segment(seg, pos, seg_end, max_records - len(out), out, ends)
                    if pos < seg_end:
                        break
            if self._lost_unknown and pos >= self._pos:  # read to the end: what is pending is what was read
                self._lost_n = self._n - self._consumed_n - self.read_ahead
                self._lost_unknown = False
        except BaseException:
            del ends[mark:]  # nothing of a failed read counts as read
            raise
        return out

    @property
    def read_to_end(self) -> bool:
        """Every record is read (those not consumed yet are in the reader's hands)."""
        pos = self._read_ends[-1] if self.read_ahead else self._cpos
        return pos >= self._pos

    @property
    def read_ahead(self) -> int:
        """Records read and not yet consumed."""
        return len(self._read_ends) - self._read_i

    def unread(self, n: int) -> None:
        """Give back the last n records read: the next read returns them again."""
        if not 0 <= n <= self.read_ahead:
            raise ValueError(f"unread({n}) but {self.read_ahead} records are read and not consumed")
        del self._read_ends[len(self._read_ends) - n:]

    def rewind(self) -> None:
        """The next read starts at the cursor again (what was read and not consumed was dropped)."""
        self.unread(self.read_ahead)

    def _read_segment(self, seg: _Segment, pos: int, seg_end: int, want: int, out: list, ends: list) -> int:
        unpack = HEADER.unpack_from
        base = seg.base
        pos = self._past_holes(seg, pos, ends)
        while want > 0 and pos < seg_end:
            stop = base + seg.hole_after(pos - base, seg_end - base)  # records never span set-aside bytes
            data = self._bytes(seg, pos, min(stop, pos + min(_READ_CHUNK, max(_MIN_READ, want * self._record_guess))))
            if len(data) >= HEADER_SIZE and unpack(data, 0)[0] > len(data):
                data = self._bytes(seg, pos, min(stop, pos + unpack(data, 0)[0]))  # one big record
            i, took, bad = parse_records(data, want, out, ends, pos)
            want -= took
            if took:
                self._record_guess = i // took + 64
            if bad >= 0 or i == 0:  # changed on disk since it was checked on open: set aside, read on
                limit = (min(seg_end, self._wpos) if seg is self._active else seg_end) - base
                self._set_aside_on_read(seg, pos + i - base, limit, "CRC mismatch on read" if bad >= 0
                                       else "a record runs past the end of the segment on read")
                self._lost_unknown = True  # the records it held were counted on open, and cannot be now
            pos = self._past_holes(seg, pos + i, ends)
        return pos

    def _past_holes(self, seg: _Segment, pos: int, ends: list) -> int:
        """``pos``, moved past set-aside bytes that start there; the record before them (read, or at the
        cursor) ends after them, so consuming it moves the cursor past them too."""
        if not seg.holes:
            return pos
        new = seg.base + seg.skip(pos - seg.base)
        if new != pos:
            if len(ends) > self._read_i and ends[-1] == pos:
                ends[-1] = new
            elif self._cpos == pos:
                self._cpos = new
        return new

    def _bytes(self, seg: _Segment, start: int, stop: int) -> bytes:
        """Logical bytes [start, stop) of a segment: from its file, and from the buffer if active."""
        if seg is self._active and stop > self._wpos:
            head = self._pread(seg, start, self._wpos) if start < self._wpos else b""
            lo = max(start, self._wpos) - self._wpos
            return head + bytes(self._buf[lo:stop - self._wpos])
        return self._pread(seg, start, stop)

    def _pread(self, seg: _Segment, start: int, stop: int) -> bytes:
        if self._rfd is None or self._rfd[0] != seg.n:
            self._close_reader()
            try:
                self._rfd = (seg.n, os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                raise _os_error("cannot open for reading", seg.path, exc)
        parts = []
        off, want = start - seg.base, stop - start
        try:
            while want > 0:
                chunk = os.pread(self._rfd[1], want, off)
                if not chunk:  # cut short since it was checked: the read sets the missing bytes aside
                    break
                parts.append(chunk)
                off += len(chunk)
                want -= len(chunk)
        except OSError as exc:
            raise _os_error("cannot read", seg.path, exc)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _close_reader(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd[1])
            self._rfd = None
