"""FileSink: raw and/or normalized JSONL files, rotated hourly or daily by the batch's receive time.

Layout under ``storage.path`` (UTC): ``{YYYY-MM-DD}/{HH}.jsonl`` (raw frames) and
``{YYYY-MM-DD}/{HH}.norm.jsonl`` (normalized records); daily rotation writes ``day.jsonl`` /
``day.norm.jsonl``. A file is written as ``NAME.partial`` and renamed to ``NAME`` (after a fsync) when
its hour is over, on close, and on the next start if the process died. A finalized file is never
written again: a restart inside the same hour writes ``HH.1.jsonl``, then ``HH.2.jsonl``...

Status events (gaps, resyncs, storage errors) are written as ``{"type":"status",...}`` lines where
they happen: the normalizer counts them as "other" frames, so raw files stay valid input for
``ssmd-fast normalize`` and ``ssmd-fast exchange --replay``.

A write error (disk full, permissions) is logged once naming the file, reported as a ``storage``
status event (``on_event``: the other sinks and the metrics), and counted: the records that could not
be written are ``lost_records``. The sink keeps what it had buffered (at most about BUFFER_BYTES),
drops new data, retries every
``retry_interval`` seconds, and writes a ``storage`` gap marker saying how much is missing when the
disk takes writes again.
"""

from __future__ import annotations

import asyncio
import calendar
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ssmd_fast.config import StorageConfig
from ssmd_fast.errors import StorageError, makedirs_cause
from ssmd_fast.events import StatusEvent
from ssmd_fast.normalize import F_DUPLICATE

log = logging.getLogger(__name__)

BUFFER_BYTES = 1 << 20         # a file's user-space buffer is handed to the OS at this size
FLUSH_INTERVAL = 1.0           # the background task hands buffers to the OS this often
FINALIZE_GRACE = 10.0          # a file whose hour ended this long ago is finalized without new data
LOCK_NAME = ".ssmd-fast.lock"
_LEFTOVER_RE = re.compile(r"^(?P<unit>\d\d|day)(?:\.(?P<k>\d+))?(?P<norm>\.norm)?\.jsonl\.partial$")
_HOUR_NS = 3600 * 10**9
_DAY_NS = 24 * _HOUR_NS


@dataclass
class SinkReport:
    """What a sink did over its life, returned by ``close()``."""

    sink: str
    written: int = 0           # records written
    lost: int = 0              # records that could not be written
    detail: str = ""
    stats: dict = field(default_factory=dict)


def _os_error(what: str, path: str, exc: OSError) -> StorageError:
    err = StorageError(f"file sink {path}: {what}: {exc.strerror or exc} "
                       f"({errno.errorcode.get(exc.errno or 0, 'E?')})")
    err.path, err.errno = path, exc.errno
    return err


def file_name(unit: str, k: int, norm: bool) -> str:
    """``13.jsonl``, ``13.2.norm.jsonl``, ``day.jsonl``...: unit is ``HH`` or ``day``; k > 0 after restarts."""
    return f"{unit}{f'.{k}' if k else ''}{'.norm' if norm else ''}.jsonl"


