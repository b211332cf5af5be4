"""Liveness and retry decisions of a session: the stale-feed watchdog and the reconnect backoff.

Sans-IO: every method takes the time as an argument (a monotonic clock, seconds) and the backoff
takes its random source from the caller, so both are tested without sleeping.
"""

from __future__ import annotations

import random
from enum import Enum


class Failure(Enum):
    """Why a connection attempt failed or a connection ended; picks the backoff curve."""

    REFUSED = "refused"          # TCP refused/reset/unreachable: retried quickly (the exchange may be back soon)
    AUTH = "auth"                # HTTP 401/403 at the handshake: never retried in a tight loop
    OTHER = "other"              # anything else: a handshake timeout, a dropped or stale connection


class Backoff:
    """Capped exponential backoff with full jitter: delay = uniform(0, min(cap, initial * 2**n)).

    A refused connection uses the low cap ``refused_max`` so capture resumes within about a second
    of the exchange accepting again. An authentication failure keeps half of the delay as a floor
    ("equal jitter"), so a bad key is never retried faster than the curve says.
    """

    def __init__(self, initial: float = 0.25, maximum: float = 30.0, *, refused_max: float = 0.75,
                 rng: random.Random | None = None):
        if initial <= 0 or maximum <= 0:
            raise ValueError("backoff delays must be positive")
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.refused_max = min(refused_max, self.maximum)
        self.rng = rng or random.Random()
        self.attempt = 0

    def ceiling(self, failure: Failure = Failure.OTHER) -> float:
        """The upper bound of the next delay."""
        cap = self.refused_max if failure is Failure.REFUSED else self.maximum
        # 2**n overflows nothing in Python, but keep the exponent small for speed
        return min(cap, self.initial * (2 ** min(self.attempt, 60)))

    def next_delay(self, failure: Failure = Failure.OTHER) -> float:
        ceiling = self.ceiling(failure)
        self.attempt += 1
        if failure is Failure.AUTH:
            return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


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
