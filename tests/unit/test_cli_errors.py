"""User errors of the CLI commands: one line ``ssmd-fast COMMAND: error: ...`` naming the option or the
file, exit status 2 for arguments (as argparse's own), 1 for what fails at run time, and no traceback.
Every check here comes before any long work (key generation, pregeneration, the demo's processes).

In-process through ``cli.main``; the exchange's servers and the demo's pipeline are never started."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ssmd_fast import cli, logs
from ssmd_fast.commands import demo as demo_cmd
from ssmd_fast.demo import ConnectorExit, Verification

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
    assert [logs.plural(n, "message") for n in (0, 1, 2, 1000)] == \
        ["0 messages", "1 message", "2 messages", "1,000 messages"]
    assert logs.plural(1000, "line", grouped=False) == "1000 lines"
    assert logs.plural(1, "dead letter") == "1 dead letter"


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


# --------------------------------------------------------------------------- keygen


@pytest.mark.parametrize("bits", ["512", "0", "1000", "-1", "x", "99999"])
def test_keygen_bits_out_of_range_is_an_argument_error(capsys, tmp_path, bits):
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k"), "--bits", bits)
    assert rc == 2 and last_line(err).startswith("ssmd-fast keygen: error: argument --bits: ")
    assert not (tmp_path / "k").exists()


def test_keygen_out_that_cannot_be_a_directory(capsys, tmp_path):
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    rc, _, err = run(capsys, "keygen", "--out", str(afile))
    assert rc == 1 and last_line(err) == f"ssmd-fast keygen: error: --out {afile}: not a directory"
    rc, _, err = run(capsys, "keygen", "--out", str(afile / "keys"))
    assert rc == 1 and last_line(err) == \
        f"ssmd-fast keygen: error: --out {afile / 'keys'}: cannot create the directory: Not a directory"
    assert afile.read_text() == "root:x:0:0\n"


def test_keygen_writes_then_refuses_to_overwrite(capsys, tmp_path):
    rc, out, _ = run(capsys, "keygen", "--out", str(tmp_path / "k"), "--bits", "1024")
    assert rc == 0 and "(mode 0600)" in out
    assert (tmp_path / "k" / "kalshi_private.pem").stat().st_mode & 0o777 == 0o600
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k"))
    assert rc == 1 and "exists (use --force to overwrite)" in err


# --------------------------------------------------------------------------- demo


@pytest.mark.parametrize("args", [("--timeout", "-1"), ("--timeout", "0"), ("--messages", "0"),
                                  ("--markets", "0"), ("--rate", "-1")])
def test_demo_numbers_are_argument_errors(capsys, tmp_path, args):
    rc, _, err = run(capsys, "demo", "--data-dir", str(tmp_path / "d"), *args)
    assert rc == 2 and f"error: argument {args[0]}: must be" in err
    assert not (tmp_path / "d").exists()


def test_demo_paths_are_checked_before_anything_starts(capsys, tmp_path):
    afile = tmp_path / "passwd"
    afile.write_text("x\n")
    started = time.monotonic()
    rc, _, err = run(capsys, "demo", "--data-dir", str(afile))
    assert rc == 1 and last_line(err) == f"ssmd-fast demo: error: --data-dir {afile}: not a directory"
    rc, _, err = run(capsys, "demo", "--data-dir", str(afile / "x"))
    assert rc == 1 and f"--data-dir {afile / 'x'}: cannot create the directory: Not a directory" in err
    rc, _, err = run(capsys, "demo", "--messages", "100", "--data-dir", str(tmp_path / "d"),
                     "--summary-json", str(tmp_path))
    assert rc == 1 and last_line(err) == f"ssmd-fast demo: error: --summary-json {tmp_path}: cannot write: Is a directory"
    assert not (tmp_path / "d").exists()            # the data directory it made for the check is gone again
    rc, _, err = run(capsys, "demo", "--data-dir", str(tmp_path / "d"), "--summary-json",
                     str(tmp_path / "nope" / "s.json"))
    assert rc == 1 and f"cannot write: no such directory {tmp_path / 'nope'}" in err
    assert time.monotonic() - started < 10          # nothing was started


def test_demo_summary_may_go_into_the_new_data_directory(tmp_path):
    demo_cmd.check_paths(tmp_path / "d", str(tmp_path / "d" / "summary.json"))
    assert (tmp_path / "d").is_dir() and not list((tmp_path / "d").iterdir())


class _Pipe:
    dir = Path(".")
    messages, rate, markets, connections = 100, 25000.0, 20, 3


def _summary(base: tuple[int, float], done_frames: int, done_cpu: float, frames: int, cpu: float) -> dict:
    w = {"timed_out": False, "exited_early": False, "first": 1.0, "done": (2.0, done_frames, 2 * done_frames),
         "done_cpu": done_cpu, "exchange": {"frames_total": frames}, "base": base}
    stop = ConnectorExit(0, cpu, 0.2, {"frames": frames, "shutdown_seconds": 0.02})
    return demo_cmd.summarize(_Pipe(), w, stop, Verification(sent=frames), 3.0)


def test_demo_cpu_per_message_leaves_the_shutdown_out():
    # the stream: 99,000 frames for 2.0 s of CPU; the shutdown's 0.7 s used to be charged to them too
    s = _summary(base=(1000, 0.8), done_frames=100_000, done_cpu=2.8, frames=100_000, cpu=3.5)
    assert s["connector_cpu_us_per_message"] == pytest.approx(2.0 / 99_000 * 1e6)
    assert s["connector_cpu_us_per_message_with_startup"] == pytest.approx(35.0)
    row = next(line for line in demo_cmd.render(s).splitlines() if "connector CPU/msg" in line)
    assert "20.20 us  35.00 us over the whole process (start-up and shutdown included)" in row


def test_demo_cpu_per_message_of_a_tiny_run_is_not_a_figure():
    # `demo --messages 100`: 6 frames after start-up carried the whole shutdown: 18,061 us "per message",
    # above the 6,965 us "with start-up"
    s = _summary(base=(110, 0.70), done_frames=116, done_cpu=0.72, frames=116, cpu=0.808)
    assert s["connector_cpu_us_per_message"] is None
    row = next(line for line in demo_cmd.render(s).splitlines() if "connector CPU/msg" in line)
    assert row.split()[2] == "-" and "not measured" in row and "6965.52 us over the whole process" in row


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


# --------------------------------------------------------------------------- spill


def test_spill_of_a_file_says_not_a_directory(capsys, tmp_path):
    afile = tmp_path / "passwd"
    afile.write_text("x\n")
    rc, _, err = run(capsys, "spill", str(afile))
    assert rc == 1 and last_line(err) == f"ssmd-fast spill: error: {afile}: not a spill directory (not a directory)"
    rc, _, err = run(capsys, "spill", str(afile), "--requeue-dead-letters")
    assert rc == 1 and "(not a directory)" in err


def test_spill_of_the_storage_directory_points_at_its_spill(capsys, tmp_path):
    storage = tmp_path / "kalshi"
    (storage / "2026-12-08").mkdir(parents=True)
    (storage / "spill").mkdir()
    (storage / "spill" / "cursor").write_bytes(b"")
    want = f"ssmd-fast spill: error: {storage}: not a spill directory (no spill files; {storage / 'spill'} is one: " \
           f"ssmd-fast spill {storage / 'spill'})"
    for extra in ((), ("--dead-letter",), ("--requeue-dead-letters",)):
        rc, out, err = run(capsys, "spill", str(storage), *extra)     # it said "spill ...: empty", exit 0
        assert rc == 1 and out == "" and last_line(err) == want
    assert sorted(p.name for p in storage.iterdir()) == ["2026-12-08", "spill"]
    rc, out, _ = run(capsys, "spill", str(storage / "spill"))
    assert rc == 0 and out == f"spill {storage / 'spill'}: empty\n"


def test_spill_usage_errors_exit_2(capsys, tmp_path):
    rc, _, err = run(capsys, "spill", str(tmp_path), "--records", "0")
    assert rc == 2 and "argument --records/-n: must be >= 1, got 0" in err
    rc, _, err = run(capsys, "spill", str(tmp_path), "--requeue-dead-letters", "--dead-letter")
    assert rc == 2 and err.startswith("usage: ssmd-fast spill")
    assert last_line(err) == "ssmd-fast spill: error: --requeue-dead-letters takes neither --dead-letter nor --records"
    rc, _, err = run(capsys, "spill")
    assert rc == 2
    rc, _, err = run(capsys, "spill", str(tmp_path), "--raw")           # it was ignored: a summary, exit 0
    assert rc == 2 and last_line(err) == "ssmd-fast spill: error: --raw goes with --records N"


@pytest.mark.parametrize("argv", [("keygen", "--out", ""), ("check-config", "--env", ""), ("run", "--env", ""),
                                  ("spill", ""), ("spill", "--env", ""), ("normalize", "a.jsonl", ""),
                                  ("tail", "x.>", "--env", ""), ("demo", "--data-dir", ""),
                                  ("demo", "--summary-json", ""), ("run", "--env", "e.yaml", "--report-json", ""),
                                  ("exchange", "--public-key", ""), ("exchange", "--public-key", "k", "--replay", ""),
                                  ("exchange", "--public-key", "k", "--record", "")])
def test_an_empty_path_is_an_argument_error(capsys, tmp_path, monkeypatch, argv):
    # `keygen --out "$DIR"` with DIR unset wrote the key pair into the current directory
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and last_line(err).endswith(": an empty path (an unset shell variable?)")
    assert last_line(err).startswith(f"ssmd-fast {argv[0]}: error: argument ")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- tail


def test_tail_usage_errors_exit_2(capsys):
    rc, _, err = run(capsys, "tail", "--nats", "nats://127.0.0.1:4222")
    assert rc == 2 and err.startswith("usage: ssmd-fast tail")
    assert last_line(err) == "ssmd-fast tail: error: give a SUBJECT filter (or --env FILE)"
    rc, _, err = run(capsys, "tail", "x.>", "--count", "0")
    assert rc == 2 and "argument --count/-n: must be >= 1, got 0" in err


@pytest.mark.parametrize("url", ["not a url", "http://127.0.0.1:4222", "ws://127.0.0.1:4222", "nats://h:99999",
                                 "nats://h:abc", "nats://", "nats://h:4222/path", "nats://[zz]:1"])
def test_tail_url_is_checked_at_start(capsys, url):
    started = time.monotonic()
    rc, _, err = run(capsys, "tail", "x.>", "--nats", url)
    line = last_line(err)     # the same rule, and words, as transport.url in an environment file
    assert rc == 2 and line.startswith("ssmd-fast tail: error: argument --nats: ") and repr(url) in line, line
    from ssmd_fast.config_checks import nats_url_problem

    assert line.endswith(nats_url_problem(url))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222", "tls://nats.example.com:4443", "127.0.0.1:4222",
                                 "localhost", "nats://[::1]:4222", "nats://user:pw@host:4222"])
def test_tail_accepts_what_the_environment_file_accepts(url):
    from ssmd_fast.commands.tail import nats_url

    assert nats_url(url) == url


def test_tail_connection_refused_is_said_quickly(capsys, port):
    url = f"nats://127.0.0.1:{port}"
    started = time.monotonic()
    rc, _, err = run(capsys, "tail", "x.>", "--nats", url)
    assert rc == 1 and last_line(err) == f"ssmd-fast tail: error: cannot connect to {url}: connection refused"
    assert time.monotonic() - started < 3           # it waited 10 s and said TimeoutError()


def test_tail_connect_errors_hide_the_password(capsys, port):
    rc, _, err = run(capsys, "tail", "x.>", "--nats", f"nats://me:s3cret@127.0.0.1:{port}")
    assert rc == 1 and f"nats://<redacted>@127.0.0.1:{port}: connection refused" in err and "s3cret" not in err


# --------------------------------------------------------------------------- every command


@pytest.mark.parametrize("argv", [("normalize", "--count", "0"), ("run", "--env", "x.yaml", "--bogus"),
                                  ("tail", "a.>", "b.>"), ("check-config", "--env", "x.yaml", "extra")])
def test_an_unknown_argument_is_said_by_the_command(capsys, argv):
    rc, _, err = run(capsys, *argv)       # argparse's top parser said it, with the top usage line
    assert rc == 2 and err.startswith(f"usage: ssmd-fast {argv[0]} ")
    assert last_line(err).startswith(f"ssmd-fast {argv[0]}: error: unrecognized arguments: ")


@pytest.mark.parametrize("subject, problem", [
    ("bad subject", "a subject has no spaces or control characters"),
    ("a..b", "a subject has no empty token"), ("a.b.", "a subject has no empty token"),
    ("a.>.b", "'>' is only the last token"),
])
def test_tail_subject_is_checked_at_start(capsys, port, subject, problem):
    rc, _, err = run(capsys, "tail", subject, "--nats", f"nats://127.0.0.1:{port}")
    assert rc == 2 and last_line(err).startswith(f"ssmd-fast tail: error: SUBJECT {subject!r}: {problem}")


def test_tail_subjects_overlap():
    from ssmd_fast.commands.tail import subjects_overlap

    assert subjects_overlap("a.b.>", "a.>") and subjects_overlap("a.*.c", "a.b.>") and subjects_overlap("a.b", "a.b")
    assert subjects_overlap(">", "x.y") and subjects_overlap("a.*", "*.b")
    assert not subjects_overlap("other.>", "a.>") and not subjects_overlap("a", "a.>")
    assert not subjects_overlap("a.b.c", "a.b") and not subjects_overlap("a.*", "a.b.c")
