"""The picows listener of the hot path: the pure-Python twin of ``_listener.pyx``.

Every text frame of a socket read is added to the FrameBatch; the frame flagged ``last_in_buffer``
closes the batch and makes the one call of the read, ``on_batch(batch)``. Pings are answered here
rather than by picows' auto-pong: picows swallows auto-ponged pings, and a ping closing a read would
leave the batch open until the next read.
"""

from __future__ import annotations

import time

from picows import WSCloseCode, WSListener, WSMsgType

IMPLEMENTATION = "python"
MAX_MESSAGE_SIZE = 1 << 20      # 1 MiB: frames above it are refused by picows, messages by us

_FRAG_NONE = 0
_FRAG_DISCARD = -1              # the rest of a refused message
_TEXT, _BINARY, _CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION


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
        self._in_read = False
        self._discard = False
        self._closing = False
        self.max_message_size = max_message_size
        self.last_frame_at = 0.0
        self.frames = self.bytes = self.batches = 0
        self.binary_dropped = self.pings = self.pongs = self.fragmented = self.oversized = 0
        self.close_code = 0
        self.close_reason = ""

    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        self.last_frame_at = time.monotonic()

    def on_ws_frame(self, transport, frame) -> None:
        t = frame.msg_type
        if not self._in_read:
            self.batch.set_recv_ts(time.time_ns())
            self.last_frame_at = time.monotonic()
            self._in_read = True
            # a read after one that ended with a CLOSE sent is dropped: ours, or picows' after a
            # protocol error, when its parser state is no longer to be trusted
            self._discard = self._closing
        if self._discard and t != WSMsgType.CLOSE:
            pass
        elif t == _TEXT and frame.fin and self._frag_type == _FRAG_NONE:
            self.batch.add(frame.get_payload_as_memoryview())
            self.frames += 1
            self.bytes += frame.payload_size
        elif t in (_TEXT, _CONT) or (t == _BINARY and not frame.fin):
            self._fragment(transport, frame)
        elif t == _BINARY:
            self.binary_dropped += 1
        elif t == WSMsgType.PING:
            self.pings += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif t == WSMsgType.PONG:
            self.pongs += 1
        elif t == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            self.close_reason = f"closed by peer (code {self.close_code})"
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        if frame.last_in_buffer:
            self._closing = transport is not None and transport.is_close_frame_sent
            self._close_read()

    def on_ws_disconnected(self, transport) -> None:
        # a protocol error can end a read before its last frame: hand over what was added
        if self._in_read:
            self._close_read()

    def _close_read(self) -> None:
        self._in_read = False
        if len(self.batch) == 0:
            return
        self.batches += 1
        try:
            self.on_batch(self.batch)
        finally:
            self.batch.reset()

    def _fragment(self, transport, frame) -> None:
        t = frame.msg_type
        if t != _CONT:
            if self._frag_type not in (_FRAG_NONE, _FRAG_DISCARD):
                self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            self._frag_type = int(t)
            self._frag.clear()
        elif self._frag_type == _FRAG_NONE:
            self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a first fragment")
            return
        if self._frag_type in (_FRAG_DISCARD, int(_BINARY)):
            if frame.fin:
                if self._frag_type == int(_BINARY):
                    self.binary_dropped += 1
                self._frag_type = _FRAG_NONE
            return
        if len(self._frag) + frame.payload_size > self.max_message_size:
            self.oversized += 1
            self._frag_type = _FRAG_NONE if frame.fin else _FRAG_DISCARD
            self._frag.clear()
            self._refuse(transport, WSCloseCode.MESSAGE_TOO_BIG,
                         f"a fragmented message above {self.max_message_size} bytes")
            return
        self._frag += frame.get_payload_as_memoryview()
        if frame.fin:
            self.batch.add(self._frag)
            self.frames += 1
            self.bytes += len(self._frag)
            self.fragmented += 1
            self._frag_type = _FRAG_NONE
            self._frag.clear()

    def _refuse(self, transport, code, reason: str) -> None:
        """Close the connection (the session reconnects: fresh subscriptions cover what is lost)."""
        if not self.close_reason:
            self.close_reason = f"refused: {reason}"
        transport.send_close(code, reason.encode())
        transport.disconnect()
