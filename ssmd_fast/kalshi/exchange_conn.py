"""One client connection of the local exchange: Kalshi's commands, per-sid seq, and the pump that
streams the feed from the connection's cursor.

Speed: a batch of events is stamped (sid, seq) and framed by one ``exchange_render.render`` call
and written to the socket in one ``write``, honouring pause_writing/resume_writing. Faults, and
keys routed to several subscriptions, take a per-frame loop (they act on single frames).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct

from picows import WSListener, WSMsgType

from ssmd_fast.kalshi.exchange_faults import FaultCounters, malformed_payload, oversize_payload
from ssmd_fast.kalshi.exchange_feed import CHUNK, Chunk
from ssmd_fast.kalshi.exchange_render import render, ws_header
from ssmd_fast.kalshi.generator import CH_BOOK, CH_LIFECYCLE, CH_TICKER, CH_TRADE

log = logging.getLogger("ssmd_fast.exchange")


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked final server frame."""
    return ws_header(len(payload), opcode) + payload


ERRORS = {
    1: "Unable to process message", 2: "Params required", 3: "Channels required",
    4: "Subscription IDs required", 5: "Unknown command", 7: "Unknown subscription ID",
    8: "Unknown channel name", 11: "Invalid parameter", 12: "Exactly one subscription ID is required",
    13: "Unsupported action", 14: "Market Ticker required", 15: "Action required",
    25: "Subscription buffer overflow", 26: "Subscription market limit exceeded",
}
DATA_CHANNELS = (CH_TICKER, CH_TRADE, CH_LIFECYCLE, CH_BOOK)
# Real channels the exchange accepts but has no data for (private and newer public ones).
QUIET_CHANNELS = ("fill", "market_positions", "user_orders", "order_group_updates", "communications",
                  "multivariate_market_lifecycle", "cfbenchmarks_value", "cfbenchmarks_value_5hz", "pyth_value")
SEQ_PART = b',"seq":%d'
MSG_PART = b',"msg":'
SEQ_MSG = b',"seq":%d,"msg":'


class CommandError(Exception):
    def __init__(self, code: int, sid: int | None = None):
        super().__init__(code)
        self.code, self.sid = code, sid


class Subscription:
    """One sid: its channel, markets (None = all) and seq counter (ticker has no seq)."""

    __slots__ = ("sid", "channel", "markets", "seq", "sequenced")

    def __init__(self, sid: int, channel: str, markets: list[str] | None):
        self.sid, self.channel, self.markets = sid, channel, markets
        self.sequenced = channel != CH_TICKER
        self.seq = 0                # last seq sent

    def pre(self, typ: str) -> bytes:
        """The envelope up to the seq: ``{"type":"trade","sid":2``."""
        return b'{"type":"%s","sid":%d' % (typ.encode(), self.sid)

    def next_seq(self) -> bytes:
        """Take the next seq: the envelope piece ``,"seq":N,"msg":`` (ticker: ``,"msg":``)."""
        if not self.sequenced:
            return MSG_PART
        self.seq += 1
        return SEQ_MSG % self.seq

    def matches(self, channel: str, market: str | None, mset: set[str] | None) -> bool:
        if channel != self.channel:
            return False
        return channel == CH_LIFECYCLE or mset is None or market in mset


def _markets_param(params: dict) -> list[str] | None:
    one, many = params.get("market_ticker"), params.get("market_tickers")
    if one is not None and many is not None:
        raise CommandError(11)
    if one is not None:
        many = [one]
    if many is None:
        return None
    if not isinstance(many, list) or not all(isinstance(m, str) and m for m in many):
        raise CommandError(11)
    return list(dict.fromkeys(many))


def _sid_list(params: dict) -> list:
    sids = params.get("sids", [params["sid"]] if "sid" in params else None)
    if not isinstance(sids, list):
        raise CommandError(4)
    return sids


