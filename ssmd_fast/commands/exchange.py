"""Run the local Kalshi exchange: a WebSocket server speaking Kalshi's market-data protocol on
/trade-api/ws/v2, serving a generated session (--generate N) or a recorded one (--replay FILE),
with handshake auth against --public-key, heartbeat pings and faults on demand.

faults (--faults, or at run time over --control with "faults SPEC"), comma-separated:
{faults}

control port (--control HOST:PORT), one command per line, one answer line each:
  faults SPEC      replace the active faults      clear          no faults
  stats            JSON counters                  resume         unfreeze frozen connections
  accept on|off    listen / refuse new connections
  drop             drop every connection now
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from pathlib import Path

from ssmd_fast.kalshi.exchange_faults import describe

__doc__ = __doc__.format(faults=describe())


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 8765), metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8765; port 0 picks a free one)")
    p.add_argument("--public-key", required=True, metavar="FILE",
                   help="PEM public key that verifies the handshake signatures (ssmd-fast keygen writes one)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--replay", metavar="FILE", help="serve the data frames of a recorded JSONL session")
    src.add_argument("--generate", type=int, metavar="N", help="serve a generated session of N events")
    p.add_argument("--markets", type=int, default=20, help="generated markets (default 20)")
    p.add_argument("--era", choices=("legacy", "both", "current", "mixed"), default="both",
                   help="generated wire era (default both)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--mix", default=None, help="generator mix, e.g. ticker=0.5,orderbook_delta=0.35")
    p.add_argument("--pregenerate", type=int, default=2_000_000, metavar="N",
                   help="events generated before listening (default 2000000; the rest on demand, slower)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="timeline events per second (default 0 = as fast as each connection reads)")
    p.add_argument("--faults", default="", metavar="SPEC", help="faults from the start (see below)")
    p.add_argument("--control", type=_host_port, default=None, metavar="HOST:PORT",
                   help="line-based TCP control port")
    p.add_argument("--record", default=None, metavar="FILE", help="write every data frame sent, as JSONL")
    p.add_argument("--ping-interval", type=float, default=10.0, help="server heartbeat pings, seconds (default 10)")
    p.add_argument("--max-markets-per-subscription", type=int, default=256, metavar="N",
                   help="markets per subscription before error 26 (default 256)")


async def _serve(args: argparse.Namespace) -> dict:
    from ssmd_fast.errors import SsmdError
    from ssmd_fast.kalshi.exchange import Exchange
    from ssmd_fast.kalshi.exchange_feed import GeneratedFeed, ReplayFeed

    try:
        public_pem = Path(args.public_key).read_bytes()
    except OSError as e:
        raise SsmdError(f"cannot read --public-key: {e}")
    t0 = time.monotonic()
    try:
        if args.replay:
            feed = ReplayFeed(args.replay)
        else:
            feed = GeneratedFeed(args.generate, seed=args.seed, markets=args.markets, era=args.era,
                                 rate=args.rate or 2000.0, mix=args.mix, pregenerate=args.pregenerate)
    except OSError as e:
        raise SsmdError(f"cannot read --replay: {e}")
    except ValueError as e:
        raise SsmdError(str(e))
    gc.freeze()     # the prebuilt timeline is long-lived: keep the collector from walking it
    try:
        ex = Exchange(feed, public_pem, host=args.listen[0], port=args.listen[1], rate=args.rate,
                      ping_interval=args.ping_interval, max_markets=args.max_markets_per_subscription,
                      faults=args.faults, record=args.record, control=args.control)
    except ValueError as e:
        raise SsmdError(str(e))
    await ex.start()
    extra = f", control on {args.control[0]}:{ex.control_port}" if args.control else ""
    print(f"{feed.kind} session of {feed.total} events ready in {time.monotonic() - t0:.1f}s{extra}",
          file=sys.stderr)
    print(f"listening on {ex.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await ex.close()
    return ex.stats()


def main(args: argparse.Namespace) -> int:
    import uvloop

    stats = uvloop.run(_serve(args))
    frames = stats["frames"]
    print(f"frames sent: {stats['frames_total']} ({stats['bytes']} bytes) over {stats['connections_total']} "
          f"connection(s)")
    for typ in sorted(frames, key=lambda t: -frames[t]):
        print(f"  {typ:<22} {frames[typ]:>12}")
    injected = {k: v for k, v in stats["injected"].items() if v}
    if injected:
        print("faults injected: " + ", ".join(f"{k}={v}" for k, v in injected.items()))
    sys.stdout.flush()
    return 0
