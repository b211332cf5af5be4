# Per-sid sequence checking of a closed FrameBatch: the compiled twin of _sequencer_py.py.
# Same semantics; the walk reads batch.entries directly and creates no Python object per frame.
# Gaps, snapshots and deltas of invalid books (rare) go to the shared ResyncTracker.

import time

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, realloc

from ssmd_fast._normalize cimport (
    F_DUPLICATE,
    F_GAP,
    F_SUPPRESSED,
    K_BOOK_DELTA,
    K_BOOK_SNAPSHOT,
    K_EVENT_LIFECYCLE,
    K_MARKET_LIFECYCLE,
    K_OK,
    K_TRADE,
    K_UNSUBSCRIBED,
    OUT_CONTROL,
    OUT_INVALID,
    FrameBatch,
    FrameEntry,
)

from ssmd_fast._sequencer_py import REGRESSED, ResyncTracker

IMPLEMENTATION = "cython"
cdef int64_t REGRESSED_SEQ = REGRESSED

# mirrors C_* of _sequencer_py.py
cdef enum:
    C_UNKNOWN = 0
    C_BOOK = 1
    C_TRADE = 2
    C_LIFECYCLE = 3


cdef inline uint8_t class_of(uint8_t kind) noexcept:
    if kind == K_BOOK_DELTA or kind == K_BOOK_SNAPSHOT:
        return C_BOOK
    if kind == K_TRADE:
        return C_TRADE
    if kind == K_MARKET_LIFECYCLE or kind == K_EVENT_LIFECYCLE:
        return C_LIFECYCLE
    return C_UNKNOWN


cdef inline object market_of(FrameBatch batch, FrameEntry* e):
    if e.key_len == 0:
        return None
    return PyUnicode_DecodeUTF8(batch.keys.data + e.key_off, e.key_len, "replace")


cdef inline int64_t event_time(FrameBatch batch) except? -1:
    if batch.recv_ts != 0:
        return batch.recv_ts
    return time.time_ns()


