"""Drills on the exchange side (nats-facts §8 F8, F9): the connection dropped, reset or blackholed, and
sequence faults injected (gaps, duplicates, a regression). The in-process connector publishes into a
real nats-server; the stream is read back and checked for silent gaps and for the order books it
implies, against the exchange's own books."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import uvloop
from proxy import DOWN
from rig import Rig, stream_figures, wait_for
from ws_tamper import SeqRegression, WsReframer

pytestmark = [pytest.mark.fault, pytest.mark.integration]

RATE = 3000
BOOKS = 4


def run(coro):
    return uvloop.run(coro)


# --------------------------------------------------------------------------- stream checks


def _data(messages, prefix: str):
    """(msg, sid, seq, conn or None) of every sequenced raw data message, in stream order."""
    for m in messages:
        if not m.subject.startswith(prefix + ".json."):
            continue
        obj = json.loads(m.data)
        seq, sid = obj.get("seq"), obj.get("sid")
        if seq is None or sid is None:
            continue
        parts = (m.msg_id or "").split(":")
        conn = parts[1] if len(parts) == 5 and parts[1] != "trade" else None
        yield m, sid, seq, conn


def silent_gaps(rig: Rig, messages) -> tuple[int, int]:
    """(holes, silent): holes in the stored seqs of each subscription, and how many of them no status
    event explains (a gap event on that conn/sid starting at the hole, or a disconnect of that conn)."""
    gaps = rig.events_in(messages, "gap")
    disconnected = {e["conn"] for e in rig.events_in(messages, "disconnect")}
    by_conn_sid = {(e["conn"], e["sid"], e["last_seq"]) for e in gaps}
    by_sid = {(e["sid"], e["last_seq"]) for e in gaps}
    last: dict[tuple, int] = {}
    conns: list[str] = []
    holes = silent = 0
    for _m, sid, seq, conn in _data(messages, rig.prefix):
        key = (conn, sid)
        if conn is not None and conn not in conns:
            conns.append(conn)
        prev = last.get(key)
        if conn is None and prev is not None and seq < prev:
            prev = None                          # a trade sid of the next connection starts over
        if prev is not None and seq > prev + 1:
            holes += 1
            explained = (conn, sid, prev) in by_conn_sid if conn is not None else (sid, prev) in by_sid
            silent += not explained
        last[key] = seq if prev is None else max(prev, seq)
    # every connection but the last ended with a marker (what it did not read is behind that marker)
    silent += sum(1 for c in conns[:-1] if c not in disconnected)
    return holes, silent


def _dec_book(levels) -> dict:
    return {Decimal(str(p)): Decimal(str(q)) for p, q in levels}


def replayed_books(rig: Rig, messages) -> dict[str, tuple[dict, dict]]:
    """The order books a consumer of the stream builds: snapshot, then deltas (normalized records)."""
    books: dict[str, tuple[dict, dict]] = {}
    for m in messages:
        if not m.subject.startswith(rig.prefix + ".norm.book_"):
            continue
        r = json.loads(m.data, parse_float=Decimal)
        if r["type"] == "book_snapshot":
            books[r["ticker"]] = (_dec_book(r["yes"]), _dec_book(r["no"]))
        else:
            side = books[r["ticker"]][0 if r["side"] == "yes" else 1]
            q = side.get(r["price"], Decimal(0)) + r["delta"]
            if q:
                side[r["price"]] = q
            else:
                side.pop(r["price"], None)
    return books


def exchange_books(rig: Rig) -> dict[str, tuple[dict, dict]]:
    """The exchange's own books at the end of the session."""
    def get():
        feed = rig.exchange.feed
        return {t: feed.book_at(t, feed.total) for t in rig.tickers[:rig.book_markets]}
    raw = rig.thread.call(get)
    return {t: tuple({Decimal(p) / 10000: Decimal(q) / 100 for p, q in side.items()} for side in b)
            for t, b in raw.items() if b is not None}


