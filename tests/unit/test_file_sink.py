"""FileSink: hourly/daily rotation by receive time, both formats, crash leftovers, a full disk (a real
tmpfs), CR/LF inside frames, gap markers; raw files are valid input for `ssmd-fast normalize`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fs_helpers import fill_disk, small_tmpfs

from ssmd_fast.config import StorageConfig
from ssmd_fast.errors import StorageError
from ssmd_fast.events import StatusEvent
from ssmd_fast.normalize import FrameBatch
from ssmd_fast.sinks.file import FileSink, finalize_partial, unix_ns

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "kalshi"
T13 = unix_ns(2025, 10, 2, 13, 59, 59)
T14 = unix_ns(2025, 10, 2, 14, 0, 1)


def frames(name: str) -> list[bytes]:
    return (DATA / name).read_bytes().splitlines()


def batch_of(lines: list[bytes], ts: int) -> FrameBatch:
    b = FrameBatch()
    b.set_recv_ts(ts)
    for line in lines:
        b.add(line)
    return b


def run(coro):
    return asyncio.run(coro)


def sink_for(tmp_path: Path, fmt: str = "raw", rotate: str = "hourly", **kw) -> FileSink:
    return FileSink(StorageConfig(type="file", path=str(tmp_path / "data"), format=fmt, rotate=rotate), **kw)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name[0] != ".")


def normalize_cli(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssmd_fast", "normalize", *map(str, files)],
                          capture_output=True, timeout=60, cwd=ROOT)


# ---------------------------------------------------------------------------- layout and rotation


def test_rotation_across_an_hour_boundary(tmp_path):
    trades = frames("trade.jsonl")

    async def main():
        sink = sink_for(tmp_path, clock=lambda: T13)
        await sink.start()
        b1, b2 = batch_of(trades[:10], T13), batch_of(trades[10:], T14)
        sink.submit(b1, "c0ffee000001")
        sink.tick()  # hands the buffer to the OS; the hour has not ended for the sink's clock
        assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl.partial"]
        sink.submit(b2, "c0ffee000001")
        # the batch of 14:00 finalized 13's file (renamed after a fsync) and opened 14's
        assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl", "2025-10-02/14.jsonl.partial"]
        report = await sink.close()
        return b1.raw_jsonl(), b2.raw_jsonl(), report

    raw1, raw2, report = run(main())
    day = tmp_path / "data" / "2025-10-02"
    assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl", "2025-10-02/14.jsonl"]
    assert (day / "13.jsonl").read_bytes() == raw1 and raw1.count(b"\n") == 10
    assert (day / "14.jsonl").read_bytes() == raw2 and raw2.count(b"\n") == 20
    assert report.written == 30 and report.lost == 0 and report.stats["files"] == 2


def test_both_formats_and_raw_files_normalize_to_the_normalized_files(tmp_path):
    lines = frames("trade.jsonl") + frames("ticker.jsonl") + frames("orderbook_snapshot.jsonl") + \
        frames("unknown.jsonl") + frames("control.jsonl")

    async def main():
        sink = sink_for(tmp_path, fmt="both")
        await sink.start()
        b = batch_of(lines, T13)
        sink.submit(b, "c0ffee000001")
        sink.submit_event(StatusEvent("gap", conn="c0ffee000001", time_ns=T13, market="KX-A", sid=3,
                                      last_seq=7, received_seq=9))
        await sink.close()
        return b

    b = run(main())
    day = tmp_path / "data" / "2025-10-02"
    assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl", "2025-10-02/13.norm.jsonl"]
    gap = StatusEvent("gap", conn="c0ffee000001", time_ns=T13, market="KX-A", sid=3, last_seq=7,
                      received_seq=9).to_json() + b"\n"
    assert (day / "13.jsonl").read_bytes() == b.raw_jsonl() + gap
    assert (day / "13.norm.jsonl").read_bytes() == b.records_jsonl() + gap
    # the raw file (gap marker included) is valid input for the offline normalizer
    res = normalize_cli(day / "13.jsonl")
    assert res.returncode == 0, res.stderr.decode()
    offline = [json.loads(x) for x in res.stdout.splitlines()]
    stored = [json.loads(x) for x in (day / "13.norm.jsonl").read_bytes().splitlines()]
    assert stored[-1]["type"] == "status"
    for rec in stored[:-1]:
        assert rec.pop("recv_ts") == T13
    assert offline == stored[:-1] and len(offline) > 50


def test_the_raw_archive_keeps_withheld_book_deltas_and_leaves_out_duplicates(tmp_path):
    # a book delta withheld while its book resyncs (F_SUPPRESSED) is a frame the exchange sent: the raw
    # file is the archive of what was received, only the normalized file waits for the fresh snapshot
    from ssmd_fast.normalize import F_DUPLICATE, F_SUPPRESSED

    lines = frames("trade.jsonl")[:6]

    async def main():
        sink = sink_for(tmp_path, fmt="both")
        await sink.start()
        b = batch_of(lines, T13)
        b.set_flag(1, F_SUPPRESSED)
        b.set_flag(2, F_DUPLICATE)
        sink.submit(b, "c0ffee000001")
        await sink.close()
        return b

    b = run(main())
    day = tmp_path / "data" / "2025-10-02"
    raw = (day / "13.jsonl").read_bytes().splitlines()
    assert raw == [lines[i] for i in (0, 1, 3, 4, 5)]
    assert len((day / "13.norm.jsonl").read_bytes().splitlines()) == 4 == len(b.records_jsonl().splitlines())


def test_normalized_only_and_daily_rotation(tmp_path):
    trades = frames("trade.jsonl")
    next_day = unix_ns(2025, 10, 3, 0, 0, 0)

    async def main():
        sink = sink_for(tmp_path, fmt="normalized", rotate="daily")
        await sink.start()
        for i, ts in enumerate((T13, T14, next_day)):
            sink.submit(batch_of(trades[i * 10:(i + 1) * 10], ts), "c0ffee000001")
        await sink.close()

    run(main())
    data = tmp_path / "data"
    assert tree(data) == ["2025-10-02/day.norm.jsonl", "2025-10-03/day.norm.jsonl"]
    assert len((data / "2025-10-02/day.norm.jsonl").read_bytes().splitlines()) == 20
    assert len((data / "2025-10-03/day.norm.jsonl").read_bytes().splitlines()) == 10


def test_a_file_whose_hour_is_over_is_finalized_without_new_data(tmp_path):
    clock = [T13]

    async def main():
        sink = sink_for(tmp_path, clock=lambda: clock[0])
        await sink.start()
        sink.submit(batch_of(frames("trade.jsonl")[:3], T13), "c")
        sink.tick()
        assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl.partial"]
        assert (tmp_path / "data/2025-10-02/13.jsonl.partial").read_bytes().count(b"\n") == 3  # on the OS side
        clock[0] = T14 + 30 * 10**9  # past the hour and the grace period
        sink.tick()
        assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl"]
        await sink.close()

    run(main())


def test_the_flush_task_hands_data_to_the_os(tmp_path):
    async def main():
        sink = sink_for(tmp_path, flush_interval=0.02)
        await sink.start()
        sink.submit(batch_of(frames("trade.jsonl")[:5], time.time_ns()), "c")
        (partial,) = (tmp_path / "data").rglob("*.partial")
        assert partial.stat().st_size == 0  # buffered
        for _ in range(100):
            await asyncio.sleep(0.01)
            if partial.stat().st_size:
                break
        assert partial.read_bytes().count(b"\n") == 5
        await sink.close()

    run(main())


def test_cr_lf_inside_frames_never_split_a_line(tmp_path):
    frame = (b'{"type":"trade",\r\n"sid":1,"seq":2,\n"msg":{"trade_id":"t-1","market_ticker":"KX-A",'
             b'"yes_price_dollars":"0.5","no_price_dollars":"0.5","count_fp":"1.00","taker_side":"yes",'
             b'"ts":1759437009}}\r')
    event = StatusEvent("disconnect", conn="c", time_ns=T13, detail="reason:\r\nline two")

    async def main():
        sink = sink_for(tmp_path, fmt="both")
        await sink.start()
        b = batch_of([frame, frames("trade.jsonl")[0]], T13)
        assert b.record(0) is not None
        sink.submit(b, "c")
        sink.submit_event(event)
        await sink.close()

    run(main())
    day = tmp_path / "data" / "2025-10-02"
    raw = (day / "13.jsonl").read_bytes().split(b"\n")
    assert raw[-1] == b"" and len(raw) == 4  # two frames + one event, each on its own line
    assert b"\r" not in (day / "13.jsonl").read_bytes()
    assert json.loads(raw[0])["msg"]["trade_id"] == "t-1"
    assert json.loads(raw[2])["detail"] == "reason:\r\nline two"
    assert len((day / "13.norm.jsonl").read_bytes().splitlines()) == 3


# ---------------------------------------------------------------------------- restarts and crashes


def test_a_restart_in_the_same_hour_never_overwrites(tmp_path):
    trades = frames("trade.jsonl")

    async def once(lines):
        sink = sink_for(tmp_path)
        await sink.start()
        sink.submit(batch_of(lines, T13), "c")
        await sink.close()

    run(once(trades[:5]))
    run(once(trades[5:12]))
    run(once(trades[12:14]))
    day = tmp_path / "data" / "2025-10-02"
    assert tree(tmp_path / "data") == ["2025-10-02/13.1.jsonl", "2025-10-02/13.2.jsonl", "2025-10-02/13.jsonl"]
    assert [len((day / n).read_bytes().splitlines()) for n in ("13.jsonl", "13.1.jsonl", "13.2.jsonl")] == [5, 7, 2]


def test_leftover_partial_files_are_finalized_on_start(tmp_path, caplog):
    day = tmp_path / "data" / "2025-10-02"
    day.mkdir(parents=True)
    (day / "13.jsonl").write_bytes(b'{"a":1}\n')                       # finalized by an earlier run
    (day / "13.jsonl.partial").write_bytes(b'{"b":1}\n{"b":2}\n{"b":')  # crash mid-line
    (day / "12.norm.jsonl.partial").write_bytes(b'{"c":1}\n')
    (day / "11.jsonl.partial").write_bytes(b'{"torn')                   # nothing whole in it
    caplog.set_level(logging.WARNING, logger="ssmd_fast.sinks.file")

    async def main():
        sink = sink_for(tmp_path)
        await sink.start()
        await sink.close()
        return sink.recovered_leftovers

    done = run(main())
    assert tree(tmp_path / "data") == ["2025-10-02/12.norm.jsonl", "2025-10-02/13.1.jsonl", "2025-10-02/13.jsonl"]
    assert (day / "13.jsonl").read_bytes() == b'{"a":1}\n'              # never overwritten
    assert (day / "13.1.jsonl").read_bytes() == b'{"b":1}\n{"b":2}\n'   # torn line cut
    assert sorted(Path(p).name for p in done) == ["12.norm.jsonl", "13.1.jsonl"]
    assert "dropped 5 bytes of a torn last line" in caplog.text
    with pytest.raises(ValueError):
        finalize_partial(str(day / "13.jsonl"))


def test_kill_9_then_restart_keeps_every_flushed_line(tmp_path):
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'unit')!r}, {str(ROOT / 'tests')!r}]
        from test_file_sink import batch_of, frames, sink_for, T13
        from pathlib import Path
        async def main():
            sink = sink_for(Path({str(tmp_path)!r}), clock=lambda: T13)
            await sink.start()
            sink.submit(batch_of(frames("trade.jsonl"), T13), "c")
            sink.tick()                       # on the OS side
            sink.submit(batch_of(frames("ticker.jsonl"), T13), "c")  # still buffered
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()
    assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl.partial"]

    async def main():
        sink = sink_for(tmp_path)
        await sink.start()
        await sink.close()

    run(main())
    assert tree(tmp_path / "data") == ["2025-10-02/13.jsonl"]
    assert (tmp_path / "data/2025-10-02/13.jsonl").read_bytes() == batch_of(frames("trade.jsonl"), T13).raw_jsonl()


def test_one_sink_per_directory_and_clear_errors_for_unusable_paths(tmp_path):
    async def main():
        a = sink_for(tmp_path)
        await a.start()
        with pytest.raises(StorageError, match="in use"):
            await sink_for(tmp_path).start()
        await a.close()
        blocker = tmp_path / "blocker"
        blocker.write_text("x")
        bad = FileSink(StorageConfig(type="file", path=str(blocker / "data")))
        with pytest.raises(StorageError, match=str(blocker / "data")):
            await bad.start()
        with pytest.raises(StorageError) as got:     # storage.path a file: said "File exists (EEXIST)"
            await FileSink(StorageConfig(type="file", path=str(blocker))).start()
        assert str(got.value) == \
            f"file sink {blocker}: cannot open the storage directory: Not a directory (ENOTDIR)"

    run(main())


# ---------------------------------------------------------------------------- a full disk


def test_a_full_disk_is_reported_once_counted_and_recovered_with_a_gap_marker(tmp_path, caplog):
    trades = frames("trade.jsonl")
    events: list[StatusEvent] = []
    caplog.set_level(logging.ERROR, logger="ssmd_fast.sinks.file")

    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        async def main():
            sink = FileSink(StorageConfig(type="file", path=str(mnt / "data"), format="both"),
                            on_event=events.append, retry_interval=0.05, clock=lambda: T13)
            await sink.start()
            sink.submit(batch_of(trades[:10], T13), "c")
            sink.tick()
            filler = fill_disk(mnt, leave=0)
            for i in range(3000):  # about 1.5 MB of frames: the first drain fails, later ones are dropped
                sink.submit(batch_of(trades, T13), "c")
                if i % 50 == 0:
                    sink.tick()
            st = sink.stats()
            assert st["failing"] and st["lost_records"] > 0 and st["errors"] == 2  # raw and normalized
            assert [e.kind for e in events] == ["storage", "storage"]
            assert "No space left on device" in events[0].detail
            assert caplog.text.count("No space left") == 2  # once per file, not once per batch
            assert str(mnt / "data" / "2025-10-02") in caplog.text
            os.unlink(filler)
            await asyncio.sleep(0.06)
            sink.submit(batch_of(trades[:4], T13), "c")  # the retry succeeds: marker, then data
            assert not sink.stats()["failing"]
            lost = sink.stats()["lost_records"]
            report = await sink.close()
            return lost, report

        lost, report = run(main())
        assert report.lost == lost > 0
        assert [e.kind for e in events] == ["storage"] * 4 and "recovered" in events[-1].detail
        assert tree(mnt / "data") == ["2025-10-02/13.jsonl", "2025-10-02/13.norm.jsonl"]
        raw = (mnt / "data/2025-10-02/13.jsonl").read_bytes()
        lines = raw.split(b"\n")
        assert lines[-1] == b""  # only whole lines
        markers = [json.loads(x) for x in lines[:-1] if x.startswith(b'{"type":"status"')]
        assert len(markers) == 1 and markers[0]["kind"] == "storage" and "records lost" in markers[0]["detail"]
        assert lines[-5:-1] == batch_of(trades[:4], T13).raw_jsonl().split(b"\n")[:-1]
        res = normalize_cli(mnt / "data/2025-10-02/13.jsonl")
        assert res.returncode == 0, res.stderr.decode()
        written = report.stats["records"]["raw"]
        assert len(lines) - 1 == written + 1  # every record written + the marker


def test_raw_files_with_gap_markers_replay_in_the_local_exchange(tmp_path):
    feed_mod = pytest.importorskip("ssmd_fast.kalshi.exchange_feed")
    data = frames("trade.jsonl") + frames("orderbook_snapshot.jsonl") + frames("orderbook_delta.jsonl")

    async def main():
        sink = sink_for(tmp_path, clock=lambda: T13)
        await sink.start()
        sink.submit(batch_of(data[:20], T13), "c")
        sink.submit_event(StatusEvent("gap", conn="c", time_ns=T13, market="KX-A", sid=2, last_seq=4,
                                      received_seq=6))
        sink.submit(batch_of(data[20:], T13), "c")
        await sink.close()

    run(main())
    path = tmp_path / "data/2025-10-02/13.jsonl"
    feed = feed_mod.ReplayFeed(path)
    direct = feed_mod.ReplayFeed(DATA / "trade.jsonl")  # the same frames, without the file sink
    assert feed.skipped.get("status") == 1  # the gap marker is an "other" frame, skipped
    assert feed.total + sum(feed.skipped.values()) == len(path.read_bytes().splitlines())
    assert feed.skipped == {"status": 1} and feed.total == len(data) and direct.total == 30
