"""The publisher's own NATS data connection: one asyncio protocol per TCP (or TLS) connection.

Handshake per the NATS client protocol: read ``INFO``, upgrade to TLS when the URL says ``tls://`` or
the server requires it, send ``CONNECT`` (``headers``, ``no_responders``, ``verbose: false``,
``pedantic: false``, the configured credentials) and ``PING``, wait for ``PONG`` (or ``-ERR``), then
``SUB {inbox}.* 1``. After that every byte read goes to the ack parser (``framing.AckParser``) and the
connection only writes whole buffers handed to it. Keepalive: a ``PING`` every ``ping_interval``; a
connection with ``max_outstanding_pings`` unanswered is closed as stale.

Credentials come from the environment and files named in the config, never from the URL, and are never
logged: ``Credentials`` shows only which kind is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ssmd_fast import __version__
from ssmd_fast.config import NatsAuthConfig, NatsTlsConfig, Secret, TransportConfig
from ssmd_fast.config_checks import nats_address, split_nats_url
from ssmd_fast.errors import ConfigError, PublishError
from ssmd_fast.sinks.nkeys import NKey, read_creds_file, read_seed_file

log = logging.getLogger(__name__)

WRITE_HIGH_WATER = 1 << 20     # TLS: transport buffer above this: stop taking new frames (pause_writing)
WRITE_LOW_WATER = 256 * 1024   # ... until it drains below this (resume_writing)


class ConnectError(PublishError):
    """One connection attempt failed (refused, timed out, TLS, or the server said -ERR)."""


class AuthFailed(ConnectError):
    """The server refused the credentials (retrying with the same ones will not help soon)."""


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials; ``repr`` names the kind only."""

    kind: str = "none"                 # none | token | user | nkey | creds
    token: Secret | None = None
    user: str | None = None
    password: Secret | None = None
    nkey: NKey | None = None
    jwt: Secret | None = None

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r})"

    @classmethod
    def from_config(cls, auth: NatsAuthConfig, environ=None) -> Credentials:
        env = os.environ if environ is None else environ
        given = [k for k in ("token_env", "user", "nkey_seed_file", "creds_file") if getattr(auth, k)]
        if len(given) > 1:
            raise ConfigError(f"give one NATS auth method, not {' and '.join(given)}", key="transport.auth")
        if auth.token_env:
            value = env.get(auth.token_env, "")
            if not value:
                raise ConfigError(f"environment variable {auth.token_env} (the NATS token) is not set",
                                  key="transport.auth.token_env")
            return cls(kind="token", token=Secret(value))
        if auth.user:
            password = None
            if auth.password_env:
                value = env.get(auth.password_env, "")
                if not value:
                    raise ConfigError(f"environment variable {auth.password_env} (the NATS password) is not set",
                                      key="transport.auth.password_env")
                password = Secret(value)
            return cls(kind="user", user=auth.user, password=password)
        if auth.nkey_seed_file:
            return cls(kind="nkey", nkey=read_seed_file(auth.nkey_seed_file))
        if auth.creds_file:
            jwt, key = read_creds_file(auth.creds_file)
            return cls(kind="creds", jwt=jwt, nkey=key)
        return cls()

    def connect_fields(self, nonce: str | None) -> dict:
        """The auth fields of CONNECT (secret values: build the line, never log it)."""
        if self.kind == "token":
            return {"auth_token": self.token.reveal()}
        if self.kind == "user":
            out = {"user": self.user}
            if self.password is not None:
                out["pass"] = self.password.reveal()
            return out
        if self.kind in ("nkey", "creds"):
            if not nonce:
                raise ConnectError("the server sent no nonce to sign (is nkey/JWT auth enabled on it?)")
            out = {"sig": self.nkey.sign_nonce(nonce)}
            if self.kind == "creds":
                out["jwt"] = self.jwt.reveal()
            else:
                out["nkey"] = self.nkey.public_key
            return out
        return {}


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: server URLs (tried in turn), credentials, TLS, client name."""

    urls: tuple[str, ...]
    credentials: Credentials = Credentials()
    tls: NatsTlsConfig = NatsTlsConfig()
    name: str = "ssmd-fast"

    @classmethod
    def from_config(cls, cfg: TransportConfig, *, name: str = "ssmd-fast", environ=None) -> Endpoint:
        if not cfg.url:
            raise ConfigError("transport.url is empty", key="transport.url")
        return cls(urls=tuple(cfg.url), credentials=Credentials.from_config(cfg.auth, environ),
                   tls=cfg.tls, name=name)

    def address(self, attempt: int) -> tuple[str, int, bool]:
        """(host, port, tls wanted) of the URL for this attempt (round robin)."""
        url = self.urls[attempt % len(self.urls)]
        parts = split_nats_url(url)
        if parts.username or parts.password:
            raise ConfigError("credentials in the NATS URL are not allowed", key="transport.url")
        return nats_address(url)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.tls.ca_file)
        if self.tls.cert_file:
            ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        return ctx


class DataConnection(asyncio.Protocol):
    """One connection. ``on_events(events)`` gets what the ack parser could not settle by itself
    (ack errors, no responders, -ERR, foreign messages); ``on_lost(reason)`` fires once when it ends;
    ``on_writable()`` when the transport buffer drained below its low-water mark."""

    def __init__(self, parser, *, on_events: Callable[[list], None], on_lost: Callable[[str], None],
                 on_writable: Callable[[], None], ping_interval: float = 2.0, max_outstanding_pings: int = 2):
        self.parser = parser
        self.on_events = on_events
        self.on_lost = on_lost
        self.on_writable = on_writable
        self.on_read: Callable[[], None] | None = None  # after each socket read (acks may have landed)
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.transport: asyncio.Transport | None = None
        self.tls = False
        self._fd = -1
        self.server_info: dict = {}
        self.lame_duck = False     # the server said (INFO "ldm") that it is going away
        self.writable = True
        self.closed = False
        self.close_reason = ""
        self.bytes_out = 0
        self.writes = 0
        self.reads = 0
        self._running = False
        self._hs_buf = bytearray()
        self._hs_waiter: asyncio.Future | None = None
        self._outstanding = 0
        self._ping_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if self._running:
            self.reads += 1
            if self.parser.feed(data):
                self._dispatch()
            if self.on_read is not None:
                self.on_read()
            return
        self._hs_buf += data
        if self._hs_waiter is not None and not self._hs_waiter.done() and b"\r\n" in self._hs_buf:
            self._hs_waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed by the server")
        self._finish(reason)
        if self._hs_waiter is not None and not self._hs_waiter.done():
            self._hs_waiter.set_exception(ConnectError(reason))

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self._running and not self.closed:
            self.on_writable()

    # ---------------------------------------------------------------- handshake

    async def _read_line(self, timeout: float) -> bytes:
        deadline = self._loop.time() + timeout
        while True:
            i = self._hs_buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self._hs_buf[:i])
                del self._hs_buf[:i + 2]
                return line
            if self.closed:
                raise ConnectError(self.close_reason or "connection closed during the handshake")
            self._hs_waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(self._hs_waiter, max(0.0, deadline - self._loop.time()))
            except TimeoutError:
                raise ConnectError("the server did not answer the handshake in time") from None

    async def handshake(self, endpoint: Endpoint, host: str, tls_wanted: bool, inbox: bytes,
                        timeout: float) -> None:
        line = await self._read_line(timeout)
        if not line.startswith(b"INFO "):
            raise ConnectError(f"expected INFO from the server, got {line[:40]!r}")
        try:
            self.server_info = json.loads(line[5:])
        except ValueError:
            raise ConnectError("the server's INFO is not JSON") from None
        info = self.server_info
        if not info.get("headers", False):
            raise ConnectError("the server does not support headers (nats-server 2.2+ is needed)")
        if tls_wanted or info.get("tls_required"):
            self.tls = True   # from now on every byte goes through the TLS transport
            self.transport = await asyncio.wait_for(
                self._loop.start_tls(self.transport, self, endpoint.ssl_context(), server_hostname=host), timeout)
        connect = {
            "verbose": False, "pedantic": False, "tls_required": bool(tls_wanted or info.get("tls_required")),
            "lang": "python3-ssmd-fast", "version": __version__, "protocol": 1, "headers": True,
            "no_responders": True, "echo": False, "name": endpoint.name,
        }
        connect.update(endpoint.credentials.connect_fields(info.get("nonce")))
        # the CONNECT line holds secrets: it is written, never logged
        self.transport.write(b"CONNECT " + json.dumps(connect, separators=(",", ":")).encode() + b"\r\nPING\r\n")
        while True:
            line = await self._read_line(timeout)
            if line.startswith(b"PONG"):
                break
            if line.startswith(b"-ERR"):
                text = line[4:].strip().strip(b"'").decode("utf-8", "replace")
                kind = AuthFailed if "authoriz" in text.lower() or "authentic" in text.lower() else ConnectError
                raise kind(f"the server refused the connection: {text}")
            if line.startswith(b"INFO ") or line.startswith(b"+OK") or line.startswith(b"PING"):
                if line.startswith(b"PING"):
                    self.transport.write(b"PONG\r\n")
                continue
            raise ConnectError(f"unexpected reply to CONNECT: {line[:40]!r}")
        self.transport.write(b"SUB %s.* 1\r\n" % inbox)
        # Plain TCP gets direct writes from the publisher's ring: whatever the transport holds (the rest of
        # the one message a full socket stopped in) pauses the sends until it drained, and the ring keeps
        # the later messages unsent instead of copies of them piling up here. TLS gets bytes to encrypt.
        if hasattr(self.transport, "set_write_buffer_limits"):
            if self.tls:
                self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
            else:
                self.transport.set_write_buffer_limits(high=0, low=0)
        self._running = True
        self.parser.reset()
        rest, self._hs_buf = bytes(self._hs_buf), bytearray()
        if rest and self.parser.feed(rest):
            self._dispatch()
        self._ping_handle = self._loop.call_later(self.ping_interval, self._ping)

    # ---------------------------------------------------------------- running

    @property
    def max_payload(self) -> int:
        return int(self.server_info.get("max_payload", 1 << 20))

    @property
    def server_version(self) -> tuple[int, int, int]:
        """The server's version from INFO, (0, 0, 0) when it is not a plain x.y.z."""
        try:
            parts = str(self.server_info.get("version", "")).split("-")[0].split(".")
            return int(parts[0]), int(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            return 0, 0, 0

    def direct_fd(self) -> int:
        """The socket for a write straight from the caller's memory, or -1: only on plain TCP with nothing
        waiting in the transport's buffer (bytes then still leave in order)."""
        if self.tls or self.closed or self.transport.get_write_buffer_size():
            return -1
        return self._fd

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.transport.write(data)
        self.bytes_out += len(data)
        self.writes += 1

    def close(self, reason: str = "closed by the publisher") -> None:
        if self.closed:
            return
        self.close_reason = reason
        if self.transport is not None:
            self.transport.abort()  # unacked data is resent on the next connection anyway
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._running:
            self._running = False
            self.on_lost(reason)

    def _ping(self) -> None:
        if self.closed:
            return
        if self._outstanding >= self.max_outstanding_pings:
            log.warning("NATS data connection stale: %d PINGs unanswered", self._outstanding)
            self.close(f"stale connection: {self._outstanding} PINGs unanswered")
            return
        self._outstanding += 1
        self.transport.write(b"PING\r\n")
        self._ping_handle = self._loop.call_later(self.ping_interval, self._ping)

    def _dispatch(self) -> None:
        events = self.parser.events
        self.parser.events = []
        rest = []
        for ev in events:
            kind = ev[0]
            if kind == "pong":
                self._outstanding = 0
            elif kind == "ping":
                self.write(b"PONG\r\n")
            elif kind == "info":
                try:
                    self.server_info.update(json.loads(ev[1]))
                except ValueError:
                    pass
                if self.server_info.get("ldm") and not self.lame_duck:
                    self.lame_duck = True
                    rest.append(("lame_duck",))   # in order: before the answers that follow it
            else:
                rest.append(ev)
        if rest:
            self.on_events(rest)


async def connect(endpoint: Endpoint, attempt: int, parser, inbox: bytes, *, timeout: float,
                  on_events: Callable[[list], None], on_lost: Callable[[str], None],
                  on_writable: Callable[[], None], ping_interval: float = 2.0,
                  max_outstanding_pings: int = 2) -> DataConnection:
    """One connection attempt to the URL picked by ``attempt``; ConnectError when it fails."""
    host, port, tls_wanted = endpoint.address(attempt)
    loop = asyncio.get_running_loop()
    conn = DataConnection(parser, on_events=on_events, on_lost=on_lost, on_writable=on_writable,
                          ping_interval=ping_interval, max_outstanding_pings=max_outstanding_pings)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    try:
        await conn.handshake(endpoint, host, tls_wanted, inbox, timeout)
    except (TimeoutError, ssl.SSLError, OSError) as exc:
        conn.close("handshake failed")
        raise ConnectError(f"{host}:{port}: handshake failed: {exc}") from None
    except BaseException:
        conn.close("handshake failed")
        raise
    log.debug("NATS data connection to %s:%d up (server %s, auth %s)", host, port,
              conn.server_info.get("version"), endpoint.credentials.kind)
    return conn
