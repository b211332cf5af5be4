"""Reading a JetStream stream back with nats-py: an ordered consumer over a subject filter.

``StreamReader`` yields ``StreamMessage(subject, msg_id, seq, data)`` in stream order, from the start
of the stream (``from_start=True``) or from new messages on; ``ssmd-fast tail`` uses it. The ordered
consumer is ephemeral (server-side memory, no acks) and recreates itself after a gap, so a reader
never stalls the stream or leaves state behind.

Reading everything a stream holds at once (the demo, the drills, the tests) is ``stream_read``'s, which
is several times faster; ``tests/integration/test_stream_read.py`` compares the two.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
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


class StreamReader:
    """An ordered push consumer on one stream; use as ``async with`` and iterate ``messages()``."""

    def __init__(self, nc, stream: str | None, subject_filter: str = ">", *, from_start: bool = False):
        self.nc = nc
        self.stream = stream
        self.subject_filter = subject_filter
        self.from_start = from_start
        self.sub = None
        self.received = 0

    async def open(self) -> StreamReader:
        js = self.nc.jetstream()
        policy = api.DeliverPolicy.ALL if self.from_start else api.DeliverPolicy.NEW
        try:
            self.sub = await js.subscribe(self.subject_filter, stream=self.stream, ordered_consumer=True,
                                          deliver_policy=policy, idle_heartbeat=2.0)
        except NotFoundError as exc:
            where = f"stream {self.stream}" if self.stream else f"a stream for {self.subject_filter}"
            raise ReadError(f"{where} not found on the server ({exc.description or 'no stream has it'})")
        return self

    async def pending(self) -> int:
        """Messages matching the filter that the server has not delivered yet."""
        info = await self.sub.consumer_info()
        return info.num_pending or 0

    async def next(self, timeout: float | None) -> StreamMessage | None:
        """The next message, or None after ``timeout`` seconds without one."""
        try:
            msg = await self.sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None
        self.received += 1
        headers = msg.headers or {}
        return StreamMessage(msg.subject, headers.get(MSG_ID_HEADER), msg.metadata.sequence.stream, msg.data)

    async def messages(self, count: int | None = None) -> AsyncIterator[StreamMessage]:
        """Messages as they arrive, until ``count`` of them (None: until the caller stops)."""
        n = 0
        while count is None or n < count:
            m = await self.next(timeout=1.0)
            if m is not None:
                n += 1
                yield m

    async def close(self) -> None:
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:  # the connection may be gone already: nothing left to release
                pass
            self.sub = None

    async def __aenter__(self) -> StreamReader:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
