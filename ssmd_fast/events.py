"""Status events: gaps, resyncs, stale feeds, connects and disconnects, spills and storage errors.

They are rare (a handful per connection-hour), so they are plain Python objects. The publisher sends
them to ``{prefix}.events.{kind}``; the file sink writes them as gap markers into its files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

# The kinds the connector emits. Consumers match on these strings; add, never rename.
EVENT_KINDS = (
    "connect",       # a session connected and sent its subscriptions
    "disconnect",    # a session lost its connection (detail: the reason)
    "stale",         # nothing arrived for stale_after: the session reconnects
    "gap",           # data may be missing: a seq gap on a sid (last_seq -> received_seq), a lost connection,
                     # a subscription the server ended (error 10/25); one event per affected market (see below)
    "resync",        # a book was rebuilt from a fresh snapshot after a gap
    "duplicate",     # reserved: duplicates are counted, not evented, unless a burst is worth telling
    "subscription",  # a subscription ended by the server (error 10/25) and was renewed
    "spill",         # NATS is away: records go to the spill file (detail: bytes spilled)
    "storage",       # a file sink or spill write failed (disk full): data from here on is missing
    "feed_stopped",  # the feed was stopped on purpose (spill cap reached): a gap until it restarts
    "spill_corrupt", # corrupt bytes in the spill were set aside (quarantine/): the records in them are missing
    "dead_letter",   # the server rejected messages (detail: why, how many): in the dead-letter file, not the stream
)


# A ``gap`` event names one affected market: each order book whose state is invalid until its fresh
# snapshot gets its own event (a seq gap on a book sid, a lost connection and an ended subscription all
# invalidate every book of the sid), and so does each market of a channel subscribed by market list.
# ``market`` is null when the data missing may concern any market of the sid (an all-market channel, or a
# trade or lifecycle seq gap: the frames lost are not known). Counting gaps counts these events.


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class StatusEvent:
    kind: str
    conn: str
    time_ns: int = field(default_factory=now_ns)
    market: str | None = None
    sid: int | None = None
    last_seq: int | None = None
    received_seq: int | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown status event kind {self.kind!r}")

    def to_json(self) -> bytes:
        return json.dumps({
            "type": "status",
            "kind": self.kind,
            "conn": self.conn,
            "market": self.market,
            "sid": self.sid,
            "last_seq": self.last_seq,
            "received_seq": self.received_seq,
            "time": self.time_ns,
            "detail": self.detail,
        }, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
