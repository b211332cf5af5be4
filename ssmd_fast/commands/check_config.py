"""Load and validate an environment file, then print the resolved configuration (defaults filled in,
secrets redacted). Exit 0 when valid, 1 with the error (file:line: key: reason) otherwise.

With --credentials, also resolve the Kalshi keys the file names, load the private key, and read every
other file and secret variable `run` reads (NATS auth, NATS TLS, exchange.ca_file) as it reads them.
The configuration is printed only once everything checked out."""

from __future__ import annotations

import argparse
import sys

from ssmd_fast.cli import path_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, metavar="FILE", type=path_arg, help="environment YAML file")
    p.add_argument("--credentials", action="store_true",
                   help="also resolve the keys named in the file, check the private key loads, and read the "
                        "NATS credentials and TLS files and exchange.ca_file as run does")


def main(args: argparse.Namespace) -> int:
    import yaml

    from ssmd_fast.config import load_environment
    from ssmd_fast.credentials import check_run_files, resolve_credentials, with_exchange_choice
    from ssmd_fast.kalshi.auth import KalshiCredentials

    cfg = with_exchange_choice(load_environment(args.env))
    creds = None
    if args.credentials:
        creds = KalshiCredentials.from_config(resolve_credentials(cfg))
        check_run_files(cfg)
    doc = cfg.to_dict()
    doc["exchange"]["resolved_url"] = cfg.exchange.resolved_url
    doc["transport"]["spill"]["path"] = cfg.resolved_spill_path
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    if creds is not None:
        print(f"# credentials: api key {creds.api_key}, RSA private key loaded", file=sys.stderr)
    print(f"# {args.env}: OK", file=sys.stderr)
    return 0
