"""BackgroundSync: the spill's periodic fsync, in a thread of its own instead of on the event loop.

Why: a fsync waits for the disk (about 2 ms here, up to 6 ms; tens of ms on a busy network volume), and
the spill is appended to on the event loop that also reads the WebSocket. While NATS is away the spill
fsyncs every ``fsync_every`` records or ``fsync_interval`` (20 times a second by default), so a slow
disk would hold the reader back for a good part of the time. That periodic fsync only bounds what a
power failure can take: records handed to the OS survive a kill -9 either way. So the loop only starts
it (``request``): a thread fsyncs a duplicate of the segment's descriptor, which closing the segment
meanwhile does not affect. A request made while one is running waits and is served next (one at most:
a later one replaces it, as a fsync covers everything written before it starts). Syncs the caller must
see complete (a segment's last before it is closed, ``flush(fsync=True)``, ``close``) stay synchronous
in ``SpillFile``.
"""

from __future__ import annotations

import os
import threading


class BackgroundSync:
    """One fsync at a time in a daemon thread, started by the first ``request``."""

    def __init__(self, name: str):
        self.name = name
        self._cond = threading.Condition()
        self._pending = -1           # a duplicated descriptor to fsync next, or -1
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.done = 0                # fsyncs completed
        self._error: OSError | None = None

    def request(self, fd: int) -> None:
        """Start a fsync of ``fd``'s file and return at once. Raises OSError if ``fd`` cannot be duplicated."""
        dup = os.dup(fd)
        with self._cond:
            if self._stopping:
                os.close(dup)
                return
            old, self._pending = self._pending, dup
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"spill-fsync {self.name}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        if old >= 0:
            os.close(old)

    def take_error(self) -> OSError | None:
        """The first fsync error since the last call (the caller turns it into its error state)."""
        with self._cond:
            err, self._error = self._error, None
        return err

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is requested or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending < 0 and not self._busy, timeout)

    def stop(self) -> None:
        """Serve what was requested, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending >= 0 or self._stopping)
                if self._pending < 0:
                    return
                fd, self._pending, self._busy = self._pending, -1, True
            err: OSError | None = None
            try:
                os.fsync(fd)
            except OSError as exc:
                err = exc
            finally:
                os.close(fd)
            with self._cond:
                self._busy = False
                if err is None:
                    self.done += 1
                elif self._error is None:
                    self._error = err
                self._cond.notify_all()
