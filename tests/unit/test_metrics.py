import asyncio
import json
import logging

import pytest

from ssmd_fast.logs import ScrubFilter, scrub, setup_logging
from ssmd_fast.metrics import HistogramSample, MetricsCollector, MetricsServer, Sample


def test_families_exist_at_zero_before_traffic():
    text = MetricsCollector("kalshi", shards=("0", "1")).render().decode()
    assert 'ssmd_fast_frames_total{feed="kalshi",shard="0"} 0.0' in text
    assert 'ssmd_fast_frames_total{feed="kalshi",shard="1"} 0.0' in text
    assert 'ssmd_fast_acked_total{feed="kalshi"} 0.0' in text
    assert 'ssmd_fast_connected{feed="kalshi",shard="0"} 0.0' in text
    assert 'ssmd_fast_ack_latency_seconds_count{feed="kalshi"} 0.0' in text


def test_sources_are_read_at_scrape_time():
    counters = {"frames": 0}
    c = MetricsCollector("kalshi")
    c.add_source(lambda: [Sample("frames", counters["frames"], {"shard": "0"}),
                          Sample("records", 7, {"shard": "0", "type": "trade"}),
                          Sample("invalid", 2, {"shard": "0", "reason": "json"}),
                          HistogramSample("ack_latency_seconds", [(0.001, 3), (0.01, 5), (float("inf"), 6)], 0.02)])
    counters["frames"] = 42
    text = c.render().decode()
    assert 'ssmd_fast_frames_total{feed="kalshi",shard="0"} 42.0' in text
    assert 'ssmd_fast_records_total{feed="kalshi",shard="0",type="trade"} 7.0' in text
    assert 'ssmd_fast_invalid_total{feed="kalshi",reason="json",shard="0"} 2.0' in text
    assert 'ssmd_fast_ack_latency_seconds_bucket{feed="kalshi",le="0.01"} 5.0' in text
    assert 'ssmd_fast_ack_latency_seconds_count{feed="kalshi"} 6.0' in text


def test_a_failing_source_does_not_break_the_scrape(caplog):
    c = MetricsCollector("kalshi")
    c.add_source(lambda: 1 / 0)
    assert b"ssmd_fast_frames_total" in c.render()


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.timeout(20)
def test_http_endpoints():
    state = {"stale": False}

    async def main():
        server = MetricsServer(MetricsCollector("kalshi"), "127.0.0.1", 0,
                               health=lambda: (not state["stale"], {"stale": state["stale"]}),
                               ready=lambda: (False, {"connected": False}))
        await server.start()
        try:
            status, body = await _get(server.port, "/metrics")
            assert status == 200 and b"ssmd_fast_frames_total" in body
            status, body = await _get(server.port, "/health")
            assert status == 200 and json.loads(body)["ok"] is True
            state["stale"] = True
            status, body = await _get(server.port, "/health")
            assert status == 503 and json.loads(body) == {"ok": False, "stale": True}
            status, _ = await _get(server.port, "/ready")
            assert status == 503
            status, _ = await _get(server.port, "/nope")
            assert status == 404
        finally:
            await server.close()

    asyncio.run(main())


def test_scrub_removes_key_material_and_signatures():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    out = scrub(f"failed with {pem} and KALSHI-ACCESS-SIGNATURE: {'A' * 40}== and nats://u:secret@h:4222")
    assert "MIIE" not in out and "AAAAAAAAAAAAAAAAAAAA" not in out and "secret" not in out


def test_scrub_filter_on_records(capsys):
    setup_logging("debug", "json")
    logging.getLogger("t").debug("token %s", "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----")
    err = capsys.readouterr().err
    assert "abc" not in err and "redacted private key" in err and json.loads(err.strip().splitlines()[-1])
    assert any(isinstance(f, ScrubFilter) for h in logging.getLogger().handlers for f in h.filters)
