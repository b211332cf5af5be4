"""User errors of the CLI commands: one line ``ssmd-fast COMMAND: error: ...`` naming the option or the
file, exit status 2 for arguments (as argparse's own), 1 for what fails at run time, and no traceback.
Every check here comes before any long work (key generation, pregeneration, the demo's processes).

In-process through ``cli.main``; the exchange's servers and the demo's pipeline are never started."""

from __future__ import annotations

import re

import pytest

from ssmd_fast import cli

pytestmark = pytest.mark.timeout(60)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)``; argparse's errors exit through SystemExit."""
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    got = capsys.readouterr()
    assert "Traceback" not in got.err
    return rc, got.out, got.err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


# --------------------------------------------------------------------------- shared helpers


def test_plural():
    assert [cli.plural(n, "message") for n in (0, 1, 2, 1000)] == \
        ["0 messages", "1 message", "2 messages", "1,000 messages"]
    assert cli.plural(1000, "line", grouped=False) == "1000 lines"
    assert cli.plural(1, "dead letter") == "1 dead letter"


def test_number_types_name_the_bound():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1, got 0"):
        cli.int_at_least(1)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer, got '1.5'"):
        cli.int_at_least(1)("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="must be > 0, got 0"):
        cli.float_at_least(0, strict=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        cli.float_at_least(0)("nan")
    assert cli.float_at_least(0)("0") == 0.0 and cli.int_at_least(0)("7") == 7


# --------------------------------------------------------------------------- exchange (arguments only)


@pytest.mark.parametrize("args,message", [
    (("--generate", "-5"), "argument --generate: must be >= 1, got -5"),
    (("--generate", "0"), "argument --generate: must be >= 1, got 0"),
    (("--generate", "5", "--pregenerate", "-1"), "argument --pregenerate: must be >= 0, got -1"),
    (("--generate", "5", "--rate", "-1"),
     "argument --rate: must be >= 0 (0 = as fast as each connection reads), got -1"),
    (("--generate", "5", "--ping-interval", "0"), "argument --ping-interval: must be > 0, got 0"),
    (("--generate", "5", "--max-markets-per-subscription", "0"),
     "argument --max-markets-per-subscription: must be >= 1, got 0"),
    (("--generate", "5", "--markets", "0"), "argument --markets: must be >= 1, got 0"),
    (("--generate", "5", "--mix", "ticker=abc"), "argument --mix: 'ticker=abc': the share 'abc' is not a number"),
    (("--generate", "5", "--mix", "ticker=0.5,tickr=1"), "argument --mix: 'tickr=1': unknown key 'tickr'"),
    (("--generate", "5", "--mix", "ticker"), "argument --mix: 'ticker': expected KEY=SHARE"),
    (("--generate", "5", "--faults", "gap-every=x"), "argument --faults: fault gap-every needs a positive integer"),
])
def test_exchange_arguments_are_checked_by_argparse(capsys, tmp_path, args, message):
    rc, _, err = run(capsys, "exchange", "--public-key", str(tmp_path / "k.pem"), *args)
    assert rc == 2 and last_line(err).startswith(f"ssmd-fast exchange: error: {message}"), err


def test_exchange_rate_zero_is_accepted():
    args = cli.build_parser().parse_args(["exchange", "--public-key", "k", "--generate", "5", "--rate", "0"])
    assert args.rate == 0.0


def test_exchange_help_lists_every_control_command(capsys):
    from ssmd_fast.kalshi.exchange import CONTROL_HELP

    rc, out, _ = run(capsys, "exchange", "--help")
    assert rc == 0
    listed = out.split("control port (--control HOST:PORT)", 1)[1].split("\noptions:", 1)[0]
    commands = CONTROL_HELP.split(":", 1)[1].replace("|", " ").replace("on off", "on|off").split()
    assert "help" in commands
    for name in commands:
        if name not in ("SPEC", "on|off"):
            assert re.search(rf"(^ +| {{3,}}){name}\b", listed, re.M), name


def test_exchange_parameter_errors_are_one_each(key_pair):
    from ssmd_fast.kalshi.exchange import Exchange
    from ssmd_fast.kalshi.exchange_feed import GeneratedFeed

    feed = GeneratedFeed(10, markets=2)
    for kw, message in (({"ping_interval": 0}, "ping_interval must be > 0, got 0"),
                        ({"max_markets": 0}, "max_markets must be >= 1, got 0"),
                        ({"rate": -1}, "rate must be >= 0 (0 = as fast as each connection reads), got -1")):
        with pytest.raises(ValueError) as got:
            Exchange(feed, key_pair[1], **kw)
        assert str(got.value) == message

