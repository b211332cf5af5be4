"""Write a test RSA key pair: DIR/kalshi_private.pem (PKCS#8, mode 0600) and DIR/kalshi_public.pem.

For the local exchange, tests and the demo only: production keys come from Kalshi."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ssmd_fast.cli import int_at_least, make_directory, path_arg

MIN_BITS = 1024         # the least the cryptography package generates
MAX_BITS = 16384        # 16384 bits already take tens of seconds; more would look like a hang


def _bits(text: str) -> int:
    bits = int_at_least(MIN_BITS, " (Kalshi's keys are 2048 bits)")(text)
    if bits > MAX_BITS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_BITS} (Kalshi's keys are 2048 bits), got {text}")
    return bits


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", type=path_arg, help="directory to write the key pair into")
    p.add_argument("--bits", type=_bits, default=2048,
                   help=f"RSA modulus size, {MIN_BITS} to {MAX_BITS} (default 2048, as Kalshi's)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def write_key_pair(out: Path, bits: int = 2048, force: bool = False, *, what: str = "--out") -> tuple[Path, Path]:
    """Raises SsmdError naming ``what`` (the option that gave ``out``) when ``out`` cannot take the files."""
    from ssmd_fast.errors import SsmdError
    from ssmd_fast.kalshi.auth import generate_key_pair

    # Every check before the key is generated: a big key takes seconds, and a half-written pair is worse.
    make_directory(out, what)
    private_path, public_path = out / "kalshi_private.pem", out / "kalshi_public.pem"
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise SsmdError(f"{path} exists (use --force to overwrite)")
        if path.is_dir():
            raise SsmdError(f"{path} is a directory")
    private, public = generate_key_pair(bits)
    try:
        if private_path.exists():
            private_path.unlink()
        # Create with 0600 from the start: the key must never exist world-readable, even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        public_path.write_bytes(public)
    except OSError as exc:
        raise SsmdError(f"{what} {out}: cannot write the key pair: {exc.strerror or exc}")
    return private_path, public_path


def main(args: argparse.Namespace) -> int:
    private_path, public_path = write_key_pair(Path(args.out), args.bits, args.force)
    print(f"private key: {private_path} (mode 0600)")
    print(f"public key:  {public_path}")
    return 0
