"""Fuzz the compiled normalizer with mutated Kalshi frames.

    python -m benchmarks.fuzz_normalizer [--frames 1000000] [--seed 1] [--sample 10] [--workers 2]

Seeds are the fixture frames and generated sessions of every wire era; each fuzzed frame is a seed with
one to three mutations (byte flips, special bytes, inserted tokens such as ``\\u0000`` or a BOM,
deletions, truncation, splices, interesting values, duplicated members, escaped keys, deep nesting).
Every frame goes through the compiled ``FrameBatch``; every ``--sample``-th one also through the
Python twin, compared field by field. Workers are child processes, so a crash (a signal) is counted
instead of ending the run. Reports executions, crashes, exceptions other than InvalidFrame,
differences and RSS growth (per chunk, and for the compiled path alone over the whole count in one
batch); writes the figures to benchmarks/results/fuzz_normalizer.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "kalshi"
RESULTS = ROOT / "benchmarks" / "results"

SPECIAL_BYTES = b'"\\{}[],: \t\r\n\x00\x01\x1f\x7f\x80\xbf\xc0\xc1\xed\xef\xf4\xf5\xff0-.eE+nulltrf'
TOKENS = [
    b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b'\\"', b"\\\\", b"\\/", b"\\x", b"\\u12",
    b"null", b"true", b"false", b"NaN", b"Infinity", b"-0", b"1e400", b"0.5", b'""', b",", b":",
    b"{}", b"[]", b"[", b"{", b"]", b"}", b"\xef\xbb\xbf", b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xc3\xa9", b"\xe2\x80\xa8", b" ", b"\t", b"\r\n", b"//", b"/*x*/", b"'",
    b'"type":"trade",', b'"sid":0,', b'"seq":-1,', b'"msg":null,', b'"market_ticker":"A*B",',
]
VALUES = [
    b'"0"', b'"1"', b'"1.0000"', b'"1.0001"', b'"-0.00"', b'"00.50"', b'"0."', b'".5"', b'"+1"',
    b'"1e2"', b'""', b'"NaN"', b'"0.' + b"1" * 39 + b'"', b'"0.' + b"1" * 40 + b'"', b'"\\u0030.5"',
    b"0", b"-0", b"100", b"101", b"-1", b"1.5", b"2.8E3", b"45.0", b"0.45", b"1e400", b"1E-400",
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809",
    b"0.1e1", b"10e-1", b"1" * 45, b"0e99999999999999999999", b"5e-1", b"1E0", b"1e00",
    b'"2026-02-14T15:30:00Z"', b'"2026-02-14t15:30:00.123456789z"', b'"2026-02-14T15:30:00.1234567891Z"',
    b'"2026-02-29T00:00:00Z"', b'"2024-02-29T23:59:59-23:59"', b'"2026-12-31T23:59:60Z"',
    b'"0000-01-01T00:00:00+00:01"', b'"9999-12-31T23:59:59.999999999-23:59"', b'"2026-02-14 15:30:00Z"',
    b"true", b"false", b"null", b"[]", b"{}", b"[[]]", b'[["0.5","1"]]', b'[["0.5",1,2]]', b"[[50,1]]",
    b'[["0.5","-1"]]', b'[[1e-39,1e39]]', b'"yes"', b'"no"', b'"y\\u0065s"', b'"YES"', b'"KX\\u0000"',
    b'"KX-A"', b'"KX A"', b'"KX>"', b'"' + b"K" * 1025 + b'"', b'"\\u00e9"', b'"a\\nb"',
]
_MEMBER = re.compile(rb'"[A-Za-z_]+":(?:"[^"\\]*"|-?[0-9.eE+-]+|true|false|null)')
_SCALAR = re.compile(rb':(?:"[^"\\]*"|-?[0-9.eE+-]+|true|false|null)')
_KEY = re.compile(rb'"[A-Za-z_]+":')


def seed_frames(generated: int = 4000, seed: int = 1) -> list[bytes]:
    """Fixture lines plus generated frames of every wire era (snapshots and lifecycles included)."""
    from ssmd_fast.kalshi.generator import ERAS, generate_session

    frames = [line for path in sorted(FIXTURES.glob("*.jsonl"))
              for line in path.read_bytes().split(b"\n") if line]
    for i, era in enumerate(ERAS):
        frames += list(generate_session(generated // len(ERAS), seed=seed + i, markets=6, era=era))
    return frames


class Mutator:
    """Deterministic mutations of seed frames (one rng; same seed, same frames)."""

    def __init__(self, seeds: list[bytes], seed: int):
        self.seeds = seeds
        self.rng = random.Random(seed)
        self.ops = [self.flip, self.special, self.insert, self.delete, self.truncate, self.splice,
                    self.value, self.value, self.dup_member, self.escape_key, self.nest, self.repeat]

    def frame(self) -> bytes:
        data = self.rng.choice(self.seeds)
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            data = self.rng.choice(self.ops)(data)
        return data

    def _pos(self, data: bytes) -> int:
        return self.rng.randrange(len(data) + 1)

    def flip(self, data):
        if not data:
            return data
        i = self.rng.randrange(len(data))
        return data[:i] + bytes([data[i] ^ (1 << self.rng.randrange(8))]) + data[i + 1:]

    def special(self, data):
        if not data:
            return data
        i = self.rng.randrange(len(data))
        return data[:i] + bytes([self.rng.choice(SPECIAL_BYTES)]) + data[i + 1:]

    def insert(self, data):
        i = self._pos(data)
        return data[:i] + self.rng.choice(TOKENS) + data[i:]

    def delete(self, data):
        i = self._pos(data)
        return data[:i] + data[i + self.rng.randint(1, 16):]

    def truncate(self, data):
        return data[:self._pos(data)]

    def splice(self, data):
        other = self.rng.choice(self.seeds)
        return data[:self._pos(data)] + other[self._pos(other):]

    def value(self, data):
        spans = [m.span() for m in _SCALAR.finditer(data)]
        if not spans:
            return self.insert(data)
        a, b = self.rng.choice(spans)
        return data[:a + 1] + self.rng.choice(VALUES) + data[b:]

    def dup_member(self, data):
        members = list(_MEMBER.finditer(data))
        if not members:
            return self.insert(data)
        m = self.rng.choice(members)
        i = self.rng.choice([mm.start() for mm in members])
        return data[:i] + m.group(0) + b"," + data[i:]

    def escape_key(self, data):
        keys = list(_KEY.finditer(data))
        if not keys:
            return self.insert(data)
        m = self.rng.choice(keys)
        j = self.rng.randrange(m.start() + 1, m.end() - 2) if m.end() - m.start() > 3 else m.start() + 1
        return data[:j] + b"\\u%04x" % data[j] + data[j + 1:]

    def nest(self, data):
        k = self.rng.choice((1, 126, 127, 128, 129, 200))
        inner = self.rng.choice((b"1", b'"x"', b"[]", b"{}", b'{"a":1,"a":2}'))
        nested = self.rng.choice((b"[" * k + inner + b"]" * k, b'{"a":' * k + inner + b"}" * k))
        spans = [m.span() for m in _SCALAR.finditer(data)]
        if not spans or self.rng.random() < 0.2:
            return nested
        a, b = self.rng.choice(spans)
        return data[:a + 1] + nested + data[b:]

    def repeat(self, data):
        """A range repeated many times: big objects, long strings, long numbers."""
        if len(data) < 2:
            return data
        i = self.rng.randrange(len(data) - 1)
        j = min(len(data), i + self.rng.randint(1, 24))
        return data[:j] + data[i:j] * self.rng.choice((8, 64, 512)) + data[j:]


def entry(batch, i: int) -> tuple:
    return (batch.outcome(i), batch.kind(i), batch.reason(i), batch.sid(i), batch.seq(i), batch.cmd_id(i),
            batch.key(i), batch.trade_id(i), batch.raw(i), batch.record(i), batch.type_name(i))


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def run_chunk(args: tuple) -> dict:
    """Fuzz `count` frames from mutation seed `seed` (in a child process)."""
    seed, count, sample, batch_size = args
    from ssmd_fast import _normalize as compiled
    from ssmd_fast import _normalize_py as twin
    from ssmd_fast.errors import InvalidFrame

    mut = Mutator(seed_frames(seed=seed), seed)
    cb, tb = compiled.FrameBatch(), twin.FrameBatch()
    out = {"executions": 0, "exceptions": 0, "differences": 0, "compared": 0, "examples": [],
           "rss_start_kib": 0, "rss_end_kib": 0}
    for i in range(count):
        frame = mut.frame()
        if i == batch_size * 4:
            out["rss_start_kib"] = rss_kib()    # after the buffers reached their working size
        if len(cb) >= batch_size:
            cb.reset()
        try:
            cb.add(frame)
            if i % sample == 0:
                try:
                    compiled.normalize_frame(frame)
                except InvalidFrame:
                    pass
        except Exception as exc:  # noqa: BLE001 - counting is the point
            out["exceptions"] += 1
            if len(out["examples"]) < 5:
                out["examples"].append({"frame": frame[:300].decode("latin-1"), "error": repr(exc)})
            continue
        out["executions"] += 1
        if i % sample == 0:
            tb.reset()
            tb.add(frame)
            out["compared"] += 1
            if entry(cb, len(cb) - 1) != entry(tb, 0):
                out["differences"] += 1
                if len(out["examples"]) < 5:
                    out["examples"].append({"frame": frame[:300].decode("latin-1"),
                                            "compiled": repr(entry(cb, len(cb) - 1)[:10]),
                                            "twin": repr(entry(tb, 0)[:10])})
    out["rss_end_kib"] = rss_kib()
    return out


def rss_check(args: tuple) -> dict:
    """Compiled path only: `count` mutated frames through one FrameBatch (reset every 1000), RSS sampled
    every tenth of the run; after warm-up the buffers stop growing, so a leak shows as a steady climb."""
    seed, count = args
    from ssmd_fast import _normalize as compiled

    mut = Mutator(seed_frames(seed=seed), seed)
    frames = [mut.frame() for _ in range(20_000)]      # mutated once; the run cycles over them
    batch = compiled.FrameBatch()
    samples = []
    for i in range(count):
        if len(batch) >= 1000:
            batch.reset()
        batch.add(frames[i % len(frames)])
        if i % (count // 10) == 0:
            samples.append(rss_kib())
    samples.append(rss_kib())
    return {"frames": count, "rss_kib_samples": samples, "growth_after_first_tenth_kib": samples[-1] - samples[1]}


def fuzz(frames: int, seed: int, sample: int, workers: int, chunk: int = 100_000,
         batch_size: int = 1000) -> dict:
    """Run `frames` mutated frames in child processes; a child killed by a signal counts as a crash."""
    jobs = [(seed * 1_000_003 + k, min(chunk, frames - k * chunk), sample, batch_size)
            for k in range((frames + chunk - 1) // chunk)]
    total = {"frames": frames, "seed": seed, "sample_every": sample, "executions": 0, "crashes": 0,
             "crashed_chunks": [], "exceptions": 0, "differences": 0, "compared": 0, "examples": [],
             "rss_growth_kib_max": 0}
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    pending = list(jobs)
    running: list[tuple] = []
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(job, child))
            proc.start()
            child.close()
            running.append((job, proc, parent))
        job, proc, parent = running.pop(0)
        result = parent.recv() if parent.poll(None) else None
        proc.join()
        if proc.exitcode != 0 or result is None:
            total["crashes"] += 1
            total["crashed_chunks"].append({"seed": job[0], "count": job[1], "exitcode": proc.exitcode})
            continue
        for k in ("executions", "exceptions", "differences", "compared"):
            total[k] += result[k]
        total["examples"] += result["examples"][:5 - len(total["examples"])]
        total["rss_growth_kib_max"] = max(total["rss_growth_kib_max"],
                                          result["rss_end_kib"] - result["rss_start_kib"])
    total["seconds"] = round(time.perf_counter() - t0, 1)
    return total


def _child(job, conn, fn=None):
    try:
        conn.send((fn or run_chunk)(job))
    except EOFError:  # pragma: no cover - the parent went away
        pass
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_normalizer", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample", type=int, default=10, help="compare every N-th frame with the twin")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS / "fuzz_normalizer.json"))
    a = ap.parse_args(argv)
    total = fuzz(a.frames, a.seed, a.sample, a.workers)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=((a.seed, a.frames), child, rss_check))
    proc.start()
    child.close()
    total["compiled_only_rss"] = parent.recv() if parent.poll(None) else None
    proc.join()
    if proc.exitcode != 0:
        total["crashes"] += 1
    print(f"executions {total['executions']:,}  crashes {total['crashes']}  "
          f"non-InvalidFrame exceptions {total['exceptions']}  differences {total['differences']} "
          f"of {total['compared']:,} compared  RSS growth {total['rss_growth_kib_max']} KiB  "
          f"({total['seconds']} s)")
    rss = total["compiled_only_rss"] or {}
    print(f"compiled only, one batch, {rss.get('frames', 0):,} frames: RSS {rss.get('rss_kib_samples')} KiB, "
          f"growth after the first tenth {rss.get('growth_after_first_tenth_kib')} KiB")
    for ex in total["examples"]:
        print("  example:", json.dumps(ex)[:600])
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(total, indent=1) + "\n")
    bad = total["crashes"] or total["exceptions"] or total["differences"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
