"""Reading a JetStream stream back with nats-py: an ordered consumer over a subject filter.

``StreamReader`` yields ``StreamMessage(subject, msg_id, seq, data)`` in stream order, from the start
of the stream (``from_start=True``) or from new messages on; ``ssmd-fast tail`` uses it. Its consumer is
ephemeral (server-side memory, no acks, flow control, idle heartbeats), so a reader never stalls the
stream or leaves state behind, and it is replaced whenever it is lost:

* a gap in the consumer sequence (a message dropped on the client): a new consumer from the stream
  sequence after the last one delivered, as any ordered consumer does;
* no heartbeat for ``MISSED_HEARTBEATS`` intervals (the consumer is gone: the server restarted, or the
  stream was deleted): the stream is looked up. The same stream (same creation time, its last sequence
  not behind what was read): a new consumer from the next sequence. A stream created again under the
  name (deleted then re-created, e.g. by the connector's ``provision: create``; its sequences start
  at 1 again): a new consumer from its first message, so nothing of it is skipped and nothing of the
  old one is repeated. No stream: a notice, and a look every ``RETRY_INTERVAL`` until it returns.

nats-py's own ordered consumer (``js.subscribe(ordered_consumer=True)``) cannot be used for this: after
two missed heartbeats it re-creates its consumer from (last stream sequence seen + 1) without looking at
the stream, so on a re-created stream it silently skipped messages 1..N and waited for N+1, and while the
stream was missing it retried every few seconds saying nothing (its failures go to the error callback).
Every notice (stream gone, back, re-created) goes to ``on_notice``, or to the log as a warning.

Reading everything a stream holds at once (the demo, the drills, the tests) is ``stream_read``'s, which
is several times faster; ``tests/integration/test_stream_read.py`` compares the two.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import NamedTuple

import nats
from nats.js import api
from nats.js.errors import NotFoundError

from ssmd_fast.config import TransportConfig
from ssmd_fast.errors import ConfigError, SsmdError

MSG_ID_HEADER = "Nats-Msg-Id"
log = logging.getLogger(__name__)


class StreamMessage(NamedTuple):
    subject: str
    msg_id: str | None
    seq: int           # the stream sequence
    data: bytes


class ReadError(SsmdError):
    """The stream cannot be read (unknown stream, server away past the timeout)."""


def connect_options(transport: TransportConfig, environ: Mapping[str, str] | None = None) -> dict:
    """nats-py ``connect()`` keyword arguments from a transport section (servers, auth, TLS)."""
    env = os.environ if environ is None else environ
    opts: dict = {"servers": list(transport.url)}
    auth = transport.auth

    def secret(name: str, what: str) -> str:
        value = env.get(name)
        if not value:
            raise ConfigError(f"environment variable {name} ({what}) is not set", key=f"transport.auth.{what}")
        return value

    if auth.token_env:
        opts["token"] = secret(auth.token_env, "token_env")
    if auth.user:
        opts["user"] = auth.user
        if auth.password_env:
            opts["password"] = secret(auth.password_env, "password_env")
    if auth.nkey_seed_file:
        opts["nkeys_seed"] = auth.nkey_seed_file
    if auth.creds_file:
        opts["user_credentials"] = auth.creds_file
    tls = transport.tls
    if tls.ca_file or tls.cert_file or any(u.startswith("tls://") for u in transport.url):
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        opts["tls"] = ctx
    return opts


async def quiet_error_cb(exc: Exception) -> None:
    """nats-py prints every connection error with a traceback by default: log it instead."""
    log.debug("nats: %r", exc)


async def _ignore(*_a) -> None:
    return None


def client_callbacks() -> dict:
    return {"error_cb": quiet_error_cb, "disconnected_cb": _ignore, "reconnected_cb": _ignore}


HEARTBEAT = 1.0             # seconds between the server's idle heartbeats
MISSED_HEARTBEATS = 3       # that many intervals without anything from the consumer: it is gone
RETRY_INTERVAL = 1.0        # seconds between looks at the stream while it or the connection is away
API_TIMEOUT = 3.0           # seconds for one JetStream API call: a lookup must not hold next() long


class StreamReader:
    """An ordered push consumer on one stream; use as ``async with`` and iterate ``messages()``."""

    def __init__(self, nc, stream: str | None, subject_filter: str = ">", *, from_start: bool = False,
                 heartbeat: float = HEARTBEAT, on_notice: Callable[[str], None] | None = None):
        self.nc = nc
        self.js = nc.jetstream(timeout=API_TIMEOUT)
        self.stream = stream
        self.subject_filter = subject_filter
        self.from_start = from_start
        self.heartbeat = heartbeat
        self.on_notice = on_notice
        self.sub = None             # the subscription on the current consumer's deliver subject
        self.consumer: str | None = None
        self.received = 0
        self._created = None        # the stream's creation time: another one means another stream
        self._last_sseq = 0         # the last stream sequence delivered (or skipped over by the policy)
        self._next_dseq = 1         # the consumer sequence expected next: any other is a gap
        self._heard = 0.0           # monotonic time of the last thing the consumer sent
        self._next_look = 0.0       # while the consumer is gone: when to look at the stream again
        self._away: str | None = None   # why the consumer is gone, once a notice said so
        self._deleted = False       # the stream was seen missing since the consumer was lost

    def notice(self, text: str) -> None:
        if self.on_notice is not None:
            self.on_notice(text)
        else:
            log.warning("%s", text)

    async def open(self) -> StreamReader:
        where = f"stream {self.stream}" if self.stream else f"a stream for {self.subject_filter}"
        try:
            if self.stream is None:
                self.stream = await self.js.find_stream_name_by_subject(self.subject_filter)
            info = await self.js.stream_info(self.stream)
            self._created = info.created
            await self._subscribe(api.DeliverPolicy.ALL if self.from_start else api.DeliverPolicy.NEW)
        except NotFoundError as exc:
            raise ReadError(f"{where} not found on the server ({exc.description or 'no stream has it'})")
        return self

    async def _subscribe(self, policy: api.DeliverPolicy, start_seq: int | None = None) -> None:
        """A new consumer on a new deliver subject: what is still queued for the old one is dropped with
        its subscription, so nothing from before the restart point can arrive after it."""
        await self._unsubscribe()
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)    # before the consumer exists: its first messages must land
        config = api.ConsumerConfig(
            deliver_subject=inbox, filter_subject=self.subject_filter, deliver_policy=policy,
            opt_start_seq=start_seq, ack_policy=api.AckPolicy.NONE, max_deliver=1, flow_control=True,
            idle_heartbeat=self.heartbeat, mem_storage=True, num_replicas=1)
        try:
            info = await self.js.add_consumer(self.stream, config)
        except BaseException:
            await _quietly(sub.unsubscribe())
            raise
        self.sub, self.consumer = sub, info.name
        self._next_dseq = 1
        # where the consumer starts, as the server placed it (NEW: the stream's last sequence; a start
        # below the stream's first message: just before that message)
        self._last_sseq = info.delivered.stream_seq or 0
        self._heard = time.monotonic()

    async def _unsubscribe(self) -> None:
        if self.sub is not None:
            sub, self.sub = self.sub, None
            await _quietly(sub.unsubscribe())

    async def consumer_info(self) -> api.ConsumerInfo:
        """The current consumer's info (its name changes each time it is replaced)."""
        if self.consumer is None:
            raise ReadError(f"stream {self.stream}: no consumer at the moment ({self._away or 'closed'})")
        return await self.js.consumer_info(self.stream, self.consumer)

    async def pending(self) -> int:
        """Messages matching the filter that the server has not delivered yet."""
        info = await self.consumer_info()
        return info.num_pending or 0

    async def next(self, timeout: float | None) -> StreamMessage | None:
        """The next message, or None after ``timeout`` seconds without one. Replacing a lost consumer
        happens in here, between waits, so a caller that keeps calling keeps reading."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                return None
            if self.sub is None:
                if now >= self._next_look:
                    await self._recover()
                    continue
                await asyncio.sleep(min(self._next_look - now, left if left is not None else RETRY_INTERVAL))
                continue
            lost_at = self._heard + self.heartbeat * MISSED_HEARTBEATS
            wait = max(0.001, lost_at - now if left is None else min(left, lost_at - now))
            try:
                msg = await self.sub.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                # the queue is empty and nothing came since the last message taken from it (which came
                # no later than it was taken): that long without a heartbeat, the consumer is gone
                if time.monotonic() >= lost_at:
                    await self._lost()
                continue
            self._heard = time.monotonic()
            m = await self._take(msg)
            if m is not None:
                return m

    async def _take(self, msg) -> StreamMessage | None:
        """A data message as a StreamMessage; control messages answered here (None)."""
        headers = msg.headers or {}
        status = headers.get(api.Header.STATUS) if not msg.data else None
        if status == "100":
            if msg.reply:                       # a flow-control request: everything before it is taken
                await self.nc.publish(msg.reply, b"")
                return None
            stalled = headers.get(api.Header.CONSUMER_STALLED)
            if stalled:                         # a heartbeat while the consumer waits for that answer
                await self.nc.publish(stalled, b"")
            last = headers.get(api.Header.LAST_CONSUMER)
            if last is not None and int(last) != self._next_dseq - 1:
                # the server sent messages that never reached this queue (dropped as a slow consumer)
                await self._resume(f"missed messages after consumer sequence {self._next_dseq - 1}")
            return None
        if status is not None:                  # another status (409 ...): this consumer is of no more use
            log.debug("stream %s: consumer %s: status %s %s", self.stream, self.consumer, status,
                      headers.get(api.Header.DESCRIPTION, ""))
            await self._lost()
            return None
        seq = msg.metadata.sequence
        if seq.consumer != self._next_dseq:
            await self._resume(f"consumer sequence {seq.consumer}, {self._next_dseq} expected")
            return None
        self._next_dseq += 1
        self._last_sseq = seq.stream
        self.received += 1
        return StreamMessage(msg.subject, headers.get(MSG_ID_HEADER), seq.stream, msg.data)

    async def _resume(self, why: str) -> None:
        """A gap on a consumer that is still there: a new one from the sequence after the last delivered."""
        log.debug("stream %s: %s: a new consumer from sequence %d", self.stream, why, self._last_sseq + 1)
        try:
            await self._subscribe(api.DeliverPolicy.BY_START_SEQUENCE, self._last_sseq + 1)
        except Exception as exc:    # noqa: BLE001 (the server is away: looked at again until it answers)
            await self._unsubscribe()
            self._went_away(f"cannot create a consumer on stream {self.stream} ({_what(exc)})")

    async def _lost(self) -> None:
        await self._unsubscribe()
        self._deleted = False
        await self._recover()

    def _went_away(self, why: str) -> None:
        self._next_look = time.monotonic() + RETRY_INTERVAL
        if self._away != why:               # one notice per cause, not one per look
            self._away = why
            self.notice(f"{why}: waiting for it")

    async def _recover(self) -> None:
        """The consumer is gone: look at the stream and read on from where this stream's reading is."""
        if not self.nc.is_connected:        # nats-py reconnects by itself: nothing to ask until then
            self._went_away("the connection to NATS is down")
            return
        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            self._deleted = True
            self._went_away(f"stream {self.stream} is gone (deleted)")
            return
        except Exception as exc:            # noqa: BLE001 (a timeout, a reconnect: looked at again)
            self._went_away(f"cannot look up stream {self.stream} ({_what(exc)})")
            return
        last = info.state.last_seq or 0
        recreated = info.created is not None and self._created is not None and info.created != self._created
        again = self._deleted or last < self._last_sseq or recreated
        try:
            if again:
                await self._subscribe(api.DeliverPolicy.ALL)
            else:
                await self._subscribe(api.DeliverPolicy.BY_START_SEQUENCE, self._last_sseq + 1)
        except Exception as exc:            # noqa: BLE001 (gone again, or the filter no longer in it)
            self._went_away(f"cannot create a consumer on stream {self.stream} ({_what(exc)})")
            return
        self._created, self._deleted = info.created, False
        if again:
            self.notice(f"stream {self.stream} was created again: reading restarts at its first message")
        elif self._away is not None:
            self.notice(f"stream {self.stream} is back: reading resumes at sequence {self._last_sseq + 1}")
        self._away = None

    async def messages(self, count: int | None = None) -> AsyncIterator[StreamMessage]:
        """Messages as they arrive, until ``count`` of them (None: until the caller stops)."""
        n = 0
        while count is None or n < count:
            m = await self.next(timeout=1.0)
            if m is not None:
                n += 1
                yield m

    async def close(self) -> None:
        await self._unsubscribe()
        self.consumer = None

    async def __aenter__(self) -> StreamReader:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _quietly(aw) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 (the connection may be gone already: nothing left to release)
        pass


def _what(exc: BaseException) -> str:
    return getattr(exc, "description", None) or str(exc) or type(exc).__name__
