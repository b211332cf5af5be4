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


cdef int64_t _env_int_slow(FrameBatch b, const uint8_t* p, Span* sp, int64_t low, int64_t none) noexcept:
    cdef int64_t v
    if span_int(p, sp, &v, <uint8_t*>b.scratch.data) != 0:
        return none
    return v if v >= low else none


cdef inline Span* fld_exists_b(FrameBatch b, int slot) noexcept:
    """The span when the key exists in the current frame, null included."""
    cdef Span* sp = &b.spans[slot]
    return sp if sp.gen == b.gen else NULL


cdef inline int64_t _env_int(FrameBatch b, const uint8_t* p, int slot, int64_t low, int64_t none) noexcept:
    """An envelope value for the entry: an integer in low..2^63-1, else `none` (never an error)."""
    cdef Span* sp = &b.spans[slot]
    cdef const uint8_t* s
    cdef const uint8_t* e
    cdef int64_t v = 0
    if sp.gen != b.gen or sp.kind != J_NUMBER:
        return none
    s = p + sp.start
    e = p + sp.end
    if sp.esc == 0 and e - s <= 18 and s[0] != 45:    # digits only: fits int64
        while s < e:
            v = v * 10 + (s[0] - 48)
            s += 1
        return v if v >= low else none
    return _env_int_slow(b, p, sp, low, none)


cdef int _invalid(FrameBatch b, FrameEntry* e, Py_ssize_t size, int reason) except -1:
    """Entry `e` becomes invalid for `reason`; the frame (`size` bytes) is at the end of b.raw, which keeps
    its first RAW_INVALID_MAX bytes."""
    cdef Py_ssize_t n = min(size, RAW_INVALID_MAX)
    e.outcome = OUT_INVALID
    e.kind = K_NONE
    e.reason = reason
    e.raw_len = <uint32_t>n
    e.rec_len = 0
    e.key_len = 0
    e.tid_len = 0
    b.raw.size += n
    b.n_outcome[OUT_INVALID] += 1
    b.n_reason[reason] += 1
    b.count += 1
    return OUT_INVALID

cdef int _too_large(FrameBatch b, const char* prefix, Py_ssize_t avail, Py_ssize_t size) except -1:
    """A frame of `size` bytes, too large to be kept (above MAX_FRAME, or above the listener's limit: it
    skips such a payload), of which the `avail` bytes at `prefix` are its start: counted with its full
    size, invalid for R_SIZE, its first RAW_INVALID_MAX bytes copied to the end of b.raw for _invalid."""
    cdef FrameEntry* e = _new_entry(b)
    cdef Py_ssize_t n = min(avail, RAW_INVALID_MAX)
    b.n_bytes += size
    buf_reserve(&b.raw, n)
    memcpy(b.raw.data + b.raw.size, prefix, n)
    return _invalid(b, e, n, R_SIZE)


cdef int _classify(FrameBatch b, FrameEntry* e, const uint8_t* p, Py_ssize_t n, Span* tsp) except -1:
    cdef Py_ssize_t tn
    cdef const uint8_t* t = span_text(p, tsp, <uint8_t*>b.scratch.data, &tn)
    cdef int kind = -1
    if tn == 5 and memcmp(t, b"trade", 5) == 0:
        kind = K_TRADE
    elif tn == 6 and memcmp(t, b"ticker", 6) == 0:
        kind = K_TICKER
    elif tn == 15 and memcmp(t, b"orderbook_delta", 15) == 0:
        kind = K_BOOK_DELTA
    elif tn == 18 and memcmp(t, b"orderbook_snapshot", 18) == 0:
        kind = K_BOOK_SNAPSHOT
    elif tn == 19 and memcmp(t, b"market_lifecycle_v2", 19) == 0:
        kind = K_MARKET_LIFECYCLE
    elif tn == 15 and memcmp(t, b"event_lifecycle", 15) == 0:
        kind = K_EVENT_LIFECYCLE
    if kind >= 0:
        return _record(b, e, p, n, kind)
    if tn == 10 and memcmp(t, b"subscribed", 10) == 0:
        kind = K_SUBSCRIBED
    elif tn == 2 and memcmp(t, b"ok", 2) == 0:
        kind = K_OK
    elif tn == 5 and memcmp(t, b"error", 5) == 0:
        kind = K_ERROR
    elif tn == 12 and memcmp(t, b"unsubscribed", 12) == 0:
        kind = K_UNSUBSCRIBED
    if kind >= 0:
        e.outcome = OUT_CONTROL
        e.kind = kind
        b.n_outcome[OUT_CONTROL] += 1
        b.n_kind[kind] += 1
        b.count += 1
        return OUT_CONTROL
    buf_reserve(&b.keys, tn)
    e.key_off = <uint32_t>b.keys.size
    e.key_len = <uint32_t>tn
    memcpy(b.keys.data + b.keys.size, t, tn)
    b.keys.size += tn
    name = (<char*>t)[:tn].decode("utf-8")
    b.n_other[name] = b.n_other.get(name, 0) + 1
    e.outcome = OUT_OTHER
    b.n_outcome[OUT_OTHER] += 1
    b.count += 1
    return OUT_OTHER

