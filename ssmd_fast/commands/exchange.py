"""Run the local Kalshi exchange: a WebSocket server speaking Kalshi's market-data protocol on
/trade-api/ws/v2, serving a generated session (--generate N) or a recorded one (--replay FILE),
with handshake auth against --public-key, heartbeat pings and faults on demand.

faults (--faults, or at run time over --control with "faults SPEC"), comma-separated:
{faults}

control port (--control HOST:PORT), one command per line, one answer line each:
  faults SPEC      replace the active faults      clear          no faults
  stats            JSON counters                  resume         unfreeze frozen connections
  accept on|off    listen / refuse new connections
  drop             drop every connection now      help           the list of commands
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import signal
import socket
import sys
import time
from pathlib import Path

from ssmd_fast.cli import check_writable_file, float_at_least, int_at_least, path_arg
from ssmd_fast.errors import SsmdError
from ssmd_fast.kalshi.exchange_faults import FaultSpec, describe
from ssmd_fast.logs import plural

__doc__ = __doc__.format(faults=describe())


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _mix(text: str) -> str:
    """The generator's mix, checked when the command line is parsed (its error names the bad item)."""
    from ssmd_fast.kalshi.generator import parse_mix

    try:
        parse_mix(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return text


def _faults(text: str) -> str:
    try:
        FaultSpec.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 8765), metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8765; port 0 picks a free one)")
    p.add_argument("--public-key", required=True, metavar="FILE", type=path_arg,
                   help="PEM public key that verifies the handshake signatures (ssmd-fast keygen writes one)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--replay", metavar="FILE", type=path_arg, help="serve the data frames of a recorded JSONL session")
    src.add_argument("--generate", type=int_at_least(1), metavar="N", help="serve a generated session of N events")
    p.add_argument("--markets", type=int_at_least(1), default=20, help="generated markets (default 20)")
    p.add_argument("--era", choices=("legacy", "both", "current", "mixed"), default="both",
                   help="generated wire era (default both)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--mix", type=_mix, default=None,
                   help="generator mix, e.g. ticker=0.5,orderbook_delta=0.35 (keys: ticker, orderbook_delta, "
                        "trade, lifecycle)")
    p.add_argument("--pregenerate", type=int_at_least(0), default=2_000_000, metavar="N",
                   help="events generated before listening (default 2000000; the rest on demand, slower)")
    p.add_argument("--rate", type=float_at_least(0, " (0 = as fast as each connection reads)"), default=0.0,
                   help="timeline events per second (default 0 = as fast as each connection reads)")
    p.add_argument("--faults", type=_faults, default="", metavar="SPEC", help="faults from the start (see below)")
    p.add_argument("--control", type=_host_port, default=None, metavar="HOST:PORT",
                   help="line-based TCP control port")
    p.add_argument("--record", default=None, metavar="FILE", type=path_arg, help="write every data frame sent, as JSONL")
    p.add_argument("--ping-interval", type=float_at_least(0, strict=True), default=10.0,
                   help="server heartbeat pings, seconds (default 10)")
    p.add_argument("--max-markets-per-subscription", type=int_at_least(1), default=256, metavar="N",
                   help="markets per subscription before error 26 (default 256)")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def check_address(addr: tuple[str, int], option: str) -> None:
    """Bind ``addr`` as the server will (SO_REUSEADDR, every address the host resolves to) and let go:
    a busy port is reported before the session is built, not as a traceback after it."""
    host, port = addr
    where = f"{option} {host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise SsmdError(f"{where}: cannot resolve {host!r}: {e.strerror}")
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(sockaddr)
            except OSError as e:
                raise SsmdError(f"{where}: {_reason(e)}")


