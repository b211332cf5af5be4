"""The service: config -> sessions (shards) -> normalizer/sequencer -> JetStream publisher and file sink.

Shutdown on the first SIGTERM/SIGINT: stop intake (unsubscribe, close the sockets), wait for acks up
to ``runner.shutdown_timeout``, spill whatever is unacked, close the NATS connection (never a nats-py
``drain()``: the data connection is the project's own), close the files. Exit 0 only when every
record was acked or spilled. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from ssmd_fast.config import EnvironmentConfig
from ssmd_fast.credentials import check_run_files, resolve_credentials, with_exchange_choice
from ssmd_fast.errors import ConfigError
from ssmd_fast.events import StatusEvent
from ssmd_fast.kalshi.auth import KalshiCredentials
from ssmd_fast.metrics import MetricsCollector, MetricsServer, Sample

log = logging.getLogger("ssmd_fast.runner")

EXIT_OK, EXIT_LOSS, EXIT_SECOND_SIGNAL = 0, 1, 130
FEED_RESTART_CHECK = 1.0    # how often a stopped feed checks whether the publisher can take data again


@dataclass
class RunReport:
    """What the run did, for the exit code and the last log line (and the demo's summary)."""

    exit_code: int = EXIT_OK
    frames: int = 0
    records: int = 0
    invalid: int = 0
    gaps: int = 0
    reconnects: int = 0
    published: int = 0
    carried_over: int = 0      # records a previous run left in the spill, stored (or spilled again) by this one
    acked: int = 0
    spilled: int = 0
    rejected: int = 0           # messages the server refused (stream full, permissions, no stream, too large)
    dead_lettered: int = 0      # ... kept in the dead-letter file: not in the stream, not replayed by itself
    lost: int = 0
    file_records: int = 0
    file_lost: int = 0
    shutdown_seconds: float = 0.0
    cpu_seconds: float = 0.0
    details: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, cfg: EnvironmentConfig, credentials: KalshiCredentials | None = None):
        self.cfg = cfg = with_exchange_choice(cfg)
        self.credentials = credentials or KalshiCredentials.from_config(resolve_credentials(cfg))
        check_run_files(cfg)    # NATS auth and TLS files, exchange.ca_file: refused here, naming the key
        self.publisher = None
        self.file_sink = None
        self.sinks: list = []
        self.sessions: list = []
        self.retired: list = []   # sessions of a feed stopped on purpose: their counters still count
        self.metrics_server: MetricsServer | None = None
        self.stop_requested = asyncio.Event()
        self.failures: list[str] = []   # a sink's task that failed (_on_sink_task_done): exit code 1
        self._signals = 0
        self._feed_stopped = False
        self._last_frames = 0
        self._last_stats_at = 0.0
        self.events: dict[str, int] = {}

    # ------------------------------------------------------------------ wiring

    def _build_sinks(self) -> None:
        cfg = self.cfg
        if cfg.storage is not None and cfg.storage.type == "file":
            from ssmd_fast.sinks.file import FileSink

            self.file_sink = FileSink(cfg.storage, on_event=self._from_file_sink)
            self.sinks.append(self.file_sink)
        if cfg.transport.type == "nats":
            from ssmd_fast.sinks.nats import JetStreamPublisher

            self.publisher = JetStreamPublisher(cfg.transport, spill_dir=cfg.resolved_spill_path, feed=cfg.feed,
                                                on_event=self._from_publisher)
            self.sinks.append(self.publisher)

    def _from_file_sink(self, event: StatusEvent) -> None:
        """A file sink problem (disk full) is told to NATS consumers too."""
        self._count_event(event)
        if self.publisher is not None:
            self.publisher.submit_event(event)

    def _from_publisher(self, event: StatusEvent) -> None:
        """Spill and feed-stop events of the publisher become gap markers in the files."""
        self._count_event(event)
        if self.file_sink is not None:
            self.file_sink.submit_event(event)

    def _count_event(self, event: StatusEvent) -> None:
        self.events[event.kind] = self.events.get(event.kind, 0) + 1
        level = logging.INFO if event.kind in ("connect", "resync", "subscription") else logging.WARNING
        log.log(level, "event %s: %s", event.kind, event.to_json().decode())

    def _build_sessions(self) -> list:
        from ssmd_fast.kalshi.connector import build_sessions

        return build_sessions(self.cfg, self.credentials, self.sinks, on_event=self._count_event)

    def _collector(self) -> MetricsCollector:
        collector = MetricsCollector(self.cfg.feed, shards=[s.shard for s in self.sessions] or ["0"])
        collector.add_source(lambda: [x for s in self.sessions for x in s.metric_samples()])
        if self.publisher is not None:
            collector.add_source(lambda: publisher_samples(self.publisher))
        if self.file_sink is not None:
            collector.add_source(self.file_sink.samples)
        return collector

    def health(self) -> tuple[bool, dict]:
        """Unhealthy (503) when a shard is connected but its feed went stale."""
        stale = []
        for s in self.sessions:
            st = s.stats()
            age = st["last_frame_age"]
            if st["connected"] and age is not None and age > self.cfg.exchange.stale_after:
                stale.append(s.shard)
        return not stale, {"stale_shards": stale}

    def ready(self) -> tuple[bool, dict]:
        """Ready (200) when every shard is connected, subscribed and fresh."""
        detail = {}
        ok = bool(self.sessions) and not self._feed_stopped
        for s in self.sessions:
            st = s.stats()
            fresh = st["last_frame_age"] is not None and st["last_frame_age"] <= self.cfg.exchange.stale_after
            detail[s.shard] = {"connected": st["connected"], "subscribed": st["subscribed"], "fresh": fresh}
            ok = ok and st["connected"] and st["subscribed"] and fresh
        if self._feed_stopped:
            detail["feed_stopped"] = True
        return ok, {"shards": detail}

    # ------------------------------------------------------------------ running

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: stopping intake, waiting for acks (up to %g s); a second signal exits at once",
                     signal.Signals(signum).name, self.cfg.runner.shutdown_timeout)
            self.stop_requested.set()
        else:
            log.error("second %s: exiting now without waiting for acks", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(EXIT_SECOND_SIGNAL)

    async def _start_metrics(self) -> None:
        """Serve /metrics, /health and /ready, or fail the start: a supervisor that probes /ready must not
        find a second connector, or another program, answering on the port while this one runs blind."""
        host, port = self.cfg.metrics.host_port
        self.metrics_server = MetricsServer(self._collector(), host, port, self.health, self.ready)
        try:
            await self.metrics_server.start()
        except OSError as exc:
            self.metrics_server = None
            for sink in self.sinks:
                await sink.close(1.0)
            raise ConfigError(f"cannot listen on {self.cfg.metrics.listen}: {exc.strerror or exc}",
                              file=os.path.basename(self.cfg.source) if self.cfg.source else None,
                              key="metrics.listen") from None

    def _on_sink_task_done(self, task: asyncio.Task) -> None:
        """A sink's background task that fails stops the run at once, with exit code 1. The sink cannot
        take data any more: going on would only look healthy (the publisher's task used to die on a
        missing TLS file, and the run went on, acking nothing, until a signal, then exited 0)."""
        if task.cancelled() or task.exception() is None:
            return      # cancelled by the sink's close, or returned during it
        exc = task.exception()
        self.failures.append(f"{task.get_name()} failed: {type(exc).__name__}: {exc}")
        log.error("%s; stopping the run (what is unacked is spilled)", self.failures[-1], exc_info=exc)
        self.stop_requested.set()

    async def run(self, install_signals: bool = True) -> RunReport:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self._build_sinks()
        for sink in self.sinks:
            await sink.start()   # returns at once: the publisher connects in the background
            for task in sink.tasks:
                task.add_done_callback(self._on_sink_task_done)
        self.sessions = self._build_sessions()
        if self.cfg.metrics.enabled:
            await self._start_metrics()     # before the sessions: nothing was received if it fails
        log.info("ssmd-fast %s: %d connection(s) to %s; sinks: %s", self.cfg.name, len(self.sessions),
                 self.sessions[0].url if self.sessions else "-", ", ".join(type(s).__name__ for s in self.sinks))
        for s in self.sessions:
            s.start()
        self._last_stats_at = time.monotonic()
        stats_task = loop.create_task(self._stats_loop(), name="stats")
        feed_task = loop.create_task(self._feed_guard(), name="feed-guard")
        try:
            await self.stop_requested.wait()
        finally:
            stats_task.cancel()
            feed_task.cancel()
        return await self.shutdown()

    async def _stats_loop(self) -> None:
        interval = self.cfg.runner.stats_interval
        while True:
            await asyncio.sleep(interval)
            try:
                log.info("%s", self.stats_line())
            except Exception:   # a broken stats line must not end the stats loop silently
                log.exception("stats line failed")

    async def _feed_guard(self) -> None:
        """Stop the WebSocket feed on purpose when the publisher cannot hold more (spill cap), restart
        it (fresh subscriptions and snapshots) once the publisher takes data again."""
        while True:
            await asyncio.sleep(FEED_RESTART_CHECK)
            pub = self.publisher
            if pub is None:
                continue
            if pub.feed_stop_requested and not self._feed_stopped:
                self._feed_stopped = True
                log.error("stopping the feed: the publisher cannot hold more data (%s)", pub.feed_stop_why)
                # a gap event per subscribed market, as for a lost connection: the files and the metrics say
                # what is missing until the feed restarts
                why = f"the publisher cannot hold more data: {pub.feed_stop_why}"
                await asyncio.gather(*(s.close(2.0, gap=why) for s in self.sessions))
                self.retired += self.sessions
                self.sessions = []
            elif self._feed_stopped and not pub.feed_stop_requested:
                self._feed_stopped = False
                log.warning("the publisher takes data again: restarting the feed")
                self.sessions = self._build_sessions()
                for s in self.sessions:
                    s.start()

    def totals(self) -> dict:
        t = {"frames": 0, "records": 0, "invalid": 0, "gaps": 0, "reconnects": 0}
        for s in self.retired + self.sessions:
            st = s.stats()
            t["frames"] += st["frames"]
            t["records"] += sum(st["records"].values())
            t["invalid"] += sum(st["invalid"].values())
            t["gaps"] += st["gaps"]
            t["reconnects"] += st["reconnects"]
        return t

    def stats_line(self) -> str:
        now = time.monotonic()
        t = self.totals()
        rate = (t["frames"] - self._last_frames) / max(1e-9, now - self._last_stats_at)
        self._last_frames, self._last_stats_at = t["frames"], now
        parts = [f"frames/s {rate:,.0f}", f"records {t['records']:,}"]
        if self.publisher is not None:
            p = self.publisher.stats()
            oldest = self.publisher.ring.oldest_unacked_sent()
            age = f"{time.monotonic() - oldest:.2f}s" if oldest else "-"
            parts += [f"published {p['published']:,}", f"acked {p['acked']:,}", f"spilled {p['spilled']:,}",
                      f"oldest unacked {age}"]
            # shown once they happen: the messages the stream does not take, and those waiting for a stream
            for key, label in (("carried_over", "from the last run's spill"), ("parked", "waiting for a stream"),
                               ("dead_lettered", "dead-lettered"), ("lost", "lost")):
                if p[key]:
                    parts.append(f"{label} {p[key]:,}")
            spill = self.publisher.spill
            if p["spill_pending"] and spill is not None:    # the backlog left to replay: what an outage costs
                checking = spill.stats()["unchecked_segments"]   # their records are not counted yet
                parts.append(f"spill pending {p['spill_pending']:,}{'+' if checking else ''} "
                             f"({spill.pending_bytes / 1e6:,.1f} MB)")
        if self.file_sink is not None:
            parts.append(f"file records {sum(self.file_sink.stats()['records'].values()):,}")
        parts += [f"invalid {t['invalid']:,}", f"gaps {t['gaps']:,}", f"reconnects {t['reconnects']:,}"]
        return "stats: " + ", ".join(parts)

    async def shutdown(self) -> RunReport:
        started = time.monotonic()
        timeout = self.cfg.runner.shutdown_timeout
        # 1. stop intake: unsubscribe and close every socket (their last batches reach the sinks)
        await asyncio.gather(*(s.close(min(2.0, max(0.1, timeout / 4))) for s in self.sessions))
        report = RunReport()
        t = self.totals()
        report.frames, report.records, report.invalid = t["frames"], t["records"], t["invalid"]
        report.gaps, report.reconnects = t["gaps"], t["reconnects"]
        # 2. wait for acks, spill the rest; 3. close the files
        if self.publisher is not None:
            rep = await self.publisher.close(max(0.1, timeout - (time.monotonic() - started)))
            s = rep.stats
            report.published, report.acked, report.spilled = s["published"], s["acked"], s["spilled"]
            report.carried_over = s["carried_over"]
            report.rejected, report.dead_lettered = sum(s["rejected"].values()), s["dead_lettered"]
            report.lost += rep.lost
            if rep.lost:
                report.details.append(f"NATS: {rep.detail}")
            if report.dead_lettered:
                kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(s["rejected"].items()))
                report.details.append(
                    f"NATS: {report.dead_lettered:,} messages the server rejected ({kinds}) are in the dead-letter "
                    f"file, not in the stream: see `ssmd-fast spill --dead-letter {self.cfg.resolved_spill_path}`, and once the "
                    f"cause is fixed `--requeue-dead-letters` (the next start stores them)")
        if self.file_sink is not None:
            rep = await self.file_sink.close(max(0.1, timeout - (time.monotonic() - started)))
            report.file_records, report.file_lost = rep.written, rep.lost
            if rep.lost:
                report.details.append(f"files: {rep.detail}")
        if self.metrics_server is not None:
            await self.metrics_server.close()
        report.shutdown_seconds = time.monotonic() - started
        ru = os.times()
        report.cpu_seconds = ru.user + ru.system
        report.details += self.failures
        # dead letters are kept, not lost, but they are not where the run was to put them: an operator must act
        clean = not (report.lost or report.file_lost or report.dead_lettered or self.failures)
        report.exit_code = EXIT_OK if clean else EXIT_LOSS
        # acked counts the previous run's spill too: said where a reader would see acked > published
        carried = f" (+ {report.carried_over:,} from the last run's spill)" if report.carried_over else ""
        summary = (f"shutdown in {report.shutdown_seconds:.3f} s: frames {report.frames:,}, records {report.records:,}, "
                   f"published {report.published:,}{carried}, acked {report.acked:,}, spilled {report.spilled:,}, "
                   f"dead-lettered {report.dead_lettered:,}, lost {report.lost:,}, "
                   f"file records {report.file_records:,}, file lost {report.file_lost:,}")
        if report.exit_code == EXIT_OK:
            log.info("%s; every record acked or spilled", summary)
        elif report.lost or report.file_lost:
            log.error("%s; NOT every record was acked or spilled: %s", summary, "; ".join(report.details))
        else:
            log.error("%s; every record acked, spilled or dead-lettered, but the run failed: %s", summary,
                      "; ".join(report.details))
        return report


