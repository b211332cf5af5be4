"""Runner.stats_line, the line ``ssmd-fast run`` logs every ``runner.stats_interval``: while NATS is away it
says how much waits in the spill, and the line without a backlog does not mention it."""

from __future__ import annotations

import asyncio
import re
import textwrap

import pytest

from ssmd_fast import normalize
from ssmd_fast.config import loads_environment
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.generator import generate_session
from ssmd_fast.natsserver import free_port
from ssmd_fast.runner import Runner

pytestmark = pytest.mark.timeout(60)


def test_the_stats_line_shows_the_spill_backlog_while_nats_is_away(tmp_path):
    port = free_port("127.0.0.1")          # nothing listens there: NATS is away from the start
    cfg = loads_environment(textwrap.dedent(f"""\
        name: stats-test
        feed: kalshi
        transport:
          type: nats
          url: nats://127.0.0.1:{port}
          memory_queue_bytes: 64KiB
          spill:
            path: {tmp_path / "spill"}
        """), "stats-test.yaml")
    runner = Runner(cfg, KalshiCredentials("key-id", generate_key_pair()[0].decode()))
    runner._build_sinks()
    pub = runner.publisher

    async def main():
        await pub.start()                   # capture starts at once: start-up does not wait for NATS
        assert "spill pending" not in runner.stats_line()
        batch = normalize.FrameBatch()
        for frame in generate_session(2000, seed=3, markets=5):
            batch.add(frame)
        pub.submit(batch, "c0ffee000001")   # past the 64 KiB memory queue: into the spill
        line = runner.stats_line()
        await pub.close(0.5)
        return line

    line = asyncio.run(main())
    m = re.search(r"spill pending ([\d,]+) \(([\d.]+) MB\)", line)
    assert m, line
    assert int(m[1].replace(",", "")) == pub.stats()["spilled"] > 0
    assert float(m[2]) > 0.064
