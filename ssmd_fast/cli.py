"""Thin argparse front: each command lives in ``ssmd_fast.commands.<module>``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ssmd_fast import __version__
from ssmd_fast.errors import SsmdError

# command name -> (module under ssmd_fast.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the connector: Kalshi WebSocket -> normalized records -> JetStream and/or files"),
    "check-config": ("check_config", "load and validate an environment file, print it with secrets redacted"),
    "keygen": ("keygen", "write a test RSA key pair (private key mode 0600)"),
    "normalize": ("normalize", "normalize raw Kalshi JSONL frames into schema-v1 records (stdout)"),
    "tail": ("tail", "print the messages of a JetStream stream as they arrive (ordered consumer)"),
    "spill": ("spill", "show what a spill directory holds (pending records, dead letters, corrupt bytes)"),
    "exchange": ("exchange", "run the local Kalshi exchange (generated or replayed sessions, faults on demand)"),
    "demo": ("demo", "run the whole pipeline locally (exchange, nats-server, connector) and check every frame"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmd-fast",
        description="Kalshi market-data connector: WebSocket -> exact normalized records -> "
                    "acked NATS JetStream and/or rotated files.",
    )
    parser.add_argument("--version", action="version", version=f"ssmd-fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"ssmd_fast.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except SsmdError as exc:
        print(f"ssmd-fast {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ssmd-fast normalize ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
