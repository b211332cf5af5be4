"""Peer stack (b): picows + msgspec + nats-py ``js.publish_async``, as an end-to-end pipeline process.

    python -m benchmarks.baselines.picows_msgspec_natspy --url WS --nats URL --key PEM --prefix P --markets JSON

The best Python-facing peer: picows with a Python ``WSListener`` (``on_ws_frame`` per frame), the
careful msgspec implementation of schema v1 (``msgspec_normalizer``: a typed tagged union decoded in
one call, the record encoded from an ordered Struct), ``recv_ts`` appended, then the raw frame and the
record queued for ``js.publish_async`` with a ``Nats-Msg-Id`` each (the connector's subjects and ids).
``on_ws_frame`` cannot await, so a task publishes from a deque; the socket reads pause while more
than 2 x ``--window`` messages wait and resume below the window. No sequencing. Measured like every
pipeline (``e2e_common.Meter``): from the connect to the last ack.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import time
from pathlib import Path

import msgspec

from benchmarks.baselines import msgspec_normalizer as ms
from benchmarks.e2e_common import (
    CONTROL_TYPES,
    Meter,
    PeerIds,
    baseline_main,
    cap_receive_buffer,
    subscribe_commands,
    with_recv_ts,
)
from ssmd_fast import _normalize_py as twin
from ssmd_fast.errors import InvalidFrame

# frame struct -> (frame type, record type)
_TYPES = {ms.Trade: ("trade", "trade"), ms.Ticker: ("ticker", "ticker"),
          ms.Snapshot: ("orderbook_snapshot", "book_snapshot"), ms.Delta: ("orderbook_delta", "book_delta"),
          ms.MarketLifecycle: ("market_lifecycle_v2", "market_lifecycle"),
          ms.EventLifecycle: ("event_lifecycle", "event_lifecycle")}
_TYPE_PROBE = msgspec.json.Decoder(dict)


class Pipeline:
    """Frame -> (subject, payload, id) pairs in a deque; a task publishes them."""

    def __init__(self, js, prefix: str, window: int):
        n = ms.MsgspecNormalizer()
        self.decode, self.encode = n._decode, n._encode
        self.js, self.window = js, window
        self.ids = PeerIds(prefix, secrets.token_hex(6))
        self.queue: collections.deque = collections.deque()
        self.wake = asyncio.Event()
        self.frames = self.published = 0
        self.transport = None
        self.paused = False

    def on_frame(self, frame: bytes) -> None:
        self.frames += 1
        recv = time.time_ns()
        try:
            f = self.decode(frame)
            ftype, rtype = _TYPES[type(f)]
            record = self.encode(ms._build(f))
            m = f.msg
            ticker = m.event_ticker if ftype == "event_lifecycle" else m.market_ticker
            sid, seq, tid = f.sid, f.seq, getattr(m, "trade_id", None)
        except (msgspec.ValidationError, msgspec.DecodeError, ms.Fallback):
            # controls, other types and what the peer does not model: a dict look and the twin
            try:
                obj = _TYPE_PROBE.decode(frame)
            except msgspec.DecodeError:
                return
            ftype = obj.get("type")
            if ftype is None or ftype in CONTROL_TYPES:
                return
            try:
                record = twin.normalize_frame(frame)
            except InvalidFrame:
                record = None
            msg = obj.get("msg") or {}
            rtype = json.loads(record)["type"] if record else None
            ticker = msg.get("event_ticker" if ftype == "event_lifecycle" else "market_ticker") or ftype
            sid, seq, tid = obj.get("sid"), obj.get("seq"), msg.get("trade_id")
        rs, rid, ns, nid = self.ids.ids(ftype, rtype, ticker, sid, seq, tid)
        q = self.queue
        q.append((rs, frame, {"Nats-Msg-Id": rid}))
        if record is not None:
            q.append((ns, with_recv_ts(record, recv), {"Nats-Msg-Id": nid}))
        self.wake.set()
        if len(q) > 2 * self.window and not self.paused:
            self.paused = True
            self.transport.underlying_transport.pause_reading()

    async def publish_loop(self) -> None:
        publish, q = self.js.publish_async, self.queue
        while True:
            await self.wake.wait()
            self.wake.clear()
            while q:
                subject, payload, headers = q.popleft()
                await publish(subject, payload, headers=headers)
                self.published += 1
                if self.paused and len(q) < self.window:
                    self.paused = False
                    self.transport.underlying_transport.resume_reading()


async def run(args) -> dict:
    import nats
    from picows import WSListener, WSMsgType, ws_connect

    from ssmd_fast.kalshi.auth import KalshiCredentials

    creds = KalshiCredentials("bench", Path(args.key).read_text())
    nc = await nats.connect(args.nats)
    js = nc.jetstream(publish_async_max_pending=args.window)
    pipe = Pipeline(js, args.prefix, args.window)

    class Listener(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.TEXT:
                pipe.on_frame(frame.get_payload_as_bytes())
            elif frame.msg_type == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())

    def progress():
        return pipe.frames, pipe.published - js.publish_async_pending()

    meter = Meter(progress, lambda: pipe.frames > 0 and not pipe.queue and js.publish_async_pending() == 0,
                  idle=args.idle, timeout=args.timeout)
    meter.start()
    transport, _ = await ws_connect(Listener, args.url, extra_headers=creds.websocket_headers(),
                                    enable_auto_pong=False, max_frame_size=1 << 20)
    pipe.transport = transport
    cap_receive_buffer(transport.underlying_transport.get_extra_info("socket"))
    task = asyncio.get_running_loop().create_task(pipe.publish_loop())
    for cmd in subscribe_commands(json.loads(args.markets)):
        transport.send(WSMsgType.TEXT, cmd)
    await meter.wait()
    task.cancel()
    transport.disconnect()
    await nc.close()
    return meter.result(pipe.published, pipe.frames)


def main(argv: list[str] | None = None) -> int:
    return baseline_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