def check_arguments(args: argparse.Namespace) -> bytes:
    """Everything the command line names, checked before the session is built (that can take 10 s);
    returns the public key's PEM. Raises SsmdError naming the option."""
    from cryptography.hazmat.primitives import serialization

    try:
        public_pem = Path(args.public_key).read_bytes()
    except OSError as e:
        raise SsmdError(f"--public-key {args.public_key}: cannot read: {e.strerror or e}")
    try:
        serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError):
        raise SsmdError(f"--public-key {args.public_key}: not a PEM public key (ssmd-fast keygen writes one)")
    check_address(args.listen, "--listen")
    if args.control is not None:
        if args.control[1] and args.control == args.listen:
            raise SsmdError(f"--control {args.control[0]}:{args.control[1]}: the same address as --listen")
        check_address(args.control, "--control")
    if args.record:
        check_writable_file(args.record, "--record")
    return public_pem


def load_replay(path: str):
    """The replay feed of ``path``, or SsmdError when it holds no event; warns on stderr about the lines
    that are not recorded frames (they used to be dropped without a word)."""
    from ssmd_fast.kalshi.exchange_feed import ReplayFeed

    try:
        feed = ReplayFeed(path)
    except OSError as e:
        raise SsmdError(f"--replay {path}: cannot read: {e.strerror or e}")
    if feed.total == 0:
        if not feed.lines:
            raise SsmdError(f"{path}: no events to replay (the file is empty)")
        line, why = feed.first_skipped
        raise SsmdError(f"{path}: no events to replay ({plural(feed.lines, 'line')} skipped: first at line "
                        f"{line}: {why})")
    if feed.malformed:
        line, why = feed.first_malformed
        print(f"ssmd-fast exchange: warning: {path}: {plural(feed.malformed, 'line')} skipped as malformed: "
              f"first at line {line}: {why}", file=sys.stderr)
    return feed


async def _serve(args: argparse.Namespace) -> dict:
    from ssmd_fast.kalshi.exchange import Exchange
    from ssmd_fast.kalshi.exchange_feed import GeneratedFeed

    public_pem = check_arguments(args)
    t0 = time.monotonic()
    try:
        if args.replay:
            feed = load_replay(args.replay)
        else:
            feed = GeneratedFeed(args.generate, seed=args.seed, markets=args.markets, era=args.era,
                                 rate=args.rate or 2000.0, mix=args.mix, pregenerate=args.pregenerate)
    except ValueError as e:
        raise SsmdError(str(e))
    gc.freeze()     # the prebuilt timeline is long-lived: keep the collector from walking it
    try:
        ex = Exchange(feed, public_pem, host=args.listen[0], port=args.listen[1], rate=args.rate,
                      ping_interval=args.ping_interval, max_markets=args.max_markets_per_subscription,
                      faults=args.faults, record=args.record, control=args.control)
    except ValueError as e:
        raise SsmdError(str(e))
    try:
        await ex.start()
    except OSError as e:        # the port taken since check_arguments, or the record file gone
        raise SsmdError(f"cannot start the exchange: {_reason(e)}")
    extra = f", control on {args.control[0]}:{ex.control_port}" if args.control else ""
    print(f"{feed.kind} session of {plural(feed.total, 'event')} ready in {time.monotonic() - t0:.1f}s{extra}",
          file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):     # before "listening": a SIGTERM right after it is a stop
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {ex.url}", flush=True)
    await stop.wait()
    await ex.close()
    return ex.stats()


def main(args: argparse.Namespace) -> int:
    import uvloop

    stats = uvloop.run(_serve(args))
    frames = stats["frames"]
    print(f"frames sent: {stats['frames_total']} ({stats['bytes']} bytes) over "
          f"{plural(stats['connections_total'], 'connection')}")
    for typ in sorted(frames, key=lambda t: -frames[t]):
        print(f"  {typ:<22} {frames[typ]:>12}")
    injected = {k: v for k, v in stats["injected"].items() if v}
    if injected:
        print("faults injected: " + ", ".join(f"{k}={v}" for k, v in injected.items()))
    sys.stdout.flush()
    return 0
