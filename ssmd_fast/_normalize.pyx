"""The compiled normalizer: one strict pass over each Kalshi frame, the schema v1 record written
straight into a reusable FrameBatch (docs/design.md "FrameBatch", docs/schema-v1.md).

A frame laid out like the last valid frame of its type only has its values checked (the template walk,
_normalize_tmpl.pxi); any other frame goes through the full scanner (_normalize_scan.pxi).
The pure-Python twin `_normalize_py.py` is the executable spec; the two agree byte for byte.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memchr, memcmp, memcpy, memset, strlen

import os

from ssmd_fast.errors import InvalidFrame
from ssmd_fast.strict_json import loads as strict_loads

include "_normalize_simd.pxi"
include "_normalize_keys.pxi"
include "_normalize_scan.pxi"
include "_normalize_tmpl.pxi"
include "_normalize_num.pxi"
include "_normalize_rec.pxi"
include "_normalize_book.pxi"

IMPLEMENTATION = "cython"

RECORD_TYPES = {K_TRADE: "trade", K_TICKER: "ticker", K_BOOK_SNAPSHOT: "book_snapshot",
                K_BOOK_DELTA: "book_delta", K_MARKET_LIFECYCLE: "market_lifecycle",
                K_EVENT_LIFECYCLE: "event_lifecycle"}
CONTROL_TYPES = {K_SUBSCRIBED: "subscribed", K_OK: "ok", K_ERROR: "error", K_UNSUBSCRIBED: "unsubscribed"}
REASONS = {R_SIZE: "size", R_UTF8: "utf8", R_JSON: "json", R_DEPTH: "depth",
           R_DUPLICATE_KEY: "duplicate_key", R_SHAPE: "shape", R_MISSING: "missing", R_TYPE: "type",
           R_RANGE: "range", R_TICKER: "ticker"}
_TYPE_NAMES = {**RECORD_TYPES, **CONTROL_TYPES}

# Python-visible copies of the .pxd enums
globals().update(
    OUT_RECORD=OUT_RECORD, OUT_CONTROL=OUT_CONTROL, OUT_OTHER=OUT_OTHER, OUT_INVALID=OUT_INVALID,
    K_TRADE=K_TRADE, K_TICKER=K_TICKER, K_BOOK_SNAPSHOT=K_BOOK_SNAPSHOT, K_BOOK_DELTA=K_BOOK_DELTA,
    K_MARKET_LIFECYCLE=K_MARKET_LIFECYCLE, K_EVENT_LIFECYCLE=K_EVENT_LIFECYCLE,
    K_SUBSCRIBED=K_SUBSCRIBED, K_OK=K_OK, K_ERROR=K_ERROR, K_UNSUBSCRIBED=K_UNSUBSCRIBED, K_NONE=K_NONE,
    R_NONE=R_NONE, R_SIZE=R_SIZE, R_UTF8=R_UTF8, R_JSON=R_JSON, R_DEPTH=R_DEPTH,
    R_DUPLICATE_KEY=R_DUPLICATE_KEY, R_SHAPE=R_SHAPE, R_MISSING=R_MISSING, R_TYPE=R_TYPE,
    R_RANGE=R_RANGE, R_TICKER=R_TICKER, R_COUNT=R_COUNT,
    F_DUPLICATE=F_DUPLICATE, F_SUPPRESSED=F_SUPPRESSED, F_GAP=F_GAP, F_DROP=F_DROP,
    MAX_FRAME=MAX_FRAME, MAX_DEPTH=MAX_DEPTH, RAW_INVALID_MAX=RAW_INVALID_MAX,
)

_init_scan_tables(int.from_bytes(os.urandom(8), "little"))

_META_SLOTS[0] = S_STRIKE_TYPE
_META_SLOTS[1] = S_FLOOR_STRIKE
_META_SLOTS[2] = S_CAP_STRIKE
_META_SLOTS[3] = S_CUSTOM_STRIKE
_META_SLOTS[4] = S_YES_SUB_TITLE
_META_SLOTS[5] = S_NO_SUB_TITLE
_META_SLOTS[6] = S_TITLE
_META_SLOTS[7] = S_RULES_PRIMARY
_META_SLOTS[8] = S_RULES_SECONDARY
_META_KEYS[0] = b'"strike_type":'
_META_KEYS[1] = b'"floor_strike":'
_META_KEYS[2] = b'"cap_strike":'
_META_KEYS[3] = b'"custom_strike":'
_META_KEYS[4] = b'"yes_sub_title":'
_META_KEYS[5] = b'"no_sub_title":'
_META_KEYS[6] = b'"title":'
_META_KEYS[7] = b'"rules_primary":'
_META_KEYS[8] = b'"rules_secondary":'


cdef int buf_grow(ByteBuf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = max(b.size + extra, 2 * b.capacity, 4096)
    cdef char* x = <char*>realloc(b.data, cap)
    if x == NULL:
        raise MemoryError()
    b.data = x
    b.capacity = cap
    return 0


cdef inline int buf_reserve(ByteBuf* b, Py_ssize_t extra) except -1:
    """Room for `extra` more bytes after b.size (geometric growth, kept across reset())."""
    if b.size + extra <= b.capacity:
        return 0
    return buf_grow(b, extra)


cdef int _grow_scan(FrameBatch b, Py_ssize_t n) except -1:
    cdef void* x
    cdef Py_ssize_t cap
    if n + 2 > b.ctype_cap:
        cap = max(n + 2, 2 * b.ctype_cap)
        x = realloc(b.ctype, cap)
        if x == NULL:
            raise MemoryError()
        b.ctype = <uint8_t*>x
        b.ctype_cap = cap
    if n // 4 + 8 > b.keys_cap:
        cap = max(n // 4 + 8, 2 * b.keys_cap)
        x = realloc(b.keyrefs, cap * sizeof(KeyRef))
        if x == NULL:
            raise MemoryError()
        b.keyrefs = <KeyRef*>x
        b.keys_cap = cap
    b.scratch.size = 0
    buf_reserve(&b.scratch, 2 * n + 4 * PAD)
    return 0


cdef inline int _reserve_scan(FrameBatch b, Py_ssize_t n) except -1:
    """Per-frame work areas sized for a frame of n bytes (depth <= n, keys <= n/4, scratch 2n)."""
    if n + 2 <= b.ctype_cap and n // 4 + 8 <= b.keys_cap and 2 * n + 4 * PAD <= b.scratch.capacity:
        b.scratch.size = 0
        return 0
    return _grow_scan(b, n)


include "_normalize_frame.pxi"


cdef FrameEntry* _entry(FrameBatch b, Py_ssize_t i) except NULL:
    if i < 0 or i >= b.count:
        raise IndexError(f"frame index {i} out of range 0..{b.count - 1}")
    return &b.entries[i]


cdef class FrameBatch:
    """A reusable batch of normalized frames (docs/design.md "FrameBatch")."""

    def __cinit__(self):
        self.capacity = 256
        self.entries = <FrameEntry*>malloc(self.capacity * sizeof(FrameEntry))
        if self.entries == NULL:
            raise MemoryError()
        self.n_other = {}
        self.gen = 1
        buf_reserve(&self.raw, 1 << 16)
        buf_reserve(&self.out, 1 << 16)
        buf_reserve(&self.keys, 1 << 12)
        buf_reserve(&self.lvl, 1 << 12)
        _reserve_scan(self, 4096)
        _reserve_levels(self, 256)

    def __dealloc__(self):
        free(self.entries)
        free(self.raw.data)
        free(self.out.data)
        free(self.keys.data)
        free(self.scratch.data)
        free(self.lvl.data)
        free(self.ctype)
        free(self.keyrefs)
        free(self.levels)
        free(self.order)
        free(self.order_tmp)

    cdef void reset(self) noexcept:
        self.count = 0
        self.raw.size = 0
        self.out.size = 0
        self.keys.size = 0

    def _reset(self):
        """reset(): forget the entries; keep the memory and the cumulative counters."""
        self.reset()

    cdef int add_ptr(self, const char* data, Py_ssize_t size) except -1:
        """Normalize one frame of `size` bytes at `data`; returns its outcome."""
        if size > MAX_FRAME:
            return _too_large(self, data, size, size)
        buf_reserve(&self.raw, size + PAD + 48)     # the 32-byte member compare may read past PAD
        memcpy(self.raw.data + self.raw.size, data, size)
        return _add_copied(self, size, <const uint8_t*>(self.raw.data + self.raw.size))

    cdef int add_oversized_ptr(self, const char* prefix, Py_ssize_t avail, Py_ssize_t size) except -1:
        """A frame of `size` bytes of which only its first `avail` bytes, at `prefix`, were kept (the
        listener skips the payload of a frame above its limit rather than buffer it): recorded as
        add_ptr records a frame above MAX_FRAME."""
        if avail < 0 or avail > size:
            raise ValueError(f"a prefix of {avail} bytes for a frame of {size}")
        return _too_large(self, prefix, avail, size)

    cdef int add_lines_ptr(self, const char* data, Py_ssize_t size) except -1:
        """One frame per LF-terminated line (a CR before the LF stays part of the frame); a last line
        without LF counts too. Returns the number of frames added."""
        cdef const char* s = data
        cdef const char* end = data + size
        cdef const char* nl
        cdef Py_ssize_t k
        cdef int n = 0
        while s < end:
            nl = <const char*>memchr(s, 10, end - s)
            if nl == NULL:
                nl = end
            k = nl - s
            if k <= MAX_FRAME and end - nl >= 64:
                # The template walk reads the line where it is: the LF after it stops any value, and
                # 64 readable bytes follow. Reading the copy just written would wait for its stores.
                buf_reserve(&self.raw, k + PAD + 48)
                memcpy(self.raw.data + self.raw.size, s, k)
                _add_copied(self, k, <const uint8_t*>s)
            else:
                self.add_ptr(s, k)
            n += 1
            s = nl + 1
        return n

    # ---- Python API

    def add(self, frame) -> int:
        """Normalize one frame (bytes, bytearray or memoryview); returns its outcome. Never raises for
        bad input: bad input is an OUT_INVALID entry with a reason."""
        cdef Py_buffer view
        cdef int r
        if type(frame) is bytes:
            return self.add_ptr(PyBytes_AS_STRING(frame), len(<bytes>frame))
        if type(frame) is memoryview and not (<memoryview>frame).c_contiguous:
            frame = frame.tobytes()
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            r = self.add_ptr(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return r

    def add_oversized(self, prefix, Py_ssize_t size) -> int:
        """A frame of `size` bytes of which only its first bytes, `prefix`, were kept (see add_oversized_ptr)."""
        cdef Py_buffer view
        PyObject_GetBuffer(prefix, &view, PyBUF_SIMPLE)
        try:
            return self.add_oversized_ptr(<const char*>view.buf, view.len, size)
        finally:
            PyBuffer_Release(&view)

    def add_lines(self, buffer) -> int:
        """Add every line of a JSONL buffer (see add_lines_ptr); returns the number of frames added."""
        cdef Py_buffer view
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
        try:
            return self.add_lines_ptr(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def set_recv_ts(self, ns):
        """Records added from now on carry "recv_ts": ns; 0 omits it."""
        ns = int(ns)
        if not 0 <= ns <= 9223372036854775807:
            raise ValueError(f"recv_ts out of range: {ns}")
        self.recv_ts = ns

    def __getattr__(self, name):
        # `raw`, `recv_ts` and `reset` are also C-level members (batch.raw.data, batch.reset()) that
        # Cython consumers use, so their Python faces are found here, after the normal lookup missed.
        if name == "raw":
            return self._raw
        if name == "reset":
            return self._reset
        if name == "recv_ts":
            return self.recv_ts
        raise AttributeError(f"'FrameBatch' object has no attribute {name!r}")

    def __len__(self):
        return self.count

    def outcome(self, Py_ssize_t i):
        return _entry(self, i).outcome

    def kind(self, Py_ssize_t i):
        return _entry(self, i).kind

    def type_name(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        if e.outcome == OUT_OTHER:
            return self.keys.data[e.key_off:e.key_off + e.key_len].decode("utf-8")
        if e.outcome == OUT_INVALID:
            return None
        return _TYPE_NAMES[e.kind]

    def reason(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        return REASONS[e.reason] if e.outcome == OUT_INVALID else None

    def sid(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        return e.sid if e.sid > 0 else None

    def seq(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        return e.seq if e.seq > 0 else None

    def cmd_id(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        return e.cmd_id if e.cmd_id >= 0 else None

    def flags(self, Py_ssize_t i):
        return _entry(self, i).flags

    def set_flag(self, Py_ssize_t i, int f):
        cdef FrameEntry* e = _entry(self, i)
        e.flags |= f

    def _raw(self, Py_ssize_t i):
        """raw(i): the frame bytes (invalid frames: at most the first 256 bytes)."""
        cdef FrameEntry* e = _entry(self, i)
        return PyBytes_FromStringAndSize(self.raw.data + e.raw_off, e.raw_len)

    def record(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        if e.rec_len == 0:
            return None
        return PyBytes_FromStringAndSize(self.out.data + e.rec_off, e.rec_len)

    def key(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        if e.outcome != OUT_RECORD and e.outcome != OUT_OTHER:
            return None
        return PyBytes_FromStringAndSize(self.keys.data + e.key_off, e.key_len)

    def trade_id(self, Py_ssize_t i):
        cdef FrameEntry* e = _entry(self, i)
        if e.outcome != OUT_RECORD or e.kind != K_TRADE:
            return None
        return PyBytes_FromStringAndSize(self.keys.data + e.tid_off, e.tid_len)

    def control(self, Py_ssize_t i):
        """An OUT_CONTROL frame parsed into a dict (controls are rare); None for other outcomes."""
        cdef FrameEntry* e = _entry(self, i)
        if e.outcome != OUT_CONTROL:
            return None
        # the strict parser: the frame passed it, and it keeps an integer past CPython's 4,300-digit int()
        # limit as text where json.loads raised (and took the whole read's frames with it)
        return strict_loads(PyBytes_FromStringAndSize(self.raw.data + e.raw_off, e.raw_len))[0]

    def counts(self):
        """Cumulative counters since creation (reset() keeps them)."""
        cdef int k
        records, control, invalid = {}, {}, {}
        for k, name in RECORD_TYPES.items():
            if self.n_kind[k]:
                records[name] = self.n_kind[k]
        for k, name in CONTROL_TYPES.items():
            if self.n_kind[k]:
                control[name] = self.n_kind[k]
        for k, name in REASONS.items():
            if self.n_reason[k]:
                invalid[name] = self.n_reason[k]
        return {
            "frames": self.n_outcome[0] + self.n_outcome[1] + self.n_outcome[2] + self.n_outcome[3],
            "bytes": self.n_bytes,
            "records": records,
            "control": control,
            "other": dict(self.n_other),
            "invalid": invalid,
        }

    def records_jsonl(self, int skip_flags=F_DROP) -> bytes:
        """All records not flagged with skip_flags, each followed by a newline, as one bytes object."""
        cdef Py_ssize_t i, total = 0
        cdef FrameEntry* e
        cdef char* w
        for i in range(self.count):
            e = &self.entries[i]
            if e.rec_len and not (e.flags & skip_flags):
                total += e.rec_len + 1
        out = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(out)
        for i in range(self.count):
            e = &self.entries[i]
            if e.rec_len and not (e.flags & skip_flags):
                memcpy(w, self.out.data + e.rec_off, e.rec_len)
                w[e.rec_len] = 10
                w += e.rec_len + 1
        return out

    def jsonl_lines(self, int skip_flags=F_DROP):
        """``(raw lines, record lines)`` that raw_jsonl() and records_jsonl() return for these flags."""
        cdef Py_ssize_t i, n_raw = 0, n_rec = 0
        cdef FrameEntry* e
        for i in range(self.count):
            e = &self.entries[i]
            if not (e.flags & skip_flags):
                n_raw += e.outcome != OUT_INVALID
                n_rec += e.rec_len != 0
        return n_raw, n_rec

    def raw_jsonl(self, int skip_flags=F_DROP) -> bytes:
        """Raw frames of records, controls and others not flagged, one per line (CR/LF -> space)."""
        cdef Py_ssize_t i, j, total = 0
        cdef FrameEntry* e
        cdef char* w
        for i in range(self.count):
            e = &self.entries[i]
            if e.outcome != OUT_INVALID and not (e.flags & skip_flags):
                total += e.raw_len + 1
        out = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(out)
        for i in range(self.count):
            e = &self.entries[i]
            if e.outcome != OUT_INVALID and not (e.flags & skip_flags):
                memcpy(w, self.raw.data + e.raw_off, e.raw_len)
                # CR/LF can only be JSON whitespace in a valid frame, and are rare: memchr finds them
                if memchr(w, 10, e.raw_len) != NULL or memchr(w, 13, e.raw_len) != NULL:
                    for j in range(e.raw_len):
                        if w[j] == 10 or w[j] == 13:
                            w[j] = 32
                w[e.raw_len] = 10
                w += e.raw_len + 1
        return out


cdef FrameBatch _single = FrameBatch()


def normalize_frame(frame):
    """The normalized record of one frame (compact JSON bytes), None for control and other frames.

    Raises InvalidFrame(reason) for an invalid frame.
    """
    _single.reset()
    outcome = _single.add(frame)
    if outcome == OUT_RECORD:
        return _single.record(0)
    if outcome == OUT_INVALID:
        raise InvalidFrame(REASONS[_single.entries[0].reason])
    return None
