"""The connector's hot path without sockets, run back to back and with an idle pause after each read.

    python -m benchmarks.bench_idle [--frames 200000] [--rounds 6] [--idle-ms 3] [--read 131072]
    python -m benchmarks.bench_idle --wake [--samples 100]

Why: in the end-to-end run (``make bench``) the connector is idle about nine tenths of the time, waiting
for nats-server's acks, and does its work in bursts of about 2,000 messages per wake-up. This measures
what a pause between bursts costs the same work on this machine, with nothing else in the way.

The model (one process, no sockets, no event loop): a generated session (``generate_session``) in memory;
per "read", the next ``--read`` bytes of whole lines are copied into a read buffer, normalized
(``FrameBatch.add_lines``), framed as fast-ingest ``HPUB`` messages (``PublishRing.add_batch``, raw +
normalized), sent to ``/dev/null`` (``take``: nothing is copied, so the kernel's share is left out), and
flow-acked 50 at a time so that at most ``--unacked`` messages stay in flight (8,192: the end-to-end
pacer's). The ``idle`` variant then sleeps ``--idle-ms`` before the next read, about the wait between
two bursts of acks in the end-to-end run; ``busy`` goes straight on. "CPU per message" is the process's
CPU time (``time.process_time``: sleeping is not counted) over the messages framed. The variants
alternate over the rounds; medians and the paired ratio are reported, the runs go to
``benchmarks/results/bench_idle.json``.

``--wake`` measures the pause's cost on its own, without the model: after sleeping 0, 1, 10 and 50 ms,
the time of a unit of pure-Python work, of the first system call (``stat``) and of the second one. It
prints medians and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from ssmd_fast import normalize
from ssmd_fast.kalshi.generator import generate_session
from ssmd_fast.sinks import framing

RESULTS = Path(__file__).parent / "results" / "bench_idle.json"
FLOW = 50                   # messages per flow ack (the connector's fast-ingest default)
CONN = "c0ffee00c0de"


def session_lines(frames: int) -> bytes:
    """A generated session (20 markets, both price eras), one frame per line."""
    return b"".join(f + b"\n" for f in generate_session(frames, seed=1, markets=20))


def one_run(data: bytes, read: int, unacked: int, idle_s: float) -> dict:
    """The model over ``data`` once; CPU per message and what it did."""
    batch = normalize.FrameBatch()
    ring = framing.PublishRing(b"bench.kalshi", b"_INBOX.bench", acked=True, fast=True)
    bno = ring.open_batch()
    rbuf = bytearray(read + (1 << 16))
    view = memoryview(data)
    acked = pos = reads = 0
    end_all = len(data)
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        ru0, cpu0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        while pos < end_all:
            end = data.rfind(b"\n", pos, min(end_all, pos + read)) + 1
            if end <= pos:                                  # a line longer than a read: the whole line
                end = data.find(b"\n", pos) + 1
            n = end - pos
            rbuf[:n] = view[pos:end]
            batch.add_lines(memoryview(rbuf)[:n])
            ring.add_batch(batch, CONN)
            batch.reset()
            while ring.take(1 << 30, 0.0, 256 * 1024, fd) is not None:
                pass
            while ring.send_next - 1 - acked > unacked:    # the server acks the oldest first
                acked += FLOW
                ring.fast_ack(bno, acked, FLOW)
            pos = end
            reads += 1
            if idle_s:
                time.sleep(idle_s)
        cpu, ru = time.process_time() - cpu0, resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
    msgs = ring.framed
    return {"messages": msgs, "reads": reads, "unacked": ring.tail - ring.head, "ns_per_msg": cpu * 1e9 / msgs,
            "user_ns_per_msg": (ru.ru_utime - ru0.ru_utime) * 1e9 / msgs,
            "sys_ns_per_msg": (ru.ru_stime - ru0.ru_stime) * 1e9 / msgs}


WAKE_SLEEPS_MS = (0, 1, 10, 50)


def wake_costs(samples: int, sleeps_ms=WAKE_SLEEPS_MS) -> dict[float, dict[str, float]]:
    """Median microseconds of each probe right after a sleep of each length (0: no sleep)."""
    path = os.path.dirname(os.path.abspath(__file__))

    def python_work():
        return sum(range(2000))

    out: dict[float, dict[str, float]] = {}
    for ms in sleeps_ms:
        got: dict[str, list[float]] = {"python sum(range(2000))": [], "1st stat": [], "2nd stat": []}
        clock = time.perf_counter
        for _ in range(samples):
            if ms:
                time.sleep(ms / 1000)
            t0 = clock()
            os.stat(path)
            t1 = clock()
            os.stat(path)
            t2 = clock()
            got["1st stat"].append(t1 - t0)
            got["2nd stat"].append(t2 - t1)
            if ms:
                time.sleep(ms / 1000)
            t0 = clock()
            python_work()
            got["python sum(range(2000))"].append(clock() - t0)
        out[ms] = {k: statistics.median(v) * 1e6 for k, v in got.items()}
    return out


def print_wake_costs(samples: int) -> None:
    costs = wake_costs(samples)
    names = list(next(iter(costs.values())))
    print(f"median us over {samples} samples, right after a sleep of:")
    print(f"  {'':26s}" + "".join(f"{f'{ms:g} ms':>10s}" for ms in costs))
    for name in names:
        print(f"  {name:26s}" + "".join(f"{c[name]:10.1f}" for c in costs.values()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200_000, help="frames per run (default 200,000)")
    p.add_argument("--rounds", type=int, default=6, help="runs per variant, alternated (default 6)")
    p.add_argument("--idle-ms", type=float, default=3.0, help="the pause after each read (default 3 ms)")
    p.add_argument("--read", type=int, default=128 * 1024, help="bytes per read (default 128 KiB, the session's)")
    p.add_argument("--unacked", type=int, default=8192, help="messages in flight at most (default 8,192)")
    p.add_argument("--wake", action="store_true", help="measure what the first calls after a sleep cost, only")
    p.add_argument("--samples", type=int, default=100, help="--wake: samples per sleep length (default 100)")
    args = p.parse_args(argv)
    if args.wake:
        if args.samples < 1:
            p.error("--samples must be positive")
        print_wake_costs(args.samples)
        return 0
    if args.frames < 1 or args.rounds < 1 or args.read < 1 or args.unacked < FLOW or args.idle_ms < 0:
        p.error("--frames, --rounds and --read must be positive, --unacked at least 50, --idle-ms not negative")
    variants = {"busy": 0.0, "idle": args.idle_ms / 1000}
    data = session_lines(args.frames)
    print(f"{args.frames:,} frames ({len(data) / 2**20:.1f} MiB), reads of {args.read:,} bytes, "
          f"{args.unacked:,} unacked at most, compiled: {framing.IMPLEMENTATION}", flush=True)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for rnd in range(args.rounds):
        for v in (list(variants) if rnd % 2 == 0 else list(variants)[::-1]):
            r = one_run(data, args.read, args.unacked, variants[v])
            runs[v].append(r)
            print(f"  round {rnd + 1} {v:5s} {r['ns_per_msg']:6.0f} ns CPU/msg (user {r['user_ns_per_msg']:.0f},"
                  f" sys {r['sys_ns_per_msg']:.0f}), {r['messages'] / r['reads']:.0f} msgs per read", flush=True)
    med = {v: statistics.median(r["ns_per_msg"] for r in rs) for v, rs in runs.items()}
    ratios = [i["ns_per_msg"] / b["ns_per_msg"] for b, i in zip(runs["busy"], runs["idle"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"\nmedians of {args.rounds}: busy {med['busy']:.0f} ns/msg, idle {args.idle_ms:g} ms after each read "
          f"{med['idle']:.0f} ns/msg; idle / busy, paired: median {ratio:.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_idle", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "implementation": framing.IMPLEMENTATION, "frames": args.frames, "read": args.read,
        "unacked": args.unacked, "idle_ms": args.idle_ms, "rounds": args.rounds,
        "median_ns_per_msg": med, "idle_over_busy": ratio, "paired_ratios": ratios, "runs": runs}, indent=1) + "\n")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
