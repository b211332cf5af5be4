"""What every end-to-end pipeline process measures about itself, the same way (``benchmarks/e2e.py``).

Each pipeline (the connector, the peer stacks, the raw ceiling) runs in its own process, starts a
``Meter`` once its NATS side is ready and just before it connects to the exchange, and prints one
``RESULT {json}`` line at the end. The meter polls the pipeline's counters every ``interval`` seconds
(50 ms: on this VM a timer wake-up of an otherwise idle process costs up to 100 us of CPU, so a fast
poll would distort the figure it measures) and keeps the wall clock and this process's CPU time at
the last poll where they moved, or at the pipeline's last ``mark()`` before it (the connector marks
each read of acks: its end is exact; a peer's end is known to one poll, under 1% of its run), so the
figures run from the start to the last ack, excluding the idle wait that detects the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Callable

SUBSCRIBE_CHANNELS = ("ticker", "trade", "market_lifecycle_v2")
WS_RCVBUF = 1 << 20     # every pipeline's WebSocket socket (see cap_receive_buffer)
RESULT_PREFIX = "RESULT "
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set now (Linux /proc)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


class Meter:
    """Wall and CPU time from ``start()`` to the last poll where ``progress()`` changed.

    ``progress()`` returns a tuple of counters (cheap: it is polled every ``interval`` seconds);
    ``complete()`` says that nothing is outstanding (every message acked, or written in core mode).
    The run is over once complete and no counter moved for ``idle`` seconds. With ``rss_interval``
    the resident set is sampled with ``messages()`` (the long run's RSS slope). With ``warmup`` and
    ``produced()`` (the messages framed so far) the figures are also kept from the first poll where
    ``produced()`` reached ``warmup`` to the end (``steady`` in the result), over the messages framed
    after that poll: those are the work done inside that span (the acks of the window in flight at the
    poll come in it too, but their work was done before). A run's first messages also pay its start-up
    (connecting, subscribing, buffers growing to their working size, page faults), which the whole-run
    figure spreads over a short run."""

    def __init__(self, progress: Callable[[], tuple], complete: Callable[[], bool], *, interval: float = 0.05,
                 idle: float = 1.0, timeout: float = 600.0, rss_interval: float = 0.0,
                 messages: Callable[[], int] | None = None, warmup: int = 0,
                 produced: Callable[[], int] | None = None):
        self.progress, self.complete = progress, complete
        self.interval, self.idle, self.timeout = interval, idle, timeout
        self.rss_interval, self.messages = rss_interval, messages
        self.rss_samples: list[tuple[int, int]] = []
        self.t0 = self.cpu0 = self.t_last = self.cpu_last = self.t_mark = self.cpu_mark = 0.0
        self.ru0 = self.ru_last = None
        self.warmup, self.produced = (warmup, produced) if produced is not None else (0, None)
        self.warm: tuple | None = None      # (produced, wall, cpu, rusage) at the poll that passed warmup

    def start(self) -> None:
        self.ru0 = self.ru_last = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = self.t_last = self.t_mark = time.perf_counter()
        self.cpu0 = self.cpu_last = self.cpu_mark = time.process_time()

    def mark(self) -> None:
        """The pipeline made progress now (cheap: two clock reads)."""
        self.t_mark, self.cpu_mark = time.perf_counter(), time.process_time()

    async def wait(self) -> None:
        last = self.progress()
        next_rss = self.t0
        while True:
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            cur = self.progress()
            if cur != last:
                last = cur
                if self.t_mark > self.t_last:       # the pipeline said when: exact
                    self.t_last, self.cpu_last = self.t_mark, self.cpu_mark
                else:
                    self.t_last, self.cpu_last = now, time.process_time()
                self.ru_last = resource.getrusage(resource.RUSAGE_SELF)
                if self.warmup and self.warm is None and (n := self.produced()) >= self.warmup:
                    self.warm = (n, now, time.process_time(), self.ru_last)
            if self.rss_interval and now >= next_rss:
                self.rss_samples.append((self.messages(), rss_bytes()))
                next_rss = now + self.rss_interval
            if now - self.t_last > self.idle and self.complete():
                return
            if now - self.t0 > self.timeout:
                raise TimeoutError(f"no end within {self.timeout:g} s (last progress {last})")

    def result(self, messages: int, frames: int, **extra) -> dict:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = {"messages": messages, "frames": frames, "wall_s": self.t_last - self.t0,
               "cpu_s": self.cpu_last - self.cpu0, "user_s": self.ru_last.ru_utime - self.ru0.ru_utime,
               "sys_s": self.ru_last.ru_stime - self.ru0.ru_stime, "peak_rss_kib": ru.ru_maxrss,
               "voluntary_switches": self.ru_last.ru_nvcsw - self.ru0.ru_nvcsw,
               "minor_faults": self.ru_last.ru_minflt - self.ru0.ru_minflt}
        if self.rss_samples:
            out["rss_samples"] = self.rss_samples
        if self.warm is not None and messages > self.warm[0] and self.t_last > self.warm[1]:
            n, t, cpu, r = self.warm
            out["steady"] = {"after": n, "messages": messages - n, "wall_s": self.t_last - t,
                             "cpu_s": self.cpu_last - cpu, "user_s": self.ru_last.ru_utime - r.ru_utime,
                             "sys_s": self.ru_last.ru_stime - r.ru_stime,
                             "minor_faults": self.ru_last.ru_minflt - r.ru_minflt}
        out.update(extra)
        return out


def cap_receive_buffer(sock) -> None:
    """Give a pipeline's WebSocket socket a fixed receive buffer (all pipelines alike). The exchange sends
    at full speed and a pipeline held back by NATS pauses its reads; with the kernel's auto-tuned
    buffer (up to 6 MiB here) the next read then brings up to ~50k frames at once, a burst that no
    live feed produces and that only measures how big buffers grow."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WS_RCVBUF)


def emit(result: dict) -> None:
    """The one line the driver reads back."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def baseline_main(run: Callable, doc: str, argv: list[str] | None = None) -> int:
    """The command line every peer-stack baseline shares (e2e.py passes the same options to each):
    parse, run ``run(args)`` on uvloop, print its RESULT line."""
    import argparse

    import uvloop

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for a in ("--url", "--nats", "--key", "--prefix", "--markets"):
        ap.add_argument(a, required=True)
    ap.add_argument("--window", type=int, default=16384)
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    emit(uvloop.run(run(ap.parse_args(argv))))
    return 0


def read_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise ValueError("no RESULT line")


def quantile_from_buckets(counts: list[int], upper: Callable[[int], float], q: float) -> float | None:
    """The ``q`` quantile of a bucketed histogram, interpolated linearly inside its bucket (the open last
    bucket answers with its lower bound)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lo = upper(i - 1) if i else 0.0
            hi = upper(i)
            if hi == float("inf"):
                return lo
            return lo + (hi - lo) * (rank - seen) / c
        seen += c
    return upper(len(counts) - 2)


def subscribe_commands(markets: list[str]) -> list[bytes]:
    """What the connector's first connection sends: the all-market channels, then every book."""
    cmds = [{"id": i + 1, "cmd": "subscribe", "params": {"channels": [ch]}} for i, ch in enumerate(SUBSCRIBE_CHANNELS)]
    cmds.append({"id": len(cmds) + 1, "cmd": "subscribe",
                 "params": {"channels": ["orderbook_delta"], "market_tickers": markets}})
    return [json.dumps(c, separators=(",", ":")).encode() for c in cmds]


# subject words of the peers (the connector's subjects.py rules, minus its %-escaping of odd keys)
RAW_WORD = {"trade": "trade", "ticker": "ticker", "orderbook_snapshot": "orderbook", "orderbook_delta": "orderbook",
            "market_lifecycle_v2": "lifecycle", "event_lifecycle": "event_lifecycle"}
CONTROL_TYPES = frozenset(("subscribed", "unsubscribed", "ok", "error"))


class PeerIds:
    """Subjects and ``Nats-Msg-Id``s of the peer stacks, built in Python per message as a peer would:
    the same subjects and ids as the connector for the frames of a generated session."""

    def __init__(self, prefix: str, conn: str):
        self.prefix, self.conn, self.counter = prefix, conn, 0

    def ids(self, ftype: str, rtype: str | None, ticker: str, sid, seq, trade_id) -> tuple[str, str, str, str]:
        """(raw subject, raw id, normalized subject, normalized id) of one frame."""
        token = ticker.replace(".", "_")
        if ftype == "trade" and trade_id:
            stem = f"kalshi:trade:{trade_id}"
        elif sid and seq:
            stem = f"kalshi:{self.conn}:{sid}:{seq}"
        else:
            self.counter += 1
            stem = f"kalshi:{self.conn}:n{self.counter}"
        return (f"{self.prefix}.json.{RAW_WORD.get(ftype, 'other')}.{token}", stem + ":raw",
                f"{self.prefix}.norm.{rtype}.{token}", stem + ":norm")


def with_recv_ts(record: bytes, recv_ns: int) -> bytes:
    """A record with the ``recv_ts`` the connector adds."""
    return b'%s,"recv_ts":%d}' % (record[:-1], recv_ns)