def _free_name(directory: str, unit: str, norm: bool, start: int = 0) -> str:
    """The first name with neither a finalized file nor a partial one (a finalized file is never reused)."""
    k = start
    while True:
        name = file_name(unit, k, norm)
        if not os.path.exists(os.path.join(directory, name)) and \
                not os.path.exists(os.path.join(directory, name + ".partial")):
            return name
        k += 1


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finalize_partial(partial: str) -> str | None:
    """Finish a ``*.partial`` left by a crash: cut a torn last line, fsync, rename without overwriting.

    Returns the final path, or None when nothing was left (an empty file is removed)."""
    directory, name = os.path.split(partial)
    m = _LEFTOVER_RE.match(name)
    if m is None:
        raise ValueError(f"not a file sink partial file: {partial}")
    with open(partial, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        keep = size
        if size:  # find the last newline: the bytes after it are a line cut by the crash
            step = 1 << 16
            pos = size
            keep = 0
            while pos > 0:
                lo = max(0, pos - step)
                f.seek(lo)
                i = f.read(pos - lo).rfind(b"\n")
                if i >= 0:
                    keep = lo + i + 1
                    break
                pos = lo
        if keep < size:
            f.truncate(keep)
            log.warning("file sink %s: dropped %d bytes of a torn last line (a crash mid-write)",
                        partial, size - keep)
        os.fsync(f.fileno())
    if keep == 0:
        os.unlink(partial)
        return None
    unit, norm = m.group("unit"), bool(m.group("norm"))
    final = name[: -len(".partial")]
    if os.path.exists(os.path.join(directory, final)):
        final = _free_name(directory, unit, norm, int(m.group("k") or 0) + 1)
    os.rename(partial, os.path.join(directory, final))
    _fsync_dir(directory)
    return os.path.join(directory, final)


class _Output:
    """One output stream (raw or normalized): the current partial file, its buffer, its error state."""

    def __init__(self, sink: FileSink, norm: bool):
        self.sink, self.norm = sink, norm
        self.fmt = "normalized" if norm else "raw"
        self.fd = -1
        self.partial = ""           # path of the open .partial file
        self.start_ns = self.end_ns = 0
        self.unit = ""
        self.day_dir = ""
        self.buf = bytearray()
        self.written = 0            # bytes of the open file on the OS side
        self.records = 0            # records accepted (buffered or written)
        self.lost = 0
        self.error: StorageError | None = None
        self.failed_since_ns = 0
        self.lost_at_failure = 0
        self.retry_at = 0.0
        self.finalized: list[str] = []

    # -- time slots

    def _slot(self, ts: int) -> tuple[int, int, str, str]:
        day_start = ts - ts % _DAY_NS
        date = time.strftime("%Y-%m-%d", time.gmtime(day_start // 10**9))
        if self.sink.daily:
            return day_start, day_start + _DAY_NS, date, "day"
        start = ts - ts % _HOUR_NS
        return start, start + _HOUR_NS, date, f"{(start - day_start) // _HOUR_NS:02d}"

    def write(self, data: bytes, ts: int, lines: int, is_record: bool = True) -> None:
        if self.error is not None and not self._retry(ts):
            if is_record:
                self.lost += lines
            return
        if not self.start_ns <= ts < self.end_ns:
            try:
                self._switch(ts)
            except StorageError:
                if is_record:
                    self.lost += lines
                return
        self.buf += data
        if is_record:
            self.records += lines
        if len(self.buf) >= BUFFER_BYTES:
            try:
                self.drain()
            except StorageError:
                pass  # the data stays buffered (accepted); _fail has reported it

    # -- files

    def _switch(self, ts: int) -> None:
        """Finalize the current file and open the partial file of ts's hour (or day)."""
        self.close_file()
        start, end, date, unit = self._slot(ts)
        day_dir = os.path.join(self.sink.path, date)
        try:
            os.makedirs(day_dir, exist_ok=True)
            name = _free_name(day_dir, unit, self.norm)
            partial = os.path.join(day_dir, name + ".partial")
            self.fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._fail("cannot create", os.path.join(day_dir, file_name(unit, 0, self.norm)), exc)
        self.partial, self.day_dir, self.unit = partial, day_dir, unit
        self.start_ns, self.end_ns, self.written = start, end, 0

    def drain(self) -> None:
        """Hand the buffer to the OS; on an error keep whole lines on disk and the buffer for a retry."""
        if not self.buf or self.fd < 0:
            return
        with memoryview(self.buf) as view:
            done = 0
            try:
                while done < len(view):
                    done += os.write(self.fd, view[done:])
            except OSError as exc:
                try:
                    os.ftruncate(self.fd, self.written)
                except OSError:
                    pass
                raise self._fail("cannot write", self.partial, exc)
        self.written += len(self.buf)
        self.buf = bytearray()

    def close_file(self) -> None:
        """Drain, fsync, close and rename the partial file to its final name. Raises StorageError."""
        if self.fd < 0:
            return
        self.drain()
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise self._fail("cannot fsync", self.partial, exc)
        os.close(self.fd)
        self.fd = -1
        self.start_ns = self.end_ns = 0
        if self.written == 0:
            os.unlink(self.partial)
            return
        final = self.partial[: -len(".partial")]
        if os.path.exists(final):  # someone wrote it meanwhile: never overwrite
            final = os.path.join(self.day_dir, _free_name(self.day_dir, self.unit, self.norm, 1))
        try:
            os.rename(self.partial, final)
            _fsync_dir(self.day_dir)
        except OSError as exc:
            raise self._fail("cannot rename", self.partial, exc)
        self.finalized.append(final)

    # -- errors

    def _fail(self, what: str, path: str, exc: OSError) -> StorageError:
        err = _os_error(what, path, exc)
        self.retry_at = time.monotonic() + self.sink.retry_interval
        if self.error is None:
            self.error = err
            self.failed_since_ns = time.time_ns()
            self.lost_at_failure = self.lost
            self.sink._failed(self, err)
        return err

    def _retry(self, ts: int) -> bool:
        """True when the disk takes writes again (the gap marker is then written)."""
        if time.monotonic() < self.retry_at:
            return False
        try:  # the operation that failed: writing the kept buffer, or creating the file
            if self.fd >= 0:
                self.drain()
            else:
                self._switch(ts)
        except StorageError:
            return False
        err, self.error = self.error, None
        self.sink._recovered(self, err)
        return True



class FileSink:
    """The sink interface of docs/design.md "Sinks", writing JSONL files (see the module docstring)."""

    name = "file"

    def __init__(self, cfg: StorageConfig, *, on_event: Callable[[StatusEvent], None] | None = None,
                 retry_interval: float = 5.0, flush_interval: float = FLUSH_INTERVAL,
                 clock: Callable[[], int] = time.time_ns):
        self.cfg = cfg
        self.path = os.path.abspath(cfg.path)
        self.daily = cfg.rotate == "daily"
        self.on_event = on_event
        self.retry_interval = retry_interval
        self.flush_interval = flush_interval
        self.clock = clock
        self.raw = _Output(self, norm=False) if cfg.format in ("raw", "both") else None
        self.norm = _Output(self, norm=True) if cfg.format in ("normalized", "both") else None
        self.outputs = [o for o in (self.raw, self.norm) if o is not None]
        self.errors = 0
        self.events_written = 0
        self.recovered_leftovers: list[str] = []
        self._lock_fd = -1
        self._task: asyncio.Task | None = None
        self._closed = False

    # ------------------------------------------------------------------ the sink interface

    def submit(self, batch, conn: str) -> None:
        """Copy the batch's lines into the buffers (no syscall unless a buffer is full)."""
        if self._closed:
            return
        ts = batch.recv_ts or self.clock()
        # line counts from the entries: no scan of the bytes for newlines. The raw archive keeps the book
        # deltas withheld while their book resyncs (F_SUPPRESSED: frames the exchange sent, whose
        # normalized records wait for the fresh snapshot), as the NATS raw subjects do; only duplicates are
        # left out
        if self.raw is not None:
            n_raw = batch.jsonl_lines(F_DUPLICATE)[0]
            if n_raw:
                self.raw.write(batch.raw_jsonl(F_DUPLICATE), ts, n_raw)
        if self.norm is not None:
            n_rec = batch.jsonl_lines()[1]
            if n_rec:
                self.norm.write(batch.records_jsonl(), ts, n_rec)

    def submit_event(self, event: StatusEvent) -> None:
        """A status event becomes a ``{"type":"status",...}`` line (a gap marker) in every output."""
        if self._closed:
            return
        line = event.to_json() + b"\n"
        for out in self.outputs:
            out.write(line, event.time_ns, 1, is_record=False)
        self.events_written += 1

    async def start(self) -> None:
        """Take the directory lock, finalize files a crash left behind, start the flush task."""
        try:
            os.makedirs(self.path, exist_ok=True)
            self._lock_fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    0o644)
        except OSError as exc:
            raise _os_error("cannot open the storage directory", self.path, makedirs_cause(exc)) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StorageError(f"file sink {self.path}: in use by another process (lock held)")
        self.recovered_leftovers = self.finalize_leftovers()
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="file-sink-flush")

    @property
    def tasks(self) -> list[asyncio.Task]:
        """The background task ``start`` made: the runner stops the run when it fails."""
        return [self._task] if self._task is not None else []

    def finalize_leftovers(self) -> list[str]:
        done = []
        for day in sorted(os.listdir(self.path)):
            day_dir = os.path.join(self.path, day)
            if not os.path.isdir(day_dir):
                continue
            for name in sorted(os.listdir(day_dir)):
                if _LEFTOVER_RE.match(name):
                    try:
                        final = finalize_partial(os.path.join(day_dir, name))
                    except OSError as exc:
                        raise _os_error("cannot finalize a leftover file", os.path.join(day_dir, name), exc)
                    if final:
                        log.info("file sink: finalized %s left by an earlier run", final)
                        done.append(final)
        return done

    async def _flusher(self) -> None:
        """Hand buffers to the OS every flush_interval; finalize files whose hour is over."""
        while True:
            await asyncio.sleep(self.flush_interval)
            self.tick()

    def tick(self) -> None:
        now = self.clock()
        for out in self.outputs:
            if out.error is not None and not out._retry(now):
                continue
            try:
                if out.fd >= 0 and now >= out.end_ns + int(FINALIZE_GRACE * 1e9):
                    out.close_file()
                else:
                    out.drain()
            except StorageError:
                pass  # reported by _fail

    async def close(self, timeout: float = 10.0) -> SinkReport:
        """Drain, fsync and finalize every file; release the lock."""
        if self._closed:
            return self.report()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for out in self.outputs:
            if out.error is not None:
                out.retry_at = 0.0
                out._retry(self.clock())
            try:
                out.close_file()
            except StorageError:
                kept = out.buf.count(b"\n")  # what could not reach the disk at all
                out.lost += kept
                out.records = max(0, out.records - kept)
                out.buf = bytearray()
                if out.fd >= 0:
                    os.close(out.fd)
                    out.fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        return self.report()

    def report(self) -> SinkReport:
        lost = sum(o.lost for o in self.outputs)
        detail = "" if not lost else f"{lost} records could not be written (see the storage events)"
        return SinkReport(self.name, written=sum(o.records for o in self.outputs), lost=lost, detail=detail,
                          stats=self.stats())

    def stats(self) -> dict:
        return {
            "records": {o.fmt: o.records for o in self.outputs},
            "lost_records": sum(o.lost for o in self.outputs),
            "errors": self.errors,
            "events": self.events_written,
            "files": sum(len(o.finalized) for o in self.outputs),
            "failing": any(o.error is not None for o in self.outputs),
        }

    def samples(self):
        """Metrics source (ssmd_fast.metrics): file_records{format}, file_errors, file_lost_records."""
        from ssmd_fast.metrics import Sample

        for o in self.outputs:
            yield Sample("file_records", o.records, {"format": o.fmt})
        yield Sample("file_errors", self.errors)
        yield Sample("file_lost_records", sum(o.lost for o in self.outputs))

    # ------------------------------------------------------------------ error reporting

    def _emit(self, event: StatusEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # another sink's trouble must not break this one
                log.exception("file sink: on_event failed")

    def _failed(self, out: _Output, err: StorageError) -> None:
        self.errors += 1
        log.error("%s; %s records are dropped until it can write again (retry every %g s)",
                  err, out.fmt, self.retry_interval)
        self._emit(StatusEvent("storage", conn="", detail=f"{err}: {out.fmt} records from here on are "
                                                          f"missing from the files until it recovers"))

    def _recovered(self, out: _Output, err: StorageError | None) -> None:
        lost = out.lost - out.lost_at_failure
        since = out.failed_since_ns
        detail = (f"file sink recovered after '{err}': {lost} {out.fmt} records lost between "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since // 10**9))} and now")
        log.warning("%s", detail)
        event = StatusEvent("storage", conn="", detail=detail)
        out.buf += event.to_json() + b"\n"  # the gap marker, where the data is missing
        self._emit(event)


def unix_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """UTC wall time as nanoseconds (tests and tools pick file slots with it)."""
    return calendar.timegm((year, month, day, hour, minute, second)) * 10**9
