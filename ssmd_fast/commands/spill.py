"""Show what a spill directory holds: records waiting for NATS, dead letters, corrupt bytes set aside.

Read-only: it takes no lock and writes nothing, so it can look at the spill of a running connector.
The directory is transport.spill.path of the environment file (--env; default {storage.path}/spill,
else data/{name}/spill), or given as DIR. --dead-letter looks at the messages the server rejected
(stream full, no permission, too large): kept in {spill}/dead-letter, never replayed automatically.
--records N prints the first N records a replay would send (`SUBJECT ID PAYLOAD`, as `ssmd-fast tail`
does; --raw: the payload only) on stdout, and the summary on stderr.

Examples:
  ssmd-fast spill --env environments/kalshi-dev.yaml
  ssmd-fast spill --env environments/kalshi-dev.yaml --dead-letter --records 20
  ssmd-fast spill data/kalshi-dev/spill --records 1000 --raw > pending.jsonl"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("directory", nargs="?", metavar="DIR", help="the spill directory")
    src.add_argument("--env", metavar="FILE", help="environment file: its spill directory")
    p.add_argument("--dead-letter", action="store_true", help="the dead-letter file instead of the spill")
    p.add_argument("--records", "-n", type=int, metavar="N", help="print the first N pending records")
    p.add_argument("--raw", action="store_true", help="with --records: the payload only (JSONL)")


def main(args: argparse.Namespace, out=None, err=None) -> int:
    from ssmd_fast.errors import SsmdError
    from ssmd_fast.sinks.spill_inspect import inspect_spill, pending_records

    out = out or sys.stdout.buffer
    err = err or sys.stderr
    if args.env:
        from ssmd_fast.config import load_environment
        from ssmd_fast.runner import spill_directory

        directory = spill_directory(load_environment(args.env))
    else:
        directory = args.directory
    if args.dead_letter:
        directory = os.path.join(directory, "dead-letter")
    if args.records is not None and args.records < 1:
        raise SsmdError("--records must be at least 1")
    view = inspect_spill(directory)
    if args.records is None:
        out.write(("\n".join(view.summary()) + "\n").encode())
        out.flush()
        return 0
    n = 0
    for subject, msg_id, payload in pending_records(view, args.records):
        out.write(payload + b"\n" if args.raw else b"%s %s %s\n" % (subject, msg_id, payload))
        n += 1
    out.flush()
    print("\n".join(view.summary() + [f"ssmd-fast spill: {n} records printed"]), file=err)
    return 0
