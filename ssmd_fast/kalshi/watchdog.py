"""Liveness and retry decisions of a session: the stale-feed watchdog and the reconnect backoff.

Sans-IO: every method takes the time as an argument (a monotonic clock, seconds) and the backoff
takes its random source from the caller, so both are tested without sleeping.
"""

from __future__ import annotations

import random
from enum import Enum


class Failure(Enum):
    """Why a connection attempt failed or a connection ended; picks the backoff curve."""

    REFUSED = "refused"          # TCP refused/reset/unreachable: retried quickly at first (the exchange may be back soon)
    AUTH = "auth"                # HTTP 401/403 at the handshake: never retried in a tight loop
    OTHER = "other"              # anything else: a handshake timeout, a dropped or stale connection


class Backoff:
    """Capped exponential backoff with full jitter: delay = uniform(0, min(cap, initial * 2**n)).

    Refused connections (the exchange restarting, a brief network loss) are retried within
    ``refused_max`` while the refused delays handed out since the last ``reset()`` add up to less than
    ``refused_window`` seconds, so capture resumes within about a second of a short outage's end. Past
    that window the outage is a long one: refused attempts double from ``refused_max`` up to
    ``maximum`` like the others, instead of hammering the exchange (or a dead network) with more than
    one attempt a second for as long as it lasts. An authentication failure keeps half of the delay as a
    floor ("equal jitter"), so a bad key is never retried faster than the curve says.
    """

    def __init__(self, initial: float = 0.25, maximum: float = 30.0, *, refused_max: float = 0.75,
                 refused_window: float = 5.0, rng: random.Random | None = None):
        if initial <= 0 or maximum <= 0:
            raise ValueError("backoff delays must be positive")
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.refused_max = min(refused_max, self.maximum)
        self.refused_window = refused_window
        self.rng = rng or random.Random()
        self.attempt = 0
        self.refused_waited = 0.0     # the refused delays handed out since reset()
        self.refused_slow = 0         # refused attempts since then past the window

    def ceiling(self, failure: Failure = Failure.OTHER) -> float:
        """The upper bound of the next delay."""
        if failure is Failure.REFUSED:
            if self.refused_waited < self.refused_window:
                cap = self.refused_max
            else:       # a long outage: the curve goes on from refused_max
                return min(self.maximum, self.refused_max * (2 ** min(self.refused_slow + 1, 60)))
        else:
            cap = self.maximum
        # 2**n overflows nothing in Python, but keep the exponent small for speed
        return min(cap, self.initial * (2 ** min(self.attempt, 60)))

    def next_delay(self, failure: Failure = Failure.OTHER) -> float:
        ceiling = self.ceiling(failure)
        self.attempt += 1
        if failure is Failure.AUTH:
            return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        delay = self.rng.uniform(0.0, ceiling)
        if failure is Failure.REFUSED:
            if self.refused_waited >= self.refused_window:
                self.refused_slow += 1
            self.refused_waited += delay
        return delay

    def reset(self) -> None:
        self.attempt = 0
        self.refused_waited = 0.0
        self.refused_slow = 0


class Watchdog:
    """Declares a feed stale after ``stale_after`` seconds without any frame, and schedules our pings.

    Our own pings every ``ping_interval`` make the peer answer with a pong, and a pong counts as life:
    a quiet market is not a frozen feed, a peer that answers nothing is. The interval is capped at a
    third of ``stale_after`` so that a live peer's pongs always come in time.
    """

    def __init__(self, stale_after: float = 15.0, ping_interval: float = 5.0):
        if stale_after <= 0 or ping_interval <= 0:
            raise ValueError("stale_after and ping_interval must be positive")
        self.stale_after = stale_after
        self.ping_interval = min(ping_interval, stale_after / 3)
        self.started_at = 0.0
        self.last_ping = 0.0

    def start(self, now: float) -> None:
        self.started_at = now
        self.last_ping = now

    def silence(self, now: float, last_life: float) -> float:
        """Seconds since the last sign of life (a frame, a pong, or the connect itself)."""
        return now - max(last_life, self.started_at)

    def is_stale(self, now: float, last_life: float) -> bool:
        return self.silence(now, last_life) > self.stale_after

    def ping_due(self, now: float) -> bool:
        """True when a ping is due; the caller sends it (the due time moves on)."""
        if now - self.last_ping >= self.ping_interval:
            self.last_ping = now
            return True
        return False
