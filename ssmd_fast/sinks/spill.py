"""SpillFile: the on-disk buffer the publisher appends to while NATS is away, replayed oldest first.

On disk, in one directory owned by one process (``lock`` is flock-ed):

- segment files ``spill-{n:08d}.log``, each a run of records
  ``u32 total_len | u32 crc32 | u16 subject_len | u16 msg_id_len | subject | msg_id | payload``
  (little-endian; ``total_len`` counts the whole record, header included; the CRC-32 covers every
  byte after the crc field: both lengths, subject, msg_id and payload);
- ``cursor``: ``{"segment": n, "offset": o}``, the first record not yet consumed: JSON padded with spaces
  to 64 bytes, created atomically on open (tmp + fsync + rename), then overwritten in place by one
  ``pwrite`` per ``consume`` (a kill -9 keeps it; one sector, which a power failure does not tear);
  fsync-ed at most every ``fsync_interval`` and on close.

Records are encoded into a user-space buffer that is handed to the OS in one write at the end of
every ``append_many`` call, when it reaches 256 KiB, when a fsync is due (``fsync_every`` records or
``fsync_interval`` seconds since the last one, checked on append), and on ``flush()``/``close()``.
The periodic fsyncs (segment and cursor) and the deletion of consumed segments run in a thread
(``spill_disk.BackgroundDisk``: the caller's event loop never waits for the disk); a segment's last
fsync before it is closed, ``flush(fsync=True)`` and ``close()`` are synchronous.
A kill -9 therefore loses only records given to single ``append`` calls since then (the owner calls
``flush()`` when such a burst ends). Positions are kept as one logical byte offset across segments,
so the per-append work is a few integer updates.

Reading does not consume: ``read(n)`` returns the next records after those already read (the first read
starts at the cursor), so a replay can read the next chunk while the server stores the previous ones;
``consume(n)`` moves the cursor over the n oldest records once they are stored, and ``rewind()`` (or
``unread(n)``) gives back what was read and not consumed, to be read again.

On open, every segment is checked record by record (length and CRC, compiled: ``scan_records``): the
first (where the replay starts) and the last (where appends go on) before ``SpillFile()`` returns, and
those between in a thread when they hold more than 256 MiB (about 1 s per GiB), so that a large spill
does not hold capture back; a read stops at the first segment not checked yet, and ``pending_records``
counts the records of the segments checked so far (``wait_checked()`` waits for the rest). A bad
record at the end of the last segment with no valid record after it is a torn write: it is truncated
away and logged.
Any other bad record is corruption: the bytes from it to the next valid record (or the segment's end)
are copied to ``quarantine/spill-{n:08d}-at-{offset}.bin`` and skipped by every read, and a
``SpillCorrupt`` naming the segment and offsets is logged and kept in ``corruptions`` for the owner to
report (the records in those bytes cannot be read: one bad byte must not hold back every record after
it). A record that changed on disk after the check is found by ``read()`` and set aside the same way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time

from ssmd_fast.errors import StorageError
from ssmd_fast.sinks.spill_disk import BackgroundDisk
from ssmd_fast.sinks.spill_format import (
    IMPLEMENTATION,
    SpillWriter,
    encode_record,
)
from ssmd_fast.sinks.spill_reader import SpillReader
from ssmd_fast.sinks.spill_recovery import (
    CURSOR_NAME,
    LOCK_NAME,
    SpillCorrupt,
    SpillRecovery,
    _os_error,
    _Segment,
    open_dir_error,
)

__all__ = ["IMPLEMENTATION", "SpillCorrupt", "SpillFile", "SpillFull", "encode_record"]

log = logging.getLogger(__name__)

HANDOFF_BYTES = 256 * 1024   # user-space buffer handed to the OS at this size
RETRY_INTERVAL = 1.0         # after a write error, appends are refused without a syscall this long
CURSOR_WIDTH = 64            # bytes of the cursor file: its JSON padded, so each write overwrites it whole
_monotonic = time.monotonic


class SpillFull(StorageError):
    """Past max_bytes: the feed must be stopped on purpose (a gap marker says so)."""

    def __init__(self, message: str, *, appended: int = 0):
        super().__init__(message)
        self.appended = appended  # append_many: records accepted before the refused one


class SpillFile(SpillRecovery, SpillReader, SpillWriter):
    """Append-only on-disk buffer of (subject, msg_id, payload) messages, replayed oldest first.

    ``append`` returning means the record is accepted (readable by ``read()``, on disk after the
    next handoff); raising means it was not. A write error is raised by the call that hit it when
    that call's own record was not yet accepted, else by the next ``append``; accepted records
    stay readable from memory meanwhile. Appends are retried against the disk every
    ``retry_interval`` seconds, so space freed on disk ends the error state by itself.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, fsync_every: int = 1000,
                 fsync_interval: float = 0.05, segment_bytes: int = 64 * 2**20):
        super().__init__()
        self.corruptions: list[SpillCorrupt] = []   # every range set aside, in the order found
        self.quarantined_bytes = 0
        self._lost_n = 0       # records in bytes set aside on read (known once a read reaches the end)
        self._lost_unknown = False
        self._unchecked = 0    # segments whose check on open runs in the background (spill_recovery.py)
        self._checker = None
        self._check_error: StorageError | None = None
        self.directory = os.fspath(directory)
        self.max_bytes = int(max_bytes)
        self.fsync_every = int(fsync_every)
        self.fsync_interval = float(fsync_interval)
        # A segment is deleted only once fully consumed: keep several per cap so the space held by
        # consumed records of a half-read segment stays a small part of max_bytes.
        self.segment_bytes = max(4096, min(int(segment_bytes), self.max_bytes // 4))
        self._segs: list[_Segment] = []
        self._active: _Segment | None = None
        self._fd = -1
        self._rfd: tuple[int, int] | None = None   # (segment n, fd) cached for reads
        self._lock_fd = -1
        self._buf = bytearray()
        self._pos = 0          # logical end: bytes appended, over all segments
        self._wpos = 0         # logical position up to which the active segment is on the OS side
        self._cpos = 0         # logical cursor: first byte not consumed
        self._n = 0            # records appended (including those found on open)
        self._consumed_n = 0
        self._limit = -1       # appends that would pass it take the slow path (rotate / cap)
        self._cap_pos = 0
        self._next_n = 1
        self._synced_n = 0
        self._sync_at_n = 0
        self._deadline = float("inf")
        self._handoff_pos = HANDOFF_BYTES
        # Records read but not consumed (a replay keeps a chunk in flight while it reads the next):
        # the logical end of each, from _read_ends[_read_i] (the one at the cursor) on.
        self._read_ends: list[int] = []
        self._read_i = 0
        self._cursor_synced_at = 0.0
        self._cursor_sync_interval = self.fsync_interval if self.fsync_interval > 0 else 1.0
        self._ready = False
        self._cursor_error: str | None = None
        self._error: StorageError | None = None
        self._retry_at = 0.0
        self.retry_interval = RETRY_INTERVAL
        self._fsyncs = 0       # synchronous ones; the periodic ones run in the background (BackgroundDisk)
        self._disk = BackgroundDisk(self.directory)
        self._cfd = -1         # the cursor file, written in place
        self.full_rejects = 0
        self.write_errors = 0
        self.dropped_torn_bytes = 0
        self.check_seconds = 0.0   # the check of the segments found on open
        self._closed = False
        self._open()

    # ------------------------------------------------------------------ properties and stats

    @property
    def pending_records(self) -> int:
        """Records not consumed; while segments are checked in the background, those found so far."""
        if self._unchecked:
            self._apply_checks()
        return self._n - self._consumed_n - self._lost_n

    @property
    def pending_bytes(self) -> int:
        return self._pos - self._cpos

    @property
    def disk_bytes(self) -> int:
        """Bytes the segments take (consumed records of a half-read segment included)."""
        if not self._segs:
            return 0
        return self._pos - self._segs[0].base

    @property
    def fsyncs(self) -> int:
        """fsyncs of the segments completed, synchronous and in the background."""
        return self._fsyncs + self._disk.done["segment"]

    def wait_disk(self, timeout: float | None = None) -> bool:
        """Until the background fsyncs and deletions requested so far are done; False on timeout."""
        return self._disk.wait(timeout)

    @property
    def error(self) -> StorageError | None:
        """The write error appends are currently refused with, or None."""
        return self._error

    def stats(self) -> dict:
        return {
            "pending_records": self.pending_records, "pending_bytes": self.pending_bytes,
            "disk_bytes": self.disk_bytes, "segments": len(self._segs), "appended": self._n,
            "consumed": self._consumed_n, "fsyncs": self.fsyncs, "full_rejects": self.full_rejects,
            "write_errors": self.write_errors, "dropped_torn_bytes": self.dropped_torn_bytes,
            "corrupt_ranges": len(self.corruptions), "quarantined_bytes": self.quarantined_bytes,
            "unchecked_segments": self._unchecked,
            "error": str(self._error) if self._error else None,
        }

    # ------------------------------------------------------------------ append

    def append_many(self, items) -> int:
        """Append in order and hand the records to the OS; returns the count. On an error,
        ``exc.appended`` says how many were accepted (they stay readable)."""
        try:
            return super().append_many(items)
        finally:
            if self._buf and self._error is None and not self._closed:
                try:
                    self._handoff()
                except StorageError:
                    pass  # recorded in self._error: the next append raises it

    def _make_room(self, total: int, appended: int) -> None:
        """Slow path of append: error state, cap, rotation. Raises without accepting the record."""
        if self._closed:
            raise StorageError(f"spill {self.directory}: closed")
        if self._error is not None:
            self._retry()
        if self._pos + total > self._cap_pos:
            self.full_rejects += 1
            raise SpillFull(f"spill {self.directory}: {self.disk_bytes} bytes on disk, cap {self.max_bytes}: "
                            f"record of {total} bytes refused", appended=appended)
        active = self._active
        if active is None or (self._pos + total > active.base + self.segment_bytes and self._pos > active.base):
            self._rotate()
        self._update_limit()

    def _update_limit(self) -> None:
        if self._error is not None:
            self._limit = -1
            return
        active = self._active
        rotate_pos = active.base + self.segment_bytes if active is not None else -1
        self._limit = min(rotate_pos, self._cap_pos)

    def _update_cap(self) -> None:
        if self._segs:
            self._cap_pos = self._segs[0].base + self.max_bytes
        else:
            self._cap_pos = self._pos + self.max_bytes
        self._update_limit()

    def _after_append(self) -> None:
        """Hand the buffer to the OS and, when due, start a fsync in the background (spill_disk.py: the
        event loop never waits for the disk); a failure here keeps the records in memory."""
        try:
            self._handoff()
            err = self._disk.take_error("segment")
            if err is not None:
                raise self._fail("cannot fsync", self._active.path if self._active else self.directory, err)
            if self._n >= self._sync_at_n or _monotonic() >= self._deadline:
                self._arm_sync()
                if self._fd >= 0:
                    try:
                        self._disk.fsync(self._fd, "segment")
                    except OSError as exc:
                        raise self._fail("cannot fsync", self._active.path, exc)
        except StorageError:
            pass  # recorded in self._error; the next append raises it (this record was accepted)

    # ------------------------------------------------------------------ writing to the OS

    def _handoff(self) -> None:
        buf = self._buf
        self._handoff_pos = self._pos + HANDOFF_BYTES
        if not buf:
            return
        with memoryview(buf) as view:
            done = 0
            try:
                while done < len(view):
                    done += os.write(self._fd, view[done:])
            except OSError as exc:
                try:  # keep only whole records on disk: the buffer is rewritten on the next try
                    os.ftruncate(self._fd, self._wpos - self._active.base)
                except OSError:
                    pass
                raise self._fail("cannot write", self._active.path, exc)
        self._wpos = self._pos
        self._buf = bytearray()

    def _fsync_active(self) -> None:
        self._arm_sync()
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise self._fail("cannot fsync", self._active.path, exc)
        self._fsyncs += 1

    def _arm_sync(self) -> None:
        self._synced_n = self._n
        self._sync_at_n = self._n + self.fsync_every if self.fsync_every > 0 else 1 << 62
        self._deadline = _monotonic() + self.fsync_interval if self.fsync_interval > 0 else float("inf")

    def _fail(self, what: str, path: str, exc: OSError) -> StorageError:
        err = _os_error(what, path, exc)
        if self._error is None:
            log.error("%s; appends are refused until it can write again", err)
        self._error = err
        self.write_errors += 1
        self._retry_at = _monotonic() + self.retry_interval
        self._limit = -1  # every append goes through _make_room while failing
        return err

    def _retry(self) -> None:
        err = self._error
        if _monotonic() < self._retry_at:
            raise StorageError(str(err)) from err
        if self._buf:
            self._handoff()
        if self._active is not None:
            self._fsync_active()
        self._error = None
        self._update_limit()
        log.warning("spill %s: writable again", self.directory)

    def _rotate(self) -> None:
        if self._active is not None:
            self._handoff()
            self._fsync_active()
            os.close(self._fd)
            self._fd = -1
            self._active.length = self._pos - self._active.base
            self._active = None
        n = self._next_n
        path = os.path.join(self.directory, f"spill-{n:08d}.log")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._fail("cannot create segment", path, exc)
        self._next_n = n + 1
        self._fd = fd
        seg = _Segment(n, path, self._pos)
        self._segs.append(seg)
        self._active = seg
        self._wpos = self._pos
        self._fsync_dir()
        self._update_cap()

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("%s", _os_error("cannot fsync directory", self.directory, exc))

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered records to the OS (and fsync the segment and the cursor). Raises StorageError."""
        if self._closed:
            return
        if self._error is not None:
            self._retry_at = 0.0
            self._retry()
        self._handoff()
        if fsync:
            self._fsync_active()
            self._save_cursor(sync=True)

    # ------------------------------------------------------------------ consuming

    def consume(self, n: int) -> None:
        """The n oldest records are stored in JetStream: advance the cursor, delete spent segments."""
        if n <= 0:
            return
        if self._closed:
            raise StorageError(f"spill {self.directory}: closed")
        if n > self.pending_records:
            raise ValueError(f"consume({n}) but only {self.pending_records} records are pending")
        if self.read_ahead < n:
            self.read(n - self.read_ahead)
            if self.read_ahead < n:
                raise ValueError(f"consume({n}) past the {self.read_ahead} readable records")
        ends = self._read_ends
        self._read_i += n
        self._cpos = ends[self._read_i - 1]
        if self._read_i == len(ends):
            ends.clear()
            self._read_i = 0
        elif self._read_i >= 1024 and 2 * self._read_i >= len(ends):  # drop the consumed ends now and then
            del ends[:self._read_i]
            self._read_i = 0
        self._consumed_n += n
        self._drop_spent_segments()
        self._save_cursor(sync=_monotonic() - self._cursor_synced_at >= self._cursor_sync_interval, wait=False)

    def _drop_spent_segments(self) -> None:
        dropped = False
        while self._segs:
            seg = self._segs[0]
            if seg is self._active:
                if self._cpos < self._pos:
                    break
                # everything consumed: end the active segment too, so its space is freed
                self._close_reader()
                os.close(self._fd)
                self._fd, self._active, self._buf, self._wpos = -1, None, bytearray(), self._pos
                if self._error is not None:
                    self._error = None
                    log.warning("spill %s: all records consumed; the write error state is cleared",
                                self.directory)
            elif self._cpos < seg.base + seg.length:
                break
            if self._rfd is not None and self._rfd[0] == seg.n:
                self._close_reader()
            # in the background: ext4 frees a 64 MiB file's extents inside unlink (about 50 ms here). The
            # space counts as free at once; a crash before the deletion leaves a segment the cursor is
            # past, which the next open deletes.
            self._disk.unlink(seg.path)
            self._segs.pop(0)
            dropped = True
        if dropped:
            self._update_cap()

    # ------------------------------------------------------------------ cursor

    def _cursor_location(self) -> tuple[int, int]:
        for seg in self._segs:
            end = self._pos if seg is self._active else seg.base + seg.length
            if self._cpos < end or seg is self._active:
                return seg.n, self._cpos - seg.base
        return self._next_n, 0

    def _save_cursor(self, sync: bool, wait: bool = True) -> None:
        """Write the cursor in place; ``sync``: fsync it too, in the background unless ``wait``.

        Not fatal when it fails: a stale cursor only replays acked records again (same ids, deduplicated)."""
        n, off = self._cursor_location()
        path = os.path.join(self.directory, CURSOR_NAME)
        text = json.dumps({"segment": n, "offset": off}).encode().ljust(CURSOR_WIDTH - 1) + b"\n"
        try:
            if self._cfd < 0:
                self._create_cursor(path, text)
            else:
                os.pwrite(self._cfd, text, 0)    # one sector, into the page cache: a few microseconds
                if sync and wait:
                    os.fsync(self._cfd)
                elif sync:
                    self._disk.fsync(self._cfd, "cursor")
            if (exc := self._disk.take_error("cursor")) is not None:
                raise exc
        except OSError as exc:
            msg = str(_os_error("cannot write the cursor", path, exc))
            if self._cursor_error != msg:
                log.warning("%s; a restart would replay already stored records", msg)
            self._cursor_error = msg
            return
        self._cursor_error = None
        if sync:
            self._cursor_synced_at = _monotonic()

    def _create_cursor(self, path: str, text: bytes) -> None:
        """Replace the cursor file atomically and durably (tmp, fsync, rename, directory fsync) and keep it
        open for the in-place writes; a file of another width (an older version's) is replaced too."""
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            raise
        self._cfd = fd
        self._fsync_dir()

    # ------------------------------------------------------------------ open, scan, close

    def _open(self) -> None:
        d = self.directory
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            self._lock_fd = os.open(os.path.join(d, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise open_dir_error("cannot open the spill directory", d, exc)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StorageError(f"spill {d}: in use by another process (lock held)")
        try:
            self._recover_state()
            self._resume()
        except BaseException:
            self.close()
            raise

    def _resume(self) -> None:
        """After recovery: reopen the tail segment for appends, persist the cursor, say what is pending."""
        d = self.directory
        tail = self._segs[-1] if self._segs else None
        if tail is not None and tail.length < self.segment_bytes:
            try:
                self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except OSError as exc:
                raise _os_error("cannot open for appending", tail.path, exc)
            self._active = tail
        self._drop_spent_segments()
        self._update_cap()
        self._arm_sync()
        self._handoff_pos = self._pos + HANDOFF_BYTES
        self._ready = True
        self._save_cursor(sync=True)
        if self._unchecked:
            log.info("spill %s: %d bytes pending from a previous run (%d records in the segments checked in "
                     "%.2f s)", d, self.pending_bytes, self.pending_records, self.check_seconds)
        elif self.pending_records:
            log.info("spill %s: %d records (%d bytes) pending from a previous run (checked in %.2f s)", d,
                     self.pending_records, self.pending_bytes, self.check_seconds)

    def close(self) -> None:
        """Hand everything to the OS, fsync, persist the cursor. A write error is raised after cleanup."""
        if self._closed:
            return
        self._closed = True
        self._limit = -1  # later appends take the slow path, which refuses them
        err: StorageError | None = None
        self._stop_checks()
        self._disk.stop()
        if (bg := self._disk.take_error("segment")) is not None and self._active is not None:
            err = self._fail("cannot fsync", self._active.path, bg)
        if self._fd >= 0:
            try:
                self._handoff()
                self._fsync_active()
            except StorageError as exc:
                err = exc
            os.close(self._fd)
            self._fd = -1
        self._close_reader()
        if self._lock_fd >= 0:
            if self._ready:  # never write a cursor from a half-recovered state
                self._save_cursor(sync=True)
            if self._cfd >= 0:
                os.close(self._cfd)
                self._cfd = -1
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
        if err is not None:
            raise err

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SpillFile({self.directory!r}, pending_records={self.pending_records}, "
                f"pending_bytes={self.pending_bytes})")
