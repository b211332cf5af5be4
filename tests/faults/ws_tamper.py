"""Edit the server -> client WebSocket frames passing through the fault proxy (plain ``ws://`` only).

``WsReframer(edit)`` is a proxy transform: it passes the HTTP upgrade response through, then splits
the byte stream into frames (server frames are unmasked) and calls ``edit(opcode, payload)`` for each
text frame, which returns the frames to send instead (none, the same one, or several). Control and
binary frames pass unchanged. ``SeqRegression`` is the edit the F9 drill uses: from some point on, the
frames of the order book subscription carry seqs ``shift`` lower than the exchange's, as if the server
had renumbered the subscription backwards.
"""

from __future__ import annotations

import re
import struct

from ssmd_fast.kalshi.exchange_conn import ws_frame

_SEQ = re.compile(rb'"seq":(\d+)')
_SID = re.compile(rb'"sid":(\d+)')


class WsReframer:
    def __init__(self, edit):
        self.edit = edit
        self.buf = bytearray()
        self.upgraded = False

    def __call__(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return b""
            out += self.buf[:end + 4]
            del self.buf[:end + 4]
            self.upgraded = True
        while True:
            frame = self._next_frame()
            if frame is None:
                break
            fin_op, payload, raw = frame
            opcode = fin_op & 0x0F
            if opcode == 0x1 and fin_op & 0x80:
                for p in self.edit(opcode, payload):
                    out += ws_frame(p)
            else:
                out += raw
        return bytes(out)

    def _next_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        n, off = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack_from("!H", b, 2)[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack_from("!Q", b, 2)[0], 10
        if len(b) < off + n:
            return None
        raw = bytes(b[:off + n])
        del b[:off + n]
        return raw[0], raw[off:], raw


class SeqRegression:
    """After ``after`` data frames of the order book sid, its seqs go ``shift`` lower for good."""

    def __init__(self, after: int, shift: int):
        self.after, self.shift = after, shift
        self.book_sid: bytes | None = None
        self.seen = 0
        self.rewritten = 0
        self.at_seq: int | None = None        # the first seq the client saw regress

    def __call__(self, opcode: int, payload: bytes) -> list[bytes]:
        if self.book_sid is None and b'"type":"subscribed"' in payload and b'"orderbook_delta"' in payload:
            m = _SID.search(payload)
            self.book_sid = m.group(1) if m else None
            return [payload]
        sid = _SID.search(payload)
        if self.book_sid is None or sid is None or sid.group(1) != self.book_sid:
            return [payload]
        seq = _SEQ.search(payload)
        if seq is None:
            return [payload]
        self.seen += 1
        if self.seen <= self.after:
            return [payload]
        new = int(seq.group(1)) - self.shift
        if self.at_seq is None:
            self.at_seq = new
        self.rewritten += 1
        return [payload[:seq.start(1)] + str(new).encode() + payload[seq.end(1):]]
