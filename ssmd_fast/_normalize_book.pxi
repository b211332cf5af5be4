# book_snapshot of _normalize.pyx (included there): the levels of one side, checked, converted and
# written sorted by price, highest first, stable for equal prices.

cdef inline const uint8_t* _str_end(const uint8_t* s, int* esc) noexcept nogil:
    """The closing quote of a valid string whose content starts at s."""
    while True:
        s = ssmd_str_stop(s)
        if s[0] == 34:
            return s
        if s[0] == 92:
            esc[0] = 1
            s += 2
        else:
            s += 1


cdef const uint8_t* skip_value(const uint8_t* s, Span* sp, const uint8_t* p) noexcept nogil:
    """Records the valid JSON value at s in sp and returns the byte after it."""
    cdef uint8_t c = s[0]
    cdef int depth = 0, esc = 0
    sp.start = <uint32_t>(s - p)
    sp.esc = 0
    if c == 34:
        sp.kind = J_STRING
        s = _str_end(s + 1, &esc) + 1
        sp.esc = esc
    elif c == 123 or c == 91:
        sp.kind = J_OBJECT if c == 123 else J_ARRAY
        while True:
            c = s[0]
            if c == 34:
                s = _str_end(s + 1, &esc) + 1
                continue
            if c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if depth == 0:
                    s += 1
                    break
            s += 1
    elif c == 116:
        sp.kind = J_TRUE
        s += 4
    elif c == 102:
        sp.kind = J_FALSE
        s += 5
    elif c == 110:
        sp.kind = J_NULL
        s += 4
    else:
        sp.kind = J_NUMBER
        s += 1
        while _is_digit(s[0]) or s[0] == 46 or s[0] == 43 or s[0] == 45 or (s[0] | 0x20) == 101:
            s += 1
    sp.end = <uint32_t>(s - p)
    return s


cdef void _dec_key(Dec* d, LevelRef* lv) noexcept nogil:
    """Sort key of a price in [0, 1]: fractional digits 1-19, 20-38 and 39 (value 1: 10^19)."""
    cdef int64_t i, j
    cdef uint64_t digit
    lv.k_hi = 0
    lv.k_lo = 0
    lv.k_last = 0
    if d.nd == 0:
        return
    if d.pp == 1:
        lv.k_hi = 10000000000000000000ULL
        return
    for i in range(39):
        j = i + d.pp
        digit = <uint64_t>(d.dig[j] - 48) if 0 <= j < d.nd else 0
        if i < 19:
            lv.k_hi = lv.k_hi * 10 + digit
        elif i < 38:
            lv.k_lo = lv.k_lo * 10 + digit
        else:
            lv.k_last = <uint32_t>digit


cdef inline int _lvl_cmp(LevelRef* a, LevelRef* b) noexcept nogil:
    if a.k_hi != b.k_hi:
        return 1 if a.k_hi > b.k_hi else -1
    if a.k_lo != b.k_lo:
        return 1 if a.k_lo > b.k_lo else -1
    if a.k_last != b.k_last:
        return 1 if a.k_last > b.k_last else -1
    return 0


cdef void _sort_levels(FrameBatch b, Py_ssize_t n) noexcept nogil:
    """b.order <- level indices by price descending, stable (bottom-up merge sort unless monotonic)."""
    cdef LevelRef* lv = b.levels
    cdef uint32_t* o = b.order
    cdef uint32_t* t = b.order_tmp
    cdef uint32_t* x
    cdef bint down = True, up = True
    cdef Py_ssize_t i, width, lo, mid, hi, a, c, k
    cdef int cmp
    for i in range(1, n):
        cmp = _lvl_cmp(&lv[i - 1], &lv[i])
        if cmp < 0:
            down = False
        if cmp >= 0:
            up = False
    if up:      # the usual wire order (ascending): reverse, no equal prices to keep in order
        for i in range(n):
            o[i] = <uint32_t>(n - 1 - i)
        return
    for i in range(n):
        o[i] = <uint32_t>i
    if down:
        return
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a = lo
            c = mid
            k = lo
            while a < mid and c < hi:
                if _lvl_cmp(&lv[o[a]], &lv[o[c]]) >= 0:
                    t[k] = o[a]
                    a += 1
                else:
                    t[k] = o[c]
                    c += 1
                k += 1
            while a < mid:
                t[k] = o[a]
                a += 1
                k += 1
            while c < hi:
                t[k] = o[c]
                c += 1
                k += 1
            lo = hi
        x = o
        o = t
        t = x
        width *= 2
    if o != b.order:
        memcpy(b.order, o, n * sizeof(uint32_t))


