# Message framing into a ring of in-flight messages, fast-ingest batches, and the ack parser
# (API: _framing_py.py and _framing_acks_py.py docstrings).

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from ssmd_fast._normalize cimport FrameBatch, FrameEntry


cdef struct OutMsg:
    uint64_t pos          # offset of the frame in the circular log `buf`
    uint32_t len          # whole frame: protocol line, headers, payload, CRLF
    uint32_t subj_len     # the subject starts at pos + subj_off
    uint32_t id_off       # Nats-Msg-Id value, relative to pos (core: no header, id_len 0)
    uint32_t id_len
    uint32_t pay_off      # payload, relative to pos
    uint32_t pay_len
    uint32_t attempts     # sends so far (0 = queued)
    uint32_t rep_off      # fast mode: the reply's batch field, relative to pos
    uint32_t bno          # fast mode: the batch it was last sent in ...
    uint32_t bseq         # ... and its seq there
    uint8_t state         # QUEUED, SENT, ACKED, RETIRED
    uint8_t origin        # ORIGIN_LIVE, ORIGIN_SPILL
    uint8_t held          # a fast-ingest notice named it: flow acks do not settle it
    uint8_t subj_off      # 4 (PUB) or 5 (HPUB)
    double first_sent
    double sent_at
    int64_t recv_ns       # the batch's receive time (ns since the epoch; 0 = none): ack latency


cdef struct Batch:
    uint32_t bno          # 0: a free slot
    uint32_t state        # BATCH_OPEN, BATCH_CLOSING
    uint32_t next_seq     # seqs 1..next_seq-1 assigned
    uint32_t acked        # flow-acked up to here
    uint32_t flow         # the server's ack interval
    uint32_t eob_seq      # the commit's seq (closing)
    uint32_t started      # the server acked the start: it has the batch
    uint64_t cursor       # its sent, unacked messages lie in cursor..last_pseq (seqs rising with the pseq)
    uint64_t last_pseq
    double last_send


@cython.final
cdef class PublishRing:
    cdef OutMsg* ents
    cdef uint64_t cap_mask            # entry capacity - 1 (a power of two)
    cdef char* buf
    cdef Py_ssize_t wpos              # where the next frame goes in the circular log
    cdef Py_ssize_t buf_cap
    cdef bytes prefix_b
    cdef bytes inbox_b
    cdef bytes feed_b
    cdef bytes reply_b                # fast: the whole reply with placeholders; ack: "{inbox}."
    cdef bytes tmpl_b                 # subject heads "{prefix}.json.{word}." per (kind, form), then "other"
    cdef Py_ssize_t tmpl_off[13]
    cdef Py_ssize_t tmpl_len[13]
    cdef Py_ssize_t flow_len
    cdef char scratch_tok[1100]
    cdef char scratch_id[640]
    cdef list _oversized
    cdef dict _counters
    cdef uint64_t _spill_retired
    cdef Batch batches_[16]
    cdef list _first_subj             # per batch slot: the subject of its first message
    cdef uint32_t _bno
    cdef readonly object encoder
    cdef readonly bytes inbox
    cdef readonly bint raw
    cdef readonly bint normalized
    cdef readonly bint acked
    cdef readonly int mode
    cdef readonly int flow
    cdef readonly uint32_t batch_max
    cdef readonly uint32_t cur_batch
    cdef public bytes good_subject
    cdef public bint gate_starts      # a batch's start goes alone until acked (set while starts fail)
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
    cdef readonly uint64_t parked
    cdef readonly uint64_t oversized
    cdef readonly uint64_t direct_bytes
    cdef int64_t _recv_ns              # recv_ts of the batch being framed (0 outside add_batch)
    cdef public int64_t now_ns         # when the bytes being parsed were read (set by AckParser.feed)
    cdef uint64_t lat_counts[128]      # frame receive -> ack, LATENCY_BUCKETS log-linear buckets
    cdef readonly uint64_t latency_sum_ns

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef int _grow_entries(self, uint64_t need) except -1
    cdef uint64_t _add_one(self, bytes s, bytes m, bytes p, uint8_t origin) except? 0
    cdef Py_ssize_t _write_frame(self, char* o, OutMsg* e, uint64_t pseq, const char* s1, Py_ssize_t n1,
                                 const char* s2, Py_ssize_t n2, const char* mid, Py_ssize_t mid_len,
                                 const char* pay, Py_ssize_t pay_len) noexcept
    cdef uint64_t _emit(self, const char* s1, Py_ssize_t n1, const char* s2, Py_ssize_t n2, const char* mid,
                        Py_ssize_t mid_len, const char* pay, Py_ssize_t pay_len, uint8_t origin) except? 0
    cdef Py_ssize_t _id_stem(self, char* mid, FrameEntry* e, FrameBatch b, bint has_tid, bytes conn_text,
                             uint64_t counter) except -1
    cdef Py_ssize_t _patch_begin(self, Batch* b, char* run) noexcept
    cdef void _patch(self, OutMsg* e, Batch* b, char* run, Py_ssize_t run_len) noexcept
    cdef void _track(self, Batch* b, uint64_t pseq, OutMsg* e)
    cdef Batch* _batch(self, uint32_t bno) noexcept
    cdef bint ack_c(self, uint64_t pseq, bint duplicate) noexcept
    cdef void _latency(self, int64_t recv_ns) noexcept
    cdef void _advance(self) noexcept
    cdef OutMsg* _at(self, uint64_t pseq) noexcept
    cdef tuple _message(self, OutMsg* e)
    cdef tuple _retire(self, uint64_t pseq)


@cython.final
cdef class AckParser:
    cdef readonly PublishRing ring
    cdef bytes prefix_b
    cdef bytes fast_b
    cdef char* pend
    cdef Py_ssize_t pend_len
    cdef Py_ssize_t pend_cap
    cdef public list events
    cdef public uint64_t acks
    cdef public uint64_t duplicates
    cdef public uint64_t errors
    cdef public uint64_t no_responders
    cdef public uint64_t stale
    cdef public uint64_t protocol_errors
    cdef public uint64_t gaps
    cdef public uint64_t replies

    cdef int _keep(self, const char* p, Py_ssize_t n) except -1
    cdef Py_ssize_t _parse(self, const char* p, Py_ssize_t n) except -1
    cdef int _on_msg(self, const char* subj, Py_ssize_t subj_len, const char* hdr, Py_ssize_t hdr_len,
                     const char* payload, Py_ssize_t pay_len) except -1
    cdef int _on_ack(self, uint64_t pseq, const char* subj, Py_ssize_t subj_len, const char* payload,
                     Py_ssize_t pay_len) except -1
    cdef int _fast_bno(self, const char* subj, Py_ssize_t subj_len) noexcept
