# The picows listener of the hot path: frames of one socket read -> one FrameBatch -> one call.

from libc.stdint cimport int64_t, uint64_t
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ssmd_fast._normalize cimport FrameBatch

cdef class BatchListener(WSListener):
    cdef public FrameBatch batch          # the session may swap it inside on_batch (the connector does)
    cdef public object on_batch           # callable(batch): one call per socket read
    cdef public object transport
    cdef bytearray _frag                  # a fragmented message being reassembled (FRAG_OVER: its start)
    cdef int _frag_type                   # 0 = none, else TEXT, BINARY or FRAG_OVER
    cdef int64_t _frag_size               # payload bytes of the fragmented message so far
    cdef int64_t _skip                    # payload bytes still to arrive of a frame being skipped (see feed)
    cdef bint _in_read                    # frames of the current socket read are being added
    cdef bint _discard                    # the current read is dropped (see _closing)
    cdef bint _closing                    # the last read ended with a CLOSE sent
    cdef readonly double last_frame_at    # CLOCK_MONOTONIC seconds of the last frame of any type
    cdef readonly Py_ssize_t max_message_size
    cdef readonly uint64_t frames         # text messages added to batches (those above the limit too)
    cdef readonly uint64_t bytes          # their payload bytes (received, whether kept or skipped)
    cdef readonly uint64_t batches        # on_batch calls
    cdef readonly uint64_t binary_dropped
    cdef readonly uint64_t pings
    cdef readonly uint64_t pongs
    cdef readonly uint64_t fragmented     # messages reassembled from fragments
    cdef readonly uint64_t oversized      # messages above max_message_size (text: invalid, size; binary: dropped)
    cdef readonly int close_code          # the peer's CLOSE code (0 = none received)
    cdef readonly str close_reason
    cdef public bint clean                # the last read ended on a frame boundary in picows' buffer


    cdef int _open_read(self) except -1
    cdef int _close_read(self) except -1
    cdef int _frame(self, object transport, int t, bint fin, int rsv, char* payload, Py_ssize_t avail,
                    int64_t size) except -1
    cdef int _add_text(self, char* payload, Py_ssize_t size) except -1
    cdef int _add_oversized(self, char* prefix, Py_ssize_t avail, int64_t size) except -1
    cdef int _fragment(self, object transport, int t, bint fin, char* payload, Py_ssize_t avail,
                       int64_t size) except -1
    cdef int _refuse(self, object transport, WSCloseCode code, str reason) except -1