class Connection(WSListener):
    """A picows listener: commands in, replies and the stream out."""

    def __init__(self, exchange, cid: int):
        self.ex = exchange
        self.id = cid
        self.transport = None
        self.raw = None
        self.subs: dict[int, Subscription] = {}
        self.next_sid = 1
        self.cursor: int | None = None
        self.paused = self.frozen = self.closed = False
        self.wake = asyncio.Event()
        self.pump_task: asyncio.Task | None = None
        self.faults = FaultCounters()
        self.held: list[bytes] = []
        self.frames = 0
        # per route key id: every target subscription; with one target, its envelope prefix and the
        # index of its seq counter in ``slots`` (-1: no seq) for the batch renderer
        self.slots: list[Subscription] = []
        self.pre_tab: list[bytes | None] = []
        self.slot_tab: list[int] = []
        self.targets: list[list[Subscription]] = []
        self.fast = True

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.raw.set_write_buffer_limits(high=4 << 20, low=1 << 20)
        self.ex._attach(self)

    def on_ws_disconnected(self, transport) -> None:
        self.closed = True
        self.wake.set()
        self.ex._detach(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.wake.set()

    def on_ws_frame(self, transport, frame) -> None:
        mt = frame.msg_type
        if mt == WSMsgType.TEXT and frame.fin:
            data = frame.get_payload_as_bytes()
            if self.frozen:
                self.held.append(data)
            else:
                self.on_command(data)
        elif mt == WSMsgType.PING:
            if not self.frozen:
                transport.send_pong(frame.get_payload_as_bytes())
        elif mt == WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            self.write(ws_frame(payload[:2], 0x8))       # echo the code, as RFC 6455 asks
            transport.disconnect()
        elif mt != WSMsgType.PONG:
            self.reply(self._error(0, 1), "error")

    # ------------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        if not self.closed and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)
            self.ex.bytes_sent += len(data)

    def reply(self, payload: bytes, typ: str) -> None:
        self.write(ws_frame(payload))
        self.ex.count(typ, 1)

    def _error(self, cmd_id: int, code: int, sid: int | None = None) -> bytes:
        text = json.dumps(ERRORS.get(code, "Error"))
        if sid is None:
            return b'{"id":%d,"type":"error","msg":{"code":%d,"msg":%s}}' % (cmd_id, code, text.encode())
        return b'{"id":%d,"type":"error","sid":%d,"msg":{"code":%d,"msg":%s}}' % (cmd_id, sid, code, text.encode())

    # ------------------------------------------------------------------ commands

    def on_command(self, data: bytes) -> None:
        try:
            cmd = json.loads(data)
        except ValueError:
            cmd = None
        if not isinstance(cmd, dict):
            return self.reply(self._error(0, 1), "error")
        cmd_id = cmd.get("id", 0)
        if not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or cmd_id < 0:
            return self.reply(self._error(0, 1), "error")
        name = cmd.get("cmd")
        handler = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe,
                   "update_subscription": self._update, "list_subscriptions": self._list}.get(name)
        if handler is None:
            return self.reply(self._error(cmd_id, 5), "error")
        params = cmd.get("params")
        if params is None and name != "list_subscriptions":
            return self.reply(self._error(cmd_id, 2), "error")
        if params is not None and not isinstance(params, dict):
            return self.reply(self._error(cmd_id, 2), "error")
        try:
            handler(cmd_id, params or {})
        except CommandError as e:
            self.reply(self._error(cmd_id, e.code, e.sid), "error")

    def _subscribe(self, cmd_id: int, params: dict) -> None:
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            raise CommandError(3)
        for ch in channels:
            if ch not in DATA_CHANNELS and ch not in QUIET_CHANNELS:
                raise CommandError(8)
        markets = _markets_param(params)
        if CH_BOOK in channels and not markets:
            raise CommandError(14)
        if markets is not None and len(markets) > self.ex.max_markets:
            raise CommandError(26)
        if self.cursor is None:
            self.cursor = self.ex.position()
        new = []
        for ch in dict.fromkeys(channels):
            sub = Subscription(self.next_sid, ch, None if ch in (CH_LIFECYCLE, *QUIET_CHANNELS) else markets)
            self.next_sid += 1
            self.subs[sub.sid] = sub
            new.append(sub)
            self.reply(b'{"id":%d,"type":"subscribed","msg":{"channel":"%s","sid":%d}}'
                       % (cmd_id, ch.encode(), sub.sid), "subscribed")
        for sub in new:
            if sub.channel == CH_BOOK:
                for m in sub.markets:
                    self._snapshot(sub, m)
        self._routes_changed()

    def _unsubscribe(self, cmd_id: int, params: dict) -> None:
        sids = _sid_list(params)
        if not sids:
            raise CommandError(4)
        for sid in sids:
            sub = self.subs.pop(sid, None) if isinstance(sid, int) else None
            if sub is None:
                self.reply(self._error(cmd_id, 7, sid if isinstance(sid, int) else None), "error")
                continue
            self.reply(b'{"id":%d,"sid":%d%s,"type":"unsubscribed"}' % (cmd_id, sid, self._seq_of(sub)),
                       "unsubscribed")
        self._routes_changed()

    def _seq_of(self, sub: Subscription) -> bytes:
        # acks carry the sid's last seq without taking a new number (see README, "The local exchange")
        return SEQ_PART % sub.seq if sub.sequenced and sub.seq else b""

    def _update(self, cmd_id: int, params: dict) -> None:
        sids = _sid_list(params) if ("sids" in params or "sid" in params) else []
        if len(sids) != 1:
            raise CommandError(12)
        sub = self.subs.get(sids[0]) if isinstance(sids[0], int) else None
        if sub is None:
            raise CommandError(7, sids[0] if isinstance(sids[0], int) else None)
        action = params.get("action")
        if action is None:
            raise CommandError(15)
        if action not in ("add_markets", "delete_markets", "get_snapshot") or sub.channel not in (
                CH_TICKER, CH_TRADE, CH_BOOK) or (action == "get_snapshot" and sub.channel != CH_BOOK):
            raise CommandError(13)
        markets = _markets_param(params)
        if action == "get_snapshot":
            wanted = markets if markets is not None else list(sub.markets)
            if any(m not in sub.markets for m in wanted):
                raise CommandError(11)
            for m in wanted:
                self._snapshot(sub, m, cmd_id)
            return self._ok(cmd_id, sub)
        if not markets:
            raise CommandError(14)
        if sub.markets is None:
            raise CommandError(11)      # an all-markets subscription has no list to change
        if action == "add_markets":
            added = [m for m in markets if m not in sub.markets]
            if len(sub.markets) + len(added) > self.ex.max_markets:
                raise CommandError(26)
            sub.markets.extend(added)
            self._ok(cmd_id, sub)
            if sub.channel == CH_BOOK:
                for m in added:
                    self._snapshot(sub, m)
        else:
            gone = set(markets)
            sub.markets[:] = [m for m in sub.markets if m not in gone]
            self._ok(cmd_id, sub)
        self._routes_changed()

    def _ok(self, cmd_id: int, sub: Subscription) -> None:
        body = json.dumps({"market_tickers": sub.markets or []}, separators=(",", ":")).encode()
        self.reply(b'{"id":%d,"sid":%d%s,"type":"ok","msg":%s}' % (cmd_id, sub.sid, self._seq_of(sub), body), "ok")

    def _list(self, cmd_id: int, params: dict) -> None:
        body = json.dumps([{"channel": s.channel, "sid": s.sid} for s in self.subs.values()], separators=(",", ":"))
        self.reply(b'{"id":%d,"type":"ok","msg":%s}' % (cmd_id, body.encode()), "ok")

    def _snapshot(self, sub: Subscription, market: str, cmd_id: int | None = None) -> None:
        feed = self.ex.feed
        body = feed.snapshot_body(market, self.cursor)
        if body is None:
            body = feed.unknown_market_body(market)
            if body is None:       # replay: the recording's own snapshot will come in the stream
                return
        idp = b',"id":%d' % cmd_id if cmd_id is not None else b""
        payload = b'{"type":"orderbook_snapshot"%s,"sid":%d%s%s}' % (idp, sub.sid, sub.next_seq(), body)
        self.write(ws_frame(payload))
        self.ex.count("orderbook_snapshot", 1)
        self.ex.record([payload])

    # ------------------------------------------------------------------ routing

    def _routes_changed(self) -> None:
        info = self.ex.feed.keys.info
        subs = [(s, None if s.markets is None else set(s.markets)) for s in self.subs.values()]
        self.targets = [[s for s, mset in subs if s.matches(ch, m, mset)] for _, ch, m in info]
        self.slots = [s for s, _ in subs if s.sequenced]
        slot_of = {s.sid: i for i, s in enumerate(self.slots)}
        self.pre_tab = [t[0].pre(typ) if len(t) == 1 else None
                        for t, (typ, _, _) in zip(self.targets, info, strict=True)]
        self.slot_tab = [slot_of.get(t[0].sid, -1) if len(t) == 1 else -1 for t in self.targets]
        self.update_mode()
        if self.subs and (self.pump_task is None or self.pump_task.done()) and not self.closed:
            self.pump_task = asyncio.get_running_loop().create_task(self._pump())
        self.wake.set()

    def update_mode(self) -> None:
        self.fast = not self.ex.faults.stream and all(len(t) <= 1 for t in self.targets)

    # ------------------------------------------------------------------ the stream

    async def _pump(self) -> None:
        ex = self.ex
        feed = ex.feed
        try:
            while not self.closed:
                if self.paused or self.frozen or not self.subs:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                limit = ex.released()
                if self.cursor >= limit:
                    if limit >= feed.total:           # the session is over: stay connected, idle
                        self.wake.clear()
                        await self.wake.wait()
                    else:
                        await asyncio.sleep(ex.delay_until(self.cursor + 1))
                    continue
                before = self.cursor
                chunk = feed.chunk(before // CHUNK)
                a = before - chunk.start
                b = min(len(chunk), limit - chunk.start, a + ex.batch)
                if self.fast:
                    self._send_fast(chunk, a, b)
                else:
                    self._send_slow(chunk, a, b)
                ex.advanced(self, before)
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("connection %d: the pump failed; dropping the connection", self.id)
            self.abort()

    def _send_fast(self, chunk: Chunk, a: int, b: int) -> None:
        """One call stamps and frames the whole batch (compiled, or C-level passes in the twin)."""
        self.cursor = chunk.start + b
        slots = self.slots
        seqs = [s.seq for s in slots]
        counts = [0] * len(self.pre_tab)
        frames, payloads, n = render(chunk.ids, chunk.bodies, chunk.blens, a, b, self.pre_tab, self.slot_tab,
                                     seqs, counts, self.ex.recording)
        if not n:
            return
        for sub, seq in zip(slots, seqs, strict=True):
            sub.seq = seq
        self.write(frames)
        self.frames += n
        info = self.ex.feed.keys.info
        for kid, k in enumerate(counts):
            if k:
                self.ex.count(info[kid][0], k)
        if payloads:
            self.ex.record_raw(payloads)

    def _send_slow(self, chunk: Chunk, a: int, b: int) -> None:
        """Per-frame path: several subscriptions per key, or faults to apply."""
        ex = self.ex
        spec, fc = ex.faults, self.faults
        info, ids, bodies = ex.feed.keys.info, chunk.ids, chunk.bodies
        out: list[bytes] = []
        sent: list[bytes] = []
        action, last_sub, end = None, None, b
        for off in range(a, b):
            targets = self.targets[ids[off]]
            if not targets:
                continue
            typ = info[ids[off]][0]
            for sub in targets:
                payload = b"%s%s%s}" % (sub.pre(typ), sub.next_seq(), bodies[off])
                if spec.gap_every and typ == "orderbook_delta":
                    fc.book += 1
                    if fc.book % spec.gap_every == 0:
                        ex.injected["gap"] += 1
                        continue
                out.append(ws_frame(payload))
                sent.append(payload)
                ex.count(typ, 1)
                fc.frames += 1
                last_sub = sub
                if spec.duplicate_every and sub.sequenced:
                    fc.sequenced += 1
                    if fc.sequenced % spec.duplicate_every == 0:
                        out.append(ws_frame(payload))
                        sent.append(payload)
                        ex.count(typ, 1)
                        ex.injected["duplicate"] += 1
                if spec.malformed_every and fc.frames % spec.malformed_every == 0:
                    out.append(ws_frame(malformed_payload(fc.malformed, sub.sid)))
                    fc.malformed += 1
                    ex.injected["malformed"] += 1
                if spec.binary_every and fc.frames % spec.binary_every == 0:
                    out.append(ws_frame(payload, 0x2))
                    ex.injected["binary"] += 1
            action = fc.due(spec)
            if action is not None:
                end = off + 1
                break
        self.cursor = chunk.start + end
        self.frames += len(sent)
        if out:
            self.write(b"".join(out))
            ex.record(sent)
        if action is not None:
            self._act(action, last_sub)

    def _act(self, action: str, sub: Subscription | None) -> None:
        ex = self.ex
        ex.injected[action] += 1
        log.info("connection %d: fault %s after %d frames", self.id, action, self.faults.frames)
        if action == "oversize":
            self.write(ws_frame(oversize_payload()))
        elif action == "error25" and sub is not None:
            self.reply(b'{"type":"error","sid":%d%s,"msg":{"code":25,"msg":"Subscription buffer overflow"}}'
                       % (sub.sid, self._seq_of(sub)), "error")
            self.subs.pop(sub.sid, None)
            self._routes_changed()
        elif action == "freeze":
            self.frozen = True
        elif action == "drop":
            if ex.faults.close_code:
                self.write(ws_frame(struct.pack("!H", ex.faults.close_code) + b"fault drill", 0x8))
            self.closed = True
            self.raw.close()            # flush what was written, then FIN: no close handshake
        elif action == "rst":
            self.rst()

    # ------------------------------------------------------------------ control

    def resume(self) -> None:
        if not self.frozen:
            return
        self.frozen = False
        held, self.held = self.held, []
        for data in held:
            self.on_command(data)
        self.wake.set()

    def rst(self) -> None:
        sock = self.raw.get_extra_info("socket") if self.raw is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self.wake.set()
        if self.raw is not None:
            self.raw.abort()

    def describe(self) -> dict:
        return {"id": self.id, "cursor": self.cursor, "frames": self.frames, "frozen": self.frozen,
                "paused": self.paused, "fast": self.fast,
                "subscriptions": [{"sid": s.sid, "channel": s.channel, "seq": s.seq,
                                   "markets": None if s.markets is None else len(s.markets)}
                                  for s in self.subs.values()]}