cdef class Sequencer:
    """Per-connection sequence state (call ``reset(conn)`` on every new connection)."""

    def __cinit__(self):
        self.states = NULL
        self.n_states = 0
        self.cap_states = 0
        self.hit = 0

    def __init__(self, str conn="", *, bint strict_start=True):
        self.strict_start = strict_start
        self.tracker = ResyncTracker(conn)
        self.reset(conn)

    def __dealloc__(self):
        free(self.states)
        self.states = NULL

    def reset(self, str conn):
        self.conn = conn
        self.tracker.reset(conn)
        self.n_states = 0
        self.hit = 0
        self.controls = []
        self.duplicates = 0
        self.gaps = 0
        self.suppressed = 0

    @property
    def resyncs(self):
        return self.tracker.resyncs

    cdef SidState* find(self, int64_t sid) noexcept:
        cdef Py_ssize_t i
        if self.hit < self.n_states and self.states[self.hit].sid == sid:
            return &self.states[self.hit]
        # newest first: renewed subscriptions append sids, the live ones are at the end
        i = self.n_states - 1
        while i >= 0:
            if self.states[i].sid == sid:
                self.hit = i
                return &self.states[i]
            i -= 1
        return NULL

    cdef SidState* lookup(self, int64_t sid, uint8_t cls) except NULL:
        cdef SidState* st = self.find(sid)
        cdef SidState* grown
        cdef Py_ssize_t cap
        if st != NULL:
            return st
        if self.n_states == self.cap_states:
            cap = 16 if self.cap_states == 0 else self.cap_states * 2
            grown = <SidState*>realloc(self.states, cap * sizeof(SidState))
            if grown == NULL:
                raise MemoryError()
            self.states = grown
            self.cap_states = cap
        st = &self.states[self.n_states]
        st.sid = sid
        st.last = 0
        st.behind = 0
        st.cls = cls
        st.invalid = 0
        self.hit = self.n_states
        self.n_states += 1
        return st

    cpdef int process(self, FrameBatch batch) except -1:
        """Check every sequenced frame of ``batch`` and flag it.

        Returns how many events, snapshot requests and resynced sids it added for ``take()`` (0 on the
        common path). The indices of control frames are left in ``self.controls`` for the protocol core.
        """
        cdef Py_ssize_t i
        cdef FrameEntry* e
        cdef SidState* st
        cdef int64_t last, seq, time_ns = 0
        cdef bint gap
        tracker = self.tracker
        cdef Py_ssize_t n_before = len(tracker.events) + len(tracker.snapshot_requests) + len(tracker.resynced_sids)
        self.controls = []
        for i in range(batch.count):
            e = &batch.entries[i]
            if e.outcome == OUT_CONTROL:
                self.controls.append(i)
                if (e.kind == K_OK or e.kind == K_UNSUBSCRIBED) and e.sid > 0 and e.seq > 0:
                    st = self.find(e.sid)
                    if st != NULL and e.seq == st.last + 1:
                        st.last = e.seq   # only when contiguous: whether acks take a number is undocumented
                continue
            if e.sid <= 0 or e.seq <= 0:
                continue
            st = self.lookup(e.sid, class_of(e.kind))
            if st.cls == C_UNKNOWN:
                st.cls = class_of(e.kind)
            last = st.last
            seq = e.seq
            if last != 0 and seq <= last:
                if st.behind != 0 and last != REGRESSED_SEQ:   # the numbering went back: see _sequencer_py.py
                    if time_ns == 0:
                        time_ns = event_time(batch)
                    self.gaps += 1
                    tracker.regression(e.sid, st.cls, market_of(batch, e), last, st.behind, time_ns)
                    st.last = REGRESSED_SEQ
                elif seq < last:
                    st.behind = seq
                e.flags |= F_DUPLICATE
                self.duplicates += 1
                continue
            st.behind = 0
            st.last = seq
            gap = seq != last + 1 and (last != 0 or self.strict_start)
            # an unusable book frame leaves the book as wrong as a lost one
            if gap or (e.outcome == OUT_INVALID and st.cls == C_BOOK):
                if time_ns == 0:
                    time_ns = event_time(batch)
                self.gaps += 1
                e.flags |= F_GAP
                if st.cls == C_BOOK:
                    if gap:
                        why = f"seq gap {last} -> {seq}"
                    else:
                        why = f"frame {seq} unusable ({batch.reason(i)})"
                    tracker.book_gap(e.sid, market_of(batch, e), last, seq, time_ns, why)
                    st.invalid = 1
                else:
                    tracker.other_gap(e.sid, st.cls, market_of(batch, e), last, seq, time_ns)
            if st.cls != C_BOOK or e.outcome == OUT_INVALID:
                continue
            if e.kind == K_BOOK_SNAPSHOT:
                if time_ns == 0:
                    time_ns = event_time(batch)
                if tracker.snapshot(e.sid, market_of(batch, e), seq, time_ns):
                    st.invalid = 0
            elif st.invalid and e.kind == K_BOOK_DELTA:
                if tracker.suppress(e.sid, market_of(batch, e)):
                    e.flags |= F_SUPPRESSED
                    self.suppressed += 1
        return len(tracker.events) + len(tracker.snapshot_requests) + len(tracker.resynced_sids) - n_before

    def take(self):
        """``(events, snapshot_requests, resynced_sids)`` produced since the last call."""
        return self.tracker.take()

    def last_seq(self, int64_t sid):
        cdef SidState* st = self.find(sid)
        return st.last if st != NULL and st.last != 0 and st.last != REGRESSED_SEQ else None

    def invalid_sids(self):
        return [self.states[i].sid for i in range(self.n_states) if self.states[i].invalid]

    def stats(self):
        return {"duplicates": self.duplicates, "gaps": self.gaps, "suppressed": self.suppressed,
                "resyncs": self.resyncs}
