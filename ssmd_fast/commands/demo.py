"""Run the whole pipeline on this machine and check it end to end.

Starts the local exchange with a generated session (order books included, spread over several
connections), an embedded nats-server and `ssmd-fast run` as a real process (NATS publisher and file
sink, both forms). Shows live progress; once the exchange has sent everything and the connector has
caught up, stops the connector with SIGTERM, reads the stream and the files back and compares them
with every frame the exchange sent: the raw messages must be those frames byte for byte, the
normalized ones their offline normalization (`ssmd-fast normalize`), every message id unique.
Prints a summary table (and writes it as JSON with --summary-json); everything the run wrote stays in
the data directory. Exit status 0 only when nothing was lost, duplicated or changed and the
connector exited 0."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from ssmd_fast.cli import check_writable_file, float_at_least, int_at_least, make_directory, path_arg
from ssmd_fast.errors import SsmdError
from ssmd_fast.logs import plural

# Below this many frames after start-up, the connector's fixed costs while it waits (the progress line
# scrapes its /metrics 20 times a second) outweigh the frames: no per-message figure is given.
MIN_MEASURED_FRAMES = 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int_at_least(1), default=200_000, metavar="N",
                   help="events in the generated session (default 200000)")
    p.add_argument("--rate", type=float_at_least(0, " (0 = as fast as the connector reads)"), default=25_000.0,
                   metavar="R",
                   help="events per second (default 25000, which this pipeline sustains on 2 cores; 0 = as fast "
                        "as the connector reads: NATS falls behind and the publisher spills to disk)")
    p.add_argument("--markets", type=int_at_least(1), default=20, metavar="M",
                   help="markets, all with order books, split over 3 connections (default 20)")
    p.add_argument("--summary-json", metavar="FILE", type=path_arg, help="also write the summary as JSON")
    p.add_argument("--data-dir", metavar="DIR", type=path_arg,
                   help="where to write keys, logs, the exchange's record and the files "
                        "(default ./data/demo-YYYYMMDD-HHMMSS; must be new or empty)")
    p.add_argument("--timeout", type=float_at_least(0, strict=True), default=120.0, metavar="S",
                   help="give up waiting for the connector to catch up after S seconds (default 120)")


class Progress:
    """One refreshing line on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self, out=sys.stderr):
        self.out = out
        self.tty = out.isatty()
        self.last = 0.0

    def show(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
        elif now - self.last >= 3.0:
            self.out.write(text + "\n")
            self.out.flush()
            self.last = now

    def done(self, text: str) -> None:
        self.out.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
        self.out.flush()


def wait_up(pipe, timeout: float = 60.0) -> tuple[float, float | None]:
    """Wait for the connector's /metrics (its start-up is over); returns its frames and CPU seconds
    then: the baseline of the per-message CPU (the stream may have begun a moment before)."""
    conn = pipe.connector
    deadline = time.monotonic() + timeout
    while (m := conn.metrics()) is None:
        if not conn.running or time.monotonic() > deadline:
            raise SsmdError(f"the connector did not come up; see {conn.log_path}")
        time.sleep(0.05)
    return m.get("ssmd_fast_frames_total", 0.0), conn.cpu_seconds()


def watch(pipe, timeout: float, progress: Progress) -> dict:
    """Poll the exchange's stats and the connector's /metrics until the exchange has sent everything
    and every message is acked (or the connector exits, or ``timeout``)."""
    ex, conn = pipe.exchange, pipe.connector
    connections = pipe.connections
    t0 = time.monotonic()
    w = {"timed_out": False, "exited_early": False, "first": None, "done": None, "done_cpu": None,
         "exchange": None}
    while True:
        now = time.monotonic()
        if not conn.running:
            w["exited_early"] = True
            break
        m = conn.metrics()
        st = w["exchange"] = ex.stats()
        if m is not None:
            frames = m.get("ssmd_fast_frames_total", 0.0)
            if w["first"] is None and frames > 0:
                w["first"] = now
            acked, published = m.get("ssmd_fast_acked_total", 0.0), m.get("ssmd_fast_published_total", 0.0)
            progress.show(f"  exchange sent {st['frames_total']:,} frames   connector: records "
                          f"{m.get('ssmd_fast_records_total', 0):,.0f}, acked {plural(int(acked), 'message')}, "
                          f"{m.get('ssmd_fast_subscribed', 0):.0f}/{connections} shards subscribed   "
                          f"[{now - t0:.1f} s]")
            if (ex.finished(st, connections) and frames >= st["frames_total"] and acked >= published
                    and m.get("ssmd_fast_unacked", 1) == 0 and m.get("ssmd_fast_queue_bytes", 1) == 0):
                w["done"] = (now, frames, acked)
                w["done_cpu"] = conn.cpu_seconds()      # the end of the stream's CPU: shutdown apart
                break
        if now - t0 > timeout:
            w["timed_out"] = True
            break
        time.sleep(0.05)
    return w


def summarize(pipe, w: dict, ex_stop, v, elapsed: float) -> dict:
    rep = ex_stop.report or {}
    rate = acked_rate = None
    if w["first"] and w["done"] and w["done"][0] > w["first"]:
        rate = w["done"][1] / (w["done"][0] - w["first"])
        acked_rate = w["done"][2] / (w["done"][0] - w["first"])
    frames = rep.get("frames", 0)
    cpu_stream = None
    # The stream's CPU per frame: from /metrics answering (start-up over) to caught up (before SIGTERM),
    # over the frames read in between. It used to run to the process's exit: the shutdown's CPU went
    # to the few frames of a short run, and this figure came out above the one with start-up.
    base_frames, base_cpu = w["base"]
    if base_cpu is not None and w["done"] and w["done_cpu"] is not None \
            and w["done"][1] - base_frames >= MIN_MEASURED_FRAMES:
        cpu_stream = (w["done_cpu"] - base_cpu) / (w["done"][1] - base_frames)
    problems = list(v.problems)
    if w["timed_out"]:
        problems.append("the connector did not catch up before --timeout")
    if w["exited_early"]:
        problems.append("the connector exited before the end of the session")
    if ex_stop.code != 0:
        problems.append(f"the connector exited with {ex_stop.code}")
    if ex_stop.report is None:
        problems.append("the connector wrote no run report")
    return {
        "ok": not problems, "problems": problems, "data_dir": str(pipe.dir.resolve()),
        "messages": pipe.messages, "rate": pipe.rate, "markets": pipe.markets, "connections": pipe.connections,
        "frames_sent": v.sent, "exchange_frames_total": w["exchange"]["frames_total"],
        "records": rep.get("records", 0), "connector_frames": frames, "invalid": rep.get("invalid", 0),
        "gaps": rep.get("gaps", 0), "reconnects": rep.get("reconnects", 0),
        "published": rep.get("published", 0), "acked": rep.get("acked", 0), "spilled": rep.get("spilled", 0),
        "stream_messages": v.stream_messages, "stream_raw": v.stream_raw,
        "stream_normalized": v.stream_normalized, "stream_events": v.stream_events,
        "file_records": v.file_raw + v.file_normalized, "file_raw": v.file_raw,
        "file_normalized": v.file_normalized, "file_events": v.file_events,
        "lost": v.stream_lost + v.file_lost, "duplicated": v.stream_duplicated + v.file_duplicated,
        "mismatched": v.stream_foreign + v.file_foreign, "duplicate_ids": v.duplicate_ids,
        "missing_ids": v.missing_ids,
        "stream": {"lost": v.stream_lost, "duplicated": v.stream_duplicated, "mismatched": v.stream_foreign},
        "files": {"lost": v.file_lost, "duplicated": v.file_duplicated, "mismatched": v.file_foreign},
        "msgs_per_second": rate, "acked_messages_per_second": acked_rate,
        "connector_cpu_us_per_message": None if cpu_stream is None else cpu_stream * 1e6,
        "connector_cpu_us_per_message_with_startup": ex_stop.cpu_seconds / frames * 1e6 if frames else None,
        "connector_cpu_seconds": ex_stop.cpu_seconds,
        "connector_exit_code": ex_stop.code, "shutdown_seconds": rep.get("shutdown_seconds"),
        "stop_seconds": ex_stop.stop_seconds, "elapsed_seconds": elapsed,
    }


def render(s: dict) -> str:
    def n(x) -> str:
        return "-" if x is None else f"{x:,}"

    speed = "full speed" if not s["rate"] else f"{s['rate']:,.0f} events/s"
    rows = [
        ("frames sent by the exchange", n(s["frames_sent"]),
         f"{plural(s['messages'], 'event')}, {plural(s['markets'], 'market')}, {speed}; a connection sees the feed "
         "from its subscribe on"),
        ("records (connector)", n(s["records"]), f"over {plural(s['connections'], 'connection')}"),
        ("published (acked)", n(s["acked"]), f"spilled {s['spilled']:,}"),
        ("stored in the stream", n(s["stream_messages"]),
         f"raw {s['stream_raw']:,} + normalized {s['stream_normalized']:,} + events {s['stream_events']:,}"),
        ("stored in files", n(s["file_records"]), f"raw {s['file_raw']:,} + normalized {s['file_normalized']:,}"),
        ("lost", n(s["lost"]), f"stream {s['stream']['lost']:,}, files {s['files']['lost']:,}"),
        ("duplicated", n(s["duplicated"]),
         f"stream {s['stream']['duplicated']:,}, files {s['files']['duplicated']:,}; repeated ids {s['duplicate_ids']:,}"
         + (f", messages without an id {s['missing_ids']:,}" if s.get("missing_ids") else "")),
        ("mismatched", n(s["mismatched"]), "vs the sent bytes / their offline normalization"),
        ("invalid", n(s["invalid"]), "frames the connector's normalizer rejected"),
        ("gaps", n(s["gaps"]), f"reconnects {s['reconnects']:,}"),
        ("msgs/s", "-" if s["msgs_per_second"] is None else f"{s['msgs_per_second']:,.0f}",
         "frames, exchange -> acked in JetStream" + (f" ({s['acked_messages_per_second']:,.0f} messages acked/s)"
                                                    if s["acked_messages_per_second"] else "")),
        ("connector CPU/msg", "-" if s["connector_cpu_us_per_message"] is None
         else f"{s['connector_cpu_us_per_message']:.2f} us",
         ("" if s["connector_cpu_us_per_message"] is not None
          else f"under {MIN_MEASURED_FRAMES:,} frames after start-up: not measured; ")
         + (f"{s['connector_cpu_us_per_message_with_startup']:.2f} us over the whole process (start-up and "
            "shutdown included)" if s["connector_cpu_us_per_message_with_startup"] else "")),
        ("shutdown (SIGTERM)", "-" if s["shutdown_seconds"] is None else f"{s['shutdown_seconds']:.3f} s",
         f"{s['stop_seconds']:.3f} s to process exit, exit code {s['connector_exit_code']}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"  {a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    verdict = "OK: every frame sent is in the stream and in the files, exactly once" if s["ok"] else \
        "FAILED: " + "; ".join(s["problems"])
    return "\n".join(["", "ssmd-fast demo summary", *lines, "", verdict, f"data directory: {s['data_dir']}"])


def default_data_dir() -> Path:
    return Path("data") / time.strftime("demo-%Y%m%d-%H%M%S")


def check_paths(data_dir: Path, summary_json: str | None) -> None:
    """Every path the demo writes, checked before anything starts (raises SsmdError naming the option).
    Creates ``data_dir``."""
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise SsmdError(f"{data_dir} is not empty: give a new --data-dir")
    created = make_directory(data_dir, "--data-dir")
    try:
        if summary_json:        # after the mkdir: the summary may go into the data directory
            check_writable_file(summary_json, "--summary-json")
    except SsmdError:
        if created:
            data_dir.rmdir()
        raise


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt     # as Ctrl-C: the Pipeline's exit stops the processes it started


def main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    check_paths(data_dir, args.summary_json)
    # SIGTERM's default action ended this process on the spot, and its nats-server, exchange and
    # connector ran on without it
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return _demo(args, data_dir)
    except KeyboardInterrupt:
        Progress().done(f"demo: interrupted; the processes it started are stopped, what they wrote is in {data_dir}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _demo(args: argparse.Namespace, data_dir: Path) -> int:
    from ssmd_fast.demo import Pipeline

    progress = Progress()
    t0 = time.monotonic()
    with Pipeline(data_dir, messages=args.messages, rate=args.rate, markets=args.markets) as pipe:
        progress.done(f"demo: {plural(args.messages, 'event')} over {plural(args.markets, 'market')}; "
                      f"writing to {data_dir}")
        pipe.start()
        progress.done(f"  nats-server {pipe.nats.url}, exchange {pipe.exchange.url}, connector pid "
                      f"{pipe.connector.proc.pid} ({plural(pipe.connections, 'connection')})")
        base = wait_up(pipe)
        w = watch(pipe, args.timeout, progress)
        w["base"] = base
        stopped = pipe.connector.stop()
        progress.done(f"  connector stopped (SIGTERM) in {stopped.stop_seconds:.2f} s, exit code {stopped.code}; "
                      f"reading the stream back")
        pipe.exchange.stop()
        t1 = time.monotonic()
        messages = pipe.read_stream()
        t2 = time.monotonic()
        v = pipe.verify(messages)
        progress.done(f"  read {plural(len(messages), 'message')} in {t2 - t1:.1f} s, checked them and the files "
                      f"in {time.monotonic() - t2:.1f} s")
    summary = summarize(pipe, w, stopped, v, time.monotonic() - t0)
    print(render(summary))
    if args.summary_json:
        try:
            Path(args.summary_json).write_text(json.dumps(summary, indent=1) + "\n")
        except OSError as exc:     # checked at the start; the disk can still fill up since
            raise SsmdError(f"--summary-json {args.summary_json}: cannot write: {exc.strerror or exc}")
    sys.stdout.flush()
    return 0 if summary["ok"] else 1
