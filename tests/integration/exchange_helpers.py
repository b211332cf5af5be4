"""Helpers for the local exchange's tests: an in-process exchange, a picows client that collects
frames, a raw HTTP handshake, and the control port. Every wait is bounded in time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from picows import WSListener, WSMsgType, ws_connect

from ssmd_fast.kalshi.auth import KalshiCredentials, sign_message
from ssmd_fast.kalshi.exchange import Exchange
from ssmd_fast.kalshi.exchange_feed import GeneratedFeed


class Collector(WSListener):
    """Keeps every frame the exchange sends: text payloads in order, binary ones, pings, the close."""

    def __init__(self, answer_pings: bool = True):
        self.texts: list[bytes] = []
        self.binary: list[bytes] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.disconnected = asyncio.Event()
        self.answer_pings = answer_pings
        self.transport = None

    def on_ws_connected(self, transport):
        self.transport = transport

    def on_ws_frame(self, transport, frame):
        mt = frame.msg_type
        if mt == WSMsgType.TEXT:
            self.texts.append(frame.get_payload_as_bytes())
        elif mt == WSMsgType.BINARY:
            self.binary.append(frame.get_payload_as_bytes())
        elif mt == WSMsgType.PING:
            self.pings.append(frame.get_payload_as_bytes())
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
        elif mt == WSMsgType.PONG:
            self.pongs.append(frame.get_payload_as_bytes())
        elif mt == WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
            transport.disconnect()

    def on_ws_disconnected(self, transport):
        self.disconnected.set()

    # -- parsed views
    def parsed(self) -> list[dict]:
        out = []
        for t in self.texts:
            try:
                out.append(json.loads(t))
            except ValueError:
                out.append({"type": "<invalid>", "raw": t})
        return out

    def of_type(self, *types: str) -> list[dict]:
        return [o for o in self.parsed() if isinstance(o, dict) and o.get("type") in types]

    def send(self, cmd: dict) -> None:
        self.transport.send(WSMsgType.TEXT, json.dumps(cmd).encode())


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


async def connect(ex: Exchange, creds: KalshiCredentials, *, answer_pings: bool = True,
                  max_frame_size: int = 4 << 20) -> Collector:
    _, client = await ws_connect(lambda: Collector(answer_pings), ex.url, extra_headers=creds.websocket_headers(),
                                 enable_auto_pong=False, max_frame_size=max_frame_size)
    return client


async def handshake(port: int, headers: dict[str, str], path: str = "/trade-api/ws/v2") -> tuple[int, bytes]:
    """A raw HTTP upgrade request; returns (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def signed_headers(creds: KalshiCredentials, ts_ms: int | None = None) -> dict[str, str]:
    if ts_ms is None:
        return creds.websocket_headers()
    return {"KALSHI-ACCESS-KEY": creds.api_key, "KALSHI-ACCESS-TIMESTAMP": str(ts_ms),
            "KALSHI-ACCESS-SIGNATURE": sign_message(creds._key, f"{ts_ms}GET/trade-api/ws/v2")}


async def control(port: int, *lines: str) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for line in lines:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        out.append((await asyncio.wait_for(reader.readline(), 5)).decode().rstrip("\n"))
    writer.close()
    return out


def make_exchange(public_pem: bytes, n: int = 20000, *, markets: int = 6, era: str = "both", seed: int = 1,
                  **kw) -> Exchange:
    return Exchange(GeneratedFeed(n, seed=seed, markets=markets, era=era, pregenerate=n), public_pem,
                    port=0, **kw)


def _units(s, scale: int) -> int:
    from decimal import Decimal

    q = Decimal(s) * scale
    assert q == q.to_integral_value(), s
    return int(q)


class StreamChecker:
    """Seq per sid (contiguous from 1), snapshot before delta, books never negative; keeps the books."""

    def __init__(self):
        self.last: dict[int, int] = {}
        self.books: dict[tuple[int, str], tuple[dict, dict]] = {}
        self.gaps: list[tuple[int, int, int]] = []
        self.duplicates: list[tuple[int, int]] = []

    def feed(self, o: dict) -> None:
        typ, sid, seq, msg = o.get("type"), o.get("sid"), o.get("seq"), o.get("msg")
        if typ not in ("orderbook_snapshot", "orderbook_delta", "trade", "market_lifecycle_v2", "event_lifecycle"):
            return
        last = self.last.get(sid, 0)
        if seq <= last:
            self.duplicates.append((sid, seq))
            return
        if seq != last + 1:
            self.gaps.append((sid, last, seq))
        self.last[sid] = seq
        if typ == "orderbook_snapshot":
            yes = {_units(p, 10000): _units(q, 100) for p, q in msg.get("yes_dollars_fp", [])} or \
                {p * 100: q * 100 for p, q in msg.get("yes", [])}
            no = {_units(p, 10000): _units(q, 100) for p, q in msg.get("no_dollars_fp", [])} or \
                {p * 100: q * 100 for p, q in msg.get("no", [])}
            self.books[(sid, msg["market_ticker"])] = (yes, no)
        elif typ == "orderbook_delta":
            key = (sid, msg["market_ticker"])
            assert key in self.books, f"delta before snapshot {key}"
            lv = self.books[key][0 if msg["side"] == "yes" else 1]
            p = _units(msg["price_dollars"], 10000)
            q = lv.get(p, 0) + (_units(msg["delta_fp"], 100) if "delta_fp" in msg else msg["delta"] * 100)
            if not self.gaps:
                assert q >= 0, f"negative level {key} {p}"
            if q > 0:
                lv[p] = q
            else:
                lv.pop(p, None)


def frame_bytes(payload: bytes) -> bytes:
    """A masked client text frame (zero mask, so the payload stays readable)."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


async def raw_client(port: int, headers: dict[str, str], *cmds: dict):
    """A bare socket client: handshake, send commands; returns the stream reader for byte counting."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET /trade-api/ws/v2 HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    for cmd in cmds:
        writer.write(frame_bytes(json.dumps(cmd).encode()))
    await writer.drain()
    return reader, writer


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[str, int]:
    """Read until the server ends the connection: ("eof" | "reset", bytes read)."""
    total = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = await asyncio.wait_for(reader.read(1 << 20), max(0.01, deadline - time.monotonic()))
        except ConnectionResetError:
            return "reset", total
        if not data:
            return "eof", total
        total += len(data)
