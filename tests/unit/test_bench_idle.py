"""benchmarks.bench_idle's model does the work it claims: every data frame framed raw + normalized, reads of
whole lines within the read size, the flow acks keeping at most ``unacked`` in flight, with or without the pause."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_idle

pytestmark = pytest.mark.twin     # the model runs on whichever framer and normalizer the facades load


@pytest.fixture(scope="module")
def session() -> bytes:
    return bench_idle.session_lines(3000)


@pytest.mark.parametrize("idle_s", [0.0, 0.0005])
def test_the_model_frames_every_data_frame_twice_and_bounds_what_is_in_flight(session, idle_s):
    lines = session.splitlines()
    data_frames = sum(1 for line in lines if b'"type":"subscribed"' not in line)
    assert 0 < data_frames < len(lines) == 3000          # the acks of the 23 subscriptions are not published
    r = bench_idle.one_run(session, read=16384, unacked=1024, idle_s=idle_s)
    assert r["messages"] == 2 * data_frames
    assert len(session) / 16384 <= r["reads"] <= 2 * len(session) / 16384 + 1
    assert 1024 - bench_idle.FLOW < r["unacked"] <= 1024
    assert r["ns_per_msg"] > 0


def test_main_alternates_the_variants_and_writes_the_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_idle, "RESULTS", tmp_path / "bench_idle.json")
    assert bench_idle.main(["--frames", "500", "--rounds", "2", "--idle-ms", "0.1", "--read", "8192"]) == 0
    out = json.loads((tmp_path / "bench_idle.json").read_text())
    assert [len(out["runs"][v]) for v in ("busy", "idle")] == [2, 2]
    assert len(out["paired_ratios"]) == 2 and out["idle_ms"] == 0.1
    assert "idle / busy, paired" in capsys.readouterr().out


def test_wake_costs_measures_each_probe_after_each_sleep(capsys):
    costs = bench_idle.wake_costs(3, sleeps_ms=(0, 1))
    assert list(costs) == [0, 1]
    assert all(set(c) == {"python sum(range(2000))", "1st stat", "2nd stat"} for c in costs.values())
    assert all(v > 0 for c in costs.values() for v in c.values())
    assert bench_idle.main(["--wake", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "1st stat" in out and "50 ms" in out


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench_idle.main(["--unacked", "10"])
