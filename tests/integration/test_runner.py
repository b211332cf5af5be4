"""``ssmd-fast run`` end to end, as a real process, against the local exchange and a real nats-server,
driven by the demo's machinery (ssmd_fast.demo): SIGTERM in the middle of the stream, then the stream
and the files are compared with every frame the exchange sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ssmd_fast.demo import ConnectorProcess, Pipeline, write_environment
from ssmd_fast.natsserver import free_port

pytestmark = pytest.mark.integration


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_mid_stream_every_sent_frame_reaches_the_stream_and_the_files(tmp_path):
    # 20,000 events/s (40,000 messages/s into JetStream) for 20 s: the exchange is still sending at SIGTERM
    with Pipeline(tmp_path, messages=400_000, rate=20_000, markets=12, stats_interval=0.5) as pipe:
        pipe.start()
        conn, ex = pipe.connector, pipe.exchange
        assert pipe.connections == 3          # 12 books, 4 per subscription: sharding is exercised

        first = wait_for(lambda: conn.get("/ready"), 30, "the metrics port")
        assert first[0] in (200, 503)         # 503 until every shard is subscribed and fresh
        assert "shards" in json.loads(first[1])

        def streaming():
            m = conn.metrics()
            return m if m and m["ssmd_fast_subscribed"] == 3 and m["ssmd_fast_acked_total"] > 80_000 else None

        m = wait_for(streaming, 30, "3 subscribed shards and 80,000 acked messages")
        assert m["ssmd_fast_frames_total"] > 0 and m["ssmd_fast_records_total"] > 0
        status, body = conn.get("/ready")
        assert status == 200, body
        status, body = conn.get("/health")
        assert status == 200 and json.loads(body)["ok"] is True
        status, body = conn.get("/metrics")
        assert status == 200 and b"ssmd_fast_acked_total" in body

        gone = conn.stop(signal.SIGTERM, timeout=30)
        st = ex.stats()
        assert st["position"] < st["events"], "the exchange should still have been sending at SIGTERM"
        ex.stop()
        messages = pipe.read_stream(timeout=120)
        v = pipe.verify(messages)

    print(f"\nsent {v.sent:,} frames; stream {v.stream_messages:,} messages; files raw {v.file_raw:,} + "
          f"normalized {v.file_normalized:,}; shutdown {gone.report['shutdown_seconds']:.3f} s inside, "
          f"{gone.stop_seconds:.3f} s to exit; connector CPU {gone.cpu_seconds:.2f} s")
    assert gone.code == 0, conn.log_text()[-3000:]
    assert v.problems == []
    assert v.sent > 20_000
    assert v.stream_raw == v.stream_normalized == v.file_raw == v.file_normalized == v.sent
    assert v.stream_lost == v.stream_duplicated == v.file_lost == v.file_duplicated == 0
    assert v.stream_events >= 6 and v.file_controls == 12     # connect + disconnect, subscribed + unsubscribed per shard
    rep = gone.report
    assert rep["exit_code"] == 0 and rep["lost"] == 0 and rep["file_lost"] == 0 and rep["spilled"] == 0
    assert rep["acked"] == rep["published"] == v.stream_messages
    assert rep["records"] == v.sent and rep["invalid"] == 0 and rep["gaps"] == 0
    assert rep["shutdown_seconds"] < 1.0        # unsubscribe, last batches, last acks, files closed
    log = conn.log_text()
    assert "stats: frames/s" in log and "every record acked or spilled" in log


def _bad_key_run(tmp_path, content: bytes, mode: int) -> tuple[ConnectorProcess, str]:
    key = tmp_path / "kalshi_private.pem"
    key.write_bytes(content)
    os.chmod(key, mode)
    env_file = tmp_path / "environment.yaml"
    write_environment(env_file, name="badkey", exchange_url=f"ws://127.0.0.1:{free_port()}/trade-api/ws/v2",
                      nats_url=f"nats://127.0.0.1:{free_port()}", storage=tmp_path / "files",
                      markets=["KXBTCD-26FEB1410-T68499.99", "KXETHD-26FEB1410-T1879.99"], max_per_subscription=1,
                      metrics_port=free_port())
    environ = {**os.environ, "KALSHI_API_KEY": "demo", "KALSHI_PRIVATE_KEY_FILE": str(key)}
    environ.pop("KALSHI_PRIVATE_KEY", None)
    conn = ConnectorProcess(env_file, tmp_path / "connector.log", tmp_path / "report.json", free_port(), environ)
    conn.start()
    gone = conn.wait(timeout=30)
    return conn, gone


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["not-pem", "readable-by-others"])
def test_bad_credentials_file_fails_at_start_with_a_clear_message(tmp_path, key_pair, case):
    private, _ = key_pair
    content, mode, expected = {
        "not-pem": (b"this is not a key\n", 0o600, "the private key is not PEM text"),
        "readable-by-others": (private, 0o644, "accessible by group or others (mode 0644); run: chmod 600"),
    }[case]
    conn, gone = _bad_key_run(tmp_path, content, mode)
    out = conn.log_text()
    assert gone.code == 1, out
    assert out.startswith("ssmd-fast run: error: "), out
    assert expected in out
    assert "Traceback" not in out
    assert private.decode().splitlines()[1] not in out          # no key material
    assert gone.report is None                                  # it never got to run
    assert not (tmp_path / "files").exists()                    # nothing was opened


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_command_checks_the_whole_pipeline(tmp_path):
    summary_path = tmp_path / "summary.json"
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "ssmd_fast", "demo", "--messages", "20000", "--markets", "6",
                           "--data-dir", str(data), "--summary-json", str(summary_path), "--timeout", "60"],
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(summary_path.read_text())
    assert s["ok"] is True and s["problems"] == []
    assert s["lost"] == s["duplicated"] == s["mismatched"] == s["duplicate_ids"] == 0
    assert s["connections"] == 3 and s["frames_sent"] > 10_000
    assert s["stream_raw"] == s["stream_normalized"] == s["file_raw"] == s["file_normalized"] == s["frames_sent"]
    assert s["records"] == s["frames_sent"] and s["connector_exit_code"] == 0
    for row in ("frames sent by the exchange", "lost", "duplicated", "msgs/s", "connector CPU/msg"):
        assert row in proc.stdout
    assert f"data directory: {data.resolve()}" in proc.stdout
    assert (data / "keys" / "kalshi_private.pem").stat().st_mode & 0o777 == 0o600
    # a second run into the same directory is refused before anything starts
    again = subprocess.run([sys.executable, "-m", "ssmd_fast", "demo", "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "is not empty" in again.stderr


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_sigterm_to_the_demo_stops_the_processes_it_started(tmp_path):
    # SIGTERM's default action ended the demo at once, and its nats-server, exchange and connector ran on
    proc = subprocess.Popen([sys.executable, "-m", "ssmd_fast", "demo", "--messages", "200000", "--rate", "2000",
                             "--data-dir", str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kids: set[int] = set()
    try:
        def three():
            k = _children(proc.pid)     # nats-server, the exchange, the connector
            return k if len(k) >= 3 else None

        kids = wait_for(three, 60, "the demo's 3 processes")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 130, err.decode()
        assert err.decode().splitlines()[-1] == \
            f"demo: interrupted; the processes it started are stopped, what they wrote is in {tmp_path / 'd'}"
        wait_for(lambda: not any(_alive(k) for k in kids), 10, "the demo's processes to end")
    finally:
        proc.kill()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_under_overload_spills_and_the_next_run_replays_every_message(tmp_path):
    # full speed: the connector reads far faster than JetStream acks, so SIGTERM finds messages unacked
    with Pipeline(tmp_path, messages=400_000, rate=0, markets=12, stats_interval=1.0) as pipe:
        pipe.start()
        first = pipe.connector
        wait_for(lambda: (m := first.metrics()) and m["ssmd_fast_subscribed"] == 3, 30, "3 subscribed shards")
        time.sleep(0.5)
        gone = first.stop(signal.SIGTERM, timeout=60)
        assert gone.code == 0, first.log_text()[-3000:]
        assert gone.report["spilled"] > 0 and gone.report["lost"] == 0
        assert gone.report["acked"] + gone.report["spilled"] >= gone.report["published"]

        # the same environment again: the spill is replayed with its original ids (the exchange's
        # session is over by now, so the new connections only bring snapshots)
        second = ConnectorProcess(pipe.env_file, tmp_path / "connector2.log", tmp_path / "report2.json",
                                  pipe.cfg.metrics.host_port[1], first.environ).start()

        def replayed():
            m = second.metrics()
            return m and m["ssmd_fast_subscribed"] == 3 and m["ssmd_fast_replayed_total"] > 0 and \
                m.get("ssmd_fast_spill_pending_bytes", 0) == 0 and m["ssmd_fast_unacked"] == 0 and \
                m["ssmd_fast_queue_bytes"] == 0

        wait_for(replayed, 180, "the spill replayed and acked")
        again = second.stop(signal.SIGTERM, timeout=60)
        pipe.exchange.stop()
        v = pipe.verify(pipe.read_stream(timeout=120))

    print(f"\nrun 1: {gone.report['published']:,} published, {gone.report['acked']:,} acked, "
          f"{gone.report['spilled']:,} spilled; shutdown {gone.report['shutdown_seconds']:.3f} s inside, "
          f"{gone.stop_seconds:.3f} s to exit; run 2 acked {again.report['acked']:,}; stream {v.stream_messages:,}")
    assert again.code == 0 and again.report["lost"] == 0
    # run 2 acks run 1's spill too: its report says where the acks beyond its own messages came from
    assert gone.report["carried_over"] == 0 and 0 < again.report["carried_over"] <= gone.report["spilled"]
    assert f"(+ {again.report['carried_over']:,} from the last run's spill)" in second.log_text()
    assert v.problems == []
    assert v.stream_raw == v.stream_normalized == v.file_raw == v.sent > 0
