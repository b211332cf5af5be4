"""Facade: the compiled framer (``_framing.pyx``) or its pure-Python twin (``_framing_py.py``, with its ack parser
in ``_framing_acks_py.py``).

``SSMD_FAST_NO_EXTENSIONS=1`` selects the twin; otherwise the compiled module is used when it is built
(``IMPLEMENTATION`` says which one loaded; a guard test fails when the compiled one silently did not).
The compiled framer reads the compiled FrameBatch's structs, so the switch follows the normalizer's.
"""

from __future__ import annotations

import os

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    from ssmd_fast.sinks import _framing_py as _impl
else:
    try:
        from ssmd_fast.sinks import _framing as _impl
    except ImportError:  # not built (or the normalizer is not): the twin, reported by IMPLEMENTATION
        from ssmd_fast.sinks import _framing_py as _impl

IMPLEMENTATION: str = _impl.IMPLEMENTATION
PublishRing = _impl.PublishRing
AckParser = _impl.AckParser
QUEUED, SENT, ACKED, RETIRED = _impl.QUEUED, _impl.SENT, _impl.ACKED, _impl.RETIRED
ORIGIN_LIVE, ORIGIN_SPILL = _impl.ORIGIN_LIVE, _impl.ORIGIN_SPILL
MODE_CORE, MODE_ACK, MODE_FAST = _impl.MODE_CORE, _impl.MODE_ACK, _impl.MODE_FAST
BATCH_OPEN, BATCH_CLOSING, BATCH_MAX, FLOW = _impl.BATCH_OPEN, _impl.BATCH_CLOSING, _impl.BATCH_MAX, _impl.FLOW

__all__ = ["ACKED", "BATCH_CLOSING", "BATCH_MAX", "BATCH_OPEN", "FLOW", "IMPLEMENTATION", "MODE_ACK", "MODE_CORE",
           "MODE_FAST", "ORIGIN_LIVE", "ORIGIN_SPILL", "QUEUED", "RETIRED", "SENT", "AckParser", "PublishRing"]
