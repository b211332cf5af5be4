"""Helpers for the KalshiSession tests: a sink that records every frame and event, a session on a local
exchange, and ``live_session``, which runs both for the length of an ``async with`` and closes them after
(the session first, then the exchange). Every wait is bounded in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from exchange_helpers import make_exchange

from ssmd_fast.events import StatusEvent
from ssmd_fast.kalshi.auth import KalshiCredentials
from ssmd_fast.kalshi.exchange import Exchange
from ssmd_fast.kalshi.session import KalshiSession
from ssmd_fast.kalshi.shards import plan_connections

CHANNELS = ("ticker", "trade", "market_lifecycle_v2")


class RecordingSink:
    """A sink that keeps, per frame: (conn, type, sid, seq, flags, market) and every status event."""

    def __init__(self):
        self.frames: list[tuple] = []
        self.events: list[StatusEvent] = []
        self.records = 0

    def submit(self, batch, conn: str) -> None:
        for i in range(len(batch)):
            key = batch.key(i)
            self.frames.append((conn, batch.type_name(i), batch.sid(i), batch.seq(i), batch.flags(i),
                                key.decode() if key is not None else None))
            if batch.record(i) is not None:
                self.records += 1

    def submit_event(self, event: StatusEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of_type(self, *types: str) -> list[tuple]:
        return [f for f in self.frames if f[1] in types]


def session_for(ex, creds, books=(), sinks=(), channels=CHANNELS, **kw) -> KalshiSession:
    plan = plan_connections(channels, orderbook_markets=books)[0]
    kw.setdefault("stale_after", 3.0)
    kw.setdefault("ping_interval", 0.5)
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 1.0)
    return KalshiSession(creds, ex.url, plan, list(sinks), **kw)


async def running(ex, session: KalshiSession, timeout: float = 5.0) -> None:
    session.start()
    await session.wait_subscribed(timeout)


def book_order_ok(frames: list[tuple]) -> None:
    """Per (conn, sid, market): the first book frame is a snapshot."""
    first: dict[tuple, str] = {}
    for conn, typ, sid, _seq, _flags, market in frames:
        if typ in ("book_snapshot", "book_delta"):
            first.setdefault((conn, sid, market), typ)
    assert first and all(t == "book_snapshot" for t in first.values()), first


@asynccontextmanager
async def exchange_running(public: bytes, events: int, **exchange_kw) -> AsyncIterator[Exchange]:
    """A started local exchange of ``events`` generated events (``make_exchange``'s options), closed on exit."""
    ex = make_exchange(public, events, **exchange_kw)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()


@asynccontextmanager
async def live_session(creds: KalshiCredentials, public: bytes, events: int, *, books: int = 0,
                       record: bool = True, subscribe: bool = True, session: dict | None = None,
                       **exchange_kw) -> AsyncIterator[tuple[Exchange, KalshiSession, RecordingSink | None]]:
    """Yields ``(ex, s, sink)``: an exchange (``exchange_kw`` as for ``make_exchange``), a session on it for
    the first ``books`` markets' order books (``session``: ``session_for``'s options) and the sink recording
    it (None when ``record`` is false). With ``subscribe`` the session is started and subscribed first;
    without, the test starts it. On exit the session is closed (again, if the test closed it), then the
    exchange: what a test reads inside the block is read before the close, what it reads after, after."""
    async with exchange_running(public, events, **exchange_kw) as ex:
        sink = RecordingSink() if record else None
        s = session_for(ex, creds, ex.feed.markets[:books], [sink] if sink is not None else [], **(session or {}))
        try:
            if subscribe:
                await running(ex, s)
            yield ex, s, sink
        finally:
            await s.close()
