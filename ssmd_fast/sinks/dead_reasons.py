"""DeadLetterReasons: why the messages in the dead-letter file are there (``{spill}/dead-letter/reasons.jsonl``).

The dead-letter records keep the spill's format (subject, id, payload: ``--requeue-dead-letters`` moves
them to the spill as they are), so the reason lives beside them, one JSON line per kind and interval:

    {"at": "2026-12-08T00:31:02.118Z", "kind": "stream_full", "count": 1834,
     "first_id": "kalshi:trade:...:raw", "last_id": "...", "why": "maximum messages exceeded (err_code 10077)"}

A full stream rejects thousands of messages a second: a line per message would double the writes of a
burst, so the publisher adds them up per kind and writes a line when it logs the kind (at most every
10 s, ``logs.Throttle``) and at close. A crash loses at most the unwritten interval's line, never a
record. ``ssmd-fast spill --dead-letter`` reads the lines after the last requeue; a requeue appends a
``{"requeued": n}`` line, so the reasons of the letters that left are not shown again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from ssmd_fast.errors import StorageError
from ssmd_fast.logs import plural

REASONS_NAME = "reasons.jsonl"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _text(b: bytes | str) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


class DeadLetterReasons:
    """Adds up the dead letters per kind (``note``) and appends their line (``write``, ``close``)."""

    def __init__(self, directory: str, clock=time.time):
        self.path = os.path.join(directory, REASONS_NAME)
        self.clock = clock
        self._open: dict[str, dict] = {}     # kind -> the line being added up

    def note(self, kind: str, why: str, items: list) -> None:
        """``items`` (subject, id, payload) went to the dead-letter file for ``kind``."""
        line = self._open.get(kind)
        if line is None:
            line = self._open[kind] = {"at": "", "kind": kind, "count": 0, "first_id": items[0][1],
                                       "last_id": b"", "why": why}
        line["count"] += len(items)
        line["last_id"] = items[-1][1]      # decoded when written: a full stream rejects thousands a second
        if why:
            line["why"] = why   # the latest: a server's description can change within an interval

    def write(self, kind: str | None = None) -> None:
        """Append the line of ``kind`` (None: of every kind); raises StorageError."""
        kinds = list(self._open) if kind is None else [kind] if kind in self._open else []
        if not kinds:
            return
        now = _utc(self.clock())
        text = ""
        for k in kinds:
            line = self._open.pop(k)
            line["at"] = now
            line["first_id"], line["last_id"] = _text(line["first_id"]), _text(line["last_id"])
            text += json.dumps(line, ensure_ascii=False) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise StorageError(f"{self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self.write()


@dataclass
class ReasonSummary:
    """The reasons of the letters still in the dead-letter file: per kind, since the last requeue."""

    kinds: dict[str, dict] = field(default_factory=dict)   # kind -> count, first_at, last_at, why, example
    unreadable: int = 0                                     # lines cut by a crash or edited by hand

    def lines(self) -> list[str]:
        if not self.kinds:
            return ["  reasons: none recorded"]
        out = ["  reasons (since the last requeue):"]
        for kind, k in sorted(self.kinds.items(), key=lambda kv: -kv[1]["count"]):
            why = f": {k['why']}" if k["why"] else ""
            out.append(f"    {kind}: {plural(k['count'], 'message')}, {k['first_at']} to {k['last_at']}{why} "
                       f"(e.g. {k['example']})")
        if self.unreadable:
            out.append(f"    {plural(self.unreadable, 'line')} of {REASONS_NAME} unreadable, skipped")
        return out


def read_reasons(directory: str) -> ReasonSummary:
    """The summary of ``directory``'s reasons file (empty when there is none)."""
    out = ReasonSummary()
    try:
        with open(os.path.join(directory, REASONS_NAME), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return out
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
            if "requeued" in line:
                out = ReasonSummary(unreadable=out.unreadable)
                continue
            kind, count, at = line["kind"], int(line["count"]), line["at"]
        except (ValueError, KeyError, TypeError):
            out.unreadable += 1
            continue
        k = out.kinds.setdefault(kind, {"count": 0, "first_at": at, "last_at": at, "why": "",
                                        "example": line.get("first_id", "")})
        k["count"] += count
        k["last_at"] = at
        k["why"] = line.get("why") or k["why"]
    return out


def mark_requeued(directory: str, n: int, clock=time.time) -> None:
    """After ``--requeue-dead-letters`` moved ``n`` letters: the reasons before this line are history."""
    try:
        with open(os.path.join(directory, REASONS_NAME), "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": _utc(clock()), "requeued": n}) + "\n")
    except OSError as exc:
        raise StorageError(f"{os.path.join(directory, REASONS_NAME)}: {exc.strerror or exc}") from exc
