"""The local Kalshi exchange: a picows WebSocket server speaking Kalshi's market-data protocol on
``/trade-api/ws/v2`` (RSA-PSS handshake auth, subscribe/unsubscribe/update_subscription/
list_subscriptions, per-sid seq, heartbeat pings), serving a generated or replayed session from one
global timeline, with faults on demand (by spec, in-process, or over a line-based control port).

    ex = Exchange(GeneratedFeed(100_000), public_pem, port=0, rate=0)
    await ex.start()            # ex.url -> ws://127.0.0.1:PORT/trade-api/ws/v2
    ex.set_faults("gap-every=50"); ex.stats(); await ex.close()

Connections live in ``exchange_conn.py``, the timeline in ``exchange_feed.py``, faults in
``exchange_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from picows import WSCloseCode, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

from ssmd_fast.kalshi.auth import WS_SIGN_PATH, verify_signature
from ssmd_fast.kalshi.exchange_conn import Connection
from ssmd_fast.kalshi.exchange_faults import ONCE, FaultCounters, FaultSpec
from ssmd_fast.kalshi.exchange_feed import CHUNK, Feed

log = logging.getLogger("ssmd_fast.exchange")

WS_PATH = WS_SIGN_PATH.encode()
AUTH_HEADERS = ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE")
CONTROL_HELP = ("commands: faults SPEC | clear | stats | resume | accept on|off | drop | help")


class Exchange:
    """The server. ``rate`` = timeline events per second (0 = as fast as each connection reads)."""

    def __init__(self, feed: Feed, public_key_pem: bytes, *, host: str = "127.0.0.1", port: int = 0,
                 rate: float = 0.0, ping_interval: float = 10.0, max_markets: int = 256,
                 faults: str | FaultSpec = "", record: str | Path | None = None,
                 control: tuple[str, int] | None = None, max_skew: float = 30.0, batch: int = CHUNK):
        serialization.load_pem_public_key(public_key_pem)      # fail now, not at the first handshake
        for bad, what in ((rate < 0, f"rate must be >= 0 (0 = as fast as each connection reads), got {rate}"),
                          (ping_interval <= 0, f"ping_interval must be > 0, got {ping_interval}"),
                          (max_markets < 1, f"max_markets must be >= 1, got {max_markets}"),
                          (batch < 1, f"batch must be >= 1, got {batch}")):
            if bad:
                raise ValueError(what)
        self.feed = feed
        self.public_key_pem = public_key_pem
        self.host, self.port = host, port
        self.rate = float(rate)
        self.ping_interval = ping_interval
        self.max_markets = max_markets
        self.max_skew_ms = max_skew * 1000.0
        self.batch = batch
        self.faults = faults if isinstance(faults, FaultSpec) else FaultSpec.parse(faults)
        self._reject = self.faults.reject_handshake
        self.record_path = Path(record) if record else None
        self._record = None
        self.control_addr = control
        self.control_port: int | None = None
        self.conns: dict[int, Connection] = {}
        self.conn_total = 0
        self.handshakes: Counter = Counter()
        self.sent: Counter = Counter()
        self.injected: Counter = Counter({k: 0 for k in ("gap", "duplicate", "malformed", "binary", *ONCE)})
        self.bytes_sent = 0
        self.high = 0                       # furthest timeline position any connection reached
        self.t0: float | None = None        # start of the timeline (first subscription), for --rate
        self.accepting = False
        self.ssl_context: ssl.SSLContext | None = None   # set before start(): wss:// (tests of the session's TLS)
        self._server = None
        self._control = None
        self._pinger: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{WS_SIGN_PATH}"

    async def start(self) -> None:
        """Open the record file, listen, open the control port. Raises OSError, with what it opened closed."""
        try:
            if self.record_path is not None:
                self._record = open(self.record_path, "wb")  # noqa: SIM115 (open for the server's life)
            await self._listen()
            if self.control_addr is not None:
                self._control = await asyncio.start_server(self._control_client, *self.control_addr)
                self.control_port = self._control.sockets[0].getsockname()[1]
        except BaseException:
            await self.close()
            raise
        self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())

    async def _listen(self) -> None:
        self._server = await ws_create_server(self._on_request, self.host, self.port, ssl=self.ssl_context,
                                              enable_auto_pong=False, websocket_handshake_timeout=5,
                                              max_frame_size=1 << 20, logger_name="exchange",
                                              use_aiofastnet=False)    # as the session: docs/design.md, "fd reuse"
        self.port = self._server.sockets[0].getsockname()[1]
        self.accepting = True

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for server in (self._control, self._server):
            if server is not None:
                server.close()
        self.accepting = False
        for conn in list(self.conns.values()):
            if conn.transport is not None and not conn.closed:
                conn.transport.send_close(WSCloseCode.GOING_AWAY, b"exchange shutting down")
                conn.transport.disconnect()
            if conn.pump_task is not None:
                conn.pump_task.cancel()
        await asyncio.sleep(0.05)      # let the close frames and the disconnects go out
        if self._record is not None:
            self._record.close()
            self._record = None

    # ------------------------------------------------------------------ handshake

    def _on_request(self, request):
        if request.path.split(b"?", 1)[0] != WS_PATH:
            self.handshakes["404"] += 1
            return None
        if self._reject > 0:
            self._reject -= 1
            self.handshakes["403"] += 1
            return self._refuse(403, "forbidden (reject-handshake fault)")
        why = self._auth_failure(request.headers)
        if why is not None:
            self.handshakes["401"] += 1
            return self._refuse(401, why)
        self.handshakes["101"] += 1
        self.conn_total += 1
        return Connection(self, self.conn_total)

    @staticmethod
    def _refuse(status: int, why: str) -> WSUpgradeResponseWithListener:
        body = f"{status} {why}\n".encode()
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_error_response(status, body, {"Content-Type": "text/plain"}), None)

    def _auth_failure(self, headers) -> str | None:
        values = [headers.get(h) for h in AUTH_HEADERS]
        for name, value in zip(AUTH_HEADERS, values, strict=True):
            if not value:
                return f"unauthorized: missing {name} header"
        _, ts, signature = values
        try:
            ts_ms = int(ts)
        except ValueError:
            return "unauthorized: KALSHI-ACCESS-TIMESTAMP is not an integer (milliseconds)"
        if abs(time.time() * 1000.0 - ts_ms) > self.max_skew_ms:
            return "unauthorized: KALSHI-ACCESS-TIMESTAMP is more than 30 s off"
        if not verify_signature(self.public_key_pem, f"{ts}GET{WS_SIGN_PATH}", signature):
            return "unauthorized: invalid signature"
        return None

    def _attach(self, conn: Connection) -> None:
        self.conns[conn.id] = conn
        log.info("connection %d open", conn.id)

    def _detach(self, conn: Connection) -> None:
        if self.conns.pop(conn.id, None) is not None:
            log.info("connection %d closed after %d frames", conn.id, conn.frames)
        if conn.pump_task is not None and conn.pump_task is not asyncio.current_task():
            conn.pump_task.cancel()

    # ------------------------------------------------------------------ the timeline

    def position(self) -> int:
        """Where a connection's first subscription joins the global timeline."""
        if self.rate:
            if self.t0 is None:
                self.t0 = time.monotonic()
            return self.released()
        return self.high

    def released(self) -> int:
        if not self.rate:
            return self.feed.total
        if self.t0 is None:
            return 0
        return min(self.feed.total, int((time.monotonic() - self.t0) * self.rate))

    def delay_until(self, pos: int) -> float:
        return max(0.001, self.t0 + pos / self.rate - time.monotonic())

    def advanced(self, conn: Connection, before: int) -> None:
        """``conn`` moved its cursor from ``before``: drop the chunks every connection has passed."""
        if conn.cursor > self.high:
            self.high = conn.cursor
        if conn.cursor // CHUNK != before // CHUNK:
            cursors = [c.cursor for c in self.conns.values() if c.cursor is not None and not c.closed]
            self.feed.trim(min(cursors + [self.high]))

    def count(self, typ: str, n: int) -> None:
        self.sent[typ] += n

    @property
    def recording(self) -> bool:
        return self._record is not None

    def record(self, payloads: list[bytes]) -> None:
        if self._record is not None and payloads:
            self._record.write(b"\n".join(payloads))
            self._record.write(b"\n")

    def record_raw(self, lines: bytes) -> None:
        """Payloads already followed by newlines."""
        if self._record is not None:
            self._record.write(lines)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            for conn in list(self.conns.values()):
                if not conn.frozen and not conn.closed and conn.transport is not None:
                    conn.transport.send_ping(b"heartbeat")

    # ------------------------------------------------------------------ run-time control

    def set_faults(self, spec: str | FaultSpec) -> FaultSpec:
        """Replace the active faults; every connection counts from now. Raises ValueError."""
        self.faults = spec if isinstance(spec, FaultSpec) else FaultSpec.parse(spec)
        self._reject = self.faults.reject_handshake
        for conn in self.conns.values():
            conn.faults = FaultCounters()
            conn.update_mode()
        log.info("faults: %s", self.faults or "none")
        return self.faults

    def clear_faults(self) -> None:
        self.set_faults(FaultSpec())

    def resume(self) -> int:
        """Unfreeze every frozen connection; returns how many were frozen."""
        frozen = [c for c in self.conns.values() if c.frozen]
        for conn in frozen:
            conn.resume()
        return len(frozen)

    async def set_accepting(self, on: bool) -> None:
        """``off`` closes the listening socket (new connections are refused); ``on`` listens again."""
        if on and not self.accepting:
            await self._listen()
        elif not on and self.accepting:
            self._server.close()
            self.accepting = False

    def drop_all(self) -> int:
        conns = list(self.conns.values())
        for conn in conns:
            conn.abort()
        return len(conns)

    def stats(self) -> dict:
        return {
            "url": self.url, "accepting": self.accepting, "feed": self.feed.kind, "events": self.feed.total,
            "position": self.released() if self.rate else self.high, "rate": self.rate,
            "connections": len(self.conns), "connections_total": self.conn_total,
            "handshakes": dict(self.handshakes), "frames": dict(self.sent),
            "frames_total": sum(self.sent.values()), "bytes": self.bytes_sent,
            "faults": str(self.faults), "injected": dict(self.injected),
            "frozen": sum(1 for c in self.conns.values() if c.frozen),
            "conns": [c.describe() for c in self.conns.values()],
        }

    async def control_command(self, line: str) -> str:
        """One control-port line -> its one-line answer."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        try:
            if cmd == "faults":
                return f"ok faults {self.set_faults(arg) or 'none'}"
            if cmd == "clear":
                self.clear_faults()
                return "ok"
            if cmd == "stats":
                return json.dumps(self.stats(), separators=(",", ":"))
            if cmd == "resume":
                return f"ok resumed {self.resume()}"
            if cmd == "accept" and arg in ("on", "off"):
                await self.set_accepting(arg == "on")
                return f"ok accept {arg}"
            if cmd == "drop":
                return f"ok dropped {self.drop_all()}"
            if cmd in ("help", ""):
                return CONTROL_HELP
        except (ValueError, OSError) as e:
            return f"error: {e}"
        return f"error: unknown command {line.strip()!r}; {CONTROL_HELP}"

    async def _control_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                answer = await self.control_command(line.decode("utf-8", "replace"))
                writer.write(answer.encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
