"""logs.Throttle: a message that repeats fast is logged at most once per interval, and the next line
says how many were held back."""

from __future__ import annotations

import logging

from ssmd_fast.logs import Throttle


def test_repeats_within_the_interval_are_held_back_and_counted(caplog):
    now = [100.0]
    throttle = Throttle(logging.getLogger("throttle-test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="throttle-test"):
        for step in range(25):                      # a flap every 0.5 s for 12 s
            now[0] = 100.0 + step * 0.5
            throttle.log(logging.WARNING, "spilling to %s: %s", "/spill", f"burst {step}")
        throttle.log(logging.INFO, "back to the memory queue")   # another message: its own interval
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["spilling to /spill: burst 0", "spilling to /spill: burst 20 (19 more in the last 10 s)",
                     "back to the memory queue"]
