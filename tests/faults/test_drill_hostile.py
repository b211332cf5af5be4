"""Hostile input through a live session (nats-facts §8 B3-B6): malformed, binary and oversized frames
and odd close codes sent by the local exchange, and tickers that would make bad NATS subjects, all the
way into a real nats-server, whose stored subjects are read back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import uvloop
from rig import Figures, Rig, stream_figures, wait_for

from ssmd_fast.config import is_valid_ticker
from ssmd_fast.kalshi.exchange_feed import ReplayFeed

pytestmark = [pytest.mark.fault, pytest.mark.integration]

RATE = 3000


def run(coro):
    return uvloop.run(coro)


# --------------------------------------------------------------------------- B3, B4, B6 through a live session


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["malformed-every=50", "binary-every=60", "oversize-after=3000",
                                   "drop-after=3000,close-code=4001", "drop-after=3000,close-code=1011"])
def test_hostile_frames_from_the_exchange_are_counted_and_the_feed_goes_on(tmp_path, fault):
    with Rig(tmp_path, events=RATE * 8, rate=RATE, book_markets=2) as rig:
        rig.start()

        async def main():
            conn = await rig.connector()
            s = conn.sessions[0]
            await wait_for(lambda: conn.totals()["records"] > RATE, 20, "a steady flow")
            first = s.conn
            rig.ex("set_faults", fault)
            t0 = time.monotonic()
            if fault.startswith("drop"):
                await wait_for(lambda: s.conn != first and s.core.subscribed, 15, "the reconnect")
            elif fault.startswith("oversize"):     # invalid (size), the connection goes on
                await wait_for(lambda: s.stats()["invalid"].get("size", 0) >= 1, 15, "the oversized frame")
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(3.0)
            took = time.monotonic() - t0
            rig.ex("clear_faults")   # before the count: a frame injected after it was received, not counted
            injected = rig.exchange_stats()["injected"]
            await wait_for(lambda: rig.exchange_finished(1), 60, "the exchange's whole session")
            await conn.wait_caught_up(rig, 60)
            st = s.stats()
            report = await conn.stop()
            rig.stop_exchange()
            return report, conn.publisher.stats(), await rig.read_stream(), injected, st, took

        report, pst, messages, injected, st, took = run(main())
        v = rig.verify(messages)
        disc = rig.events_in(messages, "disconnect")
        kind = fault.split("-")[0]
        fig = stream_figures(f"B hostile frames: {fault}", v, pst, **{
            "injected": injected.get(kind, 0) or injected.get("drop", 0),
            "invalid by reason": ",".join(f"{k}={n}" for k, n in sorted(st["invalid"].items())) or "-",
            "binary dropped": st["binary_dropped"], "oversized": st["oversized"], "reconnects": report.reconnects,
            "disconnect detail": (disc[0]["detail"][:60] if disc and report.reconnects else "-"),
            "recovered in s": took if report.reconnects else "-"}).emit()
    if fault.startswith("malformed"):
        assert sum(st["invalid"].values()) == injected["malformed"] > 0
        assert set(st["invalid"]) >= {"json", "utf8"} and report.reconnects == 0
    elif fault.startswith("binary"):
        assert st["binary_dropped"] == injected["binary"] > 0 and report.reconnects == 0
    elif fault.startswith("oversize"):
        # normalized-schema v1: the frame is invalid (size), counted, and the frames after it processed
        assert st["invalid"] == {"size": injected["oversize"]} == {"size": 1}
        assert st["oversized"] == 1 and report.reconnects == 0
        assert [d["detail"] for d in disc] == ["closed by ssmd-fast"]      # the stop's, no other
    else:
        code = fault.rsplit("=", 1)[1]
        assert report.reconnects == 1 and code in disc[0]["detail"], disc
    # the frames around the hostile ones were all processed; the cut ones are behind a disconnect marker
    if report.reconnects == 0:
        assert v.problems == [], v.problems
    assert fig.duplicated == 0 and v.stream_foreign == 0


# --------------------------------------------------------------------------- B5 tickers


HOSTILE_TICKERS = [
    "KXBTCD-26FEB1417-T69999.99", "A.B", "A..B", ".A", "A.", "A*B", "A>B", "*", ">", "A B", "A\tB",
    "A\r\nPUB x 1\r\ny", "", "KX-ÜNICODE-€", "A\u0000B", "A\u007fB", "A/B", "$JS.API.STREAM.DELETE.DRILL_KALSHI",
    "_INBOX.steal", "K" * 1024, "K" * 1025, "K" * 4096, "🚀",
]


def hostile_session(path) -> None:
    """Ticker and trade frames for each hostile ticker (sid/seq are stamped by the exchange)."""
    lines = []
    for k, t in enumerate(HOSTILE_TICKERS * 3):
        lines.append({"type": "ticker", "sid": 1, "msg": {
            "market_id": str(uuid.UUID(int=k)), "market_ticker": t, "price_dollars": "0.5000",
            "yes_bid_dollars": "0.4900", "yes_ask_dollars": "0.5100", "volume_fp": "10.00",
            "open_interest_fp": "5.00", "dollar_volume": 5, "dollar_open_interest": 2, "ts": 1771079400 + k}})
        lines.append({"type": "trade", "sid": 2, "seq": 1, "msg": {
            "trade_id": str(uuid.UUID(int=10_000 + k)), "market_ticker": t, "yes_price_dollars": "0.5000",
            "no_price_dollars": "0.5000", "count_fp": "1.00", "taker_side": "yes", "ts": 1771079400 + k}})
    with open(path, "w", encoding="utf-8") as f:
        for o in lines:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")


def literal_subject_problem(subject: str, prefix: str) -> str | None:
    """Why ``subject`` is not one literal subject of the connector's layout, or None."""
    if not all(0x21 <= ord(c) <= 0x7E for c in subject):
        return "non-printable or non-ASCII byte"
    tokens = subject.split(".")
    if any(t == "" for t in tokens):
        return "empty token"
    if any(c in subject for c in "*>"):
        return "wildcard character"
    want = len(prefix.split(".")) + (2 if tokens[len(prefix.split("."))] == "events" else 3)
    if len(tokens) != want:
        return f"{len(tokens)} tokens, wanted {want}"
    return None


