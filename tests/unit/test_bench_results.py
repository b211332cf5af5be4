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
