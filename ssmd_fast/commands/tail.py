"""Print the messages of a JetStream stream as they arrive: `SUBJECT ID PAYLOAD`, one per line.

Reads through an ordered consumer (ephemeral, no acks: it never disturbs the stream or other
readers). New messages only, unless --from-start. Stops after --count messages or on Ctrl-C.
If the stream is deleted, tail says so on stderr (within a few seconds) and waits for it; once it is
created again (its sequences start at 1 again), tail prints it from its first message and says so.
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

from ssmd_fast.cli import UsageError, int_at_least, path_arg
from ssmd_fast.logs import plural, scrub

DEFAULT_URL = "nats://127.0.0.1:4222"
CONNECT_TIMEOUT = 3.0       # seconds, one attempt at one server


def nats_url(text: str) -> str:
    """An argparse ``type=``: the URLs an environment file's transport.url takes, by the same rule
    (nats-py took `http://x` for host `http`, and tail waited its whole connect timeout); a user and
    password may be in it here, tail's only way to give them (errors show it scrubbed)."""
    from ssmd_fast.config_checks import nats_url_problem

    problem = nats_url_problem(text, credentials_allowed=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` is not a subject filter, or None. nats-server took `a..b` or `bad subject` as a
    subject no stream has, and tail said so ("no stream has it") rather than what was wrong."""
    if any(c.isspace() or not c.isprintable() for c in subject):
        return "a subject has no spaces or control characters"
    tokens = subject.split(".")
    if not all(tokens):
        return "a subject has no empty token (nothing before, after or between two dots)"
    if ">" in tokens[:-1]:
        return "'>' is only the last token"
    return None


def subjects_overlap(a: str, b: str) -> bool:
    """Can one subject match both filters (``*`` one token, ``>`` one or more at the end)?"""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb, strict=False):   # the shorter ends the walk
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(ta) == len(tb)


async def check_filter(nc, stream: str, subject: str) -> None:
    """SsmdError when ``stream`` stores no subject ``subject`` matches: tail waited for ever, silently
    (nats-server accepts such a consumer)."""
    from nats.js.errors import NotFoundError

    from ssmd_fast.errors import SsmdError

    try:
        info = await nc.jetstream().stream_info(stream)
    except NotFoundError:
        return      # StreamReader.open says so
    subjects = info.config.subjects or []   # none: a mirror or sourced stream, any subject may come
    if subjects and not any(subjects_overlap(subject, s) for s in subjects):
        raise SsmdError(f"stream {stream} stores {', '.join(subjects)}: no message can match {subject}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", nargs="?", metavar="SUBJECT",
                   help="subject filter (default with --env: {subject_prefix}.>)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--env", metavar="FILE", type=path_arg, help="environment file: NATS URL, auth, TLS and stream")
    src.add_argument("--nats", metavar="URL", type=nats_url,
                     help=f"NATS server URL, nats:// or tls:// (default {DEFAULT_URL})")
    p.add_argument("--stream", metavar="NAME", help="stream name (default: from --env, else looked up by subject)")
    p.add_argument("--from-start", action="store_true", help="deliver every stored message first, then new ones")
    p.add_argument("--count", "-n", type=int_at_least(1), metavar="N", help="stop after N messages")
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
            raise UsageError("give a SUBJECT filter (or --env FILE)")
        subject = args.subject
    problem = subject_problem(subject)
    if problem:
        raise UsageError(f"SUBJECT {subject!r}: {problem}")
    return opts, stream, subject


def _why(exc: BaseException) -> str:
    """A connection failure in a few words (nats-py hands over the socket's exception as is)."""
    import errno
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc)
    if text.startswith("Multiple exceptions") and f"[Errno {errno.ECONNREFUSED}]" in text:
        return "connection refused"         # asyncio's summary when every address of the host refused
    return text or type(exc).__name__


async def connect(opts: dict, timeout: float = 10.0):
    """A connected nats-py client, or SsmdError naming the server(s) and the cause. Gives up as soon as
    every server has failed once (nats-py, told to reconnect forever, retries the first connect forever
    too: tail used to wait its whole timeout and say `TimeoutError()`); reconnects forever once connected."""
    from nats.aio.client import Client

    from ssmd_fast.errors import SsmdError
    from ssmd_fast.sinks.reader import client_callbacks, quiet_error_cb

    servers = opts["servers"]
    failures: list[BaseException] = []
    all_failed = asyncio.Event()
    connecting = True

    async def on_error(exc: Exception) -> None:
        if connecting:
            failures.append(exc)
            if len(failures) >= len(servers):
                all_failed.set()
        await quiet_error_cb(exc)

    nc = Client()
    callbacks = {**client_callbacks(), "error_cb": on_error}
    attempt = asyncio.ensure_future(nc.connect(**opts, **callbacks, connect_timeout=CONNECT_TIMEOUT,
                                               max_reconnect_attempts=-1, reconnect_time_wait=0.5))
    failed = asyncio.ensure_future(all_failed.wait())
    try:
        await asyncio.wait({attempt, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        failed.cancel()
    connecting = False
    if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
        return nc
    if attempt.done() and not attempt.cancelled():
        failures.append(attempt.exception())
    attempt.cancel()
    try:
        await attempt
    except BaseException:       # noqa: BLE001 (cancelled or failed: its cause is in failures)
        pass
    try:
        await nc.close()
    except Exception:           # noqa: BLE001 (never connected: nothing to close)
        pass
    where = ", ".join(map(scrub, servers))
    if not failures:
        raise SsmdError(f"cannot connect to {where}: no answer within {timeout:g} s")
    causes = list(dict.fromkeys(_why(e) for e in failures))
    raise SsmdError(f"cannot connect to {where}: {'; '.join(causes)}")


async def tail(args: argparse.Namespace, out=None, err=None) -> int:
    from ssmd_fast.sinks.reader import StreamReader

    out = out or sys.stdout.buffer
    err = err or sys.stderr
    opts, stream, subject = resolve(args)
    nc = await connect(opts)
    if stream:
        try:
            await check_filter(nc, stream, subject)
        except BaseException:
            await nc.close()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    n = 0

    def notice(text: str) -> None:      # the stream gone, back or re-created: said between the messages
        print(f"ssmd-fast tail: {text}", file=err, flush=True)

    try:
        async with StreamReader(nc, stream, subject, from_start=args.from_start, on_notice=notice) as reader:
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
    print(f"ssmd-fast tail: {plural(n, 'message')}", file=err)
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(tail(args))
