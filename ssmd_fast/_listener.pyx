# The picows listener of the hot path (compiled twin of _listener_py.py).
#
# Every text frame of a socket read goes straight from the read buffer into the FrameBatch (add_ptr:
# no Python bytes per frame); the end of the read closes the batch and makes the one Python-level call
# of the read, on_batch(batch). Frames reach it two ways: from picows (on_ws_frame, one WSFrame object
# and one call per frame) until the session's reader hands it whole reads (feed: the frames parsed here,
# the per-frame objects and calls gone). A text message above max_message_size is an invalid frame (reason
# size, normalized-schema v1) and the connection goes on: feed skips such a frame's payload as it arrives,
# across reads, keeping only its first PREFIX bytes (what the batch keeps of an invalid frame), so a peer
# sending huge frames costs no memory. Pings are answered here rather than by picows' auto-pong:
# picows swallows auto-ponged pings, and a ping closing a read would leave the batch open until the
# next read.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memmove
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ssmd_fast._normalize cimport RAW_INVALID_MAX, FrameBatch

import picows

IMPLEMENTATION = "cython"
MAX_MESSAGE_SIZE = 1 << 20      # 1 MiB: a text message above it is invalid (size); picows refuses such frames
# the close codes a peer may send (picows' own check, which feed() repeats)
cdef frozenset _CLOSE_CODES = frozenset(int(c) for c in picows.WSCloseCode)

