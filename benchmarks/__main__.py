"""``make bench``: the micro benchmarks (briefly), the end-to-end scoreboard, and the regression check.

    python -m benchmarks [--long] [--skip-micro] [--skip-e2e] [--rounds N] [--quick]

1. micro: ``benchmarks/test_bench_normalize.py`` and ``benchmarks/test_bench_micro.py`` under
   pytest-benchmark with short timings; each compiled row is turned into a ratio to its baseline of
   the same run (the Python twin, or the msgspec peer);
2. e2e: ``benchmarks/e2e.py`` (all pipelines, interleaved rounds, medians), table + JSON + chart;
3. every ratio is checked against ``benchmarks/thresholds.json`` (ratios to baselines, never absolute
   times): exit 1 when one regressed past its ``min``, naming it. The task's targets are printed too.

``--long`` (``make bench-long``, not run in CI): the connector alone over 10 M messages (5 M frames) with
its resident set sampled twice a second; prints the RSS slope over the second half of the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import e2e

HERE = Path(__file__).resolve().parent
THRESHOLDS = HERE / "thresholds.json"
MICRO_FILES = ("benchmarks/test_bench_normalize.py", "benchmarks/test_bench_micro.py")


# --------------------------------------------------------------------------- micro


def run_micro() -> dict[str, float]:
    """Best-round ns per unit of every micro benchmark, by test name."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "micro.json"
        cmd = [sys.executable, "-m", "pytest", *MICRO_FILES, "-q", "-p", "no:cacheprovider",
               "--benchmark-min-rounds=5", "--benchmark-max-time=0.25", "--benchmark-warmup=on",
               "--benchmark-columns=min,median", "--benchmark-sort=name", f"--benchmark-json={out}"]
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"micro benchmarks failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        data = json.loads(out.read_text())
    ns = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        v = info.get("ns_per_unit_min", info.get("ns_per_frame_min"))
        if v is not None:
            ns[b["name"]] = float(v)
    return ns


def micro_ratios(ns: dict[str, float]) -> dict[str, float]:
    def r(num: str, den: str) -> float | None:
        return ns[num] / ns[den] if num in ns and den in ns and ns[den] else None

    out = {
        "normalize_msgspec_over_compiled": r("test_normalize_msgspec_mixed", "test_add_lines[mixed]"),
        "listener_python_over_cython": r("test_listener_frames_into_batch[python]", "test_listener_frames_into_batch[cython]"),
        "listener_feed_python_over_cython": r("test_listener_reads_through_feed[python]",
                                              "test_listener_reads_through_feed[cython]"),
        "framing_python_over_cython": r("test_publish_ring_add_batch[python]", "test_publish_ring_add_batch[cython]"),
        "acks_python_over_cython": r("test_ack_parser[python]", "test_ack_parser[cython]"),
        "spill_read_python_over_cython": r("test_spill_parse_records[python]", "test_spill_parse_records[cython]"),
        "spill_scan_python_over_cython": r("test_spill_scan_records[python]", "test_spill_scan_records[cython]"),
        "subjects_python_over_compiled_framing": r("test_subjects_and_ids_python", "test_publish_ring_add_batch[cython]"),
    }
    return {k: v for k, v in out.items() if v is not None}


MICRO_ROWS = (
    ("test_add_lines[mixed]", "normalize, mixed session (compiled, C loop)", "frame"),
    ("test_add_python_loop_mixed", "normalize, mixed, add() per frame from Python", "frame"),
    ("test_normalize_msgspec_mixed", "normalize, mixed: msgspec schema-v1 peer", "frame"),
    ("test_listener_frames_into_batch[cython]", "listener -> FrameBatch (compiled), 1 frame/read", "frame"),
    ("test_listener_frames_into_batch[python]", "listener -> FrameBatch (Python twin), 1 frame/read", "frame"),
    ("test_listener_reads_through_feed[cython]", "listener.feed, 128 KiB reads -> FrameBatch (compiled)", "frame"),
    ("test_listener_reads_through_feed[python]", "listener.feed, 128 KiB reads (Python twin)", "frame"),
    ("test_subjects_and_ids_python", "subjects + ids, SubjectEncoder (Python spec)", "message"),
    ("test_publish_ring_add_batch[cython]", "PublishRing.add_batch + take (compiled)", "message"),
    ("test_publish_ring_add_batch[python]", "PublishRing.add_batch + take (Python twin)", "message"),
    ("test_ack_parser[cython]", "AckParser.feed, acks into the ring (compiled)", "ack"),
    ("test_ack_parser[python]", "AckParser.feed (Python twin)", "ack"),
    ("test_spill_parse_records[cython]", "spill parse_records, a replay step (compiled)", "record"),
    ("test_spill_parse_records[python]", "spill parse_records (Python twin)", "record"),
    ("test_spill_scan_records[cython]", "spill scan_records, the check on open (compiled)", "record"),
    ("test_spill_scan_records[python]", "spill scan_records (Python twin)", "record"),
)


def micro_table(ns: dict[str, float]) -> str:
    lines = [f"{'micro benchmark (best round)':52s} {'ns per unit':>12s}"]
    for name, label, unit in MICRO_ROWS:
        if name in ns:
            lines.append(f"{label:52s} {ns[name]:>9,.0f} ns/{unit}")
    per_type = sorted(k for k in ns if k.startswith("test_add_lines[") and k != "test_add_lines[mixed]")
    if per_type:
        lines.append("normalize per record type (compiled): " + ", ".join(
            f"{k[len('test_add_lines['):-1]} {ns[k]:,.0f}" for k in per_type) + " ns/frame")
    return "\n".join(lines)


