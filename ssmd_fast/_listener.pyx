# The picows listener of the hot path (compiled twin of _listener_py.py).
#
# Every text frame of a socket read goes straight from picows' read buffer into the FrameBatch
# (add_ptr: no Python bytes per frame); the frame flagged last_in_buffer closes the batch and makes
# the one Python-level call of the read, on_batch(batch). Pings are answered here rather than by
# picows' auto-pong: picows swallows auto-ponged pings, and a ping closing a read would leave the
# batch open until the next read.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ssmd_fast._normalize cimport FrameBatch

IMPLEMENTATION = "cython"
MAX_MESSAGE_SIZE = 1 << 20      # 1 MiB: frames above it are refused by picows, messages by us

cdef enum:
    FRAG_NONE = 0
    FRAG_DISCARD = -1           # the rest of a refused message


cdef class BatchListener(WSListener):
    """Collects the text frames of each socket read into ``batch`` and calls ``on_batch(batch)`` once.

    After the call the listener resets ``self.batch``; ``on_batch`` may replace ``self.batch``
    with an empty one to keep the filled one (the connector hands batches to its consumer so).
    """

    def __init__(self, FrameBatch batch, on_batch, Py_ssize_t max_message_size=MAX_MESSAGE_SIZE):
        self.batch = batch
        self.on_batch = on_batch
        self.transport = None
        self._frag = bytearray()
        self._frag_type = FRAG_NONE
        self._in_read = False
        self._discard = False
        self._closing = False
        self.max_message_size = max_message_size
        self.last_frame_at = 0.0
        self.close_code = 0
        self.close_reason = ""

    cpdef on_ws_connected(self, WSTransport transport):
        cdef timespec ts
        self.transport = transport
        clock_gettime(CLOCK_MONOTONIC, &ts)
        self.last_frame_at = ts.tv_sec + ts.tv_nsec * 1e-9

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType t = frame.msg_type
        if not self._in_read:
            self._open_read()
            # a read after one that ended with a CLOSE sent is dropped: ours, or picows' after a
            # protocol error, when its parser state is no longer to be trusted
            self._discard = self._closing
        if self._discard and t != WSMsgType.CLOSE:
            pass
        elif t == WSMsgType.TEXT and frame.fin and self._frag_type == FRAG_NONE:
            self.batch.add_ptr(frame.payload_ptr, frame.payload_size)
            self.frames += 1
            self.bytes += <uint64_t>frame.payload_size
        elif t == WSMsgType.TEXT or t == WSMsgType.CONTINUATION or (t == WSMsgType.BINARY and not frame.fin):
            self._fragment(transport, frame)
        elif t == WSMsgType.BINARY:
            self.binary_dropped += 1
        elif t == WSMsgType.PING:
            self.pings += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif t == WSMsgType.PONG:
            self.pongs += 1
        elif t == WSMsgType.CLOSE:
            self.close_code = <int>frame.get_close_code()
            self.close_reason = f"closed by peer (code {self.close_code})"
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        if frame.last_in_buffer:
            self._closing = transport is not None and transport.is_close_frame_sent
            self._close_read()

    cpdef on_ws_disconnected(self, WSTransport transport):
        # a protocol error can end a read before its last frame: hand over what was added
        if self._in_read:
            self._close_read()

    cdef int _open_read(self) except -1:
        cdef timespec ts
        clock_gettime(CLOCK_REALTIME, &ts)
        # the struct field the record builders read (set_recv_ts() is the Python-level door to it)
        self.batch.recv_ts = <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
        clock_gettime(CLOCK_MONOTONIC, &ts)
        self.last_frame_at = ts.tv_sec + ts.tv_nsec * 1e-9
        self._in_read = True
        return 0

    cdef int _close_read(self) except -1:
        self._in_read = False
        if self.batch.count == 0:
            return 0
        self.batches += 1
        try:
            self.on_batch(self.batch)
        finally:
            self.batch.reset()
        return 0

    cdef int _fragment(self, WSTransport transport, WSFrame frame) except -1:
        cdef WSMsgType t = frame.msg_type
        cdef Py_ssize_t have
        if t != WSMsgType.CONTINUATION:
            if self._frag_type != FRAG_NONE and self._frag_type != FRAG_DISCARD:
                return self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
            self._frag_type = <int>t
            PyByteArray_Resize(self._frag, 0)
        elif self._frag_type == FRAG_NONE:
            return self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a first fragment")
        if self._frag_type == FRAG_DISCARD or self._frag_type == <int>WSMsgType.BINARY:
            if frame.fin:
                if self._frag_type == <int>WSMsgType.BINARY:
                    self.binary_dropped += 1
                self._frag_type = FRAG_NONE
            return 0
        have = PyByteArray_GET_SIZE(self._frag)
        if have + frame.payload_size > self.max_message_size:
            self.oversized += 1
            self._frag_type = FRAG_NONE if frame.fin else FRAG_DISCARD
            PyByteArray_Resize(self._frag, 0)
            return self._refuse(transport, WSCloseCode.MESSAGE_TOO_BIG,
                                f"a fragmented message above {self.max_message_size} bytes")
        PyByteArray_Resize(self._frag, have + frame.payload_size)
        memcpy(PyByteArray_AS_STRING(self._frag) + have, frame.payload_ptr, frame.payload_size)
        if frame.fin:
            have = PyByteArray_GET_SIZE(self._frag)
            self.batch.add_ptr(PyByteArray_AS_STRING(self._frag), have)
            self.frames += 1
            self.bytes += <uint64_t>have
            self.fragmented += 1
            self._frag_type = FRAG_NONE
            PyByteArray_Resize(self._frag, 0)
        return 0

    cdef int _refuse(self, WSTransport transport, WSCloseCode code, str reason) except -1:
        """Close the connection (the session reconnects: fresh subscriptions cover what is lost)."""
        if not self.close_reason:
            self.close_reason = f"refused: {reason}"
        transport.send_close(code, reason.encode())
        transport.disconnect()
        return 0
