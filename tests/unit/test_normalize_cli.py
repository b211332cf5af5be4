"""`ssmd-fast normalize`: records in input order on stdout, FILE:LINE: reason on stderr, summary, exit codes.

Runs the real command in a subprocess (stdin, files, exit status), plus the streaming core in-process."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ssmd_fast.commands import normalize as command
from ssmd_fast.normalize import normalize_frame

KALSHI = Path(__file__).parents[1] / "data" / "kalshi"
TRADE = (KALSHI / "trade.jsonl").read_bytes().split(b"\n")[0]
OK = b'{"type":"ok","id":1}'

pytestmark = pytest.mark.timeout(60)


def run(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssmd_fast", "normalize", *args], input=stdin,
                          capture_output=True, timeout=50, cwd=cwd)


def records_of(frames: list[bytes]) -> bytes:
    out = []
    for frame in frames:
        try:
            record = normalize_frame(frame)
        except Exception:
            continue
        if record is not None:
            out.append(record + b"\n")
    return b"".join(out)


def test_all_fixtures_exit_0_records_in_input_order(tmp_path):
    names = sorted(p.name for p in KALSHI.glob("*.jsonl"))
    result = run(*names, cwd=KALSHI)
    assert result.returncode == 0, result.stderr.decode()
    frames = [f for name in names for f in (KALSHI / name).read_bytes().split(b"\n")[:-1]]
    assert result.stdout == records_of(frames)
    assert len(result.stdout.splitlines()) == 161
    err = result.stderr.decode()
    assert re.search(r"^normalize: 232 lines, \d+ bytes in \d+\.\d\d s", err, re.M), err
    assert "records: 161 (book_delta 51, ticker 31, trade 30, market_lifecycle 24, book_snapshot 14, " \
           "event_lifecycle 11)" in err
    assert "control: 43 (error 28, subscribed 7, ok 5, unsubscribed 3)" in err
    assert re.search(r"^  other: 28 \(fill 3, user_order 3, event_fee_update 2, ", err, re.M), err
    assert "invalid: 0" in err


def test_invalid_lines_are_reported_and_processing_goes_on(tmp_path):
    lines = [TRADE, b"not json", OK, b"", b'{"type":"trade","msg":{}}', b'{"type":"ok","a":1,"a":2}', TRADE]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run(str(path))
    assert result.returncode == 1
    assert result.stdout == records_of(lines) == (normalize_frame(TRADE) + b"\n") * 2
    err = result.stderr.decode().splitlines()
    assert err[:4] == [f"{path}:2: json", f"{path}:4: json", f"{path}:5: missing", f"{path}:6: duplicate_key"]
    assert "  invalid: 4 (json 2, duplicate_key 1, missing 1)" in err
    assert err[4].startswith("normalize: 7 lines, ")
    quiet = run("--quiet", str(path))
    assert quiet.returncode == 1 and quiet.stdout == result.stdout
    assert not any(line.startswith(str(path)) for line in quiet.stderr.decode().splitlines())
    assert "  invalid: 4 (json 2, duplicate_key 1, missing 1)" in quiet.stderr.decode()


def test_stdin_by_default_and_with_dash():
    data = TRADE + b"\n{bad\n" + OK + b"\n"
    for args in ((), ("-",)):
        result = run(*args, stdin=data)
        assert result.returncode == 1
        assert result.stdout == normalize_frame(TRADE) + b"\n"
        assert result.stderr.decode().splitlines()[0] == "<stdin>:2: json"


def test_cr_never_splits_a_line_and_a_last_line_without_lf_is_a_frame():
    spaced = TRADE.replace(b'"sid":1,', b'"sid":1,\r')  # CR is JSON whitespace inside a frame
    data = spaced + b"\n" + b"a\rb\n" + TRADE + b"\r\n" + OK
    result = run(stdin=data)
    assert result.returncode == 1
    assert result.stdout == (normalize_frame(TRADE) + b"\n") * 2
    err = result.stderr.decode()
    assert err.splitlines()[0] == "<stdin>:2: json"
    assert "normalize: 4 lines," in err and "control: 1 (ok 1)" in err


def test_empty_input_and_empty_lines():
    result = run(stdin=b"")
    assert result.returncode == 0 and result.stdout == b""
    assert "normalize: 0 lines" in result.stderr.decode()
    result = run(stdin=b"\n\n")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[:2] == ["<stdin>:1: json", "<stdin>:2: json"]


def test_usage_errors_exit_2_and_name_the_file(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(TRADE + b"\n")
    missing = tmp_path / "missing.jsonl"
    result = run(str(good), str(missing))
    assert result.returncode == 2
    assert result.stdout == b""  # inputs are opened before anything is read
    assert f"error: {missing}: no such file" in result.stderr.decode()
    result = run(str(tmp_path))
    assert result.returncode == 2 and f"{tmp_path}: is a directory" in result.stderr.decode()
    result = run("--no-such-option")
    assert result.returncode == 2
    norm = tmp_path / "13.norm.jsonl"          # the file sink's records: a glob of a day picks them up
    norm.write_bytes(b'{"type":"trade","feed":"kalshi"}\n')
    result = run(str(good), str(norm))
    assert result.returncode == 2 and result.stdout == b""
    assert f"{norm}: the file sink's normalized records, not raw frames" in result.stderr.decode()
    partial = tmp_path / "14.norm.jsonl.partial"   # the hour being written: its records too (was: shape, per line)
    partial.write_bytes(b'{"type":"trade","feed":"kalshi"}\n')
    result = run(str(good), str(partial))
    assert result.returncode == 2 and result.stdout == b""
    assert f"{partial}: the file sink's normalized records, not raw frames" in result.stderr.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_named_not_the_input(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes((TRADE + b"\n") * 20_000)      # more than one chunk, more than stdout's buffer
    for args, stdin in (((str(path),), b""), ((), path.read_bytes())):
        with open("/dev/full", "wb") as full:
            result = subprocess.run([sys.executable, "-m", "ssmd_fast", "normalize", *args], input=stdin,
                                    stdout=full, stderr=subprocess.PIPE, timeout=50)
        assert result.returncode == 2
        assert result.stderr.decode() == "ssmd-fast normalize: error: cannot write stdout: No space left on device\n"


def test_one_line_one_byte_are_singular():
    assert "normalize: 1 line, 1 byte in " in run(stdin=b"\n").stderr.decode()


def test_line_numbers_restart_per_file_and_files_keep_their_order(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(OK + b"\n" + TRADE + b"\n" + b"x\n")
    b.write_bytes(b"y\n" + TRADE.replace(b'"sid":1', b'"sid":2') + b"\n")
    result = run(str(a), str(b))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[:2] == [f"{a}:3: json", f"{b}:1: json"]
    records = result.stdout.splitlines()
    assert [r.count(b'"sid":1') for r in records] == [1, 0]


def test_oversize_line_is_judged_without_being_held(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        f.write(OK + b"\n")
        f.write(b'{"type":"ok","pad":"' + b"a" * (3 * 1_048_576) + b'"}\n')  # 3 MiB line
        f.write(b"b" * 1_048_577 + b"\n")  # one byte over
        f.write(b'{"type":"ok","pad":"' + b"a" * 1_048_554 + b'"}\n')  # exactly at the limit
        f.write(TRADE)
    result = run(str(path))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[:2] == [f"{path}:2: size", f"{path}:3: size"]
    assert result.stdout == normalize_frame(TRADE) + b"\n"
    assert "control: 2 (ok 2)" in result.stderr.decode()


def test_order_and_line_numbers_across_many_chunks(tmp_path):
    n = 3 * command.CHUNK_LINES + 17
    bad = {5, command.CHUNK_LINES, command.CHUNK_LINES + 1, 2 * command.CHUNK_LINES + 3, n}
    lines = []
    for i in range(1, n + 1):
        lines.append(b"{broken" if i in bad else TRADE.replace(b'"seq":16', b'"seq":%d' % i))
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run(str(path))
    assert result.returncode == 1
    seqs = [int(re.search(rb'"seq":(\d+)', r).group(1)) for r in result.stdout.splitlines()]
    assert seqs == [i for i in range(1, n + 1) if i not in bad]
    reported = [int(line.split(":")[1]) for line in result.stderr.decode().splitlines() if line.startswith(str(path))]
    assert reported == sorted(bad)


def test_progress_lines_and_summary_in_process(monkeypatch):
    monkeypatch.setattr(command, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(command, "CHUNK_LINES", 2)
    out, err = io.BytesIO(), io.StringIO()
    run_ = command.Normalization(out, err, quiet=False, progress=True)
    run_.run_stream("mem", io.BytesIO(b"\n".join([TRADE, OK, b"[", TRADE, OK]) + b"\n"))
    assert out.getvalue() == (normalize_frame(TRADE) + b"\n") * 2
    text = err.getvalue()
    assert "mem:3: json" in text
    assert len(re.findall(r"^progress: \d+ lines, [\d.]+ MB, [\d,]+ lines/s$", text, re.M)) == 3
    summary = run_.summary()
    assert summary.startswith("normalize: 5 lines, ")
    assert "  records: 2 (trade 2)\n  control: 2 (ok 2)\n  other: 0\n  invalid: 1 (json 1)\n" in summary
    assert run_.invalid == 1


def test_broken_pipe_is_quiet(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_bytes((TRADE + b"\n") * 20_000)
    proc = subprocess.Popen([sys.executable, "-m", "ssmd_fast", "normalize", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=50)
    assert first == normalize_frame(TRADE) + b"\n"
    assert proc.returncode == 0
    assert b"Traceback" not in err


def test_a_gzip_file_is_refused_with_the_command_that_reads_it(tmp_path):
    import gzip

    good = tmp_path / "good.jsonl"
    good.write_bytes(TRADE + b"\n")
    gz = tmp_path / "day 1.jsonl.gz"
    gz.write_bytes(gzip.compress(TRADE + b"\n" + OK + b"\n"))
    result = run(str(good), str(gz))        # was exit 1, a `utf8` line per compressed line, no hint
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().splitlines()[-1] == \
        f"ssmd-fast normalize: error: {gz}: gzip-compressed; decompress it into standard input: " \
        f"zcat '{gz}' | ssmd-fast normalize"
    result = run(stdin=gzip.decompress(gz.read_bytes()))    # what it says works
    assert result.returncode == 0 and result.stdout == records_of([TRADE])
