"""KalshiSession against the local exchange's faults: drop, freeze, gaps, duplicates, error 25,
error 26, oversize, malformed and binary frames. Every wait is bounded in time."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from exchange_helpers import wait_until
from session_helpers import RecordingSink, book_order_ok, live_session

from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.session import KalshiSession
from ssmd_fast.kalshi.shards import BOOK_CHANNEL, SubscriptionSpec
from ssmd_fast.normalize import F_DROP, F_DUPLICATE, F_GAP, F_SUPPRESSED

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def keys():
    private, public = generate_key_pair()
    return KalshiCredentials("test-key", private), public


def conns_of(sink: RecordingSink) -> list[str]:
    return list(dict.fromkeys(f[0] for f in sink.frames))


def test_drop_reconnects_within_1s_of_accepting_again(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, markets=6, rate=3000, books=3,
                                session=dict(backoff_initial=0.25, backoff_max=30.0)) as (ex, s, sink):
            books = ex.feed.markets[:3]
            await asyncio.sleep(0.3)
            first_conn = s.conn
            await ex.set_accepting(False)
            assert ex.drop_all() == 1
            await asyncio.sleep(2.5)                   # refused meanwhile: the backoff grows, capped low
            refused_stats = s.stats()
            t_accept = time.monotonic()
            await ex.set_accepting(True)
            await wait_until(lambda: s.core.subscribed and s.conn != first_conn, 5, "the new subscription")
            took = time.monotonic() - t_accept
            await wait_until(lambda: sum(1 for f in sink.of_type("book_snapshot") if f[0] == s.conn) >= 3, 3,
                             "fresh snapshots")
            await asyncio.sleep(0.2)
        print(f"capture resumed {took * 1000:.0f} ms after the exchange accepted again")
        assert took < 1.0, f"resumed {took:.2f}s after the exchange accepted again"
        assert not refused_stats["connected"] and refused_stats["last_error"]
        assert ex.handshakes["101"] == 2
        c1, c2 = conns_of(sink)
        assert c1 == first_conn and c2 != c1
        # the new connection starts over: new subscriptions, a fresh snapshot per book, nothing flagged
        new = [f for f in sink.frames if f[0] == c2]
        assert [f[1] for f in new[:4]] == ["subscribed"] * 4
        assert sorted(f[5] for f in new if f[1] == "book_snapshot")[:3] == sorted(books)
        book_order_ok(new)
        assert all(f[4] == 0 for f in sink.frames)
        kinds = sink.kinds()
        # the lost connection is marked: a disconnect, then one gap per book market and per all-market channel
        cut = [e for e in sink.events if e.kind == "gap" and e.conn == c1]
        assert {e.market for e in cut if e.market in books} == set(books)
        assert len(cut) == len(books) + len(s.plan.subscriptions) - 1 and all(e.sid for e in cut)
        kinds = [k for k in kinds if k != "gap"]
        events = [e for e in sink.events if e.kind != "gap"]
        assert kinds[:3] == ["connect", "disconnect", "connect"]
        assert events[1].conn == c1 and events[2].conn == c2
        assert s.stats()["reconnects"] == 1

    asyncio.run(main())


def test_freeze_declared_stale_within_stale_after_plus_1s_then_reconnect(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=2000, ping_interval=0.3, books=2,
                                session=dict(stale_after=1.0, ping_interval=0.25)) as (ex, s, sink):
            ex.set_faults("freeze-after=100")
            await wait_until(lambda: ex.stats()["frozen"] == 1, 5, "the freeze")
            ex.clear_faults()                          # the next connection is served normally
            frozen_at = time.monotonic()
            await wait_until(lambda: "stale" in sink.kinds(), 3, "the stale event")
            stale_after_s = time.monotonic() - frozen_at
            first = s.conn
            await wait_until(lambda: s.core.subscribed and s.conn != first, 5, "the reconnect")
        print(f"stale declared {stale_after_s * 1000:.0f} ms after the freeze (stale_after 1 s)")
        assert stale_after_s <= 1.0 + 1.0
        stale = next(e for e in sink.events if e.kind == "stale")
        assert "stale_after 1s" in stale.detail
        assert [k for k in sink.kinds() if k != "gap"][:4] == ["connect", "stale", "disconnect", "connect"]
        assert "gap" in sink.kinds()     # the frozen stretch is marked
        assert ex.handshakes["101"] == 2 and s.stats()["stale"] == 1

    asyncio.run(main())


def test_injected_gap_detected_snapshot_requested_deltas_suppressed_until_it(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, markets=6, rate=4000, books=3) as (ex, s, sink):
            books = ex.feed.markets[:3]
            await asyncio.sleep(0.2)
            ex.set_faults("gap-every=40")
            await wait_until(lambda: s.stats()["resyncs"] >= 6, 10, "two resyncs")
            ex.clear_faults()
            await asyncio.sleep(0.3)
            stats = s.stats()
        gaps = [e for e in sink.events if e.kind == "gap"]
        assert gaps and stats["gaps"] == len(gaps) >= 2 * len(books) and stats["seq_gaps"] >= 2
        g = gaps[0]
        assert g.received_seq == g.last_seq + 2 and g.sid is not None
        # one gap event per book the seq gap made invalid (events.py)
        first = [e for e in gaps if (e.sid, e.last_seq, e.received_seq) == (g.sid, g.last_seq, g.received_seq)]
        assert sorted(e.market for e in first) == sorted(books)
        assert all(f"{len(books)} book(s) of sid {g.sid}" in e.detail for e in first)
        # after each gap: deltas of a book are flagged until its fresh snapshot (a get_snapshot reply)
        state: dict[str, str] = {}
        suppressed = 0
        for _conn, typ, sid, _seq, flags, market in sink.frames:
            if sid != g.sid or typ not in ("book_snapshot", "book_delta"):
                continue
            if flags & F_GAP:
                state = dict.fromkeys(books, "invalid")
            if typ == "book_snapshot":
                state[market] = "valid"
                assert not flags & F_DROP
            elif state.get(market) == "invalid":
                assert flags & F_SUPPRESSED
                suppressed += 1
            else:
                assert not flags & F_DROP
        assert suppressed == stats["suppressed"] > 0
        resyncs = [e for e in sink.events if e.kind == "resync"]
        assert len(resyncs) == stats["resyncs"] and {e.market for e in resyncs} == set(books)
        assert stats["reconnects"] == 0 and s.core.renewals == 0       # get_snapshot sufficed
        # a gap event precedes the resyncs it caused
        kinds = sink.kinds()
        assert kinds.index("gap") < kinds.index("resync")

    asyncio.run(main())


def test_duplicates_are_dropped_and_counted(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=4000, books=2) as (ex, s, sink):
            ex.set_faults("duplicate-every=25")
            await wait_until(lambda: s.stats()["duplicates"] >= 20, 10, "duplicates")
            ex.clear_faults()
            stats = s.stats()
            injected = ex.injected["duplicate"]
        assert stats["duplicates"] >= 20 and stats["gaps"] == 0 and not any(e.kind == "gap" for e in sink.events)
        assert injected >= stats["duplicates"]
        # what the sinks publish (not F_DROP) has strictly increasing seqs per sid
        last: dict[int, int] = defaultdict(int)
        for _conn, typ, sid, seq, flags, _m in sink.frames:
            if seq is None or typ in ("ok", "unsubscribed", "subscribed", "error"):
                continue
            if flags & F_DUPLICATE:
                assert seq <= last[sid]
                continue
            assert seq == last[sid] + 1
            last[sid] = seq

    asyncio.run(main())


def test_error_25_ends_the_subscription_and_it_is_renewed(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=3000, books=2) as (ex, s, sink):
            sids_before = {sub.channel: sub.sid for sub in s.core.table.subs}
            ex.set_faults("error25-after=200")
            await wait_until(lambda: "subscription" in sink.kinds() and s.core.subscribed, 5, "the renewal")
            ex.clear_faults()
            sids_after = {sub.channel: sub.sid for sub in s.core.table.subs}
            await asyncio.sleep(0.3)
        ev = next(e for e in sink.events if e.kind == "subscription")
        assert "error 25" in ev.detail and ev.sid in sids_before.values()
        changed = [ch for ch in sids_before if sids_before[ch] != sids_after[ch]]
        assert len(changed) == 1 and sids_after[changed[0]] > max(sids_before.values())
        assert s.stats()["reconnects"] == 0
        errors = [f for f in sink.frames if f[1] == "error"]
        assert errors and errors[0][2] == ev.sid
        # what the overflow cost is marked as a lost connection marks it: one gap per book market of the
        # subscription (or one for an all-market channel), with the sid's last seq, counted as gaps
        gaps = [e for e in sink.events if e.kind == "gap"]
        assert gaps and all(g.sid == ev.sid and "error 25" in g.detail for g in gaps)
        assert s.stats()["gaps"] == len(gaps) and s.stats()["seq_gaps"] == 0
        channel = changed[0]
        if channel == BOOK_CHANNEL:
            books = ex.feed.markets[:2]
            assert sorted(g.market for g in gaps) == sorted(books)
            assert all("book invalid until its fresh snapshot" in g.detail for g in gaps)
            new = [f for f in sink.frames if f[2] == sids_after[channel]]
            assert sorted(f[5] for f in new if f[1] == "book_snapshot")[:2] == sorted(books)
        else:
            assert [g.market for g in gaps] == [None]
        if channel != "ticker":     # ticker frames have no seq
            assert all(g.last_seq for g in gaps)

    asyncio.run(main())


@pytest.mark.parametrize("after", [1, 7, 50])
def test_error_25_on_a_book_marks_its_books_until_the_fresh_snapshots(keys, after):
    """Books only: whichever frame brings the overflow, its subscription is the book one."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=3000, books=3,
                                session=dict(channels=())) as (ex, s, sink):
            sid_before = s.core.table.subs[0].sid
            ex.set_faults(f"error25-after={after}")
            await wait_until(lambda: "subscription" in sink.kinds() and s.core.subscribed, 5, "the renewal")
            ex.clear_faults()
            sid_after = s.core.table.subs[0].sid
            books = ex.feed.markets[:3]
            await wait_until(lambda: sum(1 for f in sink.frames if f[2] == sid_after and f[1] == "book_snapshot")
                             >= 3, 3, "fresh snapshots")
            await asyncio.sleep(0.2)
        gaps = [e for e in sink.events if e.kind == "gap"]
        assert sorted(g.market for g in gaps) == sorted(books) and {g.sid for g in gaps} == {sid_before}
        last = max(f[3] for f in sink.frames if f[2] == sid_before and f[3] is not None)
        assert {g.last_seq for g in gaps} == {last}
        assert s.stats()["gaps"] == 3 and s.stats()["renewals"] == 1 and s.stats()["reconnects"] == 0
        new = [f for f in sink.frames if f[2] == sid_after]
        assert sorted(f[5] for f in new[:3]) == sorted(books) and {f[1] for f in new[:3]} == {"book_snapshot"}
        book_order_ok(new)

    asyncio.run(main())


