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


def nats_runner(tmp_path, url: str, transport_extra: str) -> Runner:
    """A Runner with its sinks built (not started) for a NATS transport at ``url``."""
    cfg = loads_environment(textwrap.dedent(f"""\
        name: stats-test
        feed: kalshi
        transport:
          type: nats
          url: {url}
          {transport_extra}
          spill:
            path: {tmp_path / "spill"}
        """), "stats-test.yaml")
    runner = Runner(cfg, KalshiCredentials("key-id", generate_key_pair()[0].decode()))
    runner._build_sinks()
    return runner


def test_the_stats_line_shows_the_spill_backlog_while_nats_is_away(tmp_path):
    port = free_port("127.0.0.1")          # nothing listens there: NATS is away from the start
    runner = nats_runner(tmp_path, f"nats://127.0.0.1:{port}", "memory_queue_bytes: 64KiB")
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


def test_a_failed_publisher_task_stops_the_run_with_exit_code_1(tmp_path, monkeypatch, caplog):
    """The publisher's task used to die (a missing TLS file) with the run going on, acking nothing, until
    a signal, then exiting 0. Now the run stops at once, says why, and spills what it holds."""
    from ssmd_fast.sinks import nats

    async def broken_provision(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/ca.pem")

    monkeypatch.setattr(nats, "provision", broken_provision)
    cfg = loads_environment(textwrap.dedent(f"""\
        name: failure-test
        feed: kalshi
        exchange: {{url: 'ws://127.0.0.1:{free_port("127.0.0.1")}/trade-api/ws/v2'}}
        transport:
          type: nats
          url: nats://127.0.0.1:{free_port("127.0.0.1")}
          spill:
            path: {tmp_path / "spill"}
        runner: {{shutdown_timeout: 1s}}
        metrics: {{enabled: false}}
        """), "failure-test.yaml")
    runner = Runner(cfg, KalshiCredentials("key-id", generate_key_pair()[0].decode()))

    async def main():
        return await asyncio.wait_for(runner.run(install_signals=False), 20)

    report = asyncio.run(main())
    assert report.exit_code == 1
    why = "nats-publisher failed: FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/ca.pem'"
    assert report.details == [why]
    assert f"{why}; stopping the run" in caplog.text


def test_a_busy_metrics_port_fails_the_start_and_frees_the_storage(tmp_path):
    """It used to log an error and run on without /ready: two connectors on the defaults then ran with one
    answering for both."""
    import socket

    from ssmd_fast.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        text = textwrap.dedent(f"""\
            name: metrics-test
            feed: kalshi
            exchange: {{url: 'ws://127.0.0.1:{free_port("127.0.0.1")}/trade-api/ws/v2'}}
            transport: {{type: none}}
            storage: {{type: file, path: {tmp_path / "data"}}}
            metrics: {{listen: '{listen}'}}
            """)
        creds = KalshiCredentials("key-id", generate_key_pair()[0].decode())
        with pytest.raises(ConfigError, match=rf"metrics-test.yaml: metrics.listen: cannot listen on {listen}"):
            asyncio.run(Runner(loads_environment(text, "metrics-test.yaml"), creds).run(install_signals=False))
    # the file sink's lock was released: the next run takes the same directory
    runner = Runner(loads_environment(text.replace(listen, "127.0.0.1:0"), "metrics-test.yaml"), creds)

    async def start_and_stop():
        task = asyncio.ensure_future(runner.run(install_signals=False))
        await asyncio.sleep(0.3)
        runner.stop_requested.set()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(start_and_stop()).exit_code == 0


@pytest.mark.parametrize("where, why", [("dir", "Is a directory"), ("nodir/r.json", "no such directory")])
def test_an_unwritable_report_path_fails_before_the_run(tmp_path, capsys, where, why):
    from ssmd_fast.cli import main

    env = tmp_path / "r.yaml"
    env.write_text(f"name: r\nfeed: kalshi\ntransport: {{type: none}}\nstorage: {{type: file, path: {tmp_path}}}\n")
    (tmp_path / "dir").mkdir()
    assert main(["run", "--env", str(env), "--report-json", str(tmp_path / where)]) == 1
    assert f"--report-json {tmp_path / where}: cannot write: {why}" in capsys.readouterr().err


def test_a_missing_tls_file_fails_the_start_naming_its_key(tmp_path):
    from ssmd_fast.errors import ConfigError

    cfg = loads_environment(textwrap.dedent(f"""\
        name: tls-test
        feed: kalshi
        transport:
          type: nats
          url: nats://127.0.0.1:{free_port("127.0.0.1")}
          tls: {{ca_file: {tmp_path / "nope.pem"}}}
          spill: {{path: {tmp_path / "spill"}}}
        """), "tls-test.yaml")
    with pytest.raises(ConfigError, match=r"transport\.tls\.ca_file: .*nope\.pem"):
        Runner(cfg, KalshiCredentials("key-id", generate_key_pair()[0].decode()))


def test_dead_letters_show_in_the_stats_line_and_fail_the_shutdown_report(tmp_path, caplog):
    """A full stream dead-letters what it refuses. The stats line did not say so, and the shutdown said
    "every record acked or spilled" with exit code 0 while thousands of messages were not in the stream."""
    import nats
    from nats.js import api

    from ssmd_fast.natsserver import NatsServer
    from ssmd_fast.sinks.stream import wanted_config

    with NatsServer() as srv:
        runner = nats_runner(tmp_path, srv.url, "provision: verify")
        cfg, pub = runner.cfg, runner.publisher

        async def main():
            nc = await nats.connect(srv.url)
            want = wanted_config(cfg.transport)
            want.max_msgs, want.discard = 100, api.DiscardPolicy.NEW
            await nc.jetstream().add_stream(want)
            await nc.close()
            await pub.start()
            assert await pub.wait_connected(10)
            batch = normalize.FrameBatch()
            for frame in generate_session(500, seed=3, markets=5):
                batch.add(frame)
            pub.submit(batch, "c0ffee000001")
            for _ in range(200):
                if pub.ring.head == pub.ring.tail:
                    break
                await asyncio.sleep(0.05)
            return runner.stats_line(), await runner.shutdown()

        line, report = asyncio.run(main())
    n = report.dead_lettered
    assert n == report.published - 100 > 0 and report.rejected == n and report.lost == 0
    assert f"dead-lettered {n:,}" in line
    assert report.exit_code == 1
    assert len(report.details) == 1 and f"{n:,} messages the server rejected (stream_full {n:,})" in report.details[0]
    assert f"dead-lettered {n:,}, lost 0" in caplog.text and "every record acked or spilled;" not in caplog.text
