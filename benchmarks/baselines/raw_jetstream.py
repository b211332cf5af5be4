"""Raw pipelined JetStream publishing with acks: nats-server's own ceiling on this machine.

It only replays pre-built ``HPUB`` frames (reply subject ``{inbox}.{n}``, ``Nats-Msg-Id`` header) over
one socket, keeps at most ``window`` messages unacked, and counts acks by counting ``MSG`` lines: no
framing, no ack bookkeeping, no retries. Whatever a real publisher adds shows as the gap to this one.
Reused by the end-to-end benchmark (``run_raw(url, frames, window)``): the per-message-ack ceiling (c).
``run_raw_fast`` does the same with the messages in one JetStream fast-ingest batch (one flow ack per
``flow`` messages): the ceiling of the connector's default path.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

__all__ = ["build_fast_frames", "build_frames", "run_raw", "run_raw_fast"]


def build_frames(messages, inbox: bytes) -> list[bytes]:
    """One HPUB frame per (subject, msg_id, payload), reply ``{inbox}.{n}`` (n from 1)."""
    out = []
    for n, (subject, msg_id, payload) in enumerate(messages, 1):
        hdr = b"NATS/1.0\r\nNats-Msg-Id: " + msg_id + b"\r\n\r\n"
        out.append(b"HPUB %s %s.%d %d %d\r\n%s%s\r\n" % (subject, inbox, n, len(hdr), len(hdr) + len(payload),
                                                        hdr, payload))
    return out


class _Raw(asyncio.Protocol):
    def __init__(self, chunks: list[bytes], sizes: list[int], window: int, done: asyncio.Future):
        self.chunks, self.sizes, self.window, self.done = chunks, sizes, window, done
        self.total = sum(sizes)
        self.next = 0          # next chunk to write
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.tail = b""
        self.transport = None
        self.ready: asyncio.Future | None = None
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport

    def _handshaking(self, data: bytes) -> bool:
        """Until the PONG that ends the handshake, bytes only go to its buffer."""
        if self.ready is None or self.ready.done():
            return False
        self.buf += data
        if b"PONG\r\n" in self.buf:
            self.ready.set_result(None)
        return True

    def data_received(self, data: bytes) -> None:
        if self._handshaking(data):
            return
        # 3 carried bytes cannot hold a whole "MSG ", so a split one is counted exactly once
        self.acked += (self.tail + data).count(b"MSG ")
        self.errors += data.count(b'"error"')
        self.tail = data[-3:]
        if self.acked >= self.total and not self.done.done():
            self.done.set_result(None)
            return
        self.pump()

    def pump(self) -> None:
        while self.next < len(self.chunks) and self.sent - self.acked + self.sizes[self.next] <= self.window:
            self.transport.write(self.chunks[self.next])
            self.sent += self.sizes[self.next]
            self.next += 1

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


async def run_raw(host: str, port: int, frames: list[bytes], inbox: bytes, *, window: int = 4096,
                  chunk: int = 256) -> dict:
    """Publish every frame, wait for every ack; wall time and this process's CPU time."""
    proto = _Raw(*_chunked(frames, chunk), max(window, chunk), asyncio.get_running_loop().create_future())
    wall, cpu = await _timed(proto, host, port, b"SUB %s.* 1\r\n" % inbox)
    return {"messages": len(frames), "wall_s": wall, "cpu_s": cpu, "errors": proto.errors}


def _chunked(frames: list[bytes], chunk: int) -> tuple[list[bytes], list[int]]:
    """The frames joined ``chunk`` at a time, and how many frames each piece holds."""
    return ([b"".join(frames[k:k + chunk]) for k in range(0, len(frames), chunk)],
            [min(chunk, len(frames) - k) for k in range(0, len(frames), chunk)])


async def _timed(proto, host: str, port: int, sub: bytes) -> tuple[float, float]:
    """Connect ``proto``, subscribe to its acks, then time ``proto.pump()`` to ``proto.done``: (wall, CPU) s."""
    loop = asyncio.get_running_loop()
    proto.ready = loop.create_future()
    transport, _ = await loop.create_connection(lambda: proto, host, port)
    connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1}
    transport.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
    await asyncio.wait_for(proto.ready, 5)
    transport.write(sub + b"PING\r\n")
    await asyncio.sleep(0.05)
    cpu0, t0 = time.process_time(), time.perf_counter()
    proto.pump()
    await asyncio.wait_for(proto.done, 300)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    transport.close()
    return wall, cpu


# --------------------------------------------------------------------------- fast-ingest ceiling

FLOW_SEQ = re.compile(rb'"seq":(\d+),"msgs"')


def build_fast_frames(messages, inbox: bytes, flow: int = 100) -> list[bytes]:
    """The same messages as one JetStream fast-ingest batch: reply ``{inbox}.{flow}.ok.{seq}.{op}.$FI``
    (``inbox`` two tokens: its second is the batch id), then the commit (op 3, not stored)."""
    out = []
    first = b""
    for n, (subject, msg_id, payload) in enumerate(messages, 1):
        first = first or subject
        hdr = b"NATS/1.0\r\nNats-Msg-Id: " + msg_id + b"\r\n\r\n"
        out.append(b"HPUB %s %s.%d.ok.%d.%d.$FI %d %d\r\n%s%s\r\n" % (
            subject, inbox, flow, n, 0 if n == 1 else 1, len(hdr), len(hdr) + len(payload), hdr, payload))
    out.append(b"PUB %s %s.%d.ok.%d.3.$FI 0\r\n\r\n" % (first, inbox, flow, len(out) + 1))
    return out


class _RawFast(_Raw):
    """Counts flow acks (every seq <= N stored) instead of one ack per message; done at the commit's answer."""

    def data_received(self, data: bytes) -> None:
        if self._handshaking(data):
            return
        chunk = self.tail + data
        for m in FLOW_SEQ.finditer(chunk):
            self.acked = max(self.acked, int(m[1]))
        if b'"count":' in chunk:
            self.acked = self.total
        self.errors += data.count(b'"err')
        self.tail = data[-40:]     # an ack cut by the read is seen whole next time
        if self.acked >= self.total and not self.done.done():
            self.done.set_result(None)
            return
        self.pump()


async def run_raw_fast(host: str, port: int, frames: list[bytes], inbox: bytes, *, window: int = 4096,
                       chunk: int = 256) -> dict:
    """Publish one fast-ingest batch (``build_fast_frames``), at most ``window`` messages past the last flow
    ack; wall time and this process's CPU time to the commit's answer."""
    proto = _RawFast(*_chunked(frames, chunk), max(window, chunk), asyncio.get_running_loop().create_future())
    proto.total = len(frames) - 1          # the commit is not a message
    wall, cpu = await _timed(proto, host, port, b"SUB %s.> 1\r\n" % inbox)
    return {"messages": len(frames) - 1, "wall_s": wall, "cpu_s": cpu, "errors": proto.errors}
