"""Drills about the connector process itself (nats-facts §8 F10-F12): ``ssmd-fast run`` as a real
subprocess for SIGTERM and kill -9, the in-process runner for the full disk. The exchange and the
proxies run on a loop thread of the test, nats-server is a real process."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import uvloop
from rig import Rig, stream_figures, wait_for, wait_sync

from ssmd_fast.sinks.spill import SpillFile, encode_record

pytestmark = [pytest.mark.fault, pytest.mark.integration]

RATE = 4000


def metric(conn, name: str) -> float:
    m = conn.metrics() or {}
    return m.get(name, 0.0)


def in_spill(conn) -> float:
    """Spilled minus replayed, one scrape: a lower bound of what the spill file holds. The spilled counter
    alone also counts a spill that was replayed and consumed already (a short one before an outage)."""
    m = conn.metrics() or {}
    return m.get("ssmd_fast_spilled_total", 0.0) - m.get("ssmd_fast_replayed_total", 0.0)


def streaming(conn, acked: int):
    return lambda: metric(conn, "ssmd_fast_acked_total") > acked and metric(conn, "ssmd_fast_subscribed") >= 1


# --------------------------------------------------------------------------- F10 SIGTERM


@pytest.mark.timeout(180)
def test_f10_sigterm_under_load_exits_0_with_everything_acked(tmp_path):
    with Rig(tmp_path, events=RATE * 30, rate=RATE) as rig:
        rig.start()
        conn = rig.subprocess_connector()
        try:
            wait_sync(streaming(conn, 3 * RATE), 30, "a steady flow")
            gone = conn.stop(signal.SIGTERM, timeout=30)
        finally:
            conn.stop(signal.SIGKILL, timeout=5)
        ex = rig.stop_exchange()
        messages = rig.read_stream_sync()
        v = rig.verify(messages)
        rep = gone.report or {}
        fig = stream_figures("F10 SIGTERM under load", v, None, **{
            "exit code": gone.code, "SIGTERM->exit s": gone.stop_seconds,
            "published": rep.get("published"), "acked": rep.get("acked"), "spilled": rep.get("spilled"),
            "exchange still sending": ex["position"] < ex["events"]}).emit()
    assert gone.code == 0, conn.log_text()[-3000:]
    assert rep["published"] == rep["acked"] + rep["spilled"] and rep["lost"] == 0
    assert v.problems == [], v.problems
    assert fig.lost == 0 and fig.duplicated == 0 and gone.stop_seconds < 5.0


@pytest.mark.timeout(180)
def test_f10_sigterm_during_a_nats_outage_spills_and_the_next_run_replays(tmp_path):
    with Rig(tmp_path, events=RATE * 40, rate=RATE) as rig:
        rig.start()
        first = rig.subprocess_connector(name="first")
        try:
            wait_sync(streaming(first, 2 * RATE), 30, "a steady flow")
            rig.nats.kill()
            time.sleep(1.5)                             # unacked messages pile up meanwhile
            gone = first.stop(signal.SIGTERM, timeout=30)
        finally:
            first.stop(signal.SIGKILL, timeout=5)
        rep = gone.report or {}
        with SpillFile(rig.spill, max_bytes=2**34) as sp:
            spilled_on_disk = sp.pending_records
        rig.nats.start()
        second = rig.subprocess_connector(name="second")
        try:
            wait_sync(lambda: metric(second, "ssmd_fast_replayed_total") >= spilled_on_disk
                      and metric(second, "ssmd_fast_acked_total") > spilled_on_disk, 60, "the replay")
            wait_sync(streaming(second, spilled_on_disk + 2 * RATE), 30, "new data after the replay")
            replayed = metric(second, "ssmd_fast_replayed_total")
            gone2 = second.stop(signal.SIGTERM, timeout=30)
        finally:
            second.stop(signal.SIGKILL, timeout=5)
        rig.stop_exchange()
        messages = rig.read_stream_sync()
        v = rig.verify(messages)
        fig = stream_figures("F10 SIGTERM during a NATS outage, then restart", v, None, **{
            "exit code": gone.code, "SIGTERM->exit s": gone.stop_seconds, "published": rep.get("published"),
            "acked": rep.get("acked"), "spilled": rep.get("spilled"), "spill records on disk": spilled_on_disk,
            "replayed by the next run": int(replayed),
            "second exit code": gone2.code}).emit()
    assert gone.code == 0, first.log_text()[-3000:]
    assert rep["spilled"] > 0 and rep["published"] == rep["acked"] + rep["spilled"] and rep["lost"] == 0
    assert gone.stop_seconds < 5.0
    assert gone2.code == 0, second.log_text()[-3000:]
    # the frames sent while no connector was subscribed never existed for it: compare what it took
    assert fig.duplicated == 0 and v.stream_foreign == 0
    assert fig.lost == 0, v.problems


# --------------------------------------------------------------------------- F11 kill -9 of the connector


SMALL_QUEUE = {"transport": {"memory_queue_bytes": "64KiB"}}   # an outage reaches the spill at once


def _spill_then_kill9(rig: Rig) -> tuple[list, dict]:
    """A connector streams, NATS is killed, the connector spills, then it is killed -9: (the records the
    dead process left in the spill, its metrics at the kill)."""
    first = rig.subprocess_connector(SMALL_QUEUE, name="first")
    try:
        wait_sync(streaming(first, 2 * RATE), 30, "a steady flow")
        rig.nats.kill()                             # the connector spills from here on
        wait_sync(lambda: in_spill(first) > 2 * RATE, 30, "spilling")
        at_kill = first.metrics() or {}
        first.stop(signal.SIGKILL, timeout=10)
    finally:
        first.stop(signal.SIGKILL, timeout=5)
    with SpillFile(rig.spill, max_bytes=2**34) as sp:       # what the dead process left on disk
        return sp.read(sp.pending_records), at_kill


def _read_back(rig: Rig, spilled: list) -> tuple[list, object, list, set]:
    """The exchange stopped, the stream read back: (messages, the check against what was sent, stored ids,
    ids of ``spilled`` records missing from the stream)."""
    rig.stop_exchange()
    messages = rig.read_stream_sync()
    stored_ids = [m.msg_id for m in messages]
    return messages, rig.verify(messages, files=False), stored_ids, {r[1].decode() for r in spilled} - set(stored_ids)


@pytest.mark.timeout(240)
def test_f11_kill9_of_the_connector_then_restart_replays_the_spill_without_duplicates(tmp_path):
    with Rig(tmp_path, events=RATE * 40, rate=RATE) as rig:
        rig.start()
        spilled, at_kill = _spill_then_kill9(rig)
        rig.nats.start()
        second = rig.subprocess_connector(SMALL_QUEUE, name="second")
        try:
            wait_sync(lambda: metric(second, "ssmd_fast_replayed_total") >= len(spilled), 60, "the replay")
            wait_sync(streaming(second, len(spilled) + 2 * RATE), 30, "new data after the replay")
            gone2 = second.stop(signal.SIGTERM, timeout=30)
        finally:
            second.stop(signal.SIGKILL, timeout=5)
        messages, v, stored_ids, missing = _read_back(rig, spilled)
        fig = stream_figures("F11 kill -9 of the connector while spilling, then restart", v, None, **{
            "spilled / replayed at the kill": f"{at_kill.get('ssmd_fast_spilled_total', 0):.0f} / "
                                               f"{at_kill.get('ssmd_fast_replayed_total', 0):.0f}",
            "spill records left by the dead process": len(spilled), "of them missing from the stream":
            len(missing), "lost = sent to the dead process, never read": v.stream_lost,
            "restart exit code": gone2.code}).emit()
    assert len(spilled) > 2 * RATE and not missing
    assert fig.duplicated == 0 and v.stream_foreign == 0 and len(stored_ids) == len(set(stored_ids))
    assert gone2.code == 0, second.log_text()[-3000:]


def _rot_one_record(spill_dir, record) -> int:
    """Flip a byte inside ``record`` where it lies in a spill segment (as a bad disk block would); its offset."""
    raw = encode_record(*record)
    for seg in sorted(spill_dir.glob("spill-*.log")):
        data = seg.read_bytes()
        at = data.find(raw)
        if at >= 0:
            with open(seg, "r+b") as f:
                f.seek(at + len(raw) - 3)
                f.write(bytes([data[at + len(raw) - 3] ^ 0x40]))
            return at
    raise AssertionError("the record is in no segment")


@pytest.mark.timeout(300)
def test_f11b_a_corrupt_spill_record_is_set_aside_and_a_later_outage_replays_too(tmp_path):
    # F11, then a record of the spill rots on disk before the restart: it is set aside (quarantine/, a
    # spill_corrupt event, exit code 1), every other record is replayed, and a second NATS outage in the
    # same run spills and replays too (before 2026-12-07 the replay stopped at the bad record for good)
    with Rig(tmp_path, events=RATE * 60, rate=RATE) as rig:
        rig.start()
        spilled, _ = _spill_then_kill9(rig)
        victim = spilled[len(spilled) // 2]
        _rot_one_record(rig.spill, victim)
        rig.nats.start()
        second = rig.subprocess_connector(SMALL_QUEUE, name="second")
        try:
            wait_sync(lambda: metric(second, "ssmd_fast_replayed_total") >= len(spilled) - 1, 60, "the replay")
            wait_sync(streaming(second, len(spilled) + 2 * RATE), 30, "new data after the replay")
            rig.nats.kill()                                   # the second outage, in the same run
            wait_sync(lambda: in_spill(second) > 2 * RATE, 30, "spilling again")
            again = metric(second, "ssmd_fast_spilled_total")
            rig.nats.start()
            wait_sync(lambda: metric(second, "ssmd_fast_replayed_total") >= len(spilled) - 1 + again, 60,
                      "the second replay")
            acked = metric(second, "ssmd_fast_acked_total")
            wait_sync(streaming(second, acked + 2 * RATE), 30, "new data after the second replay")
            gone = second.stop(signal.SIGTERM, timeout=30)
        finally:
            second.stop(signal.SIGKILL, timeout=5)
        messages, v, stored_ids, missing = _read_back(rig, spilled)
        events = rig.events_in(messages, "spill_corrupt")
        quarantined = list((rig.spill / "quarantine").glob("*.bin"))
        fig = stream_figures("F11b a corrupt spill record at the restart, then a second outage", v, None, **{
            "spill records left by the dead process": len(spilled), "of them missing from the stream":
            len(missing), "spilled then replayed in the second outage": f"{again:.0f}",
            "spill_corrupt events": len(events), "quarantine files": len(quarantined),
            "restart exit code": gone.code}).emit()
    assert missing == {victim[1].decode()} and len(events) == 1 and len(quarantined) == 1
    assert again > 2 * RATE and fig.duplicated == 0 and len(stored_ids) == len(set(stored_ids))
    assert gone.code == 1 and "1 in corrupt spill bytes set aside (at least)" in second.log_text()


# --------------------------------------------------------------------------- F12 full disk


@pytest.mark.timeout(120)
def test_f12_file_sink_on_a_full_disk_reports_counts_and_recovers(tmp_path, caplog):
    from fs_helpers import fill_disk, small_tmpfs

    with small_tmpfs(tmp_path / "disk", "128m") as disk, Rig(tmp_path / "rig", events=RATE * 25, rate=RATE) as rig:
        rig.files = disk / "files"
        rig.start()

        async def main():
            conn = await rig.connector({"runner": {"stats_interval": "0.5s"}})
            pub, fs = conn.publisher, conn.runner.file_sink
            await wait_for(lambda: sum(fs.stats()["records"].values()) > RATE, 20, "files being written")
            filler = fill_disk(disk)
            t_full = time.monotonic()
            await wait_for(lambda: conn.runner.events.get("storage", 0) >= 1, 15, "the storage event")
            detection = time.monotonic() - t_full
            await asyncio.sleep(3.0)                  # the connector goes on meanwhile
            alive = not conn.task.done() and all(s.core.subscribed for s in conn.sessions)
            lost_while_full = fs.stats()
            filler.unlink()
            t_free = time.monotonic()
            await wait_for(lambda: not fs.stats()["failing"], 15, "writing again")
            recovered = time.monotonic() - t_free
            await conn.wait_caught_up(rig, 60)
            report = await conn.stop()
            rig.stop_exchange()
            return report, pub.stats(), await rig.read_stream(), detection, recovered, alive, lost_while_full

        report, st, messages, detection, recovered, alive, during = run(main())
        v = rig.verify(messages, files=False)
        markers = [json.loads(line) for p in (disk / "files").rglob("*.jsonl") for line in p.read_bytes().splitlines()
                   if line.startswith(b'{"type":"status"') and b'"kind":"storage"' in line]
        storage_events = rig.events_in(messages, "storage")
        fig = stream_figures("F12 file sink on a full disk (tmpfs)", v, st, **{
            "file records lost (counted)": report.file_lost, "storage events in NATS": len(storage_events),
            "gap markers in the files": len(markers), "connector alive while full": alive,
            "write again after free s": recovered, "exit code": report.exit_code})
        fig.detection = detection
        fig.emit()
    assert alive, "the connector must keep running on a full disk"
    assert v.stream_lost == 0 and fig.duplicated == 0        # NATS got everything meanwhile
    assert report.file_lost > 0 and storage_events and markers
    import re

    counted = [int(m.group(1)) for mk in markers if (m := re.search(r"(\d+) \w+ records lost", mk["detail"] or ""))]
    assert counted and sum(counted) == report.file_lost, markers
    logs = "\n".join(r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING"))
    assert "No space left" in logs or "ENOSPC" in logs or "full" in logs


def run(coro):
    return uvloop.run(coro)

