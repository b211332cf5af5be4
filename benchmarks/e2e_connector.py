"""The connector as an end-to-end pipeline process (run by ``benchmarks/e2e.py``).

    python -m benchmarks.e2e_connector --env FILE --key PEM [--mode jetstream|core] [--rss-interval S]

It builds what ``ssmd-fast run --env FILE`` builds (``runner.Runner``: its JetStream publisher, its
sessions with the compiled listener, normalizer and sequencer) and runs the same hot path, with three
benchmark-only differences:

- the meter (``e2e_common.Meter``) starts once the stream is provisioned and the NATS data connection
  is up, just before the sessions connect, and stops at the last ack: start-up is not counted;
- ``--mode core`` builds the publisher with ``mode="core"`` (plain ``PUB``: no header, no reply, no ack, no stream);
- ``Pacer``: the WebSocket reads pause while the publisher holds more than 8,192 unacked messages
  (2 x the default transport.window_min; core: 4 MiB of unwritten frames) and resume below 6,144
  (1 MiB) as the acks come in. The thresholds do not move with ``transport.window``: once the
  publisher has measured the ack rate its window (``FlightWindow``: up to 16,384 by default) covers
  them and no message waits in the ring behind it; with ``--window 4096`` about 4,096 do
  (docs/performance.md). The local exchange replays at full speed; without this the whole session would
  pile up in the memory queue (then the spill) at NATS's pace. With it the feed runs at the rate NATS
  takes it, as in steady operation, and the latency figure is that of a saturated pipeline with a
  bounded queue.
  The socket's receive buffer is fixed (``e2e_common.cap_receive_buffer``, every pipeline alike), so
  a resumed read brings a bounded burst.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.e2e_common import Meter, cap_receive_buffer, emit, quantile_from_buckets
from ssmd_fast.config import load_environment
from ssmd_fast.kalshi.auth import KalshiCredentials
from ssmd_fast.runner import Runner
from ssmd_fast.sinks import _framing_py
from ssmd_fast.sinks.nats import JetStreamPublisher

PACE_HIGH, PACE_LOW = 8192, 6144          # unacked messages (JetStream)
CORE_HIGH, CORE_LOW = 4 << 20, 1 << 20    # unwritten bytes (core)


class BenchRunner(Runner):
    """``Runner`` with the publisher mode chosen (core mode exists for benchmarks only)."""

    def __init__(self, cfg, credentials, mode: str):
        super().__init__(cfg, credentials)
        self.mode = mode

    def _build_sinks(self) -> None:
        self.publisher = JetStreamPublisher(self.cfg.transport, spill_dir=self.cfg.resolved_spill_path,
                                            feed=self.cfg.feed, on_event=self._from_publisher, mode=self.mode)
        self.sinks.append(self.publisher)


class Pacer:
    """A last sink that pauses the sessions' socket reads while the publisher is too far behind (see the
    module docstring); the publisher's read/pump hooks resume them."""

    def __init__(self, runner: BenchRunner):
        self.runner, self.pub = runner, runner.publisher
        self.meter: Meter | None = None
        self.ring = self.pub.ring
        self.core = runner.mode == "core"
        self.high, self.low = PACE_HIGH, PACE_LOW
        self.paused = False
        self.pauses = 0
        self._capped: set[int] = set()
        hook = "_pump" if self.core else "_on_read"   # called after the window moved / the transport drained
        inner = getattr(self.pub, hook)

        def resume_after():
            inner()
            if self.meter is not None:
                self.meter.mark()
            if self.paused and not self._behind(self.low, CORE_LOW):
                self._set_reading(True)

        setattr(self.pub, hook, resume_after)     # instance attribute: the publisher's own calls use it too

    def _behind(self, msgs: int, nbytes: int) -> bool:
        ring = self.ring
        return ring.queued_bytes > nbytes if self.core else ring.tail - ring.head > msgs

    def _set_reading(self, on: bool) -> None:
        self.paused = not on
        self.pauses += not on
        for s in self.runner.sessions:
            t = s.transport
            if t is not None and not t.is_disconnected:
                (t.underlying_transport.resume_reading if on else t.underlying_transport.pause_reading)()

    def submit(self, batch, conn) -> None:
        if len(self._capped) < len(self.runner.sessions):   # a new connection: its socket's receive buffer
            for s in self.runner.sessions:
                if s.transport is not None and id(s.transport) not in self._capped:
                    self._capped.add(id(s.transport))
                    cap_receive_buffer(s.transport.underlying_transport.get_extra_info("socket"))
        if not self.paused and self._behind(self.high, CORE_HIGH):
            self._set_reading(False)

    def submit_event(self, event) -> None:
        pass


async def run(args) -> dict:
    cfg = load_environment(args.env)
    creds = KalshiCredentials("bench", Path(args.key).read_text())
    runner = BenchRunner(cfg, creds, args.mode)
    runner._build_sinks()
    pacer = Pacer(runner)
    pub, ring = runner.publisher, runner.publisher.ring
    await pub.start()
    if not await pub.wait_connected(30):
        raise RuntimeError(f"the publisher did not connect: {pub.stats()['error']}")

    def frames() -> int:
        return sum(s.listener.frames for s in runner.sessions if s.listener is not None)

    if args.mode == "core":
        def progress():
            return ring.framed, ring.sent

        def complete():
            conn = pub.conn
            return frames() > 0 and ring.queued == 0 and conn is not None \
                and conn.transport.get_write_buffer_size() == 0
    else:
        def progress():
            return ring.framed, ring.acked_count

        def complete():
            return frames() > 0 and ring.head == ring.tail

    meter = Meter(progress, complete, idle=args.idle, timeout=args.timeout, rss_interval=args.rss_interval,
                  messages=lambda: ring.acked_count if args.mode == "jetstream" else ring.sent, warmup=args.warmup,
                  produced=lambda: ring.framed)
    import ssmd_fast.kalshi.connector  # noqa: F401  (imported by _build_sessions: not part of the measure)

    pacer.meter = meter
    meter.start()
    runner.sessions = runner._build_sessions()
    for s in runner.sessions:
        s.sinks.append(pacer)
        s.start()
    await meter.wait()
    counts = ring.latency_counts()
    lat = {f"latency_p{int(q * 100)}_s": (v / 1e9 if v is not None else None)
           for q in (0.5, 0.99) for v in [quantile_from_buckets(counts, _framing_py.latency_upper_ns, q)]}
    totals = runner.totals()
    messages = ring.acked_count if args.mode == "jetstream" else ring.sent
    result = meter.result(messages, totals["frames"], records=totals["records"], invalid=totals["invalid"],
                          gaps=totals["gaps"], pauses=pacer.pauses, resent=ring.resent, window=pub.window.size,
                          latency_counts=counts, reads=sum(s.stats()["batches"] for s in runner.sessions),
                          nats_reads=pub.conn.reads if pub.conn is not None else None, **lat)
    report = await runner.shutdown()
    result.update(lost=report.lost, spilled=report.spilled, exit_code=report.exit_code)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", required=True)
    ap.add_argument("--key", required=True, help="the Kalshi private key (PEM) the exchange knows")
    ap.add_argument("--mode", choices=("jetstream", "core"), default="jetstream")
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--rss-interval", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=0,
                    help="also report the figures after this many messages (the run's start-up excluded)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-7s %(name)s: %(message)s")
    import uvloop

    emit(uvloop.run(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
