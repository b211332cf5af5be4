"""Publisher benchmark: this project's JetStream publisher, nats-py ``publish_async`` and the raw pipelined
ceilings, side by side in one run against one nats-server (file storage, every message acked).

    python -m benchmarks.bench_publisher [--frames 50000] [--rounds 3] [--quick]

Rows (medians over the rounds, variants interleaved so machine noise hits them alike):

- ``raw pipelined (ceiling)``: pre-built HPUB frames replayed with acks counted, nothing else
  (``benchmarks/baselines/raw_jetstream.py``): what nats-server itself sustains here, one ack per message;
- ``raw fast-ingest (ceiling)``: the same messages in one fast-ingest batch (a flow ack per 100);
- ``ssmd publisher``: ``JetStreamPublisher.submit`` per socket read (batches already normalized), the
  feed paced by the acks (at most 2 x window outstanding: steady operation at the server's rate), in
  fast-ingest batches (the default);
- ``ssmd publisher, per-message acks``: the same with ``transport.batching: false``;
- ``ssmd normalize + publisher``: the same with the normalizer in the loop (one reused FrameBatch per
  "socket read", as the listener does): the connector's CPU without the WebSocket receive;
- ``ssmd publisher, burst``: the whole session submitted at once (it queues in memory first);
- ``nats-py publish_async (window W)``: the per-message API with a ``Nats-Msg-Id`` header.

"connector CPU" is this process's CPU time (``time.process_time``) from the first submit to the last
ack, divided by the messages; nats-server runs in its own process and is not counted. Every variant
publishes the same subjects, ids (under its own prefix and stream) and payloads. A micro section times
the framer and the ack parser alone (compiled and Python twins). Results go to
``benchmarks/results/bench_publisher.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
import uvloop

from benchmarks.baselines.nats_py_async import run_nats_py
from benchmarks.baselines.raw_jetstream import build_fast_frames, build_frames, run_raw, run_raw_fast
from ssmd_fast import normalize
from ssmd_fast.config import SpillConfig, TransportConfig
from ssmd_fast.kalshi.generator import generate_session
from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks import _framing_py, framing
from ssmd_fast.sinks.nats import JetStreamPublisher
from ssmd_fast.sinks.stream import wanted_config

CONN = "b0000000000b"
RESULTS = Path(__file__).parent / "results" / "bench_publisher.json"


def reads_of(frames: list[bytes], per_read: int) -> list[list[bytes]]:
    return [frames[k:k + per_read] for k in range(0, len(frames), per_read)]


def batches_of(reads: list[list[bytes]]) -> list:
    out = []
    for r in reads:
        b = normalize.FrameBatch()
        for f in r:
            b.add(f)
        out.append(b)
    return out


def messages_of(batches, prefix: str, conn: str) -> list[tuple[bytes, bytes, bytes]]:
    ring = framing.PublishRing(prefix, b"_INBOX.x")
    for b in batches:
        ring.add_batch(b, conn)
    return ring.extract(include_spill=True)


def cfg_for(url: str, name: str, spill: str, window: int, batching: bool = True) -> TransportConfig:
    return TransportConfig(type="nats", url=(url,), stream=name.upper(), subject_prefix=f"{name}.kalshi",
                           window=window, memory_queue_bytes=2**31, ack_timeout=5.0, retry_horizon=60.0,
                           spill=SpillConfig(path=spill), batching=batching)


async def run_publisher(pub: JetStreamPublisher, conn: str, reads, batches, mode: str,
                        paced: bool = True) -> dict:
    """One session through a running publisher. ``mode``: "publish" submits pre-normalized batches;
    "normalize" normalizes in the loop too (one reused FrameBatch per socket read, as the listener).
    ``paced``: a socket read waits while 2 x window messages are outstanding (the feed runs at the
    rate NATS acks, the queue stays small, as in steady operation); else everything is submitted at
    once and queues in memory (a burst)."""
    ring = pub.ring
    first, acked0, resent0 = ring.tail, ring.acked_count, ring.resent
    limit = 2 * pub.cfg.window if paced else 1 << 62
    batch = normalize.FrameBatch()
    cpu0, t0 = time.process_time(), time.perf_counter()
    if mode == "publish":
        for b in batches:
            while ring.tail - ring.head > limit:
                await asyncio.sleep(0.001)
            pub.submit(b, conn)
            await asyncio.sleep(0)  # one event-loop turn per socket read, as in the connector
    else:
        for r in reads:
            while ring.tail - ring.head > limit:
                await asyncio.sleep(0.001)
            for f in r:
                batch.add(f)
            pub.submit(batch, conn)
            batch.reset()
            await asyncio.sleep(0)
    n = ring.tail - first
    while ring.acked_count - acked0 < n:
        await asyncio.sleep(0.002)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s = pub.stats()
    if s["lost"] or s["spilled"] or s["rejected"] or s["duplicates"]:
        raise RuntimeError(f"publisher run not clean: {s}")
    return {"messages": n, "wall_s": wall, "cpu_s": cpu, "errors": s["ack_errors"], "resent": ring.resent - resent0}


async def open_publisher(url: str, name: str, spill: str, window: int, reads, batches, mode: str,
                         batching: bool = True):
    """A publisher as the connector holds one: started once, warmed by one untimed burst."""
    pub = JetStreamPublisher(cfg_for(url, name, spill, window, batching), spill_dir=spill)
    await pub.start()
    if not await pub.wait_connected(15):
        raise RuntimeError(f"publisher did not connect: {pub.stats()['error']}")
    await run_publisher(pub, "warmup000000", reads, batches, mode)
    return pub


async def fresh_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.delete_stream(name.upper())
    except nats.js.errors.NotFoundError:
        pass
    cfg = TransportConfig(type="nats", url=(url,), stream=name.upper(), subject_prefix=f"{name}.kalshi")
    await js.add_stream(wanted_config(cfg))
    await nc.close()


async def bench_network(srv: NatsServer, n_frames: int, rounds: int, window: int, per_read: int,
                        py_windows: tuple[int, ...], spill_root: str) -> dict:
    # a new session per round (and for the warm-up): trade ids, hence msg ids, never repeat
    sessions = []
    for seed in range(100, 101 + rounds):
        reads = reads_of(list(generate_session(n_frames, seed=seed, markets=50)), per_read)
        sessions.append((reads, batches_of(reads)))
    reads, batches = sessions.pop()
    # the corpus is a large heap the connector does not have: keep the cyclic GC from walking it
    gc.collect()
    gc.freeze()
    results: dict[str, list[dict]] = {}
    variants = ["raw pipelined (ceiling)", "raw fast-ingest (ceiling)", "ssmd publisher",
                "ssmd publisher, per-message acks", "ssmd normalize + publisher",
                "ssmd publisher, burst"] + [f"nats-py publish_async (window {w})" for w in py_windows]
    names = {v: f"bv{k}" for k, v in enumerate(variants)}
    pubs = {}
    for v in variants:
        if v.startswith("ssmd"):
            mode = "normalize" if "normalize" in v else "publish"
            pubs[v] = await open_publisher(srv.url, names[v], os.path.join(spill_root, names[v]), window, reads,
                                           batches, mode, batching="per-message" not in v)
        else:
            await fresh_stream(srv.url, names[v])
    for rnd in range(rounds):
        conn = f"r{rnd:011d}"  # new ids every round: nothing is deduplicated away
        reads, batches = sessions[rnd]
        for variant in variants:
            prefix = f"{names[variant]}.kalshi"
            if variant.startswith("raw fast"):
                inbox = b"_INBOX.rawfast%d" % rnd
                frames_ = build_fast_frames(messages_of(batches, prefix, conn), inbox)
                res = await run_raw_fast(srv.host, srv.port, frames_, inbox, window=window)
            elif variant.startswith("raw"):
                inbox = b"_INBOX.raw%d" % rnd
                frames_ = build_frames(messages_of(batches, prefix, conn), inbox)
                res = await run_raw(srv.host, srv.port, frames_, inbox, window=window)
            elif variant.startswith("ssmd"):
                res = await run_publisher(pubs[variant], conn, reads, batches,
                                          "normalize" if "normalize" in variant else "publish",
                                          paced="burst" not in variant)
            else:
                res = await run_nats_py(srv.url, messages_of(batches, prefix, conn),
                                        window=int(variant.split()[-1][:-1]))
            results.setdefault(variant, []).append(res)
            print(f"  round {rnd + 1} {variant:38s} {res['messages'] / res['wall_s']:>10,.0f} msg/s "
                  f"{res['cpu_s'] * 1e9 / res['messages']:>8,.0f} ns CPU/msg", flush=True)
    for pub in pubs.values():
        await pub.close(5)
    return results


def bench_micro(frames: list[bytes], per_read: int) -> dict:
    """The framer and the ack parser alone, compiled vs Python twin (no network), in steady state: one
    ring reused, warmed by a first pass, acks fed for everything but the newest ``window`` messages."""
    out = {}
    impls = [("python", normalize.load_implementation("python"), _framing_py)]
    try:
        from ssmd_fast.sinks import _framing as compiled
        impls.insert(0, ("cython", normalize.load_implementation("cython"), compiled))
    except ImportError:
        pass
    reads = reads_of(frames, per_read)
    inbox, window = b"_INBOX.micro", 4096
    for name, norm_mod, fr in impls:
        batches = []
        for r in reads:
            b = norm_mod.FrameBatch()
            for f in r:
                b.add(f)
            batches.append(b)
        ring = fr.PublishRing("m.kalshi", inbox)
        parser = fr.AckParser(ring, inbox)
        for rnd in range(2):  # the first pass warms the buffers up
            base = acked = ring.tail
            n = 0
            t_frame = t_ack = 0.0
            for b in batches:
                t0 = time.perf_counter()
                n += ring.add_batch(b, f"micro{rnd:07d}")
                while ring.take(1 << 30, 0.0, 256 * 1024) is not None:
                    pass
                t_frame += time.perf_counter() - t0
                if ring.send_next - window > acked:
                    acks = b"".join([b"MSG %s.%d 1 %d\r\n%s\r\n" % (inbox, p, len(body), body)
                                     for p in range(acked, ring.send_next - window)
                                     for body in [b'{"stream":"M_KALSHI","seq":%d}' % p]])
                    acked = ring.send_next - window
                    t0 = time.perf_counter()
                    parser.feed(acks)
                    t_ack += time.perf_counter() - t0
            n_acked = acked - base
            for p in range(acked, ring.send_next):  # the rest, untimed: the next pass starts empty
                ring.ack(p)
            assert ring.inflight == 0
        out[name] = {"messages": n, "frame_ns_per_msg": t_frame * 1e9 / n,
                     "ack_ns_per_msg": t_ack * 1e9 / n_acked}
        print(f"  micro {name:7s} frame+take {out[name]['frame_ns_per_msg']:>7,.0f} ns/msg   "
              f"ack parse {out[name]['ack_ns_per_msg']:>7,.0f} ns/msg", flush=True)
    return out


def summarize(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    ceiling = statistics.median(r["messages"] / r["wall_s"] for r in results["raw pipelined (ceiling)"])
    for variant, runs in results.items():
        rate = statistics.median(r["messages"] / r["wall_s"] for r in runs)
        cpu = statistics.median(r["cpu_s"] * 1e9 / r["messages"] for r in runs)
        rows.append({"variant": variant, "messages": runs[0]["messages"], "acked_msgs_per_s": rate,
                     "connector_cpu_ns_per_msg": cpu, "vs_ceiling": rate / ceiling, "runs": runs})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50_000, help="Kalshi frames per run (x2 messages: raw + norm)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=4096, help="unacked messages for ssmd and raw")
    ap.add_argument("--per-read", type=int, default=32, help="frames per simulated socket read")
    ap.add_argument("--quick", action="store_true", help="10,000 frames, 1 round (while developing)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.rounds = 10_000, 1
    frames = list(generate_session(args.frames, seed=7, markets=50))
    print(f"publisher benchmark: {len(frames):,} frames, {args.rounds} rounds, normalizer "
          f"{normalize.IMPLEMENTATION}, framer {framing.IMPLEMENTATION}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ssmd-bench-") as tmp, NatsServer(store_dir=os.path.join(tmp, "nats")) as srv:
        micro = bench_micro(frames, args.per_read)
        results = uvloop.run(bench_network(srv, args.frames, args.rounds, args.window, args.per_read, (256, 1000),
                                           os.path.join(tmp, "spill")))
    rows = summarize(results)
    print(f"\n{'variant':38s} {'acked msg/s':>12s} {'vs ceiling':>10s} {'connector CPU/msg':>18s}")
    for r in rows:
        print(f"{r['variant']:38s} {r['acked_msgs_per_s']:>12,.0f} {r['vs_ceiling']:>9.0%} "
              f"{r['connector_cpu_ns_per_msg']:>15,.0f} ns")
    out = {"benchmark": "bench_publisher", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
           "frames": len(frames), "rounds": args.rounds, "window": args.window, "per_read": args.per_read,
           "normalizer": normalize.IMPLEMENTATION, "framer": framing.IMPLEMENTATION,
           "rows": rows, "micro": micro}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
