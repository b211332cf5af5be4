"""FastIngest's tail timer (fastingest.py): it is set only while the open batch has a tail shorter than the
flow, which nothing but a commit settles. With a flow's worth or more unsettled the server owes a flow ack,
and the read of that ack sets the timer if a short tail is left; before, a timer was set after every read
and write under load and woke the event loop 5 ms later for nothing (about 25 times a second in the
end-to-end run). Real rings (both implementations); the publisher around FastIngest is reduced to the
ring, the connection's writes and the clock. The real server's side: tests/integration/test_publisher_fast.py."""

from __future__ import annotations

import asyncio
import types

import pytest
from test_framing import MODULES
from test_framing_fast import _fast, start
from twins import twin_fixture

from ssmd_fast.sinks import fastingest
from ssmd_fast.sinks.fastingest import FastIngest

pytestmark = [pytest.mark.twin, pytest.mark.timeout(30)]


impl = twin_fixture(*MODULES)


class Writes:
    def __init__(self):
        self.data: list[bytes] = []

    def write(self, data) -> None:
        self.data.append(bytes(data))


def _setup(fr, n: int):
    """A publisher stand-in (ring, connection writes, clock) around a fast ring of ``n`` messages, its
    batch started and every message sent."""
    ring = _fast(fr, n)
    clock = [10.0]
    pub = types.SimpleNamespace(ring=ring, conn=Writes(), clock=lambda: clock[0], inbox=b"_INBOX.abc123",
                                counters={"resend_writes": 0})
    fi = FastIngest(pub)
    start(ring, clock[0])
    bno = ring.cur_batch
    assert ring.take(1 << 20, clock[0]) is not None
    return ring, pub, fi, bno, clock


def test_no_timer_while_the_server_owes_a_flow_ack_then_one_for_the_short_tail(impl):
    _, fr = impl

    async def main():
        ring, pub, fi, bno, clock = _setup(fr, 150)       # flow 100: seqs 1..150 sent, unsettled 150
        assert ring.tail_state()[0] == 150
        fi.arm()
        assert fi._timer is None                          # a flow ack is owed: its read arms again
        assert ring.fast_ack(bno, 100)                    # the server's flow ack for seqs 1..100
        assert ring.tail_state()[0] == 50
        fi.arm()                                          # what the read of that ack does
        assert fi._timer is not None                      # 50 < flow: only a commit settles them
        fi._timer.cancel()
        fi._timer = None
        clock[0] += fastingest.TAIL_IDLE
        fi._tail_check()                                  # the timer's turn: the tail goes with a commit
        assert any(b"$FI" in w for w in pub.conn.data)

    asyncio.run(main())


def test_no_timer_when_all_is_settled(impl):
    _, fr = impl

    async def main():
        ring, pub, fi, bno, clock = _setup(fr, 100)
        assert ring.fast_ack(bno, 100)                    # exactly a flow: all settled
        assert ring.tail_state()[0] == 0
        fi.arm()
        assert fi._timer is None

    asyncio.run(main())


def test_a_resend_arms_the_timer_for_its_own_short_tail(impl):
    _, fr = impl

    async def main():
        ring, pub, fi, bno, clock = _setup(fr, 30)        # 30 sent, unsettled 30: a short tail
        fi.arm()
        assert fi._timer is not None
        fi._timer.cancel()
        fi._timer = None
        fi.resend([1, 2, 3])                              # into a new batch: commit the old, send again
        assert pub.counters.get("resend_writes") == 1
        assert fi._timer is not None                      # the resent messages are a tail of their own
        fi._timer.cancel()

    asyncio.run(main())
