# HPUB framing into a ring of in-flight messages, and the ack parser (API: _framing_py.py docstrings).

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from ssmd_fast._normalize cimport FrameBatch, FrameEntry


cdef struct OutMsg:
    uint64_t pos          # absolute position of the frame in the log (buf[0] is at `base`)
    uint32_t len          # whole frame: HPUB line, headers, payload, CRLF
    uint32_t subj_len     # the subject starts at pos + 5 ("HPUB ")
    uint32_t id_off       # Nats-Msg-Id value, relative to pos
    uint32_t id_len
    uint32_t pay_off      # payload, relative to pos
    uint32_t pay_len
    uint32_t attempts     # sends so far (0 = queued)
    uint8_t state         # QUEUED, SENT, ACKED, RETIRED
    uint8_t origin        # ORIGIN_LIVE, ORIGIN_SPILL
    double first_sent
    double sent_at
    int64_t recv_ns       # the batch's receive time (ns since the epoch; 0 = none): ack latency


@cython.final
cdef class PublishRing:
    cdef OutMsg* ents
    cdef uint64_t cap_mask            # entry capacity - 1 (a power of two)
    cdef char* buf
    cdef Py_ssize_t buf_len
    cdef Py_ssize_t buf_cap
    cdef uint64_t base
    cdef bytes prefix_b
    cdef bytes inbox_b
    cdef bytes feed_b
    cdef char scratch_subj[2304]
    cdef char scratch_id[640]
    cdef list _oversized
    cdef dict _counters
    cdef uint64_t _spill_retired
    cdef readonly object encoder
    cdef readonly bytes inbox
    cdef readonly bint raw
    cdef readonly bint normalized
    cdef readonly bint acked
    cdef public Py_ssize_t max_payload
    cdef readonly uint64_t head
    cdef readonly uint64_t tail
    cdef readonly uint64_t send_next
    cdef readonly Py_ssize_t queued_bytes
    cdef readonly Py_ssize_t resends_pending
    cdef readonly uint64_t framed
    cdef readonly uint64_t sent
    cdef readonly uint64_t resent
    cdef readonly uint64_t acked_count
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t rejected
    cdef readonly uint64_t oversized
    cdef int64_t _recv_ns              # recv_ts of the batch being framed (0 outside add_batch)
    cdef public int64_t now_ns         # when the bytes being parsed were read (set by AckParser.feed)
    cdef uint64_t lat_counts[128]      # frame receive -> ack, LATENCY_BUCKETS log-linear buckets
    cdef readonly uint64_t latency_sum_ns

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef int _grow_entries(self) except -1
    cdef uint64_t _frame(self, const char* subj, Py_ssize_t subj_len, const char* mid, Py_ssize_t mid_len,
                         const char* payload, Py_ssize_t pay_len, uint8_t origin) except? 0
    cdef Py_ssize_t _id_stem(self, char* mid, FrameEntry* e, FrameBatch b, bint has_tid, bytes conn_text,
                             uint64_t counter) except -1
    cdef bint ack_c(self, uint64_t pseq, bint duplicate) noexcept
    cdef void _latency(self, int64_t recv_ns) noexcept
    cdef void _advance(self) noexcept
    cdef OutMsg* _at(self, uint64_t pseq) noexcept
    cdef tuple _message(self, OutMsg* e)
    cdef bytes _resend(self, list pseqs, double now)


@cython.final
cdef class AckParser:
    cdef readonly PublishRing ring
    cdef bytes prefix_b
    cdef char* pend
    cdef Py_ssize_t pend_len
    cdef Py_ssize_t pend_cap
    cdef public list events
    cdef readonly uint64_t acks
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t errors
    cdef readonly uint64_t no_responders
    cdef readonly uint64_t stale
    cdef readonly uint64_t protocol_errors

    cdef int _keep(self, const char* p, Py_ssize_t n) except -1
    cdef Py_ssize_t _parse(self, const char* p, Py_ssize_t n) except -1
    cdef int _on_msg(self, const char* subj, Py_ssize_t subj_len, const char* hdr, Py_ssize_t hdr_len,
                     const char* payload, Py_ssize_t pay_len) except -1
    cdef int _on_ack(self, uint64_t pseq, const char* subj, Py_ssize_t subj_len, const char* payload,
                     Py_ssize_t pay_len) except -1
