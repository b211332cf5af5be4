"""SpillInspector: what a spill directory holds, read without changing anything (``ssmd-fast spill``).

It takes no lock and writes nothing (no cursor, no truncation, no quarantine copy), so it can look at
the spill of a running connector: there, the last segment's tail may be a record being written, which
is reported as such rather than as corruption. Records are checked as on open (``walk_segment``).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from ssmd_fast.errors import SsmdError
from ssmd_fast.logs import plural
from ssmd_fast.sinks.spill_format import parse_records
from ssmd_fast.sinks.spill_recovery import _SEGMENT_RE, QUARANTINE_NAME, load_cursor, walk_segment

_CHUNK = 1 << 20


@dataclass
class SegmentView:
    name: str
    size: int
    records: int                   # valid records
    consumed: int                  # of them, before the cursor
    start: int                     # offset the replay goes on from (0 after the cursor's segment)
    runs: list[tuple[int, int]]
    corrupt: list[tuple[int, int, str]] = field(default_factory=list)   # (start, end, reason): not replayable
    tail: int = 0                  # bytes at the end of the last segment not (yet) a whole record


@dataclass
class SpillView:
    directory: str
    cursor: tuple[int, int] | None
    segments: list[SegmentView]
    quarantine_files: int
    quarantine_bytes: int

    @property
    def pending_records(self) -> int:
        return sum(s.records - s.consumed for s in self.segments)

    @property
    def pending_bytes(self) -> int:
        return sum(s.size - s.start for s in self.segments)

    def summary(self) -> list[str]:
        if not self.segments:
            out = [f"spill {self.directory}: empty"]
        else:
            cur = f"segment {self.cursor[0]} offset {self.cursor[1]:,}" if self.cursor else "none (from the oldest)"
            out = [f"spill {self.directory}: {plural(self.pending_records, 'record')} pending "
                   f"({plural(self.pending_bytes, 'byte')}) in {plural(len(self.segments), 'segment')}; cursor: {cur}"]
        plain = 0   # between the first and the last, the segments with nothing to say are counted, not listed
        for k, s in enumerate(self.segments):
            if len(self.segments) > 8 and 0 < k < len(self.segments) - 1 and not (s.consumed or s.corrupt or s.tail):
                plain += 1
                continue
            if plain:
                out.append(f"  ... {plural(plain, 'segment')}, every record valid")
                plain = 0
            line = f"  {s.name}  {s.size:>12,} bytes  {s.records:>10,} record{'' if s.records == 1 else 's'}"
            if s.consumed:
                line += f" ({s.consumed:,} replayed)"
            out.append(line)
            out += [f"    corrupt bytes {a:,}-{b:,} ({why}): not replayable" for a, b, why in s.corrupt]
            if s.tail:
                out.append(f"    {s.tail:,} bytes at the end are not a whole record (being written, or torn by a "
                           "crash: cut at the next start)")
        if self.quarantine_files:
            out.append(f"  {QUARANTINE_NAME}/: {plural(self.quarantine_files, 'file')}, {self.quarantine_bytes:,} bytes "
                       "set aside as corrupt")
        return out


def inspect_spill(directory: str) -> SpillView:
    """The segments, cursor and quarantine of a spill directory (raises SsmdError naming what failed)."""
    if not os.path.isdir(directory):
        raise SsmdError(f"{directory}: not a spill directory (no such directory)")
    try:
        names = sorted(n for n in os.listdir(directory) if _SEGMENT_RE.match(n))
        cursor = load_cursor(directory)
        segs = []
        for name in names:
            n = int(_SEGMENT_RE.match(name).group(1))
            if cursor is not None and n < cursor[0]:
                continue  # consumed; its deletion is pending
            at = cursor[1] if cursor is not None and n == cursor[0] else -1
            try:
                segs.append(_view_segment(os.path.join(directory, name), name, at, last=name == names[-1]))
            except FileNotFoundError:
                continue  # replayed and deleted since the listing
        qdir = os.path.join(directory, QUARANTINE_NAME)
        qfiles = [os.path.join(qdir, q) for q in os.listdir(qdir)] if os.path.isdir(qdir) else []
        return SpillView(directory, cursor, segs, len(qfiles), sum(os.path.getsize(q) for q in qfiles))
    except OSError as exc:
        raise SsmdError(f"{exc.filename or directory}: cannot read: {exc.strerror or exc}")


def _view_segment(path: str, name: str, cursor_off: int, last: bool) -> SegmentView:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return SegmentView(name, 0, 0, 0, 0, [])
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            w = walk_segment(data, size, cursor_off, last)
    return SegmentView(name, size, w.records, w.before[0], w.before[1], w.runs, w.corrupt,
                       size - w.torn if w.torn >= 0 else 0)


def pending_records(view: SpillView, limit: int | None = None) -> Iterator[tuple[bytes, bytes, bytes]]:
    """The records a replay would send, oldest first (at most ``limit``), read from the files again."""
    left = [1 << 62 if limit is None else limit]
    for seg in view.segments:
        try:
            with open(os.path.join(view.directory, seg.name), "rb") as f:
                yield from _segment_records(f.fileno(), seg, left)
        except FileNotFoundError:
            continue  # replayed and deleted since it was inspected
        if left[0] <= 0:
            return


def _segment_records(fd: int, seg: SegmentView, left: list[int]) -> Iterator[tuple[bytes, bytes, bytes]]:
    for a, b in seg.runs:
        pos = max(a, seg.start)
        while pos < b and left[0] > 0:
            out: list = []
            data = os.pread(fd, min(_CHUNK, b - pos), pos)
            i, took, _bad = parse_records(data, left[0], out, [], 0)
            if i == 0 and len(data) >= 4:  # one record larger than the chunk
                i, took, _bad = parse_records(os.pread(fd, int.from_bytes(data[:4], "little"), pos), 1, out, [], 0)
            if i == 0:
                return  # the file changed since it was inspected
            yield from out
            pos += i
            left[0] -= took
