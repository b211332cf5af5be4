"""A fault-injecting TCP proxy on loopback, switchable while traffic flows.

    proxy = FaultProxy("127.0.0.1", nats.port)     # in a loop: await proxy.start(); proxy.port
    proxy.blackhole()                              # accept and read, forward nothing, no FIN/RST
    proxy.pause(UP); proxy.resume()                # stop forwarding client->server (buffered), go on
    proxy.latency(0.2); proxy.throttle(1_000_000)  # per direction or both
    proxy.reset()                                  # RST to both sides of every live connection
    proxy.set_transform(DOWN, factory)             # rewrite bytes (e.g. edit WebSocket frames)
    await proxy.refuse(); await proxy.accept()     # close / reopen the listening socket

Directions: ``UP`` is client -> server, ``DOWN`` server -> client; every switch takes a direction
(default both) and applies to the live connections and to the next ones. A blackholed flow stays
blackholed for good (its bytes are gone, so forwarding again would hand the peer a corrupt stream);
``blackhole(existing_only=True)`` kills the live flows silently and lets new connections pass, which
is what a middlebox that lost its flow table does. ``ThreadedProxy`` runs one in a ``LoopThread`` so a
synchronous test (a subprocess connector) or another loop can drive it.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import time
from dataclasses import dataclass, field

from loop_thread import LoopThread

UP, DOWN = "up", "down"
BOTH = (UP, DOWN)
PASS, BLACKHOLE, PAUSE = "pass", "blackhole", "pause"
READ_SIZE = 64 * 1024
MAX_BUFFERED = 8 << 20       # per pipe: past this the proxy stops reading (TCP backpressure to the sender)
THROTTLE_TICK = 0.005        # a throttled pipe writes rate * tick bytes per tick


def _directions(direction: str | tuple[str, ...]) -> tuple[str, ...]:
    out = (direction,) if isinstance(direction, str) else tuple(direction)
    if not out or any(d not in BOTH for d in out):
        raise ValueError(f"direction must be {UP!r}, {DOWN!r} or both, got {direction!r}")
    return out


@dataclass
class Shape:
    """What one direction does to the bytes it carries."""

    mode: str = PASS
    latency: float = 0.0       # seconds added to every chunk
    rate: float = 0.0          # bytes per second; 0 = unlimited


@dataclass
class DirectionStats:
    read: int = 0              # bytes taken from the sender
    forwarded: int = 0         # bytes handed to the receiver
    discarded: int = 0         # bytes swallowed by a blackhole
    max_buffered: int = 0      # the largest backlog of one pipe (pause, latency, throttle)


@dataclass
class ProxyStats:
    accepted: int = 0
    refused_upstream: int = 0  # upstream connects that failed (the client was closed)
    resets: int = 0            # connections ended with RST by reset()
    active: int = 0
    directions: dict[str, DirectionStats] = field(default_factory=lambda: {d: DirectionStats() for d in BOTH})


def _set_linger_zero(writer: asyncio.StreamWriter | None) -> None:
    """Make close() send RST instead of FIN."""
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


class _Pipe:
    """One direction of one connection: a reader task fills the backlog, a writer task drains it."""

    def __init__(self, proxy: FaultProxy, conn: _Conn, direction: str, reader, writer):
        self.proxy, self.conn, self.direction = proxy, conn, direction
        self.reader, self.writer = reader, writer
        self.backlog: collections.deque[tuple[float, bytes]] = collections.deque()
        self.buffered = 0
        self.blackholed = False
        self.eof = False
        self.done = False
        self.wake = asyncio.Event()      # new data, a mode switch or EOF
        self.room = asyncio.Event()      # the backlog shrank below MAX_BUFFERED
        self.room.set()
        factory = proxy.transforms.get(direction)
        self.transform = factory() if factory is not None else None   # per connection state (a re-framer)

    @property
    def shape(self) -> Shape:
        return self.proxy.shapes[self.direction]

    @property
    def stats(self) -> DirectionStats:
        return self.proxy.stats.directions[self.direction]

    async def read_loop(self) -> None:
        try:
            while True:
                await self.room.wait()
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self.eof = True
                    self.wake.set()
                    return
                self.stats.read += len(data)
                if self.transform is not None:
                    data = self.transform(data)
                    if not data:
                        continue
                if self.blackholed or self.shape.mode == BLACKHOLE:
                    self.blackholed = True          # sticky: the stream now has a hole
                    self.stats.discarded += len(data)
                    continue
                self.backlog.append((time.monotonic() + self.shape.latency, data))
                self.buffered += len(data)
                self.stats.max_buffered = max(self.stats.max_buffered, self.buffered)
                if self.buffered >= MAX_BUFFERED:
                    self.room.clear()
                self.wake.set()
        except (ConnectionError, OSError) as exc:
            self.conn.peer_failed(self, exc)

    async def write_loop(self) -> None:
        try:
            while True:
                shape = self.shape
                if self.blackholed and self.eof:
                    return                          # a blackhole passes on no FIN either
                if self.blackholed or shape.mode == PAUSE or not self.backlog:
                    if self.eof and not self.backlog:
                        if self.writer.can_write_eof():
                            self.writer.write_eof()
                        return
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                due, data = self.backlog[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self.wake.clear()
                    try:    # a switch (pause, blackhole) may come in while waiting
                        await asyncio.wait_for(self.wake.wait(), delay)
                    except TimeoutError:
                        pass
                    continue
                if shape.rate > 0:
                    n = max(1, int(shape.rate * THROTTLE_TICK))
                    chunk = data[:n]
                    if len(data) > n:
                        self.backlog[0] = (due, data[n:])
                    else:
                        self.backlog.popleft()
                else:
                    chunk = data
                    self.backlog.popleft()
                self.buffered -= len(chunk)
                if self.buffered < MAX_BUFFERED:
                    self.room.set()
                self.writer.write(chunk)
                self.stats.forwarded += len(chunk)
                await self.writer.drain()
                if shape.rate > 0:
                    await asyncio.sleep(len(chunk) / shape.rate)
        except (ConnectionError, OSError) as exc:
            self.conn.peer_failed(self, exc)


class _Conn:
    """A proxied connection: the client side, the upstream side (absent when born blackholed), two pipes."""

    def __init__(self, proxy: FaultProxy, c_reader, c_writer):
        self.proxy = proxy
        self.c_reader, self.c_writer = c_reader, c_writer
        self.u_writer: asyncio.StreamWriter | None = None
        self.pipes: dict[str, _Pipe] = {}
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    async def run(self) -> None:
        p = self.proxy
        p.stats.accepted += 1
        p.stats.active += 1
        try:
            if p.shapes[UP].mode == BLACKHOLE:
                # born into a blackhole: read and discard forever, never reach the server
                pipe = _Pipe(p, self, UP, self.c_reader, None)
                pipe.blackholed = True
                self.pipes[UP] = pipe
                self.tasks = [asyncio.ensure_future(pipe.read_loop())]
            else:
                try:
                    u_reader, self.u_writer = await asyncio.open_connection(p.target_host, p.target_port)
                except OSError:
                    p.stats.refused_upstream += 1
                    _set_linger_zero(self.c_writer)   # the client sees a reset, as with a refused connect
                    self.c_writer.close()
                    return
                up = _Pipe(p, self, UP, self.c_reader, self.u_writer)
                down = _Pipe(p, self, DOWN, u_reader, self.c_writer)
                self.pipes = {UP: up, DOWN: down}
                self.tasks = [asyncio.ensure_future(t) for t in
                              (up.read_loop(), up.write_loop(), down.read_loop(), down.write_loop())]
            p.conns.add(self)
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            p.conns.discard(self)
            p.stats.active -= 1
            self.close()

    def peer_failed(self, pipe: _Pipe, exc: BaseException) -> None:
        """A reset on one side is passed on as a reset to the other (a proxy should not turn RST into FIN)."""
        if isinstance(exc, ConnectionResetError):
            self.close(rst=True)
        else:
            self.close()

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.c_writer, self.u_writer):
            if w is None:
                continue
            if rst:
                _set_linger_zero(w)
            w.transport.abort() if rst else w.close()
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    """The proxy (see the module docstring). All switches are synchronous and take effect at once."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0):
        self.target_host, self.target_port = target_host, target_port
        self.host, self.port = host, port
        self.shapes = {d: Shape() for d in BOTH}
        self.transforms: dict[str, object] = {}   # direction -> factory of ``bytes -> bytes`` (new connections)
        self.stats = ProxyStats()
        self.conns: set[_Conn] = set()
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> FaultProxy:
        await self.accept()
        return self

    async def _on_client(self, reader, writer) -> None:
        conn = _Conn(self, reader, writer)
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await conn.run()
        except asyncio.CancelledError:     # close() ends the handlers; not an error of the flow
            pass
        finally:
            self._handlers.discard(task)

    # ------------------------------------------------------------------ the listener

    async def accept(self) -> None:
        """Listen (again) on the same port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Close the listening socket: new connections are refused; live ones carry on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    # ------------------------------------------------------------------ switches

    def _set(self, direction, **changes) -> None:
        for d in _directions(direction):
            for k, v in changes.items():
                setattr(self.shapes[d], k, v)
        for conn in list(self.conns):
            for d in _directions(direction):
                pipe = conn.pipes.get(d)
                if pipe is not None:
                    pipe.wake.set()

    def pass_through(self, direction=BOTH) -> None:
        """Forward normally (paused backlogs are flushed; blackholed flows stay dead); no latency, no limit."""
        self._set(direction, mode=PASS, latency=0.0, rate=0.0)

    def resume(self, direction=BOTH) -> None:
        """End a pause or blackhole for new traffic, keeping latency and throttle."""
        self._set(direction, mode=PASS)

    def blackhole(self, direction=BOTH, *, existing_only: bool = False) -> None:
        """Accept and read, forward nothing, never FIN or RST. ``existing_only``: the live flows only."""
        if existing_only:
            for conn in list(self.conns):
                for d in _directions(direction):
                    pipe = conn.pipes.get(d)
                    if pipe is not None:
                        pipe.blackholed = True
                        pipe.stats.discarded += pipe.buffered
                        pipe.backlog.clear()
                        pipe.buffered = 0
                        pipe.room.set()
                        pipe.wake.set()
            return
        self._set(direction, mode=BLACKHOLE)

    def pause(self, direction=BOTH) -> None:
        """Stop forwarding; the bytes are kept (up to MAX_BUFFERED, then the sender is held by TCP)."""
        self._set(direction, mode=PAUSE)

    def latency(self, seconds: float, direction=BOTH) -> None:
        self._set(direction, latency=float(seconds))

    def throttle(self, bytes_per_second: float, direction=BOTH) -> None:
        """Limit to ``bytes_per_second`` (0 = unlimited)."""
        self._set(direction, rate=float(bytes_per_second))

    def set_transform(self, direction: str, factory) -> None:
        """Rewrite the bytes of ``direction`` on connections opened from now on: ``factory()`` gives each
        connection its own ``bytes -> bytes`` callable (e.g. a WebSocket re-framer that edits frames)."""
        if factory is None:
            self.transforms.pop(direction, None)
        else:
            self.transforms[_directions(direction)[0]] = factory

    def reset(self, blackholed_only: bool = False) -> int:
        """RST both sides of every live connection (or of the blackholed ones: the peer that finally
        gives up on a dead flow); returns how many."""
        n = 0
        for conn in list(self.conns):
            if blackholed_only and not any(p.blackholed for p in conn.pipes.values()):
                continue
            conn.close(rst=True)
            n += 1
        self.stats.resets += n
        return n

    def buffered(self) -> int:
        return sum(p.buffered for c in self.conns for p in c.pipes.values())

    async def close(self) -> None:
        await self.refuse()
        for conn in list(self.conns):
            conn.close()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.sleep(0)


class ThreadedProxy:
    """A FaultProxy on its own event loop thread, driven by plain (blocking) calls from anywhere."""

    def __init__(self, target_host: str, target_port: int, *, loop_thread: LoopThread | None = None, **kw):
        self._own = loop_thread is None
        self.thread = loop_thread or LoopThread("fault-proxy")
        self.proxy = FaultProxy(target_host, target_port, **kw)
        self.thread.run(self.proxy.start())

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def address(self) -> str:
        return self.proxy.address

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def _call(self, name: str, *args, **kw):
        return self.thread.call(getattr(self.proxy, name), *args, **kw)

    def pass_through(self, direction=BOTH) -> None:
        self._call("pass_through", direction)

    def resume(self, direction=BOTH) -> None:
        self._call("resume", direction)

    def blackhole(self, direction=BOTH, *, existing_only: bool = False) -> None:
        self._call("blackhole", direction, existing_only=existing_only)

    def pause(self, direction=BOTH) -> None:
        self._call("pause", direction)

    def latency(self, seconds: float, direction=BOTH) -> None:
        self._call("latency", seconds, direction)

    def throttle(self, bytes_per_second: float, direction=BOTH) -> None:
        self._call("throttle", bytes_per_second, direction)

    def set_transform(self, direction: str, factory) -> None:
        self._call("set_transform", direction, factory)

    def reset(self, blackholed_only: bool = False) -> int:
        return self._call("reset", blackholed_only)

    def buffered(self) -> int:
        return self._call("buffered")

    def refuse(self) -> None:
        self.thread.run(self.proxy.refuse())

    def accept(self) -> None:
        self.thread.run(self.proxy.accept())

    def close(self) -> None:
        self.thread.run(self.proxy.close())
        if self._own:
            self.thread.stop()