@pytest.mark.timeout(120)
def test_b5_hostile_tickers_become_single_literal_tokens_or_are_rejected(tmp_path):
    import nats

    src = tmp_path / "hostile.jsonl"
    hostile_session(src)
    feed = ReplayFeed(src)
    valid = [t for t in HOSTILE_TICKERS if is_valid_ticker(t)]
    per_ticker = 3 * 2                                     # ticker + trade frames, three rounds
    expected_rejected = (len(HOSTILE_TICKERS) - len(valid)) * per_ticker
    with Rig(tmp_path, feed=feed, rate=200.0, book_markets=0) as rig:
        rig.start()

        async def main():
            conn = await rig.connector()
            await wait_for(lambda: rig.exchange_finished(1), 60, "the exchange's whole session")
            await conn.wait_caught_up(rig, 30)
            # the session ends with hostile frames: sent by the exchange is not yet read by the connector,
            # and a rejected frame publishes nothing for wait_caught_up to wait on
            session = conn.sessions[0]
            await wait_for(lambda: sum(session.stats()["invalid"].values()) >= expected_rejected, 10,
                           "every hostile frame read")
            totals = session.stats()
            report = await conn.stop()
            rig.stop_exchange()
            nc = await nats.connect(rig.nats.url)
            info = await nc.jetstream().stream_info(rig.stream, subjects_filter=">")
            await nc.close()
            return report, totals, dict(info.state.subjects or {}), await rig.read_stream()

        report, totals, subjects, messages = run(main())
    problems = {s: p for s in subjects if (p := literal_subject_problem(s, rig.prefix))}
    tokens = {s.split(".")[-1] for s in subjects if ".events." not in s}
    want_tokens = {t.replace(".", "_") for t in valid}
    rejected = sum(totals["invalid"].values())
    fig = Figures("B5 hostile tickers through the pipeline", sent=len(HOSTILE_TICKERS) * per_ticker,
                  stored=sum(1 for m in messages if ".events." not in m.subject),
                  extra={"tickers": len(HOSTILE_TICKERS), "valid": len(valid),
                         "rejected frames": rejected,
                         "by reason": ",".join(f"{k}={n}" for k, n in sorted(totals["invalid"].items())),
                         "stored subjects": len(subjects), "wildcard or bad subjects": len(problems)}).emit()
    assert problems == {}, problems
    assert tokens == want_tokens, (tokens ^ want_tokens)
    assert rejected == expected_rejected
    assert fig.stored == len(valid) * per_ticker * 2         # raw + normalized of every valid frame
    assert report.exit_code == 0
