"""The picows listener of the hot path: the compiled ``_listener`` or, with
``SSMD_FAST_NO_EXTENSIONS=1`` (or when it was not built), the pure-Python twin.

``BatchListener(batch, on_batch, max_message_size=MAX_MESSAGE_SIZE)``: a picows ``WSListener`` that adds
every text frame of a socket read to ``batch`` and calls ``on_batch(batch)`` once per read (a text message
above ``max_message_size`` as an invalid frame, reason ``size``, its payload skipped, the connection kept). Counters:
``frames``, ``bytes``, ``batches``, ``binary_dropped``, ``pings``, ``pongs``, ``fragmented``,
``oversized``; ``last_frame_at`` (monotonic seconds of the last frame of any type, pongs included);
``close_code``/``close_reason`` when the peer or the listener closed the connection.
"""

from __future__ import annotations

import os

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    from ssmd_fast._listener_py import IMPLEMENTATION, MAX_MESSAGE_SIZE, BatchListener
else:
    try:
        from ssmd_fast._listener import IMPLEMENTATION, MAX_MESSAGE_SIZE, BatchListener
    except ImportError:  # not built: the guard test in test_listener.py fails loudly
        from ssmd_fast._listener_py import IMPLEMENTATION, MAX_MESSAGE_SIZE, BatchListener

__all__ = ["IMPLEMENTATION", "MAX_MESSAGE_SIZE", "BatchListener"]
