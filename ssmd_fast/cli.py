"""Thin argparse front: each command lives in ``ssmd_fast.commands.<module>``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

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


class UsageError(SsmdError):
    """A wrong combination of arguments, found after parsing: reported as argparse reports its own
    errors (usage line, ``ssmd-fast COMMAND: error: ...``, exit status 2)."""


def _number(convert, text: str, least: float, strict: bool, meaning: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if convert is int else 'a number'}, got {text!r}")
    if value != value or value in (float("inf"), float("-inf")):      # nan, inf: no option wants them
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < least or (strict and value == least):
        bound = f"> {least:g}" if strict else f">= {least:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}{meaning}, got {text}")
    return value


def int_at_least(least: int, meaning: str = ""):
    """An argparse ``type=``: an integer >= ``least``. argparse names the option in its error, e.g.
    ``argument --count/-n: must be >= 1, got 0``; ``meaning`` explains the bound."""
    def parse(text: str) -> int:
        return _number(int, text, least, False, meaning)
    parse.__name__ = "integer"
    return parse


def float_at_least(least: float, meaning: str = "", *, strict: bool = False):
    """An argparse ``type=``: a finite number >= ``least`` (> with ``strict``)."""
    def parse(text: str) -> float:
        return _number(float, text, least, strict, meaning)
    parse.__name__ = "number"
    return parse


def path_arg(text: str) -> str:
    """An argparse ``type=`` for a file or directory: not empty. `--out "$DIR"` with DIR unset wrote the key
    pair into the current directory, and `--env ""` was reported as the file `.`."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return text


path_arg.__name__ = "path"


def make_directory(path: Path, what: str) -> bool:
    """Create ``path`` (and its parents) unless it is a directory already, and check it can be written;
    SsmdError ``WHAT PATH: reason`` otherwise. True when it was created here."""
    if path.exists() and not path.is_dir():
        raise SsmdError(f"{what} {path}: not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SsmdError(f"{what} {path}: cannot create the directory: {exc.strerror or exc}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise SsmdError(f"{what} {path}: not writable")
    return created


def check_writable_file(path: str | os.PathLike, what: str) -> None:
    """Raise SsmdError (``WHAT PATH: reason``) unless ``path`` can be opened for writing: checked when a
    command starts, not when its work is done. Leaves no file behind (an existing one is left as is)."""
    existed = os.path.lexists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = f"no such directory {os.path.dirname(os.path.abspath(path))}"
        raise SsmdError(f"{what} {path}: cannot write: {reason}")
    if not existed:
        os.unlink(path)


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
        p.set_defaults(_main=module.main, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # said by the command's own parser: its usage, `ssmd-fast COMMAND: error: ...` (not the top's)
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._main(args) or 0)
    except UsageError as exc:
        args._parser.print_usage(sys.stderr)
        print(f"ssmd-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
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
