# The six record builders of _normalize.pyx (included there), key order as docs/design.md lists it.
#
# A builder writes the record while it checks the fields; every broken rule lowers `err` to the
# earliest reason code of the spec's list, and a record with err != 0 is discarded by the caller.

cdef struct Rec:
    char* w                 # write position in batch.out (capacity reserved by the caller)
    const uint8_t* p        # the frame (padded copy)
    uint8_t* buf            # scratch for decoded strings and digit copies
    int err


cdef inline void _fail(Rec* r, int code) noexcept nogil:
    if code != 0 and (r.err == 0 or code < r.err):
        r.err = code


cdef inline void _lit(Rec* r, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(r.w, s, n)
    r.w += n


cdef inline Span* fld(FrameBatch b, int slot) noexcept:
    """The span of a present source (its key exists and its value is not null), else NULL."""
    cdef Span* sp = &b.spans[slot]
    if sp.gen != b.gen or sp.kind == J_NULL:
        return NULL
    return sp


cdef inline Span* fld_dollars(FrameBatch b, int slot) noexcept:
    """A scalar *_dollars source: "" counts as absent too."""
    cdef Span* sp = &b.spans[slot]
    if sp.gen != b.gen or sp.kind == J_NULL or (sp.kind == J_STRING and sp.end - sp.start == 2):
        return NULL
    return sp


cdef inline Span* fld_exists(FrameBatch b, int slot) noexcept:
    """The span when the key exists, null included."""
    cdef Span* sp = &b.spans[slot]
    return sp if sp.gen == b.gen else NULL


cdef inline bint span_is(const uint8_t* p, Span* sp, const char* lit, Py_ssize_t n, uint8_t* buf) noexcept:
    """A string span equal to lit after unescaping."""
    cdef Py_ssize_t k
    if sp.kind != J_STRING:
        return False
    if not sp.esc:
        return sp.end - sp.start == n + 2 and memcmp(p + sp.start + 1, lit, n) == 0
    k = decode_string(p + sp.start + 1, p + sp.end - 1, buf)
    return k == n and memcmp(buf, lit, n) == 0


cdef inline const uint8_t* span_text(const uint8_t* p, Span* sp, uint8_t* buf, Py_ssize_t* n) noexcept:
    """A string span's unescaped content (in place when it has no escapes, else decoded into buf)."""
    if not sp.esc:
        n[0] = sp.end - sp.start - 2
        return p + sp.start + 1
    n[0] = decode_string(p + sp.start + 1, p + sp.end - 1, buf)
    return buf


cdef inline void put_null(Rec* r) noexcept:
    _lit(r, b"null", 4)


cdef int put_dec_plain(Rec* r, const uint8_t* s, const uint8_t* e, int q) noexcept nogil:
    """A decimal string without escapes, content [s, e) (more than 16 bytes or none after the sign):
    checked and written in one pass."""
    cdef const uint8_t* ip
    cdef const uint8_t* fp
    cdef Py_ssize_t ni, nf = 0
    cdef bint neg = s[0] == 45
    cdef char* w
    if neg:
        s += 1
    ip = s
    s = ssmd_digits_end(s)          # stops at the closing quote at the latest
    ni = s - ip
    fp = s + 1
    if ni == 0:
        return R_RANGE
    if s != e:
        if s[0] != 46:
            return R_RANGE
        s = ssmd_digits_end(fp)
        nf = s - fp
        if nf == 0 or s != e:
            return R_RANGE
    while ni > 0 and ip[0] == 48:
        ip += 1
        ni -= 1
    while nf > 0 and fp[nf - 1] == 48:
        nf -= 1
    if (ni if ni else 1) + nf > MAX_DIGITS:
        return R_RANGE
    if ni == 0 and nf == 0:
        neg = False
        if q == Q_POS:
            return R_RANGE
    elif neg and q != Q_ANY:
        return R_RANGE
    if q == Q_PRICE and (ni > 1 or (ni == 1 and (ip[0] != 49 or nf > 0))):
        return R_RANGE
    w = r.w
    if neg:
        w[0] = 45
        w += 1
    if ni == 0:
        w[0] = 48
        w += 1
    else:
        w = ssmd_copy(w, ip, ni)
    if nf:
        w[0] = 46
        w = ssmd_copy(w + 1, fp, nf)
    r.w = w
    return R_NONE


cdef void put_dec_slow(Rec* r, Span* sp, int q) noexcept nogil:
    """put_dec for the uncommon forms: escapes, a JSON number, more than 16 characters."""
    cdef Dec d
    cdef int code
    if sp.kind == J_STRING and not sp.esc:
        _fail(r, put_dec_plain(r, r.p + sp.start + 1, r.p + sp.end - 1, q))
        return
    code = span_dec(r.p, sp, &d, r.buf)
    if code == 0:
        code = dec_check(&d, q)
    if code:
        _fail(r, code)
    else:
        r.w = write_dec(r.w, &d)


cdef inline void put_dec(Rec* r, Span* sp, int q) noexcept nogil:
    """A decimal source under the sign/range rule q; the short plain strings ("0.5500") inline."""
    cdef const uint8_t* s = r.p + sp.start + 1
    cdef int n = <int>(sp.end - sp.start) - 2
    cdef int neg = s[0] == 45
    if sp.kind == J_STRING and not sp.esc and 0 < n - neg <= 16:
        if ssmd_dec_short(&r.w, s + neg, n - neg, neg, q):
            _fail(r, R_RANGE)
        return
    put_dec_slow(r, sp, q)


cdef inline void put_cents(Rec* r, Span* sp) noexcept:
    cdef int64_t v
    cdef int code = span_int(r.p, sp, &v, r.buf)
    if code == 0 and (v < 0 or v > 100):
        code = R_RANGE
    if code:
        _fail(r, code)
    else:
        r.w = write_cents(r.w, v)


cdef inline bint _plain_int(Span* sp) noexcept nogil:
    """A JSON integer literal of at most 18 characters: it fits int64 and, JSON having no leading
    zeros, it already is its canonical text (but for -0)."""
    return sp.kind == J_NUMBER and sp.esc == 0 and sp.end - sp.start <= 18


cdef inline int put_plain_int(Rec* r, Span* sp, int q, int zeros) noexcept nogil:
    """A plain integer literal written as itself (times 10^zeros), after the sign rule q."""
    cdef const uint8_t* s = r.p + sp.start
    cdef Py_ssize_t n = sp.end - sp.start
    cdef bint neg = s[0] == 45
    if s[neg] == 48:                    # 0 or -0
        if q == Q_POS:
            return R_RANGE
        r.w[0] = 48
        r.w += 1
        return R_NONE
    if neg and q != Q_ANY:
        return R_RANGE
    r.w = ssmd_zeros(ssmd_copy(r.w, s, n), zeros)
    return R_NONE


cdef inline void put_int(Rec* r, Span* sp, int q) noexcept:
    cdef int64_t v
    cdef int code
    if _plain_int(sp):
        _fail(r, put_plain_int(r, sp, q, 0))
        return
    code = span_int(r.p, sp, &v, r.buf)
    if code == 0 and ((q == Q_POS and v <= 0) or (q == Q_NONNEG and v < 0)):
        code = R_RANGE
    if code:
        _fail(r, code)
    else:
        r.w = write_i64(r.w, v)


cdef inline void put_price(Rec* r, Span* dollars, Span* cents, Span* cents2, bint required) noexcept:
    if dollars != NULL:
        put_dec(r, dollars, Q_PRICE)
    elif cents != NULL:
        put_cents(r, cents)
    elif cents2 != NULL:
        put_cents(r, cents2)
    elif required:
        _fail(r, R_MISSING)
    else:
        put_null(r)


cdef inline void put_qty(Rec* r, Span* fp, Span* legacy, int q, bint required) noexcept:
    """A quantity: the *_fp decimal, else the legacy integer count."""
    if fp != NULL:
        put_dec(r, fp, q)
    elif legacy != NULL:
        put_int(r, legacy, q)
    elif required:
        _fail(r, R_MISSING)
    else:
        put_null(r)


cdef inline void put_time(Rec* r, Span* sp, int zeros) noexcept:
    """Integer seconds (zeros 9) or milliseconds (6) -> nanoseconds; null when absent."""
    cdef int64_t v
    cdef int code
    if sp == NULL:
        put_null(r)
        return
    if _plain_int(sp):
        put_plain_int(r, sp, Q_ANY, zeros)
        return
    code = span_int(r.p, sp, &v, r.buf)
    if code:
        _fail(r, code)
    else:
        r.w = write_scaled(r.w, v, zeros)


# The decimal text of the last seconds value written by put_time_rfc (frames of a burst share it).
cdef char _rfc_txt[32]
cdef int _rfc_txt_len = 0
cdef int64_t _rfc_txt_secs = 0


cdef void put_time_rfc(Rec* r, Span* sp) noexcept:
    global _rfc_txt_len, _rfc_txt_secs
    cdef Py_ssize_t n
    cdef const uint8_t* s
    cdef i128 ns
    cdef int code, k
    cdef int64_t secs
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
        return
    s = span_text(r.p, sp, r.buf, &n)
    code = rfc3339_ns(s, n, &ns, &secs, &k)
    if code:
        _fail(r, code)
    elif secs >= 1:
        # the seconds, then the fraction's digits as received, padded to 9 (exact from 1970 on)
        if secs != _rfc_txt_secs or _rfc_txt_len == 0:
            _rfc_txt_len = <int>(write_u64(_rfc_txt, <uint64_t>secs) - _rfc_txt)
            _rfc_txt_secs = secs
        r.w = ssmd_copy(r.w, _rfc_txt, _rfc_txt_len)
        if k:
            r.w = ssmd_copy(r.w, s + 20, k)
        r.w = ssmd_zeros(r.w, 9 - k)
    else:
        r.w = write_i128(r.w, ns)


cdef inline void put_str(Rec* r, Span* sp) noexcept:
    """string or null"""
    if sp == NULL:
        put_null(r)
    elif sp.kind != J_STRING:
        _fail(r, R_TYPE)
    else:
        r.w = write_jstr(r.w, r.p, sp)


cdef inline void put_bool(Rec* r, Span* sp) noexcept:
    if sp == NULL:
        put_null(r)
    elif sp.kind == J_TRUE:
        _lit(r, b"true", 4)
    elif sp.kind == J_FALSE:
        _lit(r, b"false", 5)
    else:
        _fail(r, R_TYPE)


cdef void put_yes_no(Rec* r, Span* sp) noexcept:
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
    elif span_is(r.p, sp, b"yes", 3, r.buf):
        _lit(r, b'"yes"', 5)
    elif span_is(r.p, sp, b"no", 2, r.buf):
        _lit(r, b'"no"', 4)
    else:
        _fail(r, R_RANGE)


cdef inline void put_ticker(FrameBatch b, Rec* r, Span* sp, FrameEntry* e) noexcept:
    """A required ticker string; its unescaped bytes become the entry's key."""
    cdef Py_ssize_t n
    cdef const uint8_t* s
    if sp == NULL:
        _fail(r, R_MISSING)
        return
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
        return
    s = span_text(r.p, sp, r.buf, &n)
    if not ticker_ok(s, n):
        _fail(r, R_TICKER)
        return
    e.key_off = <uint32_t>b.keys.size
    e.key_len = <uint32_t>n
    ssmd_copy(b.keys.data + b.keys.size, s, n)
    b.keys.size += n
    r.w = write_jstr(r.w, r.p, sp)


cdef void put_env_slow(FrameBatch b, Rec* r, int slot) noexcept:
    """An envelope sid/seq that is not a valid integer >= 1: null when not present, else the error."""
    cdef int code
    cdef int64_t v
    cdef Span* sp = fld(b, slot)
    if sp == NULL:
        put_null(r)
        return
    code = span_int(r.p, sp, &v, r.buf)
    _fail(r, code if code else R_RANGE)


cdef inline void put_env_value(FrameBatch b, Rec* r, int slot, int64_t v) noexcept:
    """v: the entry's sid/seq (> 0 when the source is a valid integer in 1..2^63-1)."""
    cdef Span* sp
    if v <= 0:
        put_env_slow(b, r, slot)
        return
    sp = &b.spans[slot]
    if sp.esc == 0 and sp.end - sp.start <= 18:    # a plain literal of v: already canonical
        r.w = ssmd_copy(r.w, r.p + sp.start, sp.end - sp.start)
    else:
        r.w = write_u64(r.w, <uint64_t>v)


cdef inline void put_envelope(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    ""","sid":..,"seq":.. of a record: when present, integers in 1..2^63-1 (already read into e)."""
    _lit(r, b',"sid":', 7)
    put_env_value(b, r, S_SID, e.sid)
    _lit(r, b',"seq":', 7)
    put_env_value(b, r, S_SEQ, e.seq)


cdef void build_trade(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    cdef Span* sp
    cdef Py_ssize_t n
    cdef const uint8_t* s
    _lit(r, b'{"type":"trade","feed":"kalshi","ticker":', 41)
    put_ticker(b, r, fld(b, S_MARKET_TICKER), e)
    _lit(r, b',"trade_id":', 12)
    sp = fld(b, S_TRADE_ID)
    if sp == NULL:
        _fail(r, R_MISSING)
    elif sp.kind != J_STRING:
        _fail(r, R_TYPE)
    elif sp.end - sp.start == 2:
        _fail(r, R_RANGE)
    else:
        s = span_text(r.p, sp, r.buf, &n)
        e.tid_off = <uint32_t>b.keys.size
        e.tid_len = <uint32_t>n
        ssmd_copy(b.keys.data + b.keys.size, s, n)
        b.keys.size += n
        r.w = write_jstr(r.w, r.p, sp)
    _lit(r, b',"price":', 9)
    put_price(r, fld_dollars(b, S_YES_PRICE_DOLLARS), fld(b, S_YES_PRICE), fld(b, S_PRICE), True)
    _lit(r, b',"size":', 8)
    put_qty(r, fld(b, S_COUNT_FP), fld(b, S_COUNT), Q_POS, True)
    _lit(r, b',"side":', 8)
    sp = fld(b, S_TAKER_OUTCOME_SIDE)
    if sp == NULL:
        sp = fld(b, S_TAKER_SIDE)
    if sp == NULL:
        sp = fld(b, S_SIDE)
    if sp == NULL:
        _fail(r, R_MISSING)
    else:
        put_yes_no(r, sp)
    _lit(r, b',"block":', 9)
    sp = fld(b, S_IS_BLOCK_TRADE)
    if sp == NULL:
        _lit(r, b"false", 5)
    else:
        put_bool(r, sp)
    _lit(r, b',"ts":', 6)
    sp = fld(b, S_TS_MS)
    if sp != NULL:
        put_time(r, sp, 6)
    else:
        put_time(r, fld(b, S_TS), 9)
    put_envelope(b, r, e)


cdef void build_ticker(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    cdef Span* sp
    _lit(r, b'{"type":"ticker","feed":"kalshi","ticker":', 42)
    put_ticker(b, r, fld(b, S_MARKET_TICKER), e)
    _lit(r, b',"yes_bid":', 11)
    put_price(r, fld_dollars(b, S_YES_BID_DOLLARS), fld(b, S_YES_BID), NULL, False)
    _lit(r, b',"yes_ask":', 11)
    put_price(r, fld_dollars(b, S_YES_ASK_DOLLARS), fld(b, S_YES_ASK), NULL, False)
    _lit(r, b',"last_price":', 14)
    put_price(r, fld_dollars(b, S_PRICE_DOLLARS), fld(b, S_PRICE), NULL, False)
    _lit(r, b',"yes_bid_size":', 16)
    put_qty(r, fld(b, S_YES_BID_SIZE_FP), NULL, Q_ANY, False)
    _lit(r, b',"yes_ask_size":', 16)
    put_qty(r, fld(b, S_YES_ASK_SIZE_FP), NULL, Q_ANY, False)
    _lit(r, b',"last_trade_size":', 19)
    put_qty(r, fld(b, S_LAST_TRADE_SIZE_FP), NULL, Q_ANY, False)
    _lit(r, b',"volume":', 10)
    put_qty(r, fld(b, S_VOLUME_FP), fld(b, S_VOLUME), Q_ANY, False)
    _lit(r, b',"open_interest":', 17)
    put_qty(r, fld(b, S_OPEN_INTEREST_FP), fld(b, S_OPEN_INTEREST), Q_ANY, False)
    _lit(r, b',"dollar_volume":', 17)
    put_qty(r, NULL, fld(b, S_DOLLAR_VOLUME), Q_ANY, False)
    _lit(r, b',"dollar_open_interest":', 24)
    put_qty(r, NULL, fld(b, S_DOLLAR_OPEN_INTEREST), Q_ANY, False)
    _lit(r, b',"ts":', 6)
    sp = fld(b, S_TS_MS)
    if sp != NULL:
        put_time(r, sp, 6)
    else:
        sp = fld(b, S_TIME)
        if sp != NULL:
            put_time_rfc(r, sp)
        else:
            put_time(r, fld(b, S_TS), 9)
    put_envelope(b, r, e)


cdef void build_delta(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    cdef Span* sp
    _lit(r, b'{"type":"book_delta","feed":"kalshi","ticker":', 46)
    put_ticker(b, r, fld(b, S_MARKET_TICKER), e)
    _lit(r, b',"side":', 8)
    sp = fld(b, S_SIDE)
    if sp == NULL:
        _fail(r, R_MISSING)
    else:
        put_yes_no(r, sp)
    _lit(r, b',"price":', 9)
    put_price(r, fld_dollars(b, S_PRICE_DOLLARS), fld(b, S_PRICE), NULL, True)
    _lit(r, b',"delta":', 9)
    put_qty(r, fld(b, S_DELTA_FP), fld(b, S_DELTA), Q_ANY, True)
    _lit(r, b',"ts":', 6)
    sp = fld(b, S_TS_MS)
    if sp != NULL:
        put_time(r, sp, 6)
    else:
        sp = fld(b, S_TS)
        if sp != NULL and sp.kind == J_STRING:
            put_time_rfc(r, sp)
        else:
            put_time(r, sp, 9)
    put_envelope(b, r, e)


cdef void put_settlement(Rec* r, Span* sp) noexcept:
    """A string is dollars; an integer-valued JSON number is legacy cents; another number is dollars."""
    cdef Dec d
    cdef int64_t v
    cdef int code
    if sp == NULL:
        put_null(r)
    elif sp.kind == J_STRING:
        put_dec(r, sp, Q_PRICE)
    elif sp.kind != J_NUMBER:
        _fail(r, R_TYPE)
    else:
        dec_from_number(&d, r.p + sp.start, r.p + sp.end, r.buf)
        if d.nd == 0 or d.pp >= d.nd:
            code = dec_to_int(&d, &v)
            if code == 0 and (v < 0 or v > 100):
                code = R_RANGE
            if code:
                _fail(r, code)
            else:
                r.w = write_cents(r.w, v)
        else:
            code = dec_check(&d, Q_PRICE)
            if code:
                _fail(r, code)
            else:
                r.w = write_dec(r.w, &d)


# metadata_updated without additional_metadata: these msg members, in this order, when their keys exist
# (filled in at module init, in _normalize.pyx)
cdef int _META_SLOTS[9]
cdef const char* _META_KEYS[9]


cdef void build_market_lifecycle(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    cdef Span* sp
    cdef Span* ev
    cdef int k
    cdef bint first
    _lit(r, b'{"type":"market_lifecycle","feed":"kalshi","ticker":', 52)
    put_ticker(b, r, fld(b, S_MARKET_TICKER), e)
    _lit(r, b',"event":', 9)
    ev = fld(b, S_EVENT_TYPE)
    if ev == NULL:
        _fail(r, R_MISSING)
    else:
        put_str(r, ev)
    _lit(r, b',"open_ts":', 11)
    put_time(r, fld(b, S_OPEN_TS), 9)
    _lit(r, b',"close_ts":', 12)
    put_time(r, fld(b, S_CLOSE_TS), 9)
    _lit(r, b',"determination_ts":', 20)
    put_time(r, fld(b, S_DETERMINATION_TS), 9)
    _lit(r, b',"settled_ts":', 14)
    put_time(r, fld(b, S_SETTLED_TS), 9)
    _lit(r, b',"result":', 10)
    put_str(r, fld(b, S_RESULT))
    _lit(r, b',"settlement_value":', 20)
    put_settlement(r, fld(b, S_SETTLEMENT_VALUE))
    _lit(r, b',"is_deactivated":', 18)
    put_bool(r, fld(b, S_IS_DEACTIVATED))
    _lit(r, b',"price_level_structure":', 25)
    put_str(r, fld(b, S_PRICE_LEVEL_STRUCTURE))
    _lit(r, b',"metadata":', 12)
    sp = fld(b, S_ADDITIONAL_METADATA)
    if sp != NULL:
        r.w = write_minified(r.w, r.p + sp.start, r.p + sp.end)
    elif ev != NULL and span_is(r.p, ev, b"metadata_updated", 16, r.buf):
        r.w[0] = 123
        r.w += 1
        first = True
        for k in range(9):
            sp = fld_exists(b, _META_SLOTS[k])
            if sp == NULL:
                continue
            if not first:
                r.w[0] = 44
                r.w += 1
            first = False
            _lit(r, _META_KEYS[k], strlen(_META_KEYS[k]))
            r.w = write_minified(r.w, r.p + sp.start, r.p + sp.end)
        r.w[0] = 125
        r.w += 1
    else:
        put_null(r)
    put_envelope(b, r, e)


cdef void build_event_lifecycle(FrameBatch b, Rec* r, FrameEntry* e) noexcept:
    cdef Span* sp
    cdef Py_ssize_t n
    cdef const uint8_t* s
    _lit(r, b'{"type":"event_lifecycle","feed":"kalshi","event_ticker":', 57)
    put_ticker(b, r, fld(b, S_EVENT_TICKER), e)
    _lit(r, b',"series_ticker":', 17)
    sp = fld(b, S_SERIES_TICKER)
    if sp == NULL:
        put_null(r)
    elif sp.kind != J_STRING:
        _fail(r, R_TYPE)
    else:
        s = span_text(r.p, sp, r.buf, &n)
        if n != 0 and not ticker_ok(s, n):
            _fail(r, R_TICKER)
        else:
            r.w = write_jstr(r.w, r.p, sp)
    _lit(r, b',"title":', 9)
    put_str(r, fld(b, S_TITLE))
    _lit(r, b',"subtitle":', 12)
    sp = fld(b, S_SUBTITLE)
    put_str(r, sp if sp != NULL else fld(b, S_SUB_TITLE))
    _lit(r, b',"collateral_return_type":', 26)
    put_str(r, fld(b, S_COLLATERAL_RETURN_TYPE))
    _lit(r, b',"strike_date":', 15)
    put_time(r, fld(b, S_STRIKE_DATE), 9)
    _lit(r, b',"strike_period":', 17)
    put_str(r, fld(b, S_STRIKE_PERIOD))
    put_envelope(b, r, e)