cdef enum:
    FRAG_NONE = 0
    FRAG_OVER = -1              # a text message above the limit: its first PREFIX bytes and its size are kept
    PREFIX = RAW_INVALID_MAX    # what the batch keeps of an invalid frame


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
        self._frag_size = 0
        self._skip = 0
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
        if not self._in_read:
            self._open_read()
        self._frame(transport, <int>frame.msg_type, frame.fin, frame.rsv1 | frame.rsv2 | frame.rsv3,
                    frame.payload_ptr, frame.payload_size, frame.payload_size)
        if frame.last_in_buffer:
            self._closing = transport is not None and transport.is_close_frame_sent
            # nothing of a next frame is left in picows' buffer: the reader may take over (see feed)
            self.clean = frame.tail_size == 0 and not self._closing
            self._close_read()

    def feed(self, bytearray buf, Py_ssize_t end):
        """The frames of one socket read, ``buf[:end]`` (unmasked server frames, picows' checks repeated).
        Complete frames are handled; a partial one at the end is moved to the front of ``buf`` and its
        length returned (the next read goes after it). After a CLOSE was sent, everything is dropped."""
        cdef const uint8_t* p = <const uint8_t*>PyByteArray_AS_STRING(buf)
        cdef Py_ssize_t pos = 0, hdr, k
        cdef int64_t n
        cdef uint64_t n64
        cdef int op, rsv
        cdef bint fin
        cdef tuple bad
        cdef object tr = self.transport     # untyped: tests hand in a recording stand-in
        if end < 0 or end > PyByteArray_GET_SIZE(buf):
            raise ValueError(f"end {end} outside the buffer ({PyByteArray_GET_SIZE(buf)} bytes)")
        self._open_read()
        try:
            while not self._discard and pos < end:
                if self._skip:      # the rest of a frame whose payload is not kept
                    k = <Py_ssize_t>min(self._skip, <int64_t>(end - pos))
                    self._skip -= k
                    pos += k
                    continue
                if end - pos < 2:
                    break
                op = p[pos] & 0x0F
                fin = p[pos] >> 7
                rsv = (p[pos] >> 4) & 7
                n = p[pos + 1] & 0x7F
                hdr = 2
                if p[pos + 1] & 0x80:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a masked frame from the server")
                if (op > 2 and op < 8) or op > 10:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, f"a frame with opcode {op:#x}")
                if op >= 8 and not fin:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a fragmented control frame")
                if op >= 8 and n > 125:
                    return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR,
                                        f"a control frame above 125 bytes (opcode {op:#x})")
                if n == 126:
                    if end - pos < 4:
                        break
                    n = (<int64_t>p[pos + 2] << 8) | p[pos + 3]
                    hdr = 4
                    if n < 126:
                        return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a frame with an invalid 16-bit length")
                elif n == 127:
                    if end - pos < 10:
                        break
                    n64 = _load_be64(p + pos + 2)
                    hdr = 10
                    if n64 >> 63 or n64 < 65536:
                        return self._refuse(tr, WSCloseCode.PROTOCOL_ERROR, "a frame with an invalid 64-bit length")
                    n = <int64_t>n64
                if n > self.max_message_size or op == 2 or (op == 0 and (
                        self._frag_type != <int>WSMsgType.TEXT or self._frag_size + n > self.max_message_size)):
                    # a data frame whose payload is not kept (control frames are at most 125 bytes): above
                    # the limit, binary, or a fragment of a message above it or of a binary one. Handled
                    # from its header and first bytes (waited for, at most PREFIX: the start of a message
                    # above the limit is kept), the rest skipped as it arrives
                    if end - pos - hdr < min(n, <int64_t>PREFIX):
                        break
                    pos += hdr
                    k = <Py_ssize_t>min(n, <int64_t>(end - pos))
                    self._skip = n - k      # before _frame: a refusal there clears it
                    self._frame(tr, op, fin, rsv, <char*>p + pos, k, n)
                    pos += k
                    continue
                if end - pos - hdr < n:
                    break
                pos += hdr
                if op == 1 and fin and rsv == 0 and self._frag_type == FRAG_NONE:    # the hot path
                    self._add_text(<char*>p + pos, <Py_ssize_t>n)
                else:
                    if op == 8:
                        bad = _close_error(p + pos, <Py_ssize_t>n)
                        if bad is not None:
                            return self._refuse(tr, bad[0], bad[1])
                    # a CLOSE or refusal sets _discard
                    self._frame(tr, op, fin, rsv, <char*>p + pos, <Py_ssize_t>n, n)
                pos += <Py_ssize_t>n
        finally:
            self._closing = tr is not None and tr.is_close_frame_sent
            self._close_read()
        if self._discard or self._closing:
            return 0
        if pos:
            memmove(<char*>p, p + pos, end - pos)
        return end - pos

    cdef int _add_text(self, char* payload, Py_ssize_t size) except -1:
        self.batch.add_ptr(payload, size)
        self.frames += 1
        self.bytes += <uint64_t>size
        return 0

    cdef int _add_oversized(self, char* prefix, Py_ssize_t avail, int64_t size) except -1:
        """A text message above the limit: an invalid frame (size) of which the batch keeps the start."""
        self.batch.add_oversized_ptr(prefix, avail, <Py_ssize_t>size)
        self.frames += 1
        self.bytes += <uint64_t>size
        return 0

    cdef int _frame(self, object transport, int t, bint fin, int rsv, char* payload, Py_ssize_t avail,
                    int64_t size) except -1:
        """One frame of `size` payload bytes, `avail` of them at `payload` (fewer only for a data frame
        whose payload feed skips)."""
        if self._discard and t != <int>WSMsgType.CLOSE:
            pass
        elif rsv:     # no extension was negotiated: RFC 6455 section 5.2 says fail (picows lets them through)
            self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a frame with reserved bits set")
        elif t == <int>WSMsgType.TEXT and fin and self._frag_type == FRAG_NONE:
            if size > self.max_message_size:
                self.oversized += 1
                self._add_oversized(payload, avail, size)
            else:
                self._add_text(payload, avail)
        elif t == <int>WSMsgType.TEXT or t == <int>WSMsgType.CONTINUATION or (t == <int>WSMsgType.BINARY and not fin):
            self._fragment(transport, t, fin, payload, avail, size)
        elif t == <int>WSMsgType.BINARY:
            self.binary_dropped += 1
            if size > self.max_message_size:
                self.oversized += 1
        elif t == <int>WSMsgType.PING:
            self.pings += 1
            transport.send_pong(PyBytes_FromStringAndSize(payload, avail))
        elif t == <int>WSMsgType.PONG:
            self.pongs += 1
        elif t == <int>WSMsgType.CLOSE:
            self.close_code = ((<uint8_t>payload[0]) << 8 | <uint8_t>payload[1]) if avail >= 2 else 0
            self.close_reason = f"closed by peer (code {self.close_code})"
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            self._discard = True        # nothing follows a CLOSE
        return 0

    def fail(self, str reason):
        """The read could not be handled (an exception past on_batch): close the connection (1011, as
        picows does for an exception out of on_ws_frame) and keep ``reason`` as the close reason."""
        if not self.close_reason:
            self.close_reason = reason
        self._refuse(self.transport, WSCloseCode.INTERNAL_ERROR, reason)
        self._closing = True

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
        # a read after one that ended with a CLOSE sent is dropped: ours, or picows' after a
        # protocol error, when its parser state is no longer to be trusted
        self._discard = self._closing
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

    cdef int _fragment(self, object transport, int t, bint fin, char* payload, Py_ssize_t avail,
                       int64_t size) except -1:
        cdef Py_ssize_t have
        cdef bint over
        if t != <int>WSMsgType.CONTINUATION:
            if self._frag_type != FRAG_NONE:
                return self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
            self._frag_type = t
            self._frag_size = 0
            PyByteArray_Resize(self._frag, 0)
        elif self._frag_type == FRAG_NONE:
            return self._refuse(transport, WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a first fragment")
        # the limit is passed by this frame
        over = self._frag_size <= self.max_message_size and self._frag_size + size > self.max_message_size
        self._frag_size += size
        if self._frag_type == <int>WSMsgType.BINARY:
            if over:
                self.oversized += 1
            if fin:
                self.binary_dropped += 1
                self._frag_type = FRAG_NONE
            return 0
        if over:    # from here on only the start of the message is kept (an invalid frame's raw bytes)
            self.oversized += 1
            self._frag_type = FRAG_OVER
            if PyByteArray_GET_SIZE(self._frag) > PREFIX:
                PyByteArray_Resize(self._frag, PREFIX)
        have = PyByteArray_GET_SIZE(self._frag)
        if self._frag_type == FRAG_OVER:
            avail = min(avail, max(PREFIX - have, 0))
        PyByteArray_Resize(self._frag, have + avail)
        memcpy(PyByteArray_AS_STRING(self._frag) + have, payload, avail)
        if fin:
            if self._frag_type == FRAG_OVER:
                self._add_oversized(PyByteArray_AS_STRING(self._frag), PyByteArray_GET_SIZE(self._frag),
                                    self._frag_size)
            else:
                self._add_text(PyByteArray_AS_STRING(self._frag), PyByteArray_GET_SIZE(self._frag))
                self.fragmented += 1
            self._frag_type = FRAG_NONE
            PyByteArray_Resize(self._frag, 0)
        return 0

    cdef int _refuse(self, object transport, WSCloseCode code, str reason) except -1:
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


cdef inline uint64_t _load_be64(const uint8_t* p) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef tuple _close_error(const uint8_t* p, Py_ssize_t n):
    """(close code, why) when picows would refuse this CLOSE payload, else None."""
    cdef int code
    if n == 1:
        return WSCloseCode.PROTOCOL_ERROR, "a CLOSE with a 1-byte code"
    if n >= 2:
        code = p[0] << 8 | p[1]
        if code < 3000 and code not in _CLOSE_CODES:
            return WSCloseCode.PROTOCOL_ERROR, f"a CLOSE with the invalid code {code}"
        try:
            PyBytes_FromStringAndSize(<char*>p + 2, n - 2).decode("utf-8")
        except UnicodeDecodeError:
            return WSCloseCode.INVALID_TEXT, "a CLOSE with a reason that is not UTF-8"
    return None

