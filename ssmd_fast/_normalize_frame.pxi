# One frame's path through _normalize.pyx (included there): its entry, the template walk or the full
# scan, the envelope (sid, seq, id), the classification by type, and the entry's outcome: a record
# (the builders of _normalize_rec.pxi), a control, an other, or invalid with its reason.
# The include stands where these functions stood in _normalize.pyx, so the generated C keeps its order.

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

cdef void _recv_ts_text(FrameBatch b) noexcept:
    """',"recv_ts":{b.recv_ts}' into b.rts_txt (at most 31 bytes), for _record to copy."""
    memcpy(b.rts_txt, b',"recv_ts":', 11)
    b.rts_len = write_i64(b.rts_txt + 11, b.recv_ts) - b.rts_txt
    b.rts_val = b.recv_ts


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
        # one recv_ts per socket read: its text is made once, not once per record (19 digits, two per
        # dependent division, were a third of _add_copied's own samples)
        if b.recv_ts != b.rts_val:
            _recv_ts_text(b)
        memcpy(w, b.rts_txt, 32)
        w += b.rts_len
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