def test_error_26_splits_the_markets(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 20_000, markets=10, rate=2000, max_markets=2,
                                books=7) as (ex, s, sink):
            books = tuple(ex.feed.markets[:7])
            await wait_until(lambda: len(sink.of_type("book_snapshot")) >= 7, 5, "snapshots")
            subs = [(sub.channel, sub.markets, sub.sid) for sub in s.core.table.subs]
        book_subs = [(m, sid) for ch, m, sid in subs if ch == BOOK_CHANNEL]
        assert all(len(m) <= 2 for m, _ in book_subs)
        assert sorted(x for m, _ in book_subs for x in m) == sorted(books)
        assert len({sid for _, sid in book_subs}) == len(book_subs) >= 4
        assert sorted({f[5] for f in sink.of_type("book_snapshot")}) == sorted(books)
        assert any(e.kind == "subscription" and "error 26" in e.detail for e in sink.events)
        assert s.core.table.specs == [sp for sp in s.core.table.specs if sp.channel != BOOK_CHANNEL
                                      or len(sp.markets) <= 2]

    asyncio.run(main())


def test_get_snapshot_refused_falls_back_to_resubscribe(keys):
    """A get_snapshot the exchange refuses (unknown market) -> unsubscribe + subscribe (new sid)."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, markets=6, rate=3000, books=2) as (ex, s, sink):
            books = ex.feed.markets[:2]
            old = next(sub for sub in s.core.table.subs if sub.channel == BOOK_CHANNEL)
            old_sid = old.sid
            # the core believes one more market is on the sid: the exchange answers error 11
            s.core.table.update_markets(old, (*books, "NOT-A-MARKET"))
            s._apply(s.core.request_snapshot(old_sid, books, time.monotonic()))
            await wait_until(lambda: old.sid not in (None, old_sid) and s.core.subscribed, 5, "the renewal")
        assert any(e.kind == "subscription" and "get_snapshot failed" in e.detail for e in sink.events)
        assert [f for f in sink.frames if f[1] == "unsubscribed" and f[2] == old_sid]
        assert s.core.renewals == 1

    asyncio.run(main())


def test_oversize_frame_is_invalid_and_the_connection_goes_on(keys):
    """normalized-schema v1: a frame above 1 MiB is invalid (size), counted, and the next frames go on."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=3000) as (ex, s, sink):
            first = s.conn
            ex.set_faults("oversize-after=50")
            await wait_until(lambda: s.stats()["invalid"].get("size") == 1, 5, "the oversized frame")
            records = sum(s.stats()["records"].values())
            await wait_until(lambda: sum(s.stats()["records"].values()) > records + 100, 5, "the frames after it")
            ex.clear_faults()
            stats = s.stats()
        assert s.conn == first and stats["reconnects"] == 0 and stats["oversized"] == 1
        assert not [e for e in sink.events if e.kind == "disconnect" and "1048576" in e.detail]

    asyncio.run(main())