# --------------------------------------------------------------------------- F8 drop, RST, blackhole


async def _cut(rig: Rig, how: str, away: float) -> dict:
    conn = await rig.connector({"exchange": {"stale_after": "2s", "ping_interval": "0.5s"}})
    s = conn.sessions[0]
    await wait_for(lambda: conn.totals()["records"] > 2 * RATE, 20, "a steady flow")
    first = s.conn
    t0 = time.monotonic()
    if how == "drop":                       # the exchange goes away: connection aborted, port closed
        await asyncio.get_running_loop().run_in_executor(None, rig.ex, "set_accepting", False)
        rig.ex("drop_all")
    elif how == "rst":                      # the path resets: RST both ways, then refused
        rig.exchange_proxy.reset()
        rig.exchange_proxy.refuse()
    else:                                   # the live flow dies silently; new connections pass
        rig.exchange_proxy.blackhole(existing_only=True)
    await wait_for(lambda: s.conn != first or not s.core.connected, 10, "the connector noticing")
    detection = time.monotonic() - t0
    if how != "blackhole":
        await asyncio.sleep(max(0.0, away - (time.monotonic() - t0)))
        if how == "drop":
            rig.ex("set_accepting", True)
        else:
            rig.exchange_proxy.accept()
    t_back = time.monotonic()
    await wait_for(lambda: s.conn != first and s.core.subscribed, 15, "the new subscription")
    reconnect = time.monotonic() - t_back
    if how == "blackhole":
        rig.exchange_proxy.reset(blackholed_only=True)   # the exchange's side of the dead flow ends too
    await wait_for(lambda: rig.exchange_finished(1), 60, "the exchange's whole session")
    await conn.wait_caught_up(rig, 60)
    report = await conn.stop()
    st = conn.publisher.stats()
    rig.stop_exchange()
    messages = await rig.read_stream()
    return dict(report=report, st=st, messages=messages, detection=detection, reconnect=reconnect, first=first)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["drop", "rst", "blackhole"])
def test_f8_exchange_drop_rst_blackhole_reconnect_and_mark_the_gap(tmp_path, how):
    with Rig(tmp_path, events=RATE * 14, rate=RATE, book_markets=BOOKS, exchange_proxy=True) as rig:
        rig.start()
        r = run(_cut(rig, how, away=2.0))
        messages = r["messages"]
        v = rig.verify(messages)
        holes, silent = silent_gaps(rig, messages)
        disc = [e for e in rig.events_in(messages, "disconnect") if e["conn"] == r["first"]]
        cut = [e for e in rig.events_in(messages, "gap") if e["conn"] == r["first"]]
        book_gaps = {e["market"] for e in cut if e["market"] in rig.tickers[:BOOKS]}
        new_conn_snapshots = {json.loads(m.data)["ticker"] for m in messages
                              if m.subject.startswith(rig.prefix + ".norm.book_snapshot.")
                              and m.msg_id.split(":")[1] != r["first"]}
        books_ok = replayed_books(rig, messages) == exchange_books(rig)
        fig = stream_figures(f"F8 exchange {how}", v, r["st"], **{
            "reconnect after it returns s": r["reconnect"], "reconnects": r["report"].reconnects,
            "markets affected": BOOKS, "disconnect markers": len(disc), "book gap events": len(book_gaps),
            "channel gap events": len(cut) - len(book_gaps),
            "fresh snapshots after reconnect": len(new_conn_snapshots), "silent gaps": silent,
            "frames sent into the cut (marked)": v.sent - v.stream_raw, "books equal the exchange's": books_ok})
        fig.detection = r["detection"]
        fig.emit()
    assert r["report"].reconnects == 1 and len(disc) == 1
    assert book_gaps == set(rig.tickers[:BOOKS]), "one gap event per affected book market"
    assert len(cut) - len(book_gaps) >= 1, "the all-market channels' gap is marked too"
    assert r["reconnect"] < 1.0, f"reconnected {r['reconnect']:.2f} s after the exchange came back"
    assert new_conn_snapshots == set(rig.tickers[:BOOKS])     # every affected book rebuilt
    assert silent == 0 and fig.duplicated == 0 and v.stream_foreign == 0
    assert books_ok


