"""A time-boxed fuzz run: 100,000 mutated frames through the compiled normalizer, every 10th one also
through the Python twin. No exception may escape (bad input is an OUT_INVALID entry, or InvalidFrame
from normalize_frame) and the sampled entries must be equal. `benchmarks/fuzz_normalizer.py` runs the
same engine over a million frames in child processes and counts crashes and RSS growth."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

import ssmd_fast

pytestmark = [pytest.mark.slow, pytest.mark.twin]

ROOT = Path(__file__).resolve().parents[2]
PYX = Path(ssmd_fast.__file__).parent / "_normalize.pyx"
NO_EXTENSIONS = os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_normalizer", ROOT / "benchmarks" / "fuzz_normalizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(NO_EXTENSIONS or not PYX.exists(), reason="the compiled normalizer is not selected")
@pytest.mark.timeout(600)
def test_fuzz_100k_mutated_frames():
    result = _fuzz_module().run_chunk((20260714, 100_000, 10, 1000))
    assert result["exceptions"] == 0, result["examples"]
    assert result["differences"] == 0, result["examples"]
    assert result["executions"] == 100_000
    assert result["compared"] == 10_000
