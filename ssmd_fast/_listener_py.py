"""The picows listener of the hot path: the pure-Python twin of ``_listener.pyx``.

Every text frame of a socket read is added to the FrameBatch; the end of the read closes the batch and
makes the one call of the read, ``on_batch(batch)``. A text message above ``max_message_size`` is an invalid
frame (reason ``size``, normalized-schema v1) and the connection goes on; ``feed`` skips such a frame's
payload as it arrives, across reads, and keeps only its first bytes (what the batch keeps of an invalid
frame), so a peer sending huge frames costs no memory. Frames come from picows (``on_ws_frame``) until the
session's reader hands whole reads to ``feed``, which parses them here. Pings are answered here rather
than by picows' auto-pong: picows swallows auto-ponged pings, and a ping closing a read would leave the
batch open until the next read.
"""

from __future__ import annotations

import time

from picows import WSCloseCode, WSListener, WSMsgType

from ssmd_fast._normalize_py import RAW_INVALID_MAX

IMPLEMENTATION = "python"
MAX_MESSAGE_SIZE = 1 << 20      # 1 MiB: a text message above it is invalid (size); picows refuses such frames
PREFIX = RAW_INVALID_MAX         # what the batch keeps of an invalid frame

_FRAG_NONE = 0
_FRAG_OVER = -1                 # a text message above the limit: its first PREFIX bytes and its size are kept
_TEXT, _BINARY, _CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_CLOSE_CODES = frozenset(int(c) for c in WSCloseCode)   # what a peer may send (picows' check)


