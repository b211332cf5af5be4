"""Regression benchmarks of the compiled normalizer (pytest-benchmark), per record type and on the mixed
generated corpus. Cross-library comparisons live in compare_normalizers.py.

    .venv/bin/python -m pytest benchmarks/test_bench_normalize.py --benchmark-columns=min,median,mean

Each round normalizes a block of frames into a reused FrameBatch (reset first); extra_info carries the
frame count and the ns per frame of the best round.
"""

from __future__ import annotations

import collections
import os

import pytest

if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
    pytest.skip("benchmarks of the compiled normalizer", allow_module_level=True)

from ssmd_fast import _normalize  # noqa: E402
from ssmd_fast.kalshi.generator import generate_session  # noqa: E402

BLOCK = 4096
TYPES = ("ticker", "orderbook_delta", "trade", "orderbook_snapshot", "market_lifecycle_v2", "event_lifecycle")


def _by_type() -> dict[str, list[bytes]]:
    by = collections.defaultdict(list)
    for era, seed in (("both", 1), ("current", 2)):
        for f in generate_session(60_000, seed=seed, markets=100, era=era):
            t = f[f.index(b'"type":"') + 8:]
            by[t[:t.index(b'"')].decode()].append(f)
    by["mixed"] = list(generate_session(BLOCK * 4, seed=3, markets=20, era="both"))[-BLOCK:]
    return by


CORPUS = _by_type()


def _block(kind: str) -> list[bytes]:
    frames = CORPUS[kind]
    return frames[len(frames) - BLOCK:] if len(frames) > BLOCK else frames


@pytest.mark.parametrize("kind", (*TYPES, "mixed"))
def test_add_lines(benchmark, kind):
    frames = _block(kind)
    buf = b"\n".join(frames) + b"\n"
    batch = _normalize.FrameBatch()

    def run():
        batch.reset()
        batch.add_lines(buf)

    benchmark(run)
    assert batch.counts()["invalid"] == {}
    benchmark.extra_info.update(frames=len(frames), mean_bytes=round(len(buf) / len(frames)),
                                ns_per_frame_min=round(benchmark.stats.stats.min / len(frames) * 1e9))


def test_add_python_loop_mixed(benchmark):
    frames = _block("mixed")
    batch = _normalize.FrameBatch()

    def run():
        batch.reset()
        add = batch.add
        for f in frames:
            add(f)

    benchmark(run)
    benchmark.extra_info.update(frames=len(frames),
                                ns_per_frame_min=round(benchmark.stats.stats.min / len(frames) * 1e9))


def test_normalize_frame_mixed(benchmark):
    frames = _block("mixed")
    normalize = _normalize.normalize_frame

    def run():
        for f in frames:
            normalize(f)

    benchmark(run)
    benchmark.extra_info.update(frames=len(frames),
                                ns_per_frame_min=round(benchmark.stats.stats.min / len(frames) * 1e9))
