# Per-sid sequence checking over a closed FrameBatch (see _sequencer_py.py for the semantics).
# The per-frame walk is C-level over batch.entries; gaps and snapshots (rare) go to the shared
# Python ResyncTracker.

from libc.stdint cimport int64_t, uint8_t, uint64_t

from ssmd_fast._normalize cimport FrameBatch

cdef struct SidState:
    int64_t sid
    int64_t last        # last accepted seq; 0 = none yet
    int64_t behind      # the seq of an old frame (< last) just dropped; 0 = the last frame was accepted
    uint8_t cls         # C_* class learned from the first sequenced frame
    uint8_t invalid     # order book sid with books awaiting a fresh snapshot

cdef class Sequencer:
    cdef SidState* states
    cdef Py_ssize_t n_states
    cdef Py_ssize_t cap_states
    cdef Py_ssize_t hit
    cdef readonly str conn
    cdef public bint strict_start
    cdef readonly object tracker
    cdef readonly list controls
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t gaps
    cdef readonly uint64_t suppressed

    cdef SidState* find(self, int64_t sid) noexcept
    cdef SidState* lookup(self, int64_t sid, uint8_t cls) except NULL
    cpdef int process(self, FrameBatch batch) except -1
