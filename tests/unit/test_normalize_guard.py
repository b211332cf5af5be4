"""The compiled normalizer is the one in use whenever it should be: a broken or missing build must
fail the suite, not pass it silently on the pure-Python twin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ssmd_fast
import ssmd_fast.normalize as facade

pytestmark = pytest.mark.twin

PYX = Path(ssmd_fast.__file__).parent / "_normalize.pyx"
NO_EXTENSIONS = os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")


@pytest.mark.skipif(NO_EXTENSIONS or not PYX.exists(), reason="the compiled normalizer is not expected")
def test_compiled_normalizer_is_loaded():
    assert not facade.COMPILED_MISSING, facade.COMPILED_IMPORT_ERROR
    assert facade.IMPLEMENTATION == "cython"
    from ssmd_fast import _normalize

    assert _normalize.IMPLEMENTATION == "cython"
    assert facade.FrameBatch is _normalize.FrameBatch
    assert facade.normalize_frame is _normalize.normalize_frame
    assert Path(_normalize.__file__).suffix in (".so", ".pyd")


@pytest.mark.skipif(not NO_EXTENSIONS, reason="SSMD_FAST_NO_EXTENSIONS is not set")
def test_twin_is_used_when_extensions_are_disabled():
    from ssmd_fast import _normalize_py

    assert facade.IMPLEMENTATION == "python"
    assert facade.FrameBatch is _normalize_py.FrameBatch


@pytest.mark.skipif(NO_EXTENSIONS or not PYX.exists(), reason="the compiled normalizer is not expected")
def test_compiled_constants_match_the_twin():
    from ssmd_fast import _normalize, _normalize_py

    names = [n for n in dir(_normalize_py) if n.split("_")[0] in ("OUT", "K", "R", "F") and n.isupper()]
    assert len(names) >= 30
    for name in names:
        assert getattr(_normalize, name) == getattr(_normalize_py, name), name
    for name in ("RECORD_TYPES", "CONTROL_TYPES", "REASONS", "MAX_FRAME", "MAX_DEPTH"):
        assert getattr(_normalize, name) == getattr(_normalize_py, name), name
