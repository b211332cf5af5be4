"""BackgroundDisk: the spill's disk work that the event loop must not wait for, in a thread of its own.

Why: the spill is appended to, consumed and its cursor advanced on the event loop that also reads the
WebSocket, and some disk calls wait for the device or the filesystem:

- a fsync waits for the disk (about 2 ms here, up to 6 ms; tens of ms on a busy network volume). While
  NATS is away the spill fsyncs every ``fsync_every`` records or ``fsync_interval`` (20 times a second
  by default); during a replay the cursor is fsynced as often. Those periodic fsyncs only bound what a
  power failure can take: what was handed to the OS survives a kill -9 either way;
- deleting a consumed 64 MiB segment took 46-55 ms on this VM's ext4 (the filesystem frees its extents
  inside ``unlink``), once per segment replayed.

So the loop only asks (``fsync``, ``unlink``) and a daemon thread does it. A fsync works on a duplicate
of the caller's descriptor, which closing the file meanwhile does not affect. One fsync per ``kind``
(the segment, the cursor) waits at most: a later request replaces the waiting one, as a fsync covers
everything written before it starts. Deletions are all served, in order. Work the caller must see
complete (a segment's last fsync before it is closed, ``flush(fsync=True)``, ``close``) stays
synchronous in ``SpillFile``; ``stop`` serves everything requested before the thread ends.
"""

from __future__ import annotations

import collections
import logging
import os
import threading

from ssmd_fast.sinks.spill_recovery import _os_error

log = logging.getLogger("ssmd_fast.sinks.spill")


class BackgroundDisk:
    """fsyncs and deletions in a daemon thread, started by the first request."""

    def __init__(self, name: str):
        self.name = name
        self._cond = threading.Condition()
        self._fsyncs: dict[str, int] = {}    # kind -> a duplicated descriptor waiting for its fsync
        self._unlinks: collections.deque[str] = collections.deque()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.done: collections.Counter[str] = collections.Counter()    # fsyncs completed, by kind
        self.unlinked = 0
        self._errors: dict[str, OSError] = {}

    def fsync(self, fd: int, kind: str) -> None:
        """Start a fsync of ``fd``'s file and return at once. Raises OSError if ``fd`` cannot be duplicated."""
        dup = os.dup(fd)
        with self._cond:
            if self._stopping:
                os.close(dup)
                return
            old = self._fsyncs.get(kind, -1)
            self._fsyncs[kind] = dup
            self._wake()
        if old >= 0:
            os.close(old)

    def unlink(self, path: str) -> None:
        """Delete ``path`` (a missing file is fine; another error is logged: the space stays taken)."""
        with self._cond:
            if not self._stopping:
                self._unlinks.append(path)
                self._wake()
                return
        self._unlink(path)       # stopped: no thread will come for it

    def take_error(self, kind: str) -> OSError | None:
        """The first fsync error of that kind since the last call (the caller decides what it means)."""
        with self._cond:
            return self._errors.pop(kind, None)

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is requested or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._fsyncs and not self._unlinks and not self._busy, timeout)

    def stop(self) -> None:
        """Serve what was requested, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _wake(self) -> None:     # with self._cond held
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"spill-disk {self.name}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    @staticmethod
    def _unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s", _os_error("cannot delete consumed segment", path, exc))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._fsyncs or self._unlinks or self._stopping)
                if self._unlinks:
                    job: tuple[str, str | int] = ("unlink", self._unlinks.popleft())
                elif self._fsyncs:
                    kind = next(iter(self._fsyncs))
                    job = (kind, self._fsyncs.pop(kind))
                else:
                    return
                self._busy = True
            kind, what = job
            err: OSError | None = None
            if kind == "unlink":
                self._unlink(what)
            else:
                try:
                    os.fsync(what)
                except OSError as exc:
                    err = exc
                finally:
                    os.close(what)
            with self._cond:
                self._busy = False
                if kind == "unlink":
                    self.unlinked += 1
                elif err is None:
                    self.done[kind] += 1
                else:
                    self._errors.setdefault(kind, err)
                self._cond.notify_all()
