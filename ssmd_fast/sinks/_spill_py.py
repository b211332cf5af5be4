"""Pure-Python twin of ``_spill.pyx``: the spill file's record format: the append path (record encoding +
buffering), the read path (``parse_records``) and the recovery scan (``scan_records``, ``next_valid``).

``SpillWriter`` is the base class of ``spill.SpillFile``: it encodes records into ``self._buf`` and
keeps the logical end ``_pos`` and the record count ``_n``; everything rare (rotation, the byte cap,
write errors, handing the buffer to the OS, fsync) is the subclass's ``_make_room(total, appended)``
(called before a record that would pass ``_limit``; it raises to refuse the record) and
``_after_append()`` (called when ``_n`` reaches ``_sync_at_n``, ``_pos`` reaches ``_handoff_pos`` or
``time.monotonic()`` reaches ``_deadline``).

Record: ``u32 total_len | u32 crc32 | u16 subject_len | u16 msg_id_len | subject | msg_id | payload``,
little-endian; the CRC-32 (zlib's) covers every byte after the crc field.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Iterable

from ssmd_fast.errors import StorageError

IMPLEMENTATION = "python"

HEADER = struct.Struct("<IIHH")  # total_len, crc32, subject_len, msg_id_len
HEADER_SIZE = 12
_LENS = struct.Struct("<HH")
_crc32 = zlib.crc32
_monotonic = time.monotonic


def crc32(data, value: int = 0) -> int:
    """zlib's CRC-32 (the compiled module has its own table-driven copy; tests compare them)."""
    return _crc32(data, value)


def encode_record(subject: bytes, msg_id: bytes, payload: bytes) -> bytes:
    """One record in the segment format."""
    sl, ml = len(subject), len(msg_id)
    if sl > 0xFFFF or ml > 0xFFFF:
        raise ValueError(f"subject ({sl} bytes) and msg_id ({ml} bytes) must be shorter than 64 KiB")
    crc = _crc32(payload, _crc32(msg_id, _crc32(subject, _crc32(_LENS.pack(sl, ml)))))
    return HEADER.pack(HEADER_SIZE + sl + ml + len(payload), crc, sl, ml) + subject + msg_id + payload


def parse_records(data: bytes, want: int, out: list, ends: list, pos: int) -> tuple[int, int, int]:
    """The read path: whole records from the front of ``data`` (segment bytes starting at logical
    position ``pos``), at most ``want``. Appends ``(subject, msg_id, payload)`` to ``out`` and each
    record's logical end to ``ends``; stops at the first record ``data`` does not hold whole. Returns
    ``(bytes used, records taken, bad)``: ``bad`` is the offset in ``data`` of a record whose lengths
    or CRC are wrong (parsing stopped before it), else -1."""
    i, n, took = 0, len(data), 0
    while took < want and i + HEADER_SIZE <= n:
        total, reason = _check_record(data, i, n)
        if reason is not None:
            if reason.endswith(_RUNS_PAST):
                break  # not whole in data
            return i, took, i
        _total, _crc, sl, ml = HEADER.unpack_from(data, i)
        a = i + HEADER_SIZE
        b = a + sl
        c = b + ml
        out.append((data[a:b], data[b:c], data[c:i + total]))
        i += total
        ends.append(pos + i)
        took += 1
    return i, took, -1


_RUNS_PAST = "runs past the end of the file"


def _check_record(data, i: int, end: int) -> tuple[int, str | None]:
    """(total_len, None) if a valid record starts at data[i:end], else (0, reason)."""
    if end - i < HEADER_SIZE:
        return 0, "truncated header"
    total, crc, sl, ml = HEADER.unpack_from(data, i)
    if total < HEADER_SIZE + sl + ml:
        return 0, f"bad length {total}"
    if i + total > end:
        return 0, f"length {total} {_RUNS_PAST}"
    if _crc32(memoryview(data)[i + 8:i + total]) != crc:
        return 0, "CRC mismatch"
    return total, None


