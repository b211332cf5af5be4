"""Per-sid sequence checking: the compiled ``_sequencer`` or, with ``SSMD_FAST_NO_EXTENSIONS=1``
(or when it was not built), the pure-Python twin. Both expose the same API:

``Sequencer(conn="", strict_start=True)``, ``reset(conn)``, ``process(batch) -> new items to take``,
``controls`` (indices of control frames of the last batch), ``take() -> (events, snapshot_requests,
resynced_sids)``, ``last_seq(sid)``, ``invalid_sids()``, counters ``duplicates``, ``gaps``,
``suppressed``, ``resyncs`` and ``stats()``.
"""

from __future__ import annotations

import os

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    from ssmd_fast._sequencer_py import IMPLEMENTATION, ResyncTracker, Sequencer
else:
    try:
        from ssmd_fast._sequencer import IMPLEMENTATION, Sequencer
        from ssmd_fast._sequencer_py import ResyncTracker
    except ImportError:  # not built: the guard test in test_sequencer.py fails loudly
        from ssmd_fast._sequencer_py import IMPLEMENTATION, ResyncTracker, Sequencer

__all__ = ["IMPLEMENTATION", "ResyncTracker", "Sequencer"]
