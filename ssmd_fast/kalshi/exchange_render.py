"""Stamping and framing a batch of the exchange's timeline: the compiled ``_exchange_render`` or,
with ``SSMD_FAST_NO_EXTENSIONS=1`` (or when it was not built), the pure-Python twin. Both expose
``render(ids, bodies, blens, a, b, pre_tab, slot_tab, seqs, counts, record) -> (frames, payloads, n)``
(see ``_exchange_render_py.py``), ``ws_header(n, opcode=1)`` and ``IMPLEMENTATION``.
"""

from __future__ import annotations

import os

from ssmd_fast.kalshi._exchange_render_py import ws_header

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    from ssmd_fast.kalshi._exchange_render_py import IMPLEMENTATION, render
else:
    try:
        from ssmd_fast.kalshi._exchange_render import IMPLEMENTATION, render
    except ImportError:  # not built: the guard test in test_exchange_render.py fails loudly
        from ssmd_fast.kalshi._exchange_render_py import IMPLEMENTATION, render

__all__ = ["IMPLEMENTATION", "render", "ws_header"]
