"""Normalize recorded Kalshi frames (raw JSONL, one frame per LF-terminated line) into schema-v1 records.

Reads each FILE in turn (standard input when none is given or for `-`), writes the records as JSONL to
standard output in input order, reports every invalid line on standard error as `FILE:LINE: reason`,
and ends with a summary there. Lines are split on LF only (a CR stays part of the frame); a last line
without LF is still a frame; an empty line is an invalid frame (`json`). Memory stays bounded on
files of any size.

Exit status: 0 when no line was invalid, 1 when some were (every line is still processed), 2 when the
output is not complete: usage errors (a file that is missing or unreadable) or standard output not
writable (a full disk)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from ssmd_fast.cli import UsageError, path_arg
from ssmd_fast.logs import plural

CHUNK_LINES = 4096  # frames per FrameBatch: one stdout write per chunk
CHUNK_BYTES = 4 << 20
PROGRESS_SECONDS = 2.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", type=path_arg, help="raw JSONL files (default: standard input)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not report each invalid line")
    p.add_argument("--progress", action="store_true",
                   help=f"print a progress line to standard error every {PROGRESS_SECONDS:g} s")


class Normalization:
    """Streams frames through one FrameBatch: records to ``out``, per-line errors and progress to ``err``."""

    def __init__(self, out, err, quiet: bool = False, progress: bool = False):
        from ssmd_fast.normalize import MAX_FRAME, FrameBatch

        self.batch = FrameBatch()
        self.max_frame = MAX_FRAME
        self.out, self.err = out, err
        self.quiet, self.progress = quiet, progress
        self.lines = 0
        self.bytes_in = 0
        self.invalid = 0
        self.started = time.monotonic()
        self._next_progress = self.started + PROGRESS_SECONDS

    def run_stream(self, name: str, stream) -> None:
        """Normalize every frame of a binary stream; ``name`` is used in error lines."""
        batch, readline = self.batch, stream.readline
        limit = self.max_frame + 2  # a longer line is invalid (`size`) whatever follows
        first_line = 1  # line numbers restart with every file
        chunk_bytes = 0
        while True:
            line = readline(limit)
            if not line:
                break
            self.bytes_in += len(line)
            if line[-1:] == b"\n":
                line = line[:-1]
            elif len(line) == limit:  # oversize: keep only enough to be judged, skip the rest
                line = line[: self.max_frame + 1]
                self._skip_rest_of_line(stream)
            batch.add(line)
            chunk_bytes += len(line)
            if len(batch) >= CHUNK_LINES or chunk_bytes >= CHUNK_BYTES:
                self._flush(name, first_line)
                first_line += len(batch)
                batch.reset()
                chunk_bytes = 0
        self._flush(name, first_line)
        batch.reset()

    def _skip_rest_of_line(self, stream) -> None:
        while True:
            piece = stream.readline(1 << 20)
            self.bytes_in += len(piece)
            if not piece or piece[-1:] == b"\n":
                return

    def _flush(self, name: str, first_line: int) -> None:
        from ssmd_fast.normalize import OUT_INVALID

        batch = self.batch
        n = len(batch)
        if not n:
            return
        self.lines += n
        records = batch.records_jsonl(0)
        try:
            if records:
                self.out.write(records)
        except BrokenPipeError:     # `| head`: cli.main ends quietly
            raise
        except OSError as exc:      # a full disk under `> file`: not the input's fault
            raise OutputError(exc) from exc
        counts = batch.counts()
        invalid_total = sum(counts["invalid"].values())
        if invalid_total != self.invalid:
            self.invalid = invalid_total
            if not self.quiet:
                self.err.write("".join(f"{name}:{first_line + i}: {batch.reason(i)}\n"
                                       for i in range(n) if batch.outcome(i) == OUT_INVALID))
        if self.progress:
            now = time.monotonic()
            if now >= self._next_progress:
                self._next_progress = now + PROGRESS_SECONDS
                elapsed = now - self.started
                self.err.write(f"progress: {plural(self.lines, 'line', grouped=False)}, {self.bytes_in / 1e6:.1f} MB, "
                               f"{self.lines / elapsed:,.0f} lines/s\n")
                self.err.flush()

    def summary(self) -> str:
        counts = self.batch.counts()
        elapsed = time.monotonic() - self.started
        rate = f" ({self.lines / elapsed:,.0f} lines/s)" if elapsed > 0 and self.lines else ""
        lines = [f"normalize: {plural(self.lines, 'line', grouped=False)}, "
                 f"{plural(self.bytes_in, 'byte', grouped=False)} in {elapsed:.2f} s{rate}"]
        for group in ("records", "control", "other", "invalid"):
            items = counts[group]
            total = sum(items.values())
            detail = ", ".join(f"{name} {n}" for name, n in sorted(items.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  {group}: {total}" + (f" ({detail})" if detail else ""))
        return "\n".join(lines) + "\n"


def _open_all(paths: list[str]) -> list[tuple[str, object]]:
    """Open every input before reading any, so a usage error never leaves half an output."""
    opened = []
    try:
        for path in paths:
            if path == "-":
                opened.append(("<stdin>", sys.stdin.buffer))
                continue
            if path.endswith((".norm.jsonl", ".norm.jsonl.partial")):   # every line would come out invalid (shape)
                raise UsageError(f"{path}: the file sink's normalized records, not raw frames; give its raw "
                                 f"files (HH.jsonl, HH.N.jsonl, day.jsonl)")
            try:
                opened.append((path, open(path, "rb")))  # noqa: SIM115 (closed in main)
                head = opened[-1][1].peek(2)[:2]
            except FileNotFoundError:
                raise UsageError(f"{path}: no such file")
            except IsADirectoryError:
                raise UsageError(f"{path}: is a directory")
            except OSError as exc:
                raise UsageError(f"{path}: cannot read: {exc.strerror or exc}")
            if head == b"\x1f\x8b":   # every line would come out invalid (utf8): say why instead
                raise UsageError(f"{path}: gzip-compressed; decompress it into standard input: "
                                 f"zcat {shlex.quote(path)} | ssmd-fast normalize")
    except UsageError:
        for name, f in opened:
            if name != "<stdin>":
                f.close()
        raise
    return opened


class OutputError(Exception):
    """Standard output could not be written (``ENOSPC``, ``EIO``); wraps the OSError."""

    def __init__(self, exc: OSError):
        self.reason = exc.strerror or str(exc)
        super().__init__(f"cannot write stdout: {self.reason}")


def _give_up_stdout() -> None:
    """Point fd 1 at /dev/null: the interpreter flushes stdout again on exit, and a second failure would
    print 'Exception ignored ...' under the one-line error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(args: argparse.Namespace) -> int:
    paths = args.files or ["-"]
    inputs = _open_all(paths)   # a missing file: UsageError, exit 2 (cli.main), nothing written
    run = Normalization(sys.stdout.buffer, sys.stderr, quiet=args.quiet, progress=args.progress)
    try:
        for name, stream in inputs:
            try:
                run.run_stream(name, stream)
            except (BrokenPipeError, OutputError):  # stdout's failures, not the input's: below
                raise
            except OSError as exc:  # e.g. EIO or EISDIR surfacing on the first read
                sys.stdout.buffer.flush()
                print(f"ssmd-fast normalize: error: {name}: cannot read: {exc.strerror or exc}",
                      file=sys.stderr)
                return 2
        try:
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc) from exc
    except OutputError as exc:
        _give_up_stdout()
        print(f"ssmd-fast normalize: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for name, stream in inputs:
            if name != "<stdin>":
                stream.close()
    sys.stderr.write(run.summary())
    return 1 if run.invalid else 0
