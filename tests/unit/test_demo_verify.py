"""``demo.verify``: the stream compared with what the exchange sent (sans-IO: a sent file and hand-made
stream messages). Repeated ids and messages without an id are counted apart: a core-publish control run
stores every message without an id, and none of them is a duplicate."""

from __future__ import annotations

from pathlib import Path

from ssmd_fast.demo import verify
from ssmd_fast.normalize import normalize_frame
from ssmd_fast.sinks.reader import StreamMessage

DATA = Path(__file__).resolve().parent.parent / "data" / "kalshi"
PREFIX = "t.kalshi"


def sent_frames(tmp_path: Path, n: int = 3) -> tuple[Path, list[bytes]]:
    frames = [line.rstrip(b"\n") for line in (DATA / "trade.jsonl").read_bytes().splitlines(True)[:n]]
    path = tmp_path / "sent.jsonl"
    path.write_bytes(b"".join(f + b"\n" for f in frames))
    return path, frames


def stored(frames: list[bytes], ids: bool = True) -> list[StreamMessage]:
    out = []
    for k, frame in enumerate(frames):
        for form, data in (("raw", frame), ("norm", normalize_frame(frame))):
            sub = "json.trade" if form == "raw" else "norm.trade"
            out.append(StreamMessage(f"{PREFIX}.{sub}.X", f"kalshi:t{k}:{form}" if ids else None, len(out) + 1, data))
    return out


def test_every_frame_stored_once_is_clean(tmp_path):
    sent, frames = sent_frames(tmp_path)
    v = verify(sent, stored(frames), PREFIX, None)
    assert v.ok, v.problems
    assert (v.sent, v.stream_raw, v.stream_normalized) == (3, 3, 3)
    assert v.stream_lost == v.stream_duplicated == v.duplicate_ids == v.missing_ids == 0


def test_messages_without_an_id_are_not_repeated_ids(tmp_path):
    sent, frames = sent_frames(tmp_path)
    v = verify(sent, stored(frames, ids=False), PREFIX, None)
    assert (v.missing_ids, v.duplicate_ids, v.stream_duplicated, v.stream_lost) == (6, 0, 0, 0)
    assert v.problems == ["stream: messages without an id: 6"]


def test_a_resent_copy_is_a_duplicate_and_a_repeated_id(tmp_path):
    sent, frames = sent_frames(tmp_path)
    msgs = stored(frames)
    msgs.append(msgs[0]._replace(seq=len(msgs) + 1))
    v = verify(sent, msgs[1:] + msgs[:1], PREFIX, None)
    assert (v.stream_duplicated, v.duplicate_ids, v.missing_ids, v.stream_lost) == (1, 1, 0, 0)
    assert v.problems == ["stream: duplicated: 1", "stream: repeated message ids: 1"]


def test_a_missing_frame_is_lost(tmp_path):
    sent, frames = sent_frames(tmp_path)
    v = verify(sent, stored(frames)[2:], PREFIX, None)
    assert (v.stream_lost, v.stream_duplicated, v.duplicate_ids) == (2, 0, 0)
