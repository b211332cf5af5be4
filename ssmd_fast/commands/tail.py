"""Print the messages of a JetStream stream as they arrive: `SUBJECT ID PAYLOAD`, one per line.

Reads through an ordered consumer (ephemeral, no acks: it never disturbs the stream or other
readers). New messages only, unless --from-start. Stops after --count messages or on Ctrl-C.
SUBJECT is a subject filter such as `kalshi_dev.kalshi.norm.trade.>`; with --env it defaults to
`{subject_prefix}.>` and the URL, auth, TLS and stream come from the environment file.

Examples:
  ssmd-fast tail --env environments/kalshi-dev.yaml
  ssmd-fast tail 'kalshi_dev.kalshi.json.>' --nats nats://127.0.0.1:4222 --from-start --count 10
  ssmd-fast tail 'kalshi_dev.kalshi.norm.>' --nats nats://127.0.0.1:4222 --raw > records.jsonl"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

DEFAULT_URL = "nats://127.0.0.1:4222"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", nargs="?", metavar="SUBJECT",
                   help="subject filter (default with --env: {subject_prefix}.>)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--env", metavar="FILE", help="environment file: NATS URL, auth, TLS and stream")
    src.add_argument("--nats", metavar="URL", help=f"NATS server URL (default {DEFAULT_URL})")
    p.add_argument("--stream", metavar="NAME", help="stream name (default: from --env, else looked up by subject)")
    p.add_argument("--from-start", action="store_true", help="deliver every stored message first, then new ones")
    p.add_argument("--count", "-n", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--raw", action="store_true", help="print the payload only (JSONL)")


def resolve(args: argparse.Namespace) -> tuple[dict, str | None, str]:
    """(nats-py connect options, stream, subject filter) from the command line."""
    from ssmd_fast.errors import SsmdError

    stream = args.stream
    if args.env:
        from ssmd_fast.config import load_environment
        from ssmd_fast.sinks.reader import connect_options

        cfg = load_environment(args.env)
        if cfg.transport.type != "nats" or not cfg.transport.url:
            raise SsmdError(f"{args.env}: transport.type is not nats: nothing to tail")
        opts = connect_options(cfg.transport)
        stream = stream or cfg.transport.stream
        subject = args.subject or f"{cfg.transport.subject_prefix}.>"
    else:
        opts = {"servers": [args.nats or DEFAULT_URL]}
        if not args.subject:
            raise SsmdError("give a SUBJECT filter (or --env FILE)")
        subject = args.subject
    if args.count is not None and args.count < 1:
        raise SsmdError("--count must be at least 1")
    return opts, stream, subject


async def tail(args: argparse.Namespace, out=None, err=None) -> int:
    import nats

    from ssmd_fast.errors import SsmdError
    from ssmd_fast.sinks.reader import StreamReader, client_callbacks

    out = out or sys.stdout.buffer
    err = err or sys.stderr
    opts, stream, subject = resolve(args)
    try:
        nc = await asyncio.wait_for(nats.connect(**opts, **client_callbacks(), connect_timeout=3,
                                                 max_reconnect_attempts=-1, reconnect_time_wait=0.5), 10)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise SsmdError(f"cannot connect to {', '.join(opts['servers'])} within 10 s: {exc!r}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    n = 0
    try:
        async with StreamReader(nc, stream, subject, from_start=args.from_start) as reader:
            while not stop.is_set() and (args.count is None or n < args.count):
                m = await reader.next(timeout=0.25)
                if m is None:
                    continue
                if args.raw:
                    out.write(m.data + b"\n")
                else:
                    out.write(b"%s %s %s\n" % (m.subject.encode(), (m.msg_id or "-").encode(), m.data))
                out.flush()
                n += 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await nc.close()
    print(f"ssmd-fast tail: {n} messages", file=err)
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(tail(args))
