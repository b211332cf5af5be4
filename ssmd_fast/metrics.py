"""Prometheus exposition (``/metrics``), ``/health`` and ``/ready`` on ``metrics.listen``.

The hot path never touches this module: sessions and sinks keep plain counters (C-level in the
compiled modules) and this collector reads them at scrape time. Every metric family is declared up
front, so a series exists at zero from the start and alerts work before the first frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("ssmd_fast.metrics")

# name -> (kind, help, label names beyond "feed")
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "frames": ("counter", "WebSocket text frames received", ("shard",)),
    "bytes": ("counter", "WebSocket payload bytes received", ("shard",)),
    "records": ("counter", "normalized records produced", ("shard", "type")),
    "control": ("counter", "control replies received (subscribed, ok, error, unsubscribed)", ("shard", "type")),
    "other": ("counter", "valid frames of types that are not normalized", ("shard", "type")),
    "invalid": ("counter", "frames rejected by the normalizer", ("shard", "reason")),
    "binary_frames": ("counter", "binary frames received and dropped", ("shard",)),
    "duplicates": ("counter", "sequenced frames dropped as duplicates or regressions", ("shard",)),
    "gaps": ("counter", "gap events (one per affected market: seq gap, lost connection, ended subscription)",
             ("shard",)),
    "seq_gaps": ("counter", "seq gaps the sequencer detected on a sid (each gives a gap event per affected market)",
                 ("shard",)),
    "suppressed": ("counter", "book deltas whose normalized records are withheld while their book resyncs (raw kept)", ("shard",)),
    "resyncs": ("counter", "books rebuilt from a fresh snapshot after a gap", ("shard",)),
    "reconnects": ("counter", "WebSocket reconnects", ("shard",)),
    "stale": ("counter", "feeds declared stale by the watchdog", ("shard",)),
    "auth_failures": ("counter", "handshakes rejected with HTTP 401/403", ("shard",)),
    "connected": ("gauge", "1 when the WebSocket is connected", ("shard",)),
    "subscribed": ("gauge", "1 when every subscription of the shard is confirmed", ("shard",)),
    "last_frame_age_seconds": ("gauge", "seconds since the last frame or pong", ("shard",)),
    "published": ("counter", "messages written to NATS (first sends)", ()),
    "acked": ("counter", "messages acknowledged by JetStream", ()),
    "ack_duplicates": ("counter", "acks flagged duplicate by JetStream (a resend already stored)", ()),
    "resent": ("counter", "messages resent after an ack timeout or a reconnect", ()),
    "spilled": ("counter", "messages written to the spill file", ()),
    "replayed": ("counter", "messages replayed from the spill file", ()),
    "carried_over": ("counter", "spill records a previous run left, sent by this one (in acked, not in published)",
                     ()),
    "rejected": ("counter", "messages rejected by the server (dead-lettered)", ("kind",)),
    "dead_lettered": ("counter", "messages written to the dead-letter file (not in the stream until requeued)", ()),
    "lost": ("counter", "messages the publisher could not keep (spill file full, ...)", ("reason",)),
    "parked": ("gauge", "messages no stream took yet, retried until transport.retry_horizon", ()),
    "unacked": ("gauge", "messages sent and not yet acknowledged", ()),
    "queue_bytes": ("gauge", "bytes waiting in the in-memory queue", ()),
    "window": ("gauge", "unacked messages the publisher allows now (follows the ack rate)", ()),
    "spill_pending_bytes": ("gauge", "bytes in the spill file not yet replayed", ()),
    "spill_quarantined_bytes": ("counter", "corrupt spill bytes set aside (the records in them are missing)", ()),
    "oldest_unacked_seconds": ("gauge", "age of the oldest unacknowledged message", ()),
    "nats_connected": ("gauge", "1 when the NATS data connection is up", ()),
    "file_records": ("counter", "records written by the file sink", ("format",)),
    "file_errors": ("counter", "file sink write errors (disk full, permissions)", ()),
    "file_lost_records": ("counter", "records the file sink could not write", ()),
    "ack_latency_seconds": ("histogram", "frame receive to JetStream ack", ()),
}


@dataclass
class Sample:
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class HistogramSample:
    name: str
    buckets: list[tuple[float, int]]  # (upper bound in seconds, cumulative count), +Inf last
    sum: float
    labels: dict[str, str] = field(default_factory=dict)


Source = Callable[[], Iterable[Sample | HistogramSample]]


class MetricsCollector:
    """Reads the registered sources at scrape time and renders every declared family."""

    def __init__(self, feed: str, shards: Iterable[str] = ("0",)):
        self.feed = feed
        self.shards = tuple(shards)
        self.sources: list[Source] = []

    def add_source(self, source: Source) -> None:
        self.sources.append(source)

    def _families(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, (kind, help_text, extra) in FAMILIES.items():
            labels = ["feed", *extra]
            full = f"ssmd_fast_{name}"
            if kind == "counter":
                out[name] = CounterMetricFamily(full, help_text, labels=labels)
            elif kind == "gauge":
                out[name] = GaugeMetricFamily(full, help_text, labels=labels)
            else:
                out[name] = HistogramMetricFamily(full, help_text, labels=labels)
        return out

    def collect(self):
        families = self._families()
        seen: set[tuple[str, tuple]] = set()
        for source in self.sources:
            try:
                samples = list(source())
            except Exception:  # a broken probe must not take /metrics down
                log.exception("metrics source failed")
                continue
            for s in samples:
                fam = families.get(s.name)
                if fam is None:
                    continue
                extra = FAMILIES[s.name][2]
                values = [self.feed] + [str(s.labels.get(k, "")) for k in extra]
                seen.add((s.name, tuple(values)))
                if isinstance(s, HistogramSample):
                    fam.add_metric(values, [(_le(b), c) for b, c in s.buckets], s.sum)
                else:
                    fam.add_metric(values, s.value)
        # series that must exist before traffic: one per shard for per-shard families, one for the rest
        for name, (kind, _, extra) in FAMILIES.items():
            if kind == "histogram" or any(k not in ("shard",) for k in extra):
                continue
            keys = [[self.feed, sh] for sh in self.shards] if extra == ("shard",) else [[self.feed]]
            for values in keys:
                if (name, tuple(values)) not in seen:
                    families[name].add_metric(values, 0.0)
        if not any(n == "ack_latency_seconds" for n, _ in seen):
            families["ack_latency_seconds"].add_metric([self.feed], [("+Inf", 0)], 0.0)
        yield from families.values()

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


Probe = Callable[[], tuple[bool, dict]]


class MetricsServer:
    """A minimal asyncio HTTP/1.1 server: ``/metrics``, ``/health``, ``/ready``."""

    def __init__(self, collector: MetricsCollector, host: str, port: int,
                 health: Probe | None = None, ready: Probe | None = None):
        self.collector, self.host, self.port = collector, host, port
        self.health = health or (lambda: (True, {}))
        self.ready = ready or (lambda: (True, {}))
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("metrics on http://%s:%d/metrics (/health, /ready)", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            elif path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, self.collector.render()
            elif path in ("/health", "/ready"):
                ok, detail = (self.health if path == "/health" else self.ready)()
                status, ctype = (200 if ok else 503), "application/json"
                body = json.dumps({"ok": ok, **detail}, default=str).encode() + b"\n"
            else:
                status, ctype, body = 404, "text/plain", b"not found: try /metrics, /health, /ready\n"
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