def publisher_samples(pub) -> list[Sample]:
    s = pub.stats()
    out = [Sample(name, float(s[key])) for name, key in (
        ("published", "published"), ("acked", "acked"), ("ack_duplicates", "duplicates"), ("resent", "resent"),
        ("spilled", "spilled"), ("replayed", "replayed"), ("carried_over", "carried_over"), ("unacked", "inflight"),
        ("queue_bytes", "queued_bytes"), ("window", "window"), ("spill_quarantined_bytes", "spill_quarantined_bytes"))]
    out.append(Sample("nats_connected", 1.0 if s["connected"] else 0.0))
    if pub.spill is not None and s["spill_pending"]:
        out.append(Sample("spill_pending_bytes", float(pub.spill.pending_bytes)))
    oldest = pub.ring.oldest_unacked_sent()
    out.append(Sample("oldest_unacked_seconds", (time.monotonic() - oldest) if oldest else 0.0))
    out += [Sample("rejected", float(n), {"kind": kind}) for kind, n in s["rejected"].items()]
    out.append(Sample("dead_lettered", float(s["dead_lettered"])))
    out += [Sample("lost", float(n), {"reason": reason}) for reason, n in s["lost_reasons"].items()]
    out.append(Sample("parked", float(s["parked"])))
    hist = getattr(pub, "latency_histogram", None)
    if hist is not None:
        out.append(hist())
    return out


def run_service(cfg: EnvironmentConfig, loop: str = "uvloop", report_json: str | None = None) -> int:
    if cfg.status != "active":
        log.error("%s has status %s: refusing to run it (set status: active)", cfg.source or cfg.name, cfg.status)
        return EXIT_LOSS
    runner = Runner(cfg)  # resolves and loads the credentials first: a bad key fails before any I/O

    async def main() -> RunReport:
        return await runner.run()

    if loop == "uvloop":
        import uvloop

        report = uvloop.run(main())
    else:
        report = asyncio.run(main())
    if report_json:     # the demo and the tests read the final counters from here
        with open(report_json, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(report), f, indent=1)
    sys.stdout.flush()
    return report.exit_code
