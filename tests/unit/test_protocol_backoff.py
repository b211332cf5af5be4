"""Reconnect backoff and the stale-feed watchdog (sans-IO: the time is an argument)."""

from __future__ import annotations

import random

import pytest

from ssmd_fast.kalshi.watchdog import Backoff, Failure, Watchdog


def test_full_jitter_doubles_up_to_the_cap():
    b = Backoff(0.25, 30.0, rng=random.Random(1))
    ceilings = []
    for _ in range(12):
        ceilings.append(b.ceiling())
        d = b.next_delay()
        assert 0.0 <= d <= ceilings[-1]
    assert ceilings[:8] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert ceilings[-1] == 30.0


def test_full_jitter_spreads_over_the_whole_range():
    b = Backoff(1.0, 1.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(2000)]
    assert min(delays) < 0.05 and max(delays) > 0.95
    assert 0.45 < sum(delays) / len(delays) < 0.55


def test_reset_after_healthy_connection():
    b = Backoff(0.25, 30.0, rng=random.Random(2))
    for _ in range(6):
        b.next_delay()
    assert b.ceiling() == 16.0
    b.reset()
    assert b.ceiling() == 0.25


def test_refused_is_capped_low_for_its_first_seconds_so_capture_resumes_within_a_second():
    b = Backoff(0.25, 30.0, refused_max=0.75, refused_window=5.0, rng=random.Random(3))
    waited, delays = 0.0, []
    while waited < 5.0:                       # the window: refused delays adding up to 5 s
        assert b.ceiling(Failure.REFUSED) <= 0.75
        delays.append(b.next_delay(Failure.REFUSED))
        waited += delays[-1]
    assert max(delays) <= 0.75 and len(delays) >= 8
    assert b.ceiling(Failure.OTHER) == 30.0   # the other curve kept growing meanwhile


def test_refused_past_its_window_doubles_up_to_backoff_max():
    """A long outage (the exchange down, the network lost): not an attempt a second for as long as it
    lasts, but the normal curve, from refused_max up to backoff_max."""
    b = Backoff(0.25, 30.0, refused_max=0.75, refused_window=5.0, rng=random.Random(8))
    while b.refused_waited < 5.0:
        b.next_delay(Failure.REFUSED)
    ceilings = []
    for _ in range(8):
        ceilings.append(b.ceiling(Failure.REFUSED))
        assert b.next_delay(Failure.REFUSED) <= ceilings[-1]
    assert ceilings == [1.5, 3.0, 6.0, 12.0, 24.0, 30.0, 30.0, 30.0]
    # 24 s of outage: a handful of attempts, not 30
    b.reset()
    t, attempts = 0.0, 0
    while t < 24.0:
        t += b.next_delay(Failure.REFUSED)
        attempts += 1
    assert attempts <= 24
    # a healthy connection starts the fast window over
    b.reset()
    assert b.ceiling(Failure.REFUSED) == 0.25 and b.refused_waited == 0.0


def test_refused_window_over_many_seeds_covers_a_two_second_restart():
    """The F8 drill's exchange is away 2 s: the attempt that finds it back must still be a fast one."""
    for seed in range(200):
        b = Backoff(0.25, 30.0, refused_max=0.75, refused_window=5.0, rng=random.Random(seed))
        t = b.next_delay(Failure.OTHER)        # the dropped connection itself
        while t < 2.0:
            t += b.next_delay(Failure.REFUSED)
        assert t < 2.0 + 0.75, seed


def test_auth_failures_back_off_without_tight_loop():
    b = Backoff(0.25, 30.0, rng=random.Random(4))
    delays = [b.next_delay(Failure.AUTH) for _ in range(12)]
    ceilings = [min(30.0, 0.25 * 2 ** i) for i in range(12)]
    for d, c in zip(delays, ceilings, strict=True):
        assert c / 2 <= d <= c          # equal jitter: never below half the curve
    assert sum(delays[-4:]) >= 4 * 15.0  # reaches backoff_max territory


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_watchdog_stale_after_silence_and_pongs_count():
    w = Watchdog(stale_after=3.0, ping_interval=1.0)
    w.start(100.0)
    assert not w.is_stale(102.9, last_life=0.0)      # nothing yet, but the connect itself is life
    assert w.is_stale(103.1, last_life=0.0)
    # a pong (or any frame) at 102.5 keeps it alive until 105.5
    assert not w.is_stale(105.4, last_life=102.5)
    assert w.is_stale(105.6, last_life=102.5)
    assert w.silence(105.6, 102.5) == pytest.approx(3.1)


def test_watchdog_pings_every_interval():
    w = Watchdog(stale_after=10.0, ping_interval=2.0)
    w.start(0.0)
    due = [t for t in (0.5, 1.0, 1.99, 2.0, 2.5, 3.99, 4.0, 6.5) if w.ping_due(t)]
    assert due == [2.0, 4.0, 6.5]


def test_watchdog_pings_often_enough_for_stale_after():
    w = Watchdog(stale_after=6.0, ping_interval=5.0)
    assert w.ping_interval == 2.0