# --------------------------------------------------------------------------- thresholds


def check(ratios: dict[str, float], thresholds: dict) -> tuple[list[str], list[str]]:
    """(failures past ``min``, target lines) for every ratio named in ``thresholds``."""
    failures, targets = [], []
    for name, spec in thresholds.items():
        if name.startswith("_"):
            continue
        value = ratios.get(name)
        if value is None:
            failures.append(f"{name}: not measured")
            continue
        if value < spec["min"]:
            failures.append(f"{name} = {value:.3g} < {spec['min']:g} (regression threshold)")
        if "target" in spec:
            ok = "meets" if value >= spec["target"] else f"MISSES (by {(1 - value / spec['target']):.0%})"
            targets.append(f"  {name:42s} {value:8.3g}  target {spec['target']:g}: {ok}")
    return failures, targets


def absolute_targets(summary: dict) -> list[str]:
    rows, out = summary["rows"], []
    if "ssmd" in rows:
        v = rows["ssmd"]["cpu_ns_per_msg"]
        out.append(f"{'connector CPU per message, acked JetStream':42s} {v:8,.0f} ns  target 500 ns: "
                   + ("meets" if v <= 500 else f"MISSES ({v / 500:.1f}x)"))
    if "core" in rows:
        v = rows["core"]["msgs_per_s"]
        out.append(f"{'core NATS mode, msgs/s wall':42s} {v:8,.0f}     target 1,500,000: "
                   + ("meets" if v >= 1.5e6 else f"MISSES (by {1 - v / 1.5e6:.0%})"))
    return out


def long_run(args) -> int:
    """10 M messages through the connector; RSS sampled every 0.5 s; the slope of the second half."""
    plan = e2e.Plan(events=args.long_events, rounds=1, pipelines=("ssmd",), timeout=3600.0, rss_interval=0.5)
    summary = e2e.run(plan)
    res = summary["rows"]["ssmd"]["runs"][0]
    samples = [(m, rss) for m, rss in res["rss_samples"] if m > 0]
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    n = len(half)
    mx = sum(m for m, _ in half) / n
    my = sum(r for _, r in half) / n
    slope = sum((m - mx) * (r - my) for m, r in half) / max(1e-9, sum((m - mx) ** 2 for m, _ in half))
    growth = slope * 1e6 / 2**20
    first, last = half[0], half[-1]
    summary["long"] = {"messages": res["messages"], "rss_slope_mib_per_million_msgs": growth,
                       "rss_second_half_mib": [first[1] / 2**20, last[1] / 2**20],
                       "peak_rss_mib": res["peak_rss_kib"] / 1024, "samples": len(samples)}
    print(e2e.table(summary))
    print(f"\nRSS over {res['messages']:,} messages: {first[1] / 2**20:.0f} MiB at {first[0]:,} -> "
          f"{last[1] / 2**20:.0f} MiB at {last[0]:,}; slope over the second half {growth:+.2f} MiB per million "
          f"messages; peak {res['peak_rss_kib'] / 1024:.0f} MiB")
    path = e2e.write_results(summary, name="e2e-long")
    print(f"results: {path}")
    flat = abs(growth) * 10 < 16   # less than 16 MiB per 10 M messages
    print("RSS flat" if flat else "RSS GROWS")
    return 0 if flat else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="RSS over 10 M messages (bench-long)")
    ap.add_argument("--long-events", type=int, default=5_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--skip-micro", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="e2e with short sessions and 1 round (not for the record)")
    args = ap.parse_args(argv)
    if args.long:
        return long_run(args)
    thresholds = json.loads(THRESHOLDS.read_text())
    ratios: dict[str, float] = {}
    summary = None
    if not args.skip_micro:
        print("micro benchmarks (pytest-benchmark, short timings)...", flush=True)
        ns = run_micro()
        print(micro_table(ns))
        ratios.update(micro_ratios(ns))
    if not args.skip_e2e:
        plan = e2e.Plan(rounds=args.rounds)
        if args.quick:
            plan.events, plan.core_events, plan.lat_events, plan.rounds = 20_000, 100_000, 20_000, 1
        print(f"\nend to end: {plan.rounds} round(s), {plan.events:,} events per JetStream run, "
              f"{plan.core_events:,} per core run, latency run {plan.lat_events:,} at {plan.lat_rate:,.0f}/s", flush=True)
        summary = e2e.run(plan)
        ratios.update(summary["ratios"])
    if summary is not None:
        if not args.skip_micro:
            summary["micro_ns"], summary["micro_ratios"] = ns, micro_ratios(ns)
        print()
        print(e2e.table(summary))
        path = e2e.write_results(summary)
        from benchmarks.chart import chart

        chart(summary, e2e.RESULTS / "e2e-latest.png")
        print(f"\nresults: {path} (and latest.json, e2e-latest.png)")
    names = {**thresholds.get("micro", {}), **thresholds.get("e2e", {})}
    wanted = {k: v for k, v in names.items() if (k in ratios) or not (
        (args.skip_micro and k in thresholds.get("micro", {})) or (args.skip_e2e and k in thresholds.get("e2e", {})))}
    failures, targets = check(ratios, wanted)
    print("\nratios vs the task's targets:")
    print("\n".join(targets) or "  (none measured)")
    if summary is not None:
        print("absolute targets (reported, not checked: absolute figures differ from machine to machine):")
        for line in absolute_targets(summary):
            print(f"  {line}")
    if failures:
        print("\nREGRESSION (benchmarks/thresholds.json):")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nno ratio regressed past benchmarks/thresholds.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