def test_malformed_and_binary_frames_are_counted_not_fatal(keys):
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, rate=3000, books=1, record=False) as (ex, s, _):
            ex.set_faults("malformed-every=30,binary-every=40")
            await wait_until(lambda: sum(s.stats()["invalid"].values()) >= 6 and s.stats()["binary_dropped"] >= 3,
                             10, "invalid and binary frames")
            ex.clear_faults()
            stats = s.stats()
        assert set(stats["invalid"]) >= {"json", "utf8"} and stats["reconnects"] == 0 and stats["gaps"] == 0

    asyncio.run(main())


def test_spec_split_survives_a_reconnect(keys):
    """The plan after an error 26 split is what the next connection subscribes."""
    creds, public = keys

    async def main():
        async with live_session(creds, public, 60_000, markets=6, rate=2000, max_markets=2, books=4,
                                record=False) as (ex, s, _):
            specs = list(s.core.table.specs)
            ex.drop_all()
            first = s.conn
            await wait_until(lambda: s.conn != first and s.core.subscribed, 5, "the reconnect")
        assert s.core.splits == 1 and s.core.table.specs == specs
        assert SubscriptionSpec(BOOK_CHANNEL, tuple(ex.feed.markets[:2])) in specs
        assert isinstance(s, KalshiSession)

    asyncio.run(main())