cdef int _reserve_levels(FrameBatch b, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef void* x
    if n <= b.levels_cap:
        return 0
    cap = max(n, 2 * b.levels_cap)
    x = realloc(b.levels, cap * sizeof(LevelRef))
    if x == NULL:
        raise MemoryError()
    b.levels = <LevelRef*>x
    x = realloc(b.order, cap * sizeof(uint32_t))
    if x == NULL:
        raise MemoryError()
    b.order = <uint32_t*>x
    x = realloc(b.order_tmp, cap * sizeof(uint32_t))
    if x == NULL:
        raise MemoryError()
    b.order_tmp = <uint32_t*>x
    b.levels_cap = cap
    return 0


cdef char* put_side(FrameBatch b, Rec* r, char* w0, int slot_fp, int slot_dollars, int slot_cents) except NULL:
    """One snapshot side from its first source whose key exists (a null one too, which is invalid)."""
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp = fld_exists(S, G, slot_fp)
    cdef int src = 0, code
    cdef Span pa, sa
    cdef const uint8_t* p = r.p
    cdef const uint8_t* s
    cdef char* w
    cdef Py_ssize_t count = 0, i, off
    cdef LevelRef* lv
    cdef Dec d
    cdef int64_t v
    if sp == NULL:
        sp = fld_exists(S, G, slot_dollars)
        src = 1
    if sp == NULL:
        sp = fld_exists(S, G, slot_cents)
        src = 2
    if sp == NULL:
        return _lit(w0, b"[]", 2)
    if sp.kind != J_ARRAY:
        _fail(r, R_TYPE)
        return w0
    _reserve_levels(b, (sp.end - sp.start) // 5 + 2)
    b.lvl.size = 0
    s = skip_ws(p + sp.start + 1)
    while s[0] != 93:
        if s[0] != 91:
            _fail(r, R_TYPE)
            return w0
        s = skip_ws(s + 1)
        if s[0] == 93:
            _fail(r, R_TYPE)
            return w0
        s = skip_ws(skip_value(s, &pa, p))
        if s[0] != 44:
            _fail(r, R_TYPE)
            return w0
        s = skip_ws(skip_value(skip_ws(s + 1), &sa, p))
        if s[0] != 93:
            _fail(r, R_TYPE)
            return w0
        s = skip_ws(s + 1)
        if s[0] == 44:
            s = skip_ws(s + 1)
        buf_reserve(&b.lvl, 2 * MAX_DIGITS + 64)    # a level and ssmd_copy's slack
        lv = &b.levels[count]
        w = b.lvl.data + b.lvl.size
        w[0] = 91
        w += 1
        if src == 2:
            code = span_int(p, &pa, &v, r.buf)
            if code == 0 and (v < 0 or v > 100):
                code = R_RANGE
            if code == 0:
                w = write_cents(w, v)
                lv.k_hi = <uint64_t>v * 100000000000000000ULL
                lv.k_lo = 0
                lv.k_last = 0
        else:
            code = span_dec(p, &pa, &d, r.buf)
            if code == 0:
                code = dec_check(&d, Q_PRICE)
            if code == 0:
                w = write_dec(w, &d)
                _dec_key(&d, lv)
        if code:
            _fail(r, code)
            if code == R_TYPE:
                return w0
        w[0] = 44
        w += 1
        if src == 0:
            code = span_dec(p, &sa, &d, r.buf)
            if code == 0:
                code = dec_check(&d, Q_NONNEG)
            if code == 0:
                w = write_dec(w, &d)
        else:
            code = span_int(p, &sa, &v, r.buf)
            if code == 0 and v < 0:
                code = R_RANGE
            if code == 0:
                w = write_i64(w, v)
        if code:
            _fail(r, code)
            if code == R_TYPE:
                return w0
        w[0] = 93
        w += 1
        lv.off = <uint32_t>b.lvl.size
        lv.len = <uint32_t>(w - (b.lvl.data + b.lvl.size))
        b.lvl.size += lv.len
        count += 1
    if r.err:
        return w0
    _sort_levels(b, count)
    off = w0 - b.out.data
    buf_reserve(&b.out, off - b.out.size + b.lvl.size + count + 4096)
    w = b.out.data + off
    w[0] = 91
    w += 1
    for i in range(count):
        if i:
            w[0] = 44
            w += 1
        lv = &b.levels[b.order[i]]
        memcpy(w, b.lvl.data + lv.off, lv.len)
        w += lv.len
    w[0] = 93
    return w + 1


cdef char* build_snapshot(FrameBatch b, Rec* r, char* w, FrameEntry* e) except NULL:
    """The sides may grow batch.out: w is rebased by put_side."""
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    w = _lit(w, b'{"type":"book_snapshot","feed":"kalshi","ticker":', 49)
    w = put_ticker(b, r, w, fld(S, G, S_MARKET_TICKER), e)
    w = _lit(w, b',"yes":', 7)
    w = put_side(b, r, w, S_YES_DOLLARS_FP, S_YES_DOLLARS, S_YES)
    w = _lit(w, b',"no":', 6)
    w = put_side(b, r, w, S_NO_DOLLARS_FP, S_NO_DOLLARS, S_NO)
    return put_envelope(r, w, e)
