"""FlightWindow: how many messages the JetStream publisher may have sent and not yet seen acked.

Two forces pull on the window. A small one costs CPU under a sustained backlog: the frames queued
behind it wait in the ring until acks free room, go out of cache meanwhile, and are read back from
memory when they are finally sent (docs/performance.md: 7-24% more CPU per message with 4,096 than with
16,384 in the saturated benchmark). A large one costs needless resends when the server is slow: a
message unacked ``ack_timeout`` after its send is resent, and a window the server needs longer than
that to ack resends its own tail.

So the window starts at ``transport.window_min`` and follows the ack rate the server actually shows:
at each of the publisher's ticks it is set to the messages the server acked per second over the last
``SPAN`` seconds (at least ``SAMPLE``) times a quarter of ``ack_timeout``, kept between ``window_min``
and ``transport.window``. A full window is then acked in about a quarter of the deadline at the rate
just measured, which leaves room for the server to slow down 4x before anything is resent; measuring
over a second, not a tick, keeps a burst of acks from a server that stalls and catches up from passing
for its speed. A slow or stalled server (no acks: an outage, a stream that stores nothing) brings it
back to ``window_min`` within a second; a server that acks more than ``window`` per quarter deadline
lets it reach ``transport.window`` at the first tick. A span with nothing unacked or queued says
nothing about the server and moves nothing: the window keeps its size and the measure starts again
with the work. It never goes below ``window_min``: that is what the publisher allowed before the
window adapted, and what a publisher that knows nothing of the server's rate starts with.
"""

from __future__ import annotations

from collections import deque

SAMPLE = 0.08         # seconds of history a measure needs at least (the publisher ticks every 0.1 s)
SPAN = 1.0            # seconds of history a measure covers at most
DRAIN_SHARE = 0.25    # a full window is acked within this share of ack_timeout at the measured rate


class FlightWindow:
    """The unacked-message limit (``size``), updated from the ring's ack count by ``sample``."""

    __slots__ = ("floor", "cap", "horizon", "size", "rate", "_points")

    def __init__(self, window_min: int, window: int, ack_timeout: float):
        self.cap = window
        self.floor = min(window_min, window)   # a window set below window_min is the limit: never above it
        self.horizon = ack_timeout * DRAIN_SHARE
        self.size = self.floor
        self.rate = 0.0                        # acks per second over the last measure
        self._points: deque[tuple[float, int]] = deque()   # (time, acks so far) at the ticks of this span

    def sample(self, acked: int, busy: bool, now: float) -> None:
        """The ring's total ack count at ``now``, and whether anything is unacked or queued."""
        points = self._points
        if not busy:
            points.clear()
        points.append((now, acked))
        if not busy or len(points) < 2:
            return                              # idle: no measure; the next one starts here
        while len(points) > 2 and points[1][0] <= now - SPAN:
            points.popleft()
        t0, acked0 = points[0]
        if now - t0 < SAMPLE:
            return
        self.rate = (acked - acked0) / (now - t0)
        self.size = max(self.floor, min(self.cap, int(self.rate * self.horizon)))
