"""Facade: the spill's record format, compiled (``_spill.pyx``) or its pure-Python twin (``_spill_py.py``):
the append path (``SpillWriter``, ``encode_record``), the read path (``parse_records``) and the recovery
scan (``scan_records``, ``next_valid``).

``SSMD_FAST_NO_EXTENSIONS=1`` selects the twin; otherwise the compiled module is used when it is built
(``IMPLEMENTATION`` says which one loaded; a guard test in ``tests/unit/test_spill.py`` fails when the
compiled one silently did not).
"""

from __future__ import annotations

import os

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    from ssmd_fast.sinks import _spill_py as _impl
else:
    try:
        from ssmd_fast.sinks import _spill as _impl
    except ImportError:  # not built: the twin, reported by IMPLEMENTATION
        from ssmd_fast.sinks import _spill_py as _impl
from ssmd_fast.sinks._spill_py import HEADER, HEADER_SIZE

IMPLEMENTATION: str = _impl.IMPLEMENTATION
SpillWriter = _impl.SpillWriter
encode_record = _impl.encode_record
parse_records = _impl.parse_records
scan_records = _impl.scan_records
next_valid = _impl.next_valid

__all__ = ["HEADER", "HEADER_SIZE", "IMPLEMENTATION", "SpillWriter", "encode_record", "next_valid", "parse_records",
           "scan_records"]
