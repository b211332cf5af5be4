"""The compiled normalizer side by side with its Python twin and with peer implementations of schema v1.

    python -m benchmarks.compare_normalizers [--frames 100000] [--era both] [--repeat 5]

One process, one corpus: a recorded session from the project generator (the default mix: ticker 55%,
orderbook_delta 30%, trade 12%, lifecycle 3%, plus the acks and snapshots it starts with). Every row
normalizes the whole corpus in chunks of 4096 frames (a batch per chunk, as the connector resets its
batch per socket read); the time is the best of --repeat runs (time.perf_counter), and each row's
records are checked equal to the compiled ones before timing. Writes benchmarks/results/
compare_normalizers.json and prints ns/frame, MB/s and the ratio to the compiled C loop; then the same
per record type (the corpus's frames of each type in their session order) for the compiled rows and
msgspec.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

CHUNK = 4096
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_NS = 200
TARGET_MSGSPEC_RATIO = 5.0


def corpus(frames: int, era: str, seed: int) -> list[bytes]:
    from ssmd_fast.kalshi.generator import generate_session

    return list(generate_session(frames, seed=seed, markets=20, era=era))


def _chunks(frames: list[bytes]) -> list[list[bytes]]:
    return [frames[k:k + CHUNK] for k in range(0, len(frames), CHUNK)]


def rows(frames: list[bytes]):
    """(name, description, prepare) where prepare() returns (run, records) callables."""
    from benchmarks.baselines.msgspec_normalizer import MsgspecNormalizer, orjson_normalize, stdlib_normalize
    from ssmd_fast import _normalize as compiled
    from ssmd_fast import _normalize_py as twin

    chunks = _chunks(frames)
    buffers = [b"\n".join(c) + b"\n" for c in chunks]

    def c_loop():
        batch = compiled.FrameBatch()

        def run():
            for buf in buffers:
                batch.reset()
                batch.add_lines(buf)

        def records():
            out = []
            for buf in buffers:
                batch.reset()
                batch.add_lines(buf)
                out.append(batch.records_jsonl(0))
            return b"".join(out)
        return run, records

    def batch_loop(module):
        def prepare():
            batch = module.FrameBatch()

            def run():
                for chunk in chunks:
                    batch.reset()
                    add = batch.add
                    for f in chunk:
                        add(f)

            def records():
                out = []
                for chunk in chunks:
                    batch.reset()
                    for f in chunk:
                        batch.add(f)
                    out.append(batch.records_jsonl(0))
                return b"".join(out)
            return run, records
        return prepare

    def per_frame(fn_factory):
        def prepare():
            fn = fn_factory()

            def run():
                for chunk in chunks:
                    out = [fn(f) for f in chunk]
                    del out

            def records():
                return b"".join([r + b"\n" for chunk in chunks for f in chunk if (r := fn(f)) is not None])
            return run, records
        return prepare

    return [
        ("compiled_c_loop", "ssmd_fast compiled: FrameBatch.add_lines(buffer), the loop in C", c_loop),
        ("compiled_py_loop", "ssmd_fast compiled: Python loop over FrameBatch.add(frame)", batch_loop(compiled)),
        ("python_twin", "ssmd_fast pure-Python twin: FrameBatch.add(frame)", batch_loop(twin)),
        ("msgspec", "msgspec typed structs + exact conversions + Struct encode", per_frame(
            lambda: MsgspecNormalizer().normalize)),
        ("orjson", "orjson loads + dict + exact conversions + dumps", per_frame(lambda: orjson_normalize)),
        ("stdlib_json", "stdlib json loads + dict + exact conversions + joined text", per_frame(
            lambda: stdlib_normalize)),
    ]


def best_of(run, repeat: int) -> float:
    best = float("inf")
    gc.collect()
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def measure(frames: list[bytes], repeat: int, slow_repeat: int) -> dict:
    total_bytes = sum(map(len, frames))
    results = []
    reference = None
    for name, desc, prepare in rows(frames):
        run, records = prepare()
        out = records()
        if reference is None:
            reference = out
        equal = out == reference
        seconds = best_of(run, repeat if name.startswith("compiled") else slow_repeat)
        results.append({"name": name, "description": desc, "records_equal_to_compiled": equal,
                        "seconds": seconds, "ns_per_frame": seconds / len(frames) * 1e9,
                        "frames_per_s": len(frames) / seconds, "mb_per_s": total_bytes / seconds / 1e6})
        print(f"  {name:17s} {results[-1]['ns_per_frame']:9.0f} ns/frame", file=sys.stderr)
    base = results[0]["seconds"]
    for r in results:
        r["x_compiled"] = r["seconds"] / base
    return {"frames": len(frames), "bytes": total_bytes, "mean_frame_bytes": total_bytes / len(frames),
            "rows": results}


BY_TYPE_ROWS = ("compiled_c_loop", "compiled_py_loop", "msgspec")


def measure_by_type(frames: list[bytes], repeat: int, slow_repeat: int) -> dict:
    """The compiled rows and msgspec on the frames of each record type of the corpus."""
    groups: dict[str, list[bytes]] = {}
    for f in frames:
        t = json.loads(f).get("type")
        if t in ("ticker", "orderbook_delta", "trade", "orderbook_snapshot", "market_lifecycle_v2",
                 "event_lifecycle"):
            groups.setdefault(t, []).append(f)
    out = {}
    for t, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        res, reference = {}, None
        for name, _desc, prepare in rows(group):
            if name not in BY_TYPE_ROWS:
                continue
            run, records = prepare()
            recs = records()
            reference = recs if reference is None else reference
            seconds = best_of(run, repeat if name.startswith("compiled") else slow_repeat)
            res[name] = {"ns_per_frame": seconds / len(group) * 1e9,
                         "records_equal_to_compiled": recs == reference}
        base = res["compiled_c_loop"]["ns_per_frame"]
        for r in res.values():
            r["x_compiled"] = r["ns_per_frame"] / base
        out[t] = {"frames": len(group), "mean_frame_bytes": sum(map(len, group)) / len(group), "rows": res}
    return out


def report(res: dict) -> str:
    lines = [f"corpus: {res['frames']:,} frames, {res['bytes'] / 1e6:.1f} MB, {res['mean_frame_bytes']:.0f} B/frame "
             f"({res['corpus']})",
             f"{'implementation':<62} {'ns/frame':>9} {'MB/s':>8} {'x compiled':>10}  same records"]
    for r in res["rows"]:
        lines.append(f"{r['description']:<62} {r['ns_per_frame']:9.0f} {r['mb_per_s']:8.1f} "
                     f"{r['x_compiled']:10.2f}  {'yes' if r['records_equal_to_compiled'] else 'NO'}")
    if res.get("by_type"):
        lines.append("per record type (ns/frame; x = / compiled C loop):")
        lines.append(f"{'type':<22} {'frames':>7} {'B/frame':>8} "
                     + " ".join(f"{n:>17}" for n in BY_TYPE_ROWS))
        for t, g in res["by_type"].items():
            cells = [f"{g['rows'][n]['ns_per_frame']:8.0f} {g['rows'][n]['x_compiled']:6.2f}x"
                     + ("" if g["rows"][n]["records_equal_to_compiled"] else "!") for n in BY_TYPE_ROWS]
            lines.append(f"{t:<22} {g['frames']:>7} {g['mean_frame_bytes']:8.0f} "
                         + " ".join(f"{c:>17}" for c in cells))
    t = res["targets"]
    lines.append(f"targets: compiled <= {TARGET_NS} ns/frame: {t['compiled_ns']:.0f} ns "
                 f"({'met' if t['ns_met'] else 'NOT met'}); msgspec / compiled >= {TARGET_MSGSPEC_RATIO:g}: "
                 f"{t['msgspec_ratio']:.1f} ({'met' if t['ratio_met'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare_normalizers", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--era", default="both", choices=("legacy", "both", "current", "mixed"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7, help="runs per compiled row (best counts)")
    ap.add_argument("--slow-repeat", type=int, default=3, help="runs per twin/peer row")
    ap.add_argument("--json", default=str(RESULTS / "compare_normalizers.json"))
    a = ap.parse_args(argv)
    import msgspec
    import orjson

    frames = corpus(a.frames, a.era, a.seed)
    res = measure(frames, a.repeat, a.slow_repeat)
    res["by_type"] = measure_by_type(frames, a.repeat, a.slow_repeat)
    res["corpus"] = f"generate_session(n={a.frames}, seed={a.seed}, markets=20, era={a.era!r})"
    compiled_ns = res["rows"][0]["ns_per_frame"]
    ratio = next(r for r in res["rows"] if r["name"] == "msgspec")["x_compiled"]
    res["targets"] = {"compiled_ns": compiled_ns, "ns_met": compiled_ns <= TARGET_NS, "msgspec_ratio": ratio,
                      "ratio_met": ratio >= TARGET_MSGSPEC_RATIO}
    res["environment"] = {"python": platform.python_version(), "machine": platform.machine(),
                          "processor": platform.processor(), "msgspec": msgspec.__version__,
                          "orjson": orjson.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(report(res))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    same = all(r["records_equal_to_compiled"] for r in res["rows"]) and all(
        r["records_equal_to_compiled"] for g in res["by_type"].values() for r in g["rows"].values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
