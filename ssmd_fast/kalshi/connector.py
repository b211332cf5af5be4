"""Entry points: ``build_sessions`` for the runner, ``KalshiConnector`` for library users.

``KalshiConnector`` runs one session per shard and hands every socket read to the consumer as a
``FrameBatch`` it owns (the listener gets a fresh batch; nothing is copied per frame):

    async with KalshiConnector(creds, orderbook_markets=[...]) as kc:
        async for item in kc.messages():
            if isinstance(item, StatusEvent): ...        # gap, resync, stale, connect, disconnect, ...
            else: handle(item)                            # a FrameBatch: len(item), item.record(i), ...

A slow consumer never blocks the reader: the queue holds ``max_batches`` batches; when it is full
the newest batch is dropped, counted (``stats()["dropped_frames"]``), and a ``gap`` event with
``detail`` "consumer overflow: N frames dropped" is queued where the data is missing, as soon as
there is room again. Status events themselves are never dropped (they are rare).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable, Sequence

from ssmd_fast.config import DEFAULT_CHANNELS, DEMO_WS_URL, PRODUCTION_WS_URL, EnvironmentConfig
from ssmd_fast.credentials import KalshiConfig
from ssmd_fast.errors import AuthError
from ssmd_fast.events import StatusEvent, now_ns
from ssmd_fast.kalshi.auth import KalshiCredentials
from ssmd_fast.kalshi.protocol import auth_rejected_message
from ssmd_fast.kalshi.session import KalshiSession
from ssmd_fast.kalshi.shards import plan_connections, plan_from_config


def _credentials(credentials) -> KalshiCredentials:
    return KalshiCredentials.from_config(credentials) if isinstance(credentials, KalshiConfig) else credentials


def build_sessions(cfg: EnvironmentConfig, credentials, sinks: Sequence = (), **session_kw) -> list[KalshiSession]:
    """One session per connection plan of ``cfg.exchange`` (sharding), all feeding ``sinks``."""
    ex = cfg.exchange
    creds = _credentials(credentials)
    return [KalshiSession(creds, ex.resolved_url, plan, sinks, stale_after=ex.stale_after, ping_interval=ex.ping_interval,
                          backoff_initial=ex.backoff_initial, backoff_max=ex.backoff_max,
                          handshake_timeout=ex.handshake_timeout, ca_file=ex.ca_file, tls_verify=ex.tls_verify,
                          **session_kw)
            for plan in plan_from_config(ex)]


class _BatchQueue:
    """The connector's bounded queue of batches (owned by the consumer) and status events."""

    def __init__(self, max_batches: int):
        self.max_batches = max_batches
        self.items: collections.deque = collections.deque()
        self.n_batches = 0
        self.ready = asyncio.Event()
        self.dropped_batches = 0
        self.dropped_frames = 0
        self._owed: dict[str, int] = {}      # conn -> frames dropped and not reported yet

    def put_batch(self, session: KalshiSession, batch, conn: str) -> None:
        if self.n_batches >= self.max_batches:
            self.dropped_batches += 1
            self.dropped_frames += len(batch)
            self._owed[conn] = self._owed.get(conn, 0) + len(batch)
            return      # the listener resets the batch and reads on
        if self._owed:
            self._report_overflow()
        self.items.append(session.swap_batch() if session.batch is batch else _copy(batch))
        self.n_batches += 1
        self.ready.set()

    def put_event(self, event: StatusEvent) -> None:
        if self._owed and self.n_batches < self.max_batches:
            self._report_overflow()
        self.items.append(event)
        self.ready.set()

    def _report_overflow(self) -> None:
        for conn, n in self._owed.items():
            self.items.append(StatusEvent("gap", conn, now_ns(), detail=f"consumer overflow: {n} frames dropped"))
        self._owed.clear()

    def pop(self):
        item = self.items.popleft()
        if not isinstance(item, StatusEvent):
            self.n_batches -= 1
            if self._owed:      # room again: the gap goes right after the batches queued before it
                self._report_overflow()
        return item