# --------------------------------------------------------------------------- F9 sequence faults


@pytest.mark.timeout(150)
@pytest.mark.parametrize("fault", ["gap-every=97", "duplicate-every=41", "regression"])
def test_f9_injected_seq_faults_are_detected_and_books_resynced(tmp_path, fault):
    regression = SeqRegression(after=300, shift=25)
    with Rig(tmp_path, events=RATE * 12, rate=RATE, book_markets=BOOKS,
             exchange_proxy=fault == "regression") as rig:
        rig.start()
        if fault == "regression":
            used = []

            def factory():         # only the first connection is tampered with
                used.append(1)
                return WsReframer(regression if len(used) == 1 else (lambda op, p: [p]))
            rig.exchange_proxy.set_transform(DOWN, factory)

        async def main():
            conn = await rig.connector()
            await wait_for(lambda: conn.totals()["records"] > RATE, 20, "a steady flow")
            if fault != "regression":
                rig.ex("set_faults", fault)
            await asyncio.sleep(6.0)
            rig.ex("clear_faults")   # before the count: a frame injected after it was received, not counted
            injected = rig.exchange_stats()["injected"]
            await wait_for(lambda: rig.exchange_finished(len(conn.sessions)), 60, "the exchange's whole session")
            await conn.wait_caught_up(rig, 60)
            s = conn.sessions[0].stats()
            report = await conn.stop()
            rig.stop_exchange()
            return report, conn.publisher.stats(), await rig.read_stream(), injected, s

        report, st, messages, injected, s = run(main())
        holes, silent = silent_gaps(rig, messages)
        gap_events = rig.events_in(messages, "gap")
        resyncs = rig.events_in(messages, "resync")
        books_ok = replayed_books(rig, messages) == exchange_books(rig)
        want = {"gap-every=97": injected["gap"], "duplicate-every=41": injected["duplicate"],
                "regression": int(regression.rewritten > 0)}[fault]
        # a seq gap is one gap event per book it made invalid (events.py): count the seq gaps themselves
        def seq_gaps(events):
            return len({(e["conn"], e["sid"], e["last_seq"], e["received_seq"]) for e in events
                        if e["received_seq"] is not None})
        got = {"gap-every=97": seq_gaps(gap_events), "duplicate-every=41": s["duplicates"],
               "regression": seq_gaps(e for e in gap_events if "regression" in (e["detail"] or ""))}[fault]
        v = rig.verify(messages)
        # withheld by design: the normalized records of suppressed deltas (book invalid until its snapshot;
        # their raw form is stored), both forms of the duplicate copies
        withheld = s["suppressed"] + 2 * s["duplicates"]
        v.stream_lost -= withheld
        if fault == "regression":       # the tampered frames differ from the exchange's record; the reconnect
            v.stream_lost = 0           # cuts a few in flight (behind its markers): silent gaps and books decide
        fig = stream_figures(f"F9 injected {fault}", v, st, **{
            "withheld by design (suppressed records + duplicate copies)": withheld,
            "injected": want, "detected": got, "gap events": len(gap_events), "resync events": len(resyncs),
            "suppressed deltas": s["suppressed"], "duplicates dropped": s["duplicates"],
            "renewals": conn_renewals(report), "reconnects": report.reconnects, "silent gaps": silent,
            "books equal the exchange's": books_ok})
        fig.emit()
    assert want > 0 and got >= want, f"{fault}: injected {want}, detected {got}"
    assert silent == 0
    assert books_ok, "the books replayed from the stream differ from the exchange's"
    assert fig.duplicated == 0 and fig.lost == 0
    if fault == "regression":
        assert report.reconnects == 1


def conn_renewals(report) -> str:
    return "-" if report is None else str(getattr(report, "renewals", "-"))
