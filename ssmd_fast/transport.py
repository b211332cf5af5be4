"""The connector's middleware: ``Transport.publish`` / ``subscribe``, built from ``transport.type``.

``create_transport(cfg)`` returns a ``NatsTransport`` (``type: nats``) or a ``NullTransport``
(``type: none``). Publishing goes through the ``JetStreamPublisher`` (acked, spilled when NATS is
away): ``publish_batch(batch, conn)`` for the hot path (one call per socket read), ``publish(subject,
payload)`` for single messages. ``subscribe(subject)`` reads the stream back with nats-py
(``sinks.reader.StreamReader``, an ordered consumer): new messages by default, or from the start.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable

import nats

from ssmd_fast.config import TransportConfig
from ssmd_fast.errors import PublishError
from ssmd_fast.events import StatusEvent
from ssmd_fast.sinks.file import SinkReport
from ssmd_fast.sinks.nats import JetStreamPublisher
from ssmd_fast.sinks.reader import StreamMessage, StreamReader
from ssmd_fast.sinks.stream import nats_py_options

__all__ = ["NatsTransport", "NullTransport", "StreamMessage", "Transport", "create_transport"]


class Transport(ABC):
    """What the runner and the tools use; see the module docstring."""

    name = "transport"

    @abstractmethod
    async def start(self) -> None:
        """Begin connecting in the background; never blocks on the server."""

    @abstractmethod
    async def close(self, timeout: float = 10.0) -> SinkReport: ...

    @abstractmethod
    def publish_batch(self, batch, conn: str) -> None: ...

    @abstractmethod
    def publish(self, subject: str | bytes, payload: bytes, msg_id: str | bytes | None = None) -> None: ...

    @abstractmethod
    def submit_event(self, event: StatusEvent) -> None: ...

    @abstractmethod
    def subscribe(self, subject: str, *, from_start: bool = False) -> AsyncIterator[StreamMessage]: ...

    @abstractmethod
    def stats(self) -> dict: ...

    # the sink interface of docs/design.md, so a Transport can sit in the runner's sink list
    def submit(self, batch, conn: str) -> None:
        self.publish_batch(batch, conn)


class NatsTransport(Transport):
    """JetStream publishing through ``JetStreamPublisher``; reading through nats-py."""

    name = "nats"

    def __init__(self, cfg: TransportConfig, *, spill_dir: str | None = None, feed: str = "kalshi",
                 on_event: Callable[[StatusEvent], None] | None = None, **publisher_kw):
        self.cfg = cfg
        self.feed = feed
        self.publisher = JetStreamPublisher(cfg, spill_dir=spill_dir, feed=feed, on_event=on_event,
                                            **publisher_kw)
        self._instance = secrets.token_hex(6)
        self._n = 0
        self._nc = None
        self._nc_lock = asyncio.Lock()

    @property
    def feed_stop_requested(self) -> bool:
        return self.publisher.feed_stop_requested

    async def start(self) -> None:
        await self.publisher.start()

    async def close(self, timeout: float = 10.0) -> SinkReport:
        report = await self.publisher.close(timeout)
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # the reading connection is best effort at shutdown
                pass
            self._nc = None
        return report

    def publish_batch(self, batch, conn: str) -> None:
        self.publisher.submit(batch, conn)

    def publish(self, subject: str | bytes, payload: bytes, msg_id: str | bytes | None = None) -> None:
        """One message, acked like data. Without ``msg_id`` a unique one is made (``{feed}:pub:...``);
        pass a stable one when the caller may publish the same message again."""
        if msg_id is None:
            self._n += 1
            msg_id = f"{self.feed}:pub:{self._instance}:{self._n}"
        s = subject.encode() if isinstance(subject, str) else bytes(subject)
        m = msg_id.encode() if isinstance(msg_id, str) else bytes(msg_id)
        self.publisher.submit_message(s, m, bytes(payload))

    def submit_event(self, event: StatusEvent) -> None:
        self.publisher.submit_event(event)

    async def _client(self):
        async with self._nc_lock:
            if self._nc is None or self._nc.is_closed:
                opts = nats_py_options(self.publisher.endpoint)
                nc = nats.NATS()
                if self.publisher.endpoint.credentials.kind == "nkey":
                    nc._public_nkey = self.publisher.endpoint.credentials.nkey.public_key  # see stream.py
                try:
                    await asyncio.wait_for(nc.connect(**opts, connect_timeout=self.cfg.connect_timeout,
                                                      max_reconnect_attempts=-1, reconnect_time_wait=0.25),
                                           self.cfg.connect_timeout + 1.0)
                except (TimeoutError, OSError, nats.errors.Error) as exc:
                    raise PublishError(f"cannot reach NATS to subscribe: {type(exc).__name__}: {exc}") from None
                self._nc = nc
            return self._nc

    async def subscribe(self, subject: str, *, from_start: bool = False) -> AsyncIterator[StreamMessage]:
        """Messages of the stream matching ``subject`` (a filter under the prefix), as they are stored."""
        nc = await self._client()
        async with StreamReader(nc, self.cfg.stream, subject, from_start=from_start) as reader:
            async for msg in reader.messages():
                yield msg

    def stats(self) -> dict:
        return self.publisher.stats()


class NullTransport(Transport):
    """``transport.type: none``: nothing leaves the process (the file sink keeps the data)."""

    name = "none"

    def __init__(self):
        self.discarded = 0
        self.feed_stop_requested = False

    async def start(self) -> None:
        return None  # nothing to connect to

    async def close(self, timeout: float = 10.0) -> SinkReport:
        return SinkReport(self.name, detail="transport.type is none: nothing was published",
                          stats=self.stats())

    def publish_batch(self, batch, conn: str) -> None:
        self.discarded += 1

    def publish(self, subject: str | bytes, payload: bytes, msg_id: str | bytes | None = None) -> None:
        self.discarded += 1

    def submit_event(self, event: StatusEvent) -> None:
        self.discarded += 1

    async def subscribe(self, subject: str, *, from_start: bool = False) -> AsyncIterator[StreamMessage]:
        raise PublishError("transport.type is none: there is no stream to subscribe to")
        yield  # pragma: no cover - makes this an async generator like the others

    def stats(self) -> dict:
        return {"type": "none", "discarded_calls": self.discarded}


def create_transport(cfg: TransportConfig, **kw) -> Transport:
    """The transport for ``cfg.type`` (``nats`` or ``none``)."""
    if cfg.type == "nats":
        return NatsTransport(cfg, **kw)
    if cfg.type == "none":
        return NullTransport()
    raise PublishError(f"unknown transport.type {cfg.type!r} (expected nats or none)")