cdef int _record(FrameBatch b, FrameEntry* e, const uint8_t* p, Py_ssize_t n, int kind) except -1:
    cdef Span* msg = fld_exists_b(b, S_MSG)
    cdef Rec r
    cdef Py_ssize_t keys_mark = b.keys.size
    cdef char* w
    if msg == NULL or msg.kind != J_OBJECT:
        return _invalid_parsed(b, e, R_SHAPE)
    buf_reserve(&b.out, 2 * n + 4096)
    buf_reserve(&b.keys, n + 4 * PAD)      # ticker + trade_id (<= n) and ssmd_copy's slack
    w = b.out.data + b.out.size
    r.p = p
    r.buf = <uint8_t*>b.scratch.data
    r.spans = b.spans
    r.gen = b.gen
    r.err = 0
    if kind == K_TICKER:
        w = build_ticker(b, &r, w, e)
    elif kind == K_BOOK_DELTA:
        w = build_delta(b, &r, w, e)
    elif kind == K_TRADE:
        w = build_trade(b, &r, w, e)
    elif kind == K_BOOK_SNAPSHOT:
        w = build_snapshot(b, &r, w, e)
    elif kind == K_MARKET_LIFECYCLE:
        w = build_market_lifecycle(b, &r, w, e)
    else:
        w = build_event_lifecycle(b, &r, w, e)
    if r.err:
        b.keys.size = keys_mark
        e.key_off = e.key_len = e.tid_off = e.tid_len = 0
        return _invalid_parsed(b, e, r.err)
    if b.recv_ts:
        memcpy(w, b',"recv_ts":', 11)
        w = write_i64(w + 11, b.recv_ts)
    w[0] = 125
    w += 1
    e.outcome = OUT_RECORD
    e.kind = kind
    e.rec_off = <uint32_t>b.out.size
    e.rec_len = <uint32_t>(w - (b.out.data + b.out.size))
    b.out.size += e.rec_len
    b.n_outcome[OUT_RECORD] += 1
    b.n_kind[kind] += 1
    b.count += 1
    return OUT_RECORD

cdef int _invalid_parsed(FrameBatch b, FrameEntry* e, int reason) except -1:
    """A frame that parsed but broke a rule: raw keeps its first 256 bytes, the envelope stays."""
    cdef Py_ssize_t n = min(<Py_ssize_t>e.raw_len, RAW_INVALID_MAX)
    b.raw.size -= e.raw_len - n
    e.raw_len = <uint32_t>n
    e.outcome = OUT_INVALID
    e.kind = K_NONE
    e.reason = reason
    b.n_outcome[OUT_INVALID] += 1
    b.n_reason[reason] += 1
    b.count += 1
    return OUT_INVALID


cdef inline void _next_gen(FrameBatch b) noexcept:
    """A new span generation: the spans of earlier frames (or of a failed template walk) become stale."""
    b.gen += 1
    if b.gen == 0:          # wrapped: no stale span may match generation 1 again
        memset(b.spans, 0, sizeof(b.spans))
        b.gen = 1


cdef FrameEntry* _new_entry(FrameBatch b) except NULL:
    """The next entry, zeroed but for kind K_NONE, cmd_id -1 and raw_off (the batch's raw end)."""
    cdef FrameEntry* e
    cdef void* x
    if b.count == b.capacity:
        x = realloc(b.entries, 2 * b.capacity * sizeof(FrameEntry))
        if x == NULL:
            raise MemoryError()
        b.entries = <FrameEntry*>x
        b.capacity *= 2
    e = &b.entries[b.count]
    memset(e, 0, sizeof(FrameEntry))
    e.kind = K_NONE
    e.cmd_id = -1
    e.raw_off = <uint32_t>b.raw.size
    return e


cdef int _add_copied(FrameBatch self, Py_ssize_t size, const uint8_t* src) except -1:
    """Normalize the frame of `size` (<= MAX_FRAME) bytes just copied to the end of batch.raw (with
    PAD + 48 bytes of room after it); returns its outcome. src: where the template walk reads the frame,
    the copy itself or the caller's bytes when they end with a byte that stops any value and have 64
    readable bytes after them."""
    cdef FrameEntry* e = _new_entry(self)
    cdef const uint8_t* p = <const uint8_t*>(self.raw.data + self.raw.size)
    cdef const uint8_t* s
    cdef int r
    cdef bint learn
    cdef Span* sp
    self.n_bytes += size
    _reserve_scan(self, size)
    memset(<void*>(p + size), 0, PAD)
    _next_gen(self)
    if size >= 3 and p[0] == 0xEF and p[1] == 0xBB and p[2] == 0xBF:
        r = R_UTF8
    else:
        r = scan_tmpl(self, src, size)
        if r != T_HIT:
            _next_gen(self)     # forget what the template walk recorded
            learn = r == T_MISS
            r = scan_json(self, p, size)
            if r == R_NONE and learn:
                learn_template(p, size)
    if r:
        return _invalid(self, e, size, r)
    s = skip_ws(p)
    if s[0] != 123:
        return _invalid(self, e, size, R_SHAPE)
    e.sid = _env_int(self, p, S_SID, 1, 0)
    e.seq = _env_int(self, p, S_SEQ, 1, 0)
    e.cmd_id = _env_int(self, p, S_ID, 0, -1)
    sp = fld_exists_b(self, S_TYPE)
    if sp == NULL or sp.kind != J_STRING:
        return _invalid(self, e, size, R_SHAPE)
    e.raw_len = <uint32_t>size
    self.raw.size += size
    return _classify(self, e, p, size, sp)


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
