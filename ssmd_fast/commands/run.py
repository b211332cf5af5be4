"""Run the connector as a service: Kalshi WebSocket sessions -> exact normalized records -> acked
NATS JetStream and/or rotated files, with Prometheus metrics, /health and /ready.

Credentials come from the keys named in the environment file (see README "Configuration").
The first SIGTERM or SIGINT stops intake, waits for acks (runner.shutdown_timeout), spills what is
unacked and exits 0 when every record was acked or spilled (1 otherwise, with the numbers);
a second signal exits at once."""

from __future__ import annotations

import argparse

from ssmd_fast.cli import path_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, metavar="FILE", type=path_arg, help="environment YAML file")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop (default uvloop)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="log level (default info)")
    p.add_argument("--log-format", default="text", choices=("text", "json"), help="log line format (default text)")
    p.add_argument("--report-json", metavar="FILE", type=path_arg, help="write the final run report (counters, exit code) as JSON")


def main(args: argparse.Namespace) -> int:
    from ssmd_fast.cli import check_writable_file
    from ssmd_fast.config import load_environment
    from ssmd_fast.logs import setup_logging
    from ssmd_fast.runner import run_service

    setup_logging(args.log_level, args.log_format)
    cfg = load_environment(args.env)
    if args.report_json:    # before the run: a clean run used to end in IsADirectoryError, and exit 1
        check_writable_file(args.report_json, "--report-json")
    return run_service(cfg, loop=args.loop, report_json=args.report_json)
