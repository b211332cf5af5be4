"""FlightWindow: the publisher's unacked-message limit follows the server's ack rate, within its bounds."""

from __future__ import annotations

import pytest

from ssmd_fast.sinks.flightwindow import SAMPLE, FlightWindow


def test_starts_at_window_min_and_waits_for_a_full_sample():
    w = FlightWindow(4096, 16384, 2.0)
    assert w.size == 4096
    w.sample(0, True, 10.0)                       # the first call only sets the origin
    w.sample(100_000, True, 10.0 + SAMPLE / 2)    # too soon: no rate yet
    assert w.size == 4096 and w.rate == 0.0


def test_a_fast_server_lets_it_grow_to_the_cap_and_a_stalled_one_brings_it_back_within_a_span():
    w = FlightWindow(4096, 16384, 2.0)
    w.sample(0, True, 0.0)
    w.sample(30_000, True, 0.2)                   # 150k acks/s x 0.5 s = 75,000: capped
    assert w.rate == pytest.approx(150_000) and w.size == 16384
    w.sample(30_000, True, 0.6)                   # no ack since: 30,000 in 0.6 s is still fast
    assert w.size == 16384
    for k in range(7, 17):                        # work waiting, still no ack: the span slides past the acks
        w.sample(30_000, True, k / 10)
    assert w.rate == 0 and w.size == 4096


def test_a_burst_of_acks_after_a_stall_is_averaged_over_the_span():
    w = FlightWindow(1000, 100_000, 2.0)          # a server that stalls 0.9 s, then acks 900 at once
    acked = 0
    for k in range(1, 31):
        acked += 900 if k % 10 == 0 else 0
        w.sample(acked, True, k / 10)
    assert w.rate == pytest.approx(900 / 1.0, rel=0.15) and w.size == 1000   # not 9,000/s x 0.5 s


def test_in_between_a_full_window_is_acked_in_a_quarter_of_ack_timeout():
    w = FlightWindow(1000, 100_000, 2.0)
    w.sample(0, True, 0.0)
    w.sample(4_000, True, 0.25)                   # 16,000 acks/s x 0.5 s
    assert w.size == 8000
    for k in range(2, 7):                         # then 4,000/s x 0.5 s, once the span holds only that
        w.sample(4_000 + (k - 1) * 1_000, True, k * 0.25)
    assert w.rate == pytest.approx(4_000) and w.size == 2000


def test_the_horizon_scales_with_ack_timeout():
    w = FlightWindow(10, 1_000_000, 8.0)          # 2 s of acks
    w.sample(0, True, 0.0)
    w.sample(2_000, True, 1.0)
    assert w.size == 4000


def test_idle_spans_keep_the_size_and_restart_the_measure():
    w = FlightWindow(4096, 16384, 2.0)
    w.sample(0, True, 0.0)
    w.sample(30_000, True, 0.1)
    assert w.size == 16384
    w.sample(30_000, False, 5.0)                  # nothing unacked or queued for 5 s: no measure
    assert w.size == 16384
    w.sample(33_000, True, 5.05)                  # work again: too soon after the idle origin
    assert w.size == 16384
    w.sample(45_000, True, 5.1)                   # 15,000 acks in 0.1 s since the idle tick at 5.0
    assert w.rate == pytest.approx(150_000) and w.size == 16384
    w.sample(45_000, False, 6.0)
    w.sample(45_500, True, 6.1)                   # a slow start after idling: its own measure
    assert w.rate == pytest.approx(5_000) and w.size == 4096


def test_a_window_set_below_window_min_is_a_hard_limit():
    w = FlightWindow(4096, 100, 2.0)              # transport.window: 100 with the default window_min
    assert w.size == 100
    w.sample(0, True, 0.0)
    w.sample(1_000_000, True, 1.0)
    assert w.size == 100
    w.sample(1_000_000, True, 2.0)
    assert w.size == 100


def test_window_min_equal_to_window_keeps_it_fixed():
    w = FlightWindow(4096, 4096, 2.0)
    for k in range(1, 6):
        w.sample(k * k * 50_000, True, k * 0.3)
        assert w.size == 4096
