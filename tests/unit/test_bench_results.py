"""benchmarks.e2e.write_results: every run gets its own file; only the scoreboard run replaces latest.json."""

from __future__ import annotations

import json

from benchmarks.e2e import write_results


def test_the_long_run_keeps_the_scoreboards_latest_json(tmp_path):
    board = write_results({"time": "2026-11-25T03:59:17Z", "run": "board"}, tmp_path)
    long = write_results({"time": "2026-11-25T04:06:34Z", "run": "long"}, tmp_path, name="e2e-long")
    assert board.name == "e2e-20261125T035917Z.json" and long.name == "e2e-long-20261125T040634Z.json"
    assert json.loads(long.read_text())["run"] == "long"
    assert json.loads((tmp_path / "latest.json").read_text())["run"] == "board"


def _run(messages, frames, reads, nats_reads=None):
    r = {"messages": messages, "frames": frames, "wall_s": 2.0, "cpu_s": 0.5, "user_s": 0.4, "sys_s": 0.1,
         "peak_rss_kib": 51200, "reads": reads}
    if nats_reads is not None:
        r["nats_reads"] = nats_reads
    return r


def test_the_table_says_how_much_each_read_carries():
    from benchmarks.e2e import summarize, table

    summary = summarize({"ssmd": [_run(300_000, 150_000, 500, 100), _run(300_000, 150_000, 600, 150),
                                  _run(300_000, 150_000, 1000, 300)],
                         "core": [_run(800_000, 400_000, 1000, 0)]})
    ssmd, core = summary["rows"]["ssmd"], summary["rows"]["core"]
    assert ssmd["frames_per_read"] == 250.0            # the median of 300, 250 and 150
    assert ssmd["msgs_per_nats_read"] == 2000.0        # of 3,000, 2,000 and 1,000
    assert core["frames_per_read"] == 400.0 and "msgs_per_nats_read" not in core   # core mode reads no acks
    text = table(summary)
    assert "250.0 frames per WebSocket read, 2,000 messages per NATS read" in text
    assert "400.0 frames per WebSocket read\n" in text + "\n"


def test_an_unknown_pipeline_is_refused_before_anything_starts(capsys):
    import pytest

    from benchmarks.e2e import main

    with pytest.raises(SystemExit) as exc:
        main(["--pipelines", "ssmd,connector"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown pipeline connector" in err and "ssmd, core, lat" in err


def test_a_partial_run_leaves_the_scoreboard_alone(tmp_path):
    board = write_results({"time": "2026-11-25T03:59:17Z", "run": "board"}, tmp_path)
    part = write_results({"time": "2026-11-25T04:10:00Z", "run": "part"}, tmp_path, name="e2e-partial")
    assert board.exists() and part.name == "e2e-partial-20261125T041000Z.json"
    assert json.loads((tmp_path / "latest.json").read_text())["run"] == "board"
