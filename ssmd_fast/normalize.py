"""The normalizer facade: the compiled `ssmd_fast._normalize` unless SSMD_FAST_NO_EXTENSIONS=1 is set
or it did not build, else the pure-Python twin `ssmd_fast._normalize_py` (the same API and bytes).

``COMPILED_MISSING`` is True when the compiled module was wanted but could not be imported: a guard test
fails on it, so a broken build never passes silently as "python".
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ssmd_fast import _normalize_py as _twin

_MODULES = {"cython": "ssmd_fast._normalize", "python": "ssmd_fast._normalize_py"}


def load_implementation(name: str) -> ModuleType:
    """The normalizer module for ``"cython"`` or ``"python"`` (ImportError when it is not built)."""
    try:
        module_name = _MODULES[name]
    except KeyError:
        raise ValueError(f"unknown implementation {name!r} (expected 'cython' or 'python')") from None
    return importlib.import_module(module_name)


def _extensions_disabled() -> bool:
    return os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")


COMPILED_MISSING = False
COMPILED_IMPORT_ERROR: str | None = None
if _extensions_disabled():
    _impl = _twin
else:
    try:
        _impl = load_implementation("cython")
    except ImportError as exc:
        _impl = _twin
        COMPILED_MISSING = True
        COMPILED_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

IMPLEMENTATION = "cython" if _impl is not _twin else "python"
FrameBatch = _impl.FrameBatch
normalize_frame = _impl.normalize_frame

# Plain data, identical in both implementations (the .pxd enums are not Python-visible by themselves).
from ssmd_fast._normalize_py import (  # noqa: E402
    CONTROL_TYPES,
    F_DROP,
    F_DUPLICATE,
    F_GAP,
    F_SUPPRESSED,
    K_BOOK_DELTA,
    K_BOOK_SNAPSHOT,
    K_ERROR,
    K_EVENT_LIFECYCLE,
    K_MARKET_LIFECYCLE,
    K_NONE,
    K_OK,
    K_SUBSCRIBED,
    K_TICKER,
    K_TRADE,
    K_UNSUBSCRIBED,
    MAX_FRAME,
    OUT_CONTROL,
    OUT_INVALID,
    OUT_OTHER,
    OUT_RECORD,
    R_COUNT,
    R_DEPTH,
    R_DUPLICATE_KEY,
    R_JSON,
    R_MISSING,
    R_NONE,
    R_RANGE,
    R_SHAPE,
    R_SIZE,
    R_TICKER,
    R_TYPE,
    R_UTF8,
    REASONS,
    RECORD_TYPES,
)

__all__ = [
    "COMPILED_MISSING", "CONTROL_TYPES", "F_DROP", "F_DUPLICATE", "F_GAP", "F_SUPPRESSED", "FrameBatch",
    "IMPLEMENTATION", "K_BOOK_DELTA", "K_BOOK_SNAPSHOT", "K_ERROR", "K_EVENT_LIFECYCLE",
    "K_MARKET_LIFECYCLE", "K_NONE", "K_OK", "K_SUBSCRIBED", "K_TICKER", "K_TRADE", "K_UNSUBSCRIBED",
    "MAX_FRAME", "OUT_CONTROL", "OUT_INVALID", "OUT_OTHER", "OUT_RECORD", "R_COUNT", "R_DEPTH",
    "R_DUPLICATE_KEY", "R_JSON", "R_MISSING", "R_NONE", "R_RANGE", "R_SHAPE", "R_SIZE", "R_TICKER",
    "R_TYPE", "R_UTF8", "REASONS", "RECORD_TYPES", "load_implementation", "normalize_frame",
]
