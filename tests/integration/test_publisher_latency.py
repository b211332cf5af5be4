"""The publisher's ack latency histogram (batch receive -> JetStream ack) against a real nats-server."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from ssmd_fast import normalize
from ssmd_fast.config import SpillConfig, TransportConfig
from ssmd_fast.kalshi.generator import generate_session
from ssmd_fast.metrics import MetricsCollector
from ssmd_fast.natsserver import NatsServer
from ssmd_fast.runner import publisher_samples
from ssmd_fast.sinks.nats import JetStreamPublisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_every_acked_frame_message_lands_in_the_latency_histogram(tmp_path):
    frames = list(generate_session(600, seed=3, markets=8))
    with NatsServer() as srv:
        cfg = TransportConfig(type="nats", url=(srv.url,), stream="LAT_KALSHI", subject_prefix="lat.kalshi",
                              spill=SpillConfig(path=str(tmp_path)))

        async def main():
            pub = JetStreamPublisher(cfg, spill_dir=str(tmp_path))
            await pub.start()
            assert await pub.wait_connected(10)
            started = time.time_ns()
            for k in range(0, len(frames), 50):
                batch = normalize.FrameBatch()
                batch.set_recv_ts(time.time_ns())
                for f in frames[k:k + 50]:
                    batch.add(f)
                pub.submit(batch, "c0ffee000002")
                await asyncio.sleep(0)
            offline = normalize.FrameBatch()       # no receive time: published, not measured
            offline.add(frames[-1])
            pub.submit(offline, "c0ffee000003")
            rep = await pub.close(10)
            elapsed = time.time_ns() - started
            return pub, rep, elapsed

        pub, rep, elapsed = uvloop.run(main())
    acked = rep.stats["acked"]
    hist = pub.latency_histogram()
    bounds = [b for b, _ in hist.buckets]
    counts = [c for _, c in hist.buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf") and counts == sorted(counts)
    assert counts[-1] == acked - 2 > 0             # the offline frame's raw + normalized are not measured
    assert 0 < hist.sum <= counts[-1] * elapsed / 1e9
    collector = MetricsCollector("kalshi")         # the runner exposes it as ack_latency_seconds
    collector.add_source(lambda: [s for s in publisher_samples(pub) if s.name == "ack_latency_seconds"])
    text = collector.render().decode()
    assert f'ssmd_fast_ack_latency_seconds_count{{feed="kalshi"}} {float(counts[-1])}' in text
