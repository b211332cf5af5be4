"""Write a test RSA key pair: DIR/kalshi_private.pem (PKCS#8, mode 0600) and DIR/kalshi_public.pem.

For the local exchange, tests and the demo only: production keys come from Kalshi."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the key pair into")
    p.add_argument("--bits", type=int, default=2048, help="RSA modulus size (default 2048)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def write_key_pair(out: Path, bits: int = 2048, force: bool = False) -> tuple[Path, Path]:
    from ssmd_fast.errors import SsmdError
    from ssmd_fast.kalshi.auth import generate_key_pair

    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / "kalshi_private.pem", out / "kalshi_public.pem"
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise SsmdError(f"{path} exists (use --force to overwrite)")
    private, public = generate_key_pair(bits)
    if private_path.exists():
        private_path.unlink()
    # Create with 0600 from the start: the key must never exist world-readable, even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public_path.write_bytes(public)
    return private_path, public_path


def main(args: argparse.Namespace) -> int:
    private_path, public_path = write_key_pair(Path(args.out), args.bits, args.force)
    print(f"private key: {private_path} (mode 0600)")
    print(f"public key:  {public_path}")
    return 0