def scan_records(data, end: int, cursor_off: int) -> tuple[int, int, int, int, str | None]:
    """The recovery path (a whole segment checked when a spill opens): walk the valid records of
    ``data[0:end]`` (any buffer: the segment's mmap) from offset 0, checking lengths and CRCs. Returns
    ``(stop, records, before_n, before_off, reason)``: ``stop`` is the end of the last valid record,
    ``reason`` why the record at ``stop`` is not valid (None when ``stop == end``); ``(before_n,
    before_off)`` are the count and offset of the last record start at or before ``cursor_off`` among
    those visited (``cursor_off`` -1: none, ``(0, 0)``)."""
    i = records = before_n = before_off = 0
    reason = None
    while i < end:
        if cursor_off >= 0 and i <= cursor_off:
            before_n, before_off = records, i
        total, reason = _check_record(data, i, end)
        if reason is not None:
            break
        i += total
        records += 1
    return i, records, before_n, before_off, reason


_NON_ZERO = re.compile(rb"[^\x00]")


def next_valid(data, start: int, end: int) -> int | None:
    """The first offset after ``start`` where a valid record begins (the torn-or-corrupt decision)."""
    j = start + 1
    unpack = HEADER.unpack_from
    while j <= end - HEADER_SIZE:
        if data[j] == 0 and data[j + 1] == 0 and data[j + 2] == 0 and data[j + 3] == 0:
            # a valid total_len (>= 12) has a non-zero byte among its 4: skip zero runs (power-loss holes)
            m = _NON_ZERO.search(data, j, end)
            if m is None:
                return None
            j = max(j + 1, m.start() - 3)
            continue
        total, _crc, sl, ml = unpack(data, j)
        if HEADER_SIZE + sl + ml <= total <= end - j and _check_record(data, j, end)[1] is None:
            return j
        j += 1
    return None


class SpillWriter:
    """The append path; see the module docstring for the contract with the subclass."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._n = 0
        self._limit = -1
        self._sync_at_n = 0
        self._handoff_pos = 0
        self._deadline = float("inf")

    # ``_make_room`` and ``_after_append`` are the subclass's (``spill.SpillFile``), as in the compiled twin,
    # which declares neither.

    def append(self, subject: bytes, msg_id: bytes, payload: bytes) -> None:
        sl = len(subject)
        ml = len(msg_id)
        if sl > 0xFFFF or ml > 0xFFFF:
            raise ValueError(f"subject ({sl} bytes) and msg_id ({ml} bytes) must be shorter than 64 KiB")
        total = HEADER_SIZE + sl + ml + len(payload)
        if self._pos + total > self._limit:
            self._make_room(total, 0)
        crc = _crc32(payload, _crc32(msg_id, _crc32(subject, _crc32(_LENS.pack(sl, ml)))))
        buf = self._buf
        buf += HEADER.pack(total, crc, sl, ml)
        buf += subject
        buf += msg_id
        buf += payload
        self._pos = pos = self._pos + total
        self._n = n = self._n + 1
        if n >= self._sync_at_n or pos >= self._handoff_pos or _monotonic() >= self._deadline:
            self._after_append()

    def append_many(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> int:
        """Append in order; returns the count. On an error, ``exc.appended`` says how many were."""
        count = 0
        pack = HEADER.pack
        lens = _LENS.pack
        try:
            for subject, msg_id, payload in items:
                sl = len(subject)
                ml = len(msg_id)
                if sl > 0xFFFF or ml > 0xFFFF:
                    raise ValueError(f"subject ({sl} bytes) and msg_id ({ml} bytes) must be shorter "
                                     f"than 64 KiB (after {count} records were appended)")
                total = HEADER_SIZE + sl + ml + len(payload)
                if self._pos + total > self._limit:
                    self._make_room(total, count)
                crc = _crc32(payload, _crc32(msg_id, _crc32(subject, _crc32(lens(sl, ml)))))
                buf = self._buf
                buf += pack(total, crc, sl, ml)
                buf += subject
                buf += msg_id
                buf += payload
                self._pos = pos = self._pos + total
                self._n = n = self._n + 1
                count += 1
                if n >= self._sync_at_n or pos >= self._handoff_pos or _monotonic() >= self._deadline:
                    self._after_append()
        except StorageError as exc:
            exc.appended = count
            raise
        return count