class BatchListener(WSListener):
    """Collects the text frames of each socket read into ``batch`` and calls ``on_batch(batch)`` once.

    After the call the listener resets ``self.batch``; ``on_batch`` may replace ``self.batch``
    with an empty one to keep the filled one (the connector hands batches to its consumer so).
    """

    def __init__(self, batch, on_batch, max_message_size: int = MAX_MESSAGE_SIZE):
        super().__init__()
        self.batch = batch
        self.on_batch = on_batch
        self.transport = None
        self._frag = bytearray()
        self._frag_type = _FRAG_NONE
        self._frag_size = 0         # payload bytes of the fragmented message so far
        self._skip = 0              # payload bytes still to arrive of a frame being skipped (see feed)
        self._in_read = False
        self._discard = False
        self._closing = False
        self.max_message_size = max_message_size
        self.last_frame_at = 0.0
        self.frames = self.bytes = self.batches = 0
        self.binary_dropped = self.pings = self.pongs = self.fragmented = self.oversized = 0
        self.close_code = 0
        self.close_reason = ""
        self.clean = False      # the last read ended on a frame boundary in picows' buffer

    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        self.last_frame_at = time.monotonic()

    def on_ws_frame(self, transport, frame) -> None:
        if not self._in_read:
            self._open_read()
        self._frame(transport, int(frame.msg_type), bool(frame.fin), frame.rsv1 | frame.rsv2 | frame.rsv3,
                    frame.get_payload_as_memoryview())
        if frame.last_in_buffer:
            self._closing = transport is not None and transport.is_close_frame_sent
            # nothing of a next frame is left in picows' buffer: the reader may take over (see feed)
            self.clean = frame.tail_size == 0 and not self._closing
            self._close_read()

    def feed(self, buf: bytearray, end: int) -> int:
        """The frames of one socket read, ``buf[:end]`` (unmasked server frames, picows' checks repeated).
        Complete frames are handled; a partial one at the end is moved to the front of ``buf`` and its
        length returned (the next read goes after it). After a CLOSE was sent, everything is dropped."""
        if end < 0 or end > len(buf):
            raise ValueError(f"end {end} outside the buffer ({len(buf)} bytes)")
        tr = self.transport
        mv = memoryview(buf)
        pos = 0
        self._open_read()
        try:
            while not self._discard and pos < end:
                if self._skip:      # the rest of a frame whose payload is not kept
                    k = min(self._skip, end - pos)
                    self._skip -= k
                    pos += k
                    continue
                if end - pos < 2:
                    break
                b0, b1 = buf[pos], buf[pos + 1]
                op, fin, rsv, n, hdr = b0 & 0x0F, bool(b0 >> 7), (b0 >> 4) & 7, b1 & 0x7F, 2
                if b1 & 0x80:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a masked frame from the server")
                if 2 < op < 8 or op > 10:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, f"a frame with opcode {op:#x}")
                if op >= 8 and not fin:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a fragmented control frame")
                if op >= 8 and n > 125:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, f"a control frame above 125 bytes (opcode {op:#x})")
                if n == 126:
                    if end - pos < 4:
                        break
                    n, hdr = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
                    if n < 126:
                        return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a frame with an invalid 16-bit length")
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, hdr = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                    if n >> 63 or n < 65536:
                        return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a frame with an invalid 64-bit length")
                if n > self.max_message_size or op == 2 or (op == 0 and (
                        self._frag_type != int(_TEXT) or self._frag_size + n > self.max_message_size)):
                    # a data frame whose payload is not kept (control frames are at most 125 bytes): above
                    # the limit, binary, or a fragment of a message above it or of a binary one. Handled
                    # from its header and first bytes (waited for, at most PREFIX: the start of a message
                    # above the limit is kept), the rest skipped as it arrives
                    if end - pos - hdr < min(n, PREFIX):
                        break
                    pos += hdr
                    k = min(n, end - pos)
                    self._skip = n - k      # before _frame: a refusal there clears it
                    self._frame(tr, op, fin, rsv, mv[pos:pos + k], n)
                    pos += k
                    continue
                if end - pos - hdr < n:
                    break
                pos += hdr
                payload = mv[pos:pos + n]
                if op == 8 and (bad := _close_error(payload)) is not None:
                    return self._refuse(tr, *bad)
                self._frame(tr, op, fin, rsv, payload)     # a CLOSE or a refusal sets _discard
                pos += n
        finally:
            self._closing = tr is not None and tr.is_close_frame_sent
            self._close_read()
        if self._discard or self._closing:
            return 0
        if pos:
            buf[:end - pos] = bytes(mv[pos:end])
        return end - pos

    def _add_text(self, payload) -> None:
        self.batch.add(payload)
        self.frames += 1
        self.bytes += len(payload)

    def _add_oversized(self, prefix, size: int) -> None:
        """A text message above the limit: an invalid frame (size) of which the batch keeps the start."""
        self.batch.add_oversized(prefix, size)
        self.frames += 1
        self.bytes += size

    def _frame(self, transport, t: int, fin: bool, rsv: int, payload, size: int = -1) -> None:
        """One frame; ``size`` is its payload length when ``payload`` holds only its start (a data frame whose
        payload feed skips)."""
        if size < 0:
            size = len(payload)
        if self._discard and t != WSMsgType.CLOSE:
            pass
        elif rsv:     # no extension was negotiated: RFC 6455 section 5.2 says fail (picows lets them through)
            self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a frame with reserved bits set")
        elif t == _TEXT and fin and self._frag_type == _FRAG_NONE:
            if size > self.max_message_size:
                self.oversized += 1
                self._add_oversized(payload, size)
            else:
                self._add_text(payload)
        elif t in (_TEXT, _CONT) or (t == _BINARY and not fin):
            self._fragment(transport, t, fin, payload, size)
        elif t == _BINARY:
            self.binary_dropped += 1
            self.oversized += size > self.max_message_size
        elif t == WSMsgType.PING:
            self.pings += 1
            transport.send_pong(bytes(payload))
        elif t == WSMsgType.PONG:
            self.pongs += 1
        elif t == WSMsgType.CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
            self.close_reason = f"closed by peer (code {self.close_code})"
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            self._discard = True        # nothing follows a CLOSE

    def fail(self, reason: str) -> None:
        """The read could not be handled (an exception past on_batch): close the connection (1011, as
        picows does for an exception out of on_ws_frame) and keep ``reason`` as the close reason."""
        if not self.close_reason:
            self.close_reason = reason
        self._refuse(self.transport, WSCloseCode.INTERNAL_ERROR, reason)
        self._closing = True

    def on_ws_disconnected(self, transport) -> None:
        # a protocol error can end a read before its last frame: hand over what was added
        if self._in_read:
            self._close_read()

    def _open_read(self) -> None:
        self.batch.set_recv_ts(time.time_ns())
        self.last_frame_at = time.monotonic()
        self._in_read = True
        # a read after one that ended with a CLOSE sent is dropped: ours, or picows' after a
        # protocol error, when its parser state is no longer to be trusted
        self._discard = self._closing

    def _close_read(self) -> None:
        self._in_read = False
        if len(self.batch) == 0:
            return
        self.batches += 1
        try:
            self.on_batch(self.batch)
        finally:
            self.batch.reset()

    def _fragment(self, transport, t: int, fin: bool, payload, size: int) -> None:
        if t != _CONT:
            if self._frag_type != _FRAG_NONE:
                self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            self._frag_type = int(t)
            self._frag.clear()
            self._frag_size = 0
        elif self._frag_type == _FRAG_NONE:
            self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a first fragment")
            return
        over = self._frag_size <= self.max_message_size < self._frag_size + size    # the limit is passed now
        self._frag_size += size
        if self._frag_type == int(_BINARY):
            self.oversized += over
            if fin:
                self.binary_dropped += 1
                self._frag_type = _FRAG_NONE
            return
        if over:    # from here on only the start of the message is kept (an invalid frame's raw bytes)
            self.oversized += 1
            self._frag_type = _FRAG_OVER
            del self._frag[PREFIX:]
        if self._frag_type == _FRAG_OVER:
            self._frag += payload[:max(PREFIX - len(self._frag), 0)]
        else:
            self._frag += payload
        if fin:
            if self._frag_type == _FRAG_OVER:
                self._add_oversized(self._frag, self._frag_size)
            else:
                self._add_text(self._frag)
                self.fragmented += 1
            self._frag_type = _FRAG_NONE
            self._frag.clear()

    def _refuse(self, transport, code, reason: str) -> int:
        """Close the connection (the session reconnects: fresh subscriptions cover what is lost); the rest of
        the read is dropped, the frames before are kept."""
        self._discard = True
        self._skip = 0
        if not self.close_reason:
            self.close_reason = f"refused: {reason}"
        if transport is not None:
            transport.send_close(code, reason.encode())
            transport.disconnect()
        return 0


def _close_error(payload) -> tuple[WSCloseCode, str] | None:
    """(close code, why) when picows would refuse this CLOSE payload, else None."""
    n = len(payload)
    if n == 1:
        return WSCloseCode.PROTOCOL_ERROR, "a CLOSE with a 1-byte code"
    if n >= 2:
        code = int.from_bytes(payload[:2], "big")
        if code < 3000 and code not in _CLOSE_CODES:
            return WSCloseCode.PROTOCOL_ERROR, f"a CLOSE with the invalid code {code}"
        try:
            bytes(payload[2:]).decode("utf-8")
        except UnicodeDecodeError:
            return WSCloseCode.INVALID_TEXT, "a CLOSE with a reason that is not UTF-8"
    return None