def _copy(batch):
    """A batch that is not the listener's (never on the live path): re-add its frames."""
    from ssmd_fast.normalize import FrameBatch

    out = FrameBatch()
    out.set_recv_ts(batch.recv_ts)
    for i in range(len(batch)):
        out.add(batch.raw(i))
        if batch.flags(i):
            out.set_flag(i, batch.flags(i))
    return out


class _Handoff:
    """The sink of one session: hands its batches whole to the queue (no copy per frame)."""

    def __init__(self, queue: _BatchQueue):
        self.queue = queue
        self.session: KalshiSession | None = None

    def submit(self, batch, conn: str) -> None:
        self.queue.put_batch(self.session, batch, conn)

    def submit_event(self, event: StatusEvent) -> None:
        self.queue.put_event(event)


class KalshiConnector:
    """Kalshi market data as an async iterator of batches (and status events)."""

    def __init__(self, credentials, use_demo: bool = False, url: str | None = None, *,
                 channels: Iterable[str] = DEFAULT_CHANNELS, markets: Iterable[str] = (),
                 orderbook_markets: Iterable[str] = (), max_markets_per_subscription: int = 200,
                 stale_after: float = 15.0, ping_interval: float = 5.0, backoff_initial: float = 0.25,
                 backoff_max: float = 30.0, handshake_timeout: float = 10.0, ca_file: str | None = None,
                 tls_verify: bool = True, max_batches: int = 1024, **session_kw):
        use_demo = use_demo or bool(getattr(credentials, "use_demo", False))  # a KalshiConfig's KALSHI_USE_DEMO
        self.url = url or (DEMO_WS_URL if use_demo else PRODUCTION_WS_URL)
        self.plans = plan_connections(channels, markets, orderbook_markets, max_markets_per_subscription)
        self.queue = _BatchQueue(max_batches)
        creds = _credentials(credentials)
        self.sessions = []
        for plan in self.plans:
            handoff = _Handoff(self.queue)
            handoff.session = KalshiSession(creds, self.url, plan, [handoff], stale_after=stale_after,
                                            ping_interval=ping_interval, backoff_initial=backoff_initial,
                                            backoff_max=backoff_max, handshake_timeout=handshake_timeout,
                                            ca_file=ca_file, tls_verify=tls_verify, **session_kw)
            self.sessions.append(handoff.session)
        self._closed = False

    async def connect(self, timeout: float = 30.0) -> None:
        """Start every session and wait until all are subscribed.

        Raises ``AuthError`` when the exchange rejects the credentials (HTTP 401/403) before any
        session got in, ``TimeoutError`` when not every session is subscribed within ``timeout``.
        The sessions keep retrying in the background until ``close()`` either way.
        """
        for s in self.sessions:
            s.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if all(s.core.subscribed for s in self.sessions):
                return
            rejected = [s for s in self.sessions if s.core.auth_failures and not s.core.connections]
            if rejected:
                status = 403 if "403" in (rejected[0].last_error or "") else 401
                raise AuthError(auth_rejected_message(status))
            if loop.time() >= deadline:
                states = ", ".join(f"shard {s.shard}: {s.last_error or 'connecting'}" for s in self.sessions
                                   if not s.core.subscribed)
                raise TimeoutError(f"not subscribed within {timeout:g}s ({states})")
            await asyncio.sleep(0.02)

    async def messages(self) -> AsyncIterator:
        """Batches (``FrameBatch``, owned by the consumer) and ``StatusEvent``s, in arrival order."""
        q = self.queue
        while True:
            while not q.items:
                if self._closed:
                    return
                q.ready.clear()
                await q.ready.wait()
            yield q.pop()

    async def close(self, timeout: float = 2.0) -> None:
        """Unsubscribe and close every connection; ``messages()`` ends after the queued items."""
        await asyncio.gather(*(s.close(timeout) for s in self.sessions))
        self._closed = True
        self.queue.ready.set()

    async def __aenter__(self) -> KalshiConnector:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def stats(self) -> dict:
        return {"sessions": [s.stats() for s in self.sessions], "queued_batches": self.queue.n_batches,
                "dropped_batches": self.queue.dropped_batches, "dropped_frames": self.queue.dropped_frames}
