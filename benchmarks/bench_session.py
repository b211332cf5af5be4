"""Session benchmark: receiving and normalizing a Kalshi stream over loopback, side by side in one run.

    python -m benchmarks.bench_session [--events 200000] [--rounds 3] [--quick]

The local exchange runs in its own process (``ssmd-fast exchange --generate N --rate 0``: the
generated session as fast as the client reads) and a fresh one serves every client run, so each
run receives the same frames. Each client runs in its own process too; "CPU per frame" is that
client process's own CPU time (``time.process_time``) from the subscribe to the last frame, divided
by the frames. Variants (interleaved over the rounds; medians reported):

- ``picows + Cython listener``: ``BatchListener`` (compiled) -> compiled ``FrameBatch``, one Python
  call per socket read (what the connector does, minus the sinks);
- ``picows + Python-twin listener``: the same with ``_listener_py.BatchListener``;
- ``websockets client``: ``websockets`` (17, no compression) ``recv()`` per frame, each frame added to
  a compiled ``FrameBatch`` (reset every 256 frames);
- ``session hot path``: ``KalshiSession.on_batch`` (Sequencer + protocol core) on top of the first row,
  no sinks: the connector's CPU before publishing;
- ``normalizer alone``: the same generated frames added to a compiled ``FrameBatch`` in a Python loop,
  no socket and no exchange (what the rows above pay for normalizing; the rest is the receive path).

All clients run on uvloop. The target: the Cython listener uses at least 10x less CPU per frame than
the websockets client. Results go to ``benchmarks/results/bench_session.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "bench_session.json"
VARIANTS = ("cython", "python", "websockets", "session", "normalize")
LABELS = {
    "cython": "picows + Cython listener",
    "python": "picows + Python-twin listener",
    "websockets": "websockets client",
    "session": "session hot path (+ sequencer, core)",
    "normalize": "normalizer alone (add() loop, no socket)",
}
SUBSCRIBE_CHANNELS = ("ticker", "trade", "market_lifecycle_v2")
TARGET_RATIO = 10.0


# ------------------------------------------------------------------ the client (a subprocess)


def _commands(markets: list[str]) -> list[bytes]:
    cmds = [{"id": i + 1, "cmd": "subscribe", "params": {"channels": [ch]}} for i, ch in enumerate(SUBSCRIBE_CHANNELS)]
    cmds.append({"id": 4, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": markets}})
    return [json.dumps(c, separators=(",", ":")).encode() for c in cmds]


IDLE_END = 1.0      # seconds without a frame: the session is over (the exchange's count may differ)


async def _until_done(got: list, last: list, target: int) -> None:
    """Return once ``target`` frames came, or none came for IDLE_END seconds after the first."""
    while got[0] < target and not (got[0] and time.perf_counter() - last[0] > IDLE_END):
        await asyncio.sleep(0.05)


async def _client_picows(variant: str, url: str, creds, markets: list[str], target: int) -> dict:
    from picows import WSMsgType, ws_connect

    from ssmd_fast import _listener_py, normalize

    if variant == "python":
        listener_cls = _listener_py.BatchListener
    else:
        from ssmd_fast import _listener
        listener_cls = _listener.BatchListener
    assert normalize.IMPLEMENTATION == "cython", "the benchmark needs the compiled normalizer"
    got, last = [0], [0.0]

    def count(batch) -> None:
        got[0] += len(batch)
        last[0] = time.perf_counter()

    if variant == "session":
        from ssmd_fast.kalshi.session import KalshiSession
        from ssmd_fast.kalshi.shards import plan_connections

        plan = plan_connections(SUBSCRIBE_CHANNELS, orderbook_markets=markets)[0]
        session = KalshiSession(creds, url, plan, [], stale_after=60, ping_interval=20)

        class Count:
            def submit(self, batch, conn):
                count(batch)

            def submit_event(self, event):
                pass

        session.sinks.append(Count())
        t0, w0 = time.process_time(), time.perf_counter()
        session.start()
        await asyncio.wait_for(_until_done(got, last, target), 300)
        cpu, wall = time.process_time() - t0, last[0] - w0
        frames, batches = got[0], session.listener.batches
        await session.close(1.0)
        return {"frames": frames, "cpu": cpu, "wall": wall, "batches": batches}

    transport, lst = await ws_connect(lambda: listener_cls(normalize.FrameBatch(), count), url,
                                      extra_headers=creds.websocket_headers(), enable_auto_pong=False,
                                      max_frame_size=1 << 20)
    t0, w0 = time.process_time(), time.perf_counter()
    for cmd in _commands(markets):
        transport.send(WSMsgType.TEXT, cmd)
    await asyncio.wait_for(_until_done(got, last, target), 300)
    cpu, wall = time.process_time() - t0, last[0] - w0
    transport.disconnect()
    return {"frames": got[0], "cpu": cpu, "wall": wall, "batches": lst.batches}


async def _client_websockets(url: str, creds, markets: list[str], target: int) -> dict:
    import websockets

    from ssmd_fast import normalize

    batch = normalize.FrameBatch()
    got, last = [0], [0.0]

    async def receive(ws) -> None:
        n = 0
        batch.set_recv_ts(time.time_ns())
        while True:
            batch.add(await ws.recv(decode=False))
            n += 1
            if len(batch) == 256:      # progress is published per 256 frames, not per frame
                batch.reset()
                batch.set_recv_ts(time.time_ns())
                got[0], last[0] = n, time.perf_counter()

    async with websockets.connect(url, additional_headers=creds.websocket_headers(), compression=None,
                                  max_size=1 << 20, ping_interval=None, max_queue=None) as ws:
        t0, w0 = time.process_time(), time.perf_counter()
        for cmd in _commands(markets):
            await ws.send(cmd.decode())
        task = asyncio.get_running_loop().create_task(receive(ws))
        await asyncio.wait_for(_until_done(got, last, target), 300)
        cpu, wall = time.process_time() - t0, last[0] - w0
        task.cancel()
    return {"frames": got[0], "cpu": cpu, "wall": wall}


def _normalize_only(events: int) -> dict:
    from ssmd_fast import normalize
    from ssmd_fast.kalshi.generator import generate_session

    frames = [f if isinstance(f, bytes) else f.encode() for f in generate_session(events, seed=1, markets=20)]
    batch = normalize.FrameBatch()
    t0, w0 = time.process_time(), time.perf_counter()
    for k in range(0, len(frames), 64):
        batch.set_recv_ts(time.time_ns())
        for f in frames[k:k + 64]:
            batch.add(f)
        batch.reset()
    return {"frames": len(frames), "cpu": time.process_time() - t0, "wall": time.perf_counter() - w0}


def client_main(args) -> None:
    import uvloop

    from ssmd_fast.kalshi.auth import KalshiCredentials

    creds = KalshiCredentials("bench", Path(args.key).read_text())
    markets = json.loads(args.tickers)

    if args.client == "normalize":
        print(json.dumps(_normalize_only(args.target)))
        return

    async def run():
        if args.client == "websockets":
            return await _client_websockets(args.url, creds, markets, args.target)
        return await _client_picows(args.client, args.url, creds, markets, args.target)

    print(json.dumps(uvloop.run(run())))


# ------------------------------------------------------------------ the driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the exchange exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the exchange did not start listening")


def _client_process(variant: str, url: str, key_dir: Path, tickers: list[str], events: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_session", "--client", variant, "--url", url,
         "--key", str(key_dir / "private.pem"), "--tickers", json.dumps(tickers), "--target", str(events)],
        capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"client {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_run(variant: str, events: int, markets: int, key_dir: Path) -> dict:
    """A fresh exchange process and a client process for ``variant``; the client's own figures."""
    from ssmd_fast.kalshi.generator import SessionGenerator

    if variant == "normalize":
        return _client_process(variant, "", key_dir, [], events)
    tickers = list(SessionGenerator(seed=1, markets=markets).tickers)
    port = _free_port()
    exchange = subprocess.Popen(
        [sys.executable, "-m", "ssmd_fast", "exchange", "--listen", f"127.0.0.1:{port}",
         "--public-key", str(key_dir / "public.pem"), "--generate", str(events), "--pregenerate", str(events),
         "--markets", str(markets), "--rate", "0", "--ping-interval", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, exchange)
        return _client_process(variant, f"ws://127.0.0.1:{port}/trade-api/ws/v2", key_dir, tickers, events)
    finally:
        exchange.terminate()
        try:
            exchange.wait(10)
        except subprocess.TimeoutExpired:
            exchange.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="generated events per run (default 200000)")
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="30000 events, 1 round (a smoke run)")
    ap.add_argument("--out", default=str(RESULTS))
    # client mode (internal)
    ap.add_argument("--client", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--target", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tickers", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        client_main(args)
        return 0
    if args.quick:
        args.events, args.rounds = 30_000, 1
    variants = [v for v in args.variants.split(",") if v]

    from ssmd_fast import normalize
    from ssmd_fast.kalshi.auth import generate_key_pair

    if normalize.IMPLEMENTATION != "cython":
        print("the compiled extensions are not built (make build)", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench-session-") as tmp:
        key_dir = Path(tmp)
        private, public = generate_key_pair()
        (key_dir / "private.pem").write_bytes(private)
        (key_dir / "public.pem").write_bytes(public)
        for r in range(args.rounds):
            for v in variants:
                res = one_run(v, args.events, args.markets, key_dir)
                runs[v].append(res)
                print(f"round {r + 1} {LABELS[v]:<40} {res['frames']:>8} frames "
                      f"{res['cpu'] / res['frames'] * 1e9:8.0f} ns CPU/frame "
                      f"{res['frames'] / res['wall']:>10,.0f} frames/s", flush=True)

    rows = []
    for v in variants:
        ns = statistics.median(r["cpu"] / r["frames"] * 1e9 for r in runs[v])
        fps = statistics.median(r["frames"] / r["wall"] for r in runs[v])
        rows.append({"variant": v, "label": LABELS[v], "cpu_ns_per_frame": round(ns, 1),
                     "frames_per_s": round(fps), "runs": runs[v]})
    by = {row["variant"]: row for row in rows}
    ratio = None
    if "cython" in by and "websockets" in by:
        ratio = by["websockets"]["cpu_ns_per_frame"] / by["cython"]["cpu_ns_per_frame"]
    print()
    print(f"{'client (same frames, same run)':<42} {'CPU ns/frame':>12} {'frames/s':>12} {'vs Cython':>10}")
    for row in rows:
        rel = row["cpu_ns_per_frame"] / by["cython"]["cpu_ns_per_frame"] if "cython" in by else float("nan")
        print(f"{row['label']:<42} {row['cpu_ns_per_frame']:>12,.0f} {row['frames_per_s']:>12,} {rel:>9.1f}x")
    if ratio is not None:
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"\nwebsockets / Cython listener CPU per frame: {ratio:.1f}x ({verdict} the {TARGET_RATIO:g}x target)")
    out = {
        "benchmark": "bench_session", "events": args.events, "markets": args.markets, "rounds": args.rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": rows, "websockets_over_cython": ratio, "target_ratio": TARGET_RATIO,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0 if ratio is None or ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
