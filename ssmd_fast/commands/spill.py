"""Show what a spill directory holds: records waiting for NATS, dead letters, corrupt bytes set aside.

Read-only: it takes no lock and writes nothing, so it can look at the spill of a running connector.
The directory is transport.spill.path of the environment file (--env; default {storage.path}/spill,
else data/{name}/spill), or given as DIR. --dead-letter looks at the messages the server rejected
(stream full, no permission, too large): kept in {spill}/dead-letter, never replayed automatically,
with why they are there (the server's answer, per kind: {spill}/dead-letter/reasons.jsonl).
--records N prints the first N records a replay would send (`SUBJECT ID PAYLOAD`, as `ssmd-fast tail`
does; --raw: the payload only) on stdout, and the summary on stderr.

--requeue-dead-letters moves the dead letters to the end of the spill, once their cause is fixed (the
stream's limits raised, the permission granted): the connector's next start replays them with their
original ids (JetStream drops any already stored, within its duplicate_window). It takes both locks,
so the connector must be stopped; a crash part way only requeues some twice (the same ids).

Examples:
  ssmd-fast spill --env environments/kalshi-dev.yaml
  ssmd-fast spill --env environments/kalshi-dev.yaml --dead-letter --records 20
  ssmd-fast spill data/kalshi-dev/spill --records 1000 --raw > pending.jsonl"""

from __future__ import annotations

import argparse
import os
import sys

from ssmd_fast.cli import UsageError, int_at_least, path_arg
from ssmd_fast.logs import plural


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("directory", nargs="?", metavar="DIR", type=path_arg, help="the spill directory")
    src.add_argument("--env", metavar="FILE", type=path_arg, help="environment file: its spill directory")
    p.add_argument("--dead-letter", action="store_true", help="the dead-letter file instead of the spill")
    p.add_argument("--records", "-n", type=int_at_least(1), metavar="N", help="print the first N pending records")
    p.add_argument("--raw", action="store_true", help="with --records: the payload only (JSONL)")
    p.add_argument("--requeue-dead-letters", action="store_true",
                   help="move the dead letters to the end of the spill (the connector must be stopped)")


def main(args: argparse.Namespace, out=None, err=None) -> int:
    from ssmd_fast.config import SpillConfig
    from ssmd_fast.errors import SsmdError
    from ssmd_fast.sinks.spill_inspect import inspect_spill, pending_records

    out = out or sys.stdout.buffer
    err = err or sys.stderr
    cap = SpillConfig().max_bytes   # the spill's cap when requeueing: the environment's, else the default
    if args.env:
        from ssmd_fast.config import load_environment

        cfg = load_environment(args.env)
        directory, cap = cfg.resolved_spill_path, cfg.transport.spill.max_bytes
    else:
        directory = args.directory
    if args.raw and args.records is None:   # it was ignored: the summary has no payloads to print raw
        raise UsageError("--raw goes with --records N")
    if args.requeue_dead_letters and (args.dead_letter or args.records is not None):
        raise UsageError("--requeue-dead-letters takes neither --dead-letter nor --records")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise SsmdError(f"{directory}: not a spill directory (not a directory)")
    inner = None if args.env else _spill_below(directory)
    if inner:   # the file sink's directory given for its spill: it said "empty", exit 0
        raise SsmdError(f"{directory}: not a spill directory (no spill files; {inner} is one: "
                        f"ssmd-fast spill {inner})")
    if args.requeue_dead_letters:
        n = requeue_dead_letters(directory, cap)
        print(f"ssmd-fast spill: {plural(n, 'dead letter')} moved to the end of {directory}: the connector's next "
              "start replays them", file=err)
        return 0
    summary = []
    if args.dead_letter:
        from ssmd_fast.sinks.dead_reasons import read_reasons

        directory = os.path.join(directory, "dead-letter")
        view = inspect_spill(directory)
        summary = view.summary() + (read_reasons(directory).lines() if view.pending_records else [])
    else:
        view = inspect_spill(directory)
        summary = view.summary()
    if args.records is None:
        out.write(("\n".join(summary) + "\n").encode())
        out.flush()
        return 0
    n = 0
    for subject, msg_id, payload in pending_records(view, args.records):
        out.write(payload + b"\n" if args.raw else b"%s %s %s\n" % (subject, msg_id, payload))
        n += 1
    out.flush()
    print("\n".join(summary + [f"ssmd-fast spill: {plural(n, 'record')} printed"]), file=err)
    return 0


def _spill_below(directory: str) -> str | None:
    """``DIRECTORY/spill`` when ``directory`` holds no spill file of its own and that one is a directory
    (``storage.path`` given where ``{storage.path}/spill`` was meant), else None."""
    from ssmd_fast.sinks.spill_recovery import _SEGMENT_RE, CURSOR_NAME, LOCK_NAME, QUARANTINE_NAME

    inner = os.path.join(directory, "spill")
    if not os.path.isdir(inner):
        return None
    try:
        names = os.listdir(directory)
    except OSError:
        return None     # inspect_spill names the error
    ours = (CURSOR_NAME, LOCK_NAME, QUARANTINE_NAME, "dead-letter")
    return None if any(_SEGMENT_RE.match(n) or n in ours for n in names) else inner


def requeue_dead_letters(directory: str, max_bytes: int, chunk: int = 4096) -> int:
    """Append every dead letter to the spill (its cap ``max_bytes``), then consume it; returns the count.
    Raises SsmdError."""
    from ssmd_fast.errors import SsmdError, StorageError
    from ssmd_fast.sinks.spill import SpillFile

    dead_dir = os.path.join(directory, "dead-letter")
    if not os.path.isdir(dead_dir):
        raise SsmdError(f"{dead_dir}: no dead letters (no such directory)")
    moved = 0
    try:
        with SpillFile(directory, max_bytes=max_bytes) as spill, SpillFile(dead_dir, max_bytes=1 << 62) as dead:
            dead.wait_checked()
            while records := dead.read(chunk):
                try:
                    taken, stop = spill.append_many(records), None
                except StorageError as exc:   # the cap, or the disk: the records it took still move
                    taken, stop = getattr(exc, "appended", 0), exc
                spill.flush(fsync=True)   # in the spill for good before they leave the dead letters
                dead.consume(taken)
                moved += taken
                if stop is not None:
                    raise stop
    except StorageError as exc:
        raise SsmdError(f"{exc} ({plural(moved, 'dead letter')} moved before it; the connector must be stopped)")
    if moved:
        from ssmd_fast.sinks.dead_reasons import mark_requeued

        try:
            mark_requeued(dead_dir, moved)   # every letter left: their reasons are history
        except StorageError as exc:
            raise SsmdError(f"{plural(moved, 'dead letter')} moved, but {exc}")
    return moved
