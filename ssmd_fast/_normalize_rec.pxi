# The six record builders of _normalize.pyx (included there), key order as docs/design.md lists it.
#
# A builder writes the record while it checks the fields; every broken rule lowers `err` to the
# earliest reason code of the spec's list, and a record with err != 0 is discarded by the caller.
# The write position is threaded through the helpers as an argument and a return value (`w`), so it
# stays in a register: through memory, every field would wait for the previous field's store.

cdef struct Rec:
    const uint8_t* p        # the frame (padded copy)
    uint8_t* buf            # scratch for decoded strings and digit copies
    Span* spans             # the frame's spans and their generation (fld)
    uint32_t gen
    int err


cdef inline void _fail(Rec* r, int code) noexcept nogil:
    if code != 0 and (r.err == 0 or code < r.err):
        r.err = code


cdef inline char* _lit(char* w, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(w, s, n)
    return w + n


# Field lookups take the frame's spans and generation (S, G) as values a builder keeps in registers:
# read through Rec, they would be reloaded after every byte the builder writes (char stores alias).

cdef inline Span* fld(Span* S, uint32_t G, int slot) noexcept nogil:
    """The span of a present source (its key exists and its value is not null), else NULL."""
    cdef Span* sp = &S[slot]
    if sp.gen != G or sp.kind == J_NULL:
        return NULL
    return sp


cdef inline Span* fld_dollars(Span* S, uint32_t G, int slot) noexcept nogil:
    """A scalar *_dollars source: "" counts as absent too."""
    cdef Span* sp = &S[slot]
    if sp.gen != G or sp.kind == J_NULL or (sp.kind == J_STRING and sp.end - sp.start == 2):
        return NULL
    return sp


cdef inline Span* fld_exists(Span* S, uint32_t G, int slot) noexcept nogil:
    """The span when the key exists, null included."""
    cdef Span* sp = &S[slot]
    return sp if sp.gen == G else NULL


cdef inline bint span_is(const uint8_t* p, Span* sp, const char* lit, Py_ssize_t n, uint8_t* buf) noexcept nogil:
    """A string span equal to lit after unescaping."""
    cdef Py_ssize_t k
    if sp.kind != J_STRING:
        return False
    if not sp.esc:
        return sp.end - sp.start == n + 2 and memcmp(p + sp.start + 1, lit, n) == 0
    k = decode_string(p + sp.start + 1, p + sp.end - 1, buf)
    return k == n and memcmp(buf, lit, n) == 0


cdef inline const uint8_t* span_text(const uint8_t* p, Span* sp, uint8_t* buf, Py_ssize_t* n) noexcept nogil:
    """A string span's unescaped content (in place when it has no escapes, else decoded into buf)."""
    if not sp.esc:
        n[0] = sp.end - sp.start - 2
        return p + sp.start + 1
    n[0] = decode_string(p + sp.start + 1, p + sp.end - 1, buf)
    return buf


cdef inline char* put_null(char* w) noexcept nogil:
    return _lit(w, b"null", 4)


cdef char* put_dec_plain(Rec* r, char* w, const uint8_t* s, const uint8_t* e, int q) noexcept nogil:
    """A decimal string without escapes, content [s, e) (more than 16 bytes or none after the sign):
    checked and written in one pass."""
    cdef const uint8_t* ip
    cdef const uint8_t* fp
    cdef Py_ssize_t ni, nf = 0
    cdef bint neg = s[0] == 45
    if neg:
        s += 1
    ip = s
    s = ssmd_digits_end(s)          # stops at the closing quote at the latest
    ni = s - ip
    fp = s + 1
    if ni == 0:
        _fail(r, R_RANGE)
        return w
    if s != e:
        if s[0] != 46:
            _fail(r, R_RANGE)
            return w
        s = ssmd_digits_end(fp)
        nf = s - fp
        if nf == 0 or s != e:
            _fail(r, R_RANGE)
            return w
    while ni > 0 and ip[0] == 48:
        ip += 1
        ni -= 1
    while nf > 0 and fp[nf - 1] == 48:
        nf -= 1
    if (ni if ni else 1) + nf > MAX_DIGITS:
        _fail(r, R_RANGE)
        return w
    if ni == 0 and nf == 0:
        neg = False
        if q == Q_POS:
            _fail(r, R_RANGE)
            return w
    elif neg and q != Q_ANY:
        _fail(r, R_RANGE)
        return w
    if q == Q_PRICE and (ni > 1 or (ni == 1 and (ip[0] != 49 or nf > 0))):
        _fail(r, R_RANGE)
        return w
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
    return w


cdef char* put_dec_slow(Rec* r, char* w, Span* sp, int q) noexcept nogil:
    """put_dec for the uncommon forms: escapes, a JSON number, more than 16 characters."""
    cdef Dec d
    cdef int code
    if sp.kind == J_STRING and not sp.esc:
        return put_dec_plain(r, w, r.p + sp.start + 1, r.p + sp.end - 1, q)
    code = span_dec(r.p, sp, &d, r.buf)
    if code == 0:
        code = dec_check(&d, q)
    if code:
        _fail(r, code)
        return w
    return write_dec(w, &d)


# Slow paths are called through pointers: inlined, their register needs would cost every fast call.
cdef char* (*_put_dec_slow)(Rec* r, char* w, Span* sp, int q) noexcept nogil
_put_dec_slow = put_dec_slow


cdef inline char* put_dec(Rec* r, char* w, Span* sp, int q) noexcept nogil:
    """A decimal source under the sign/range rule q; the short plain strings ("0.5500") inline."""
    cdef const uint8_t* s = r.p + sp.start + 1
    cdef int n = <int>(sp.end - sp.start) - 2
    cdef int neg = s[0] == 45
    if sp.kind == J_STRING and not sp.esc and 0 < n - neg <= 16:
        if n == 6 and ssmd_price4(&w, s, q):
            return w
        if ssmd_dec_short(&w, s + neg, n - neg, neg, q):
            _fail(r, R_RANGE)
        return w
    return _put_dec_slow(r, w, sp, q)


cdef char* put_cents(Rec* r, char* w, Span* sp) noexcept nogil:
    cdef int64_t v
    cdef int code = span_int(r.p, sp, &v, r.buf)
    if code == 0 and (v < 0 or v > 100):
        code = R_RANGE
    if code:
        _fail(r, code)
        return w
    return write_cents(w, v)


cdef inline bint _plain_int(Span* sp) noexcept nogil:
    """A JSON integer literal of at most 18 characters: it fits int64 and, JSON having no leading
    zeros, it already is its canonical text (but for -0)."""
    return sp.kind == J_NUMBER and sp.esc == 0 and sp.end - sp.start <= 18


cdef inline char* put_plain_int(Rec* r, char* w, Span* sp, int q, int zeros) noexcept nogil:
    """A plain integer literal written as itself (times 10^zeros), after the sign rule q."""
    cdef const uint8_t* s = r.p + sp.start
    cdef Py_ssize_t n = sp.end - sp.start
    cdef bint neg = s[0] == 45
    if s[neg] == 48:                    # 0 or -0
        if q == Q_POS:
            _fail(r, R_RANGE)
            return w
        w[0] = 48
        return w + 1
    if neg and q != Q_ANY:
        _fail(r, R_RANGE)
        return w
    return ssmd_zeros(ssmd_copy(w, s, n), zeros)


cdef char* put_int_slow(Rec* r, char* w, Span* sp, int q, int zeros) noexcept nogil:
    """An integer source that is not a plain literal (a string, 2.8E3, 45.0, more than 18 characters)."""
    cdef int64_t v
    cdef int code = span_int(r.p, sp, &v, r.buf)
    if code == 0 and ((q == Q_POS and v <= 0) or (q == Q_NONNEG and v < 0)):
        code = R_RANGE
    if code:
        _fail(r, code)
        return w
    return write_scaled(w, v, zeros)


cdef char* (*_put_int_slow)(Rec* r, char* w, Span* sp, int q, int zeros) noexcept nogil
_put_int_slow = put_int_slow


cdef inline char* put_int(Rec* r, char* w, Span* sp, int q) noexcept nogil:
    if _plain_int(sp):
        return put_plain_int(r, w, sp, q, 0)
    return _put_int_slow(r, w, sp, q, 0)


cdef inline char* put_price(Rec* r, char* w, Span* dollars, Span* cents, Span* cents2, bint required) noexcept nogil:
    if dollars != NULL:
        return put_dec(r, w, dollars, Q_PRICE)
    if cents != NULL:
        return put_cents(r, w, cents)
    if cents2 != NULL:
        return put_cents(r, w, cents2)
    if required:
        _fail(r, R_MISSING)
        return w
    return put_null(w)


cdef inline char* put_qty(Rec* r, char* w, Span* fp, Span* legacy, int q, bint required) noexcept nogil:
    """A quantity: the *_fp decimal, else the legacy integer count."""
    if fp != NULL:
        return put_dec(r, w, fp, q)
    if legacy != NULL:
        return put_int(r, w, legacy, q)
    if required:
        _fail(r, R_MISSING)
        return w
    return put_null(w)


cdef inline char* put_time(Rec* r, char* w, Span* sp, int zeros) noexcept nogil:
    """Integer seconds (zeros 9) or milliseconds (6) -> nanoseconds; null when absent."""
    if sp == NULL:
        return put_null(w)
    if _plain_int(sp):
        return put_plain_int(r, w, sp, Q_ANY, zeros)
    return _put_int_slow(r, w, sp, Q_ANY, zeros)


# The decimal text of the last seconds value written by put_time_rfc (frames of a burst share it).
cdef char _rfc_txt[32]
cdef int _rfc_txt_len = 0
cdef int64_t _rfc_txt_secs = 0


cdef char* put_time_rfc(Rec* r, char* w, Span* sp) noexcept nogil:
    global _rfc_txt_len, _rfc_txt_secs
    cdef Py_ssize_t n
    cdef const uint8_t* s
    cdef i128 ns
    cdef int code, k
    cdef int64_t secs
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
        return w
    s = span_text(r.p, sp, r.buf, &n)
    code = rfc3339_ns(s, n, &ns, &secs, &k)
    if code:
        _fail(r, code)
        return w
    if secs < 1:
        return write_i128(w, ns)
    # the seconds, then the fraction's digits as received, padded to 9 (exact from 1970 on)
    if secs != _rfc_txt_secs or _rfc_txt_len == 0:
        _rfc_txt_len = <int>(write_u64(_rfc_txt, <uint64_t>secs) - _rfc_txt)
        _rfc_txt_secs = secs
    w = ssmd_copy(w, _rfc_txt, _rfc_txt_len)
    if k:
        w = ssmd_copy16(w, s + 20, k)
    return ssmd_zeros(w, 9 - k)


cdef inline char* put_str(Rec* r, char* w, Span* sp) noexcept nogil:
    """string or null"""
    if sp == NULL:
        return put_null(w)
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
        return w
    return write_jstr(w, r.p, sp)


cdef inline char* put_bool(Rec* r, char* w, Span* sp) noexcept nogil:
    if sp == NULL:
        return put_null(w)
    if sp.kind == J_TRUE:
        return _lit(w, b"true", 4)
    if sp.kind == J_FALSE:
        return _lit(w, b"false", 5)
    _fail(r, R_TYPE)
    return w


cdef inline char* put_yes_no(Rec* r, char* w, Span* sp) noexcept nogil:
    cdef const uint8_t* s
    if sp.kind == J_STRING and not sp.esc:      # the raw text, quotes included, is the output
        s = r.p + sp.start
        if sp.end - sp.start == 5 and memcmp(s, b'"yes"', 5) == 0:
            return _lit(w, b'"yes"', 5)
        if sp.end - sp.start == 4 and memcmp(s, b'"no"', 4) == 0:
            return _lit(w, b'"no"', 4)
        _fail(r, R_RANGE)
        return w
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
    elif span_is(r.p, sp, b"yes", 3, r.buf):
        return _lit(w, b'"yes"', 5)
    elif span_is(r.p, sp, b"no", 2, r.buf):
        return _lit(w, b'"no"', 4)
    else:
        _fail(r, R_RANGE)
    return w


cdef inline char* put_ticker(FrameBatch b, Rec* r, char* w, Span* sp, FrameEntry* e) noexcept:
    """A required ticker string; its unescaped bytes become the entry's key."""
    cdef Py_ssize_t n
    cdef const uint8_t* s
    if sp == NULL:
        _fail(r, R_MISSING)
        return w
    if sp.kind != J_STRING:
        _fail(r, R_TYPE)
        return w
    s = span_text(r.p, sp, r.buf, &n)
    if not ticker_ok(s, n):
        _fail(r, R_TICKER)
        return w
    e.key_off = <uint32_t>b.keys.size
    e.key_len = <uint32_t>n
    ssmd_copy(b.keys.data + b.keys.size, s, n)
    b.keys.size += n
    return write_jstr(w, r.p, sp)


cdef char* put_env_slow(Rec* r, char* w, int slot) noexcept nogil:
    """An envelope sid/seq that is not a valid integer >= 1: null when not present, else the error."""
    cdef int code
    cdef int64_t v
    cdef Span* sp = fld(r.spans, r.gen, slot)
    if sp == NULL:
        return put_null(w)
    code = span_int(r.p, sp, &v, r.buf)
    _fail(r, code if code else R_RANGE)
    return w


cdef inline char* put_env_value(Rec* r, char* w, int slot, int64_t v) noexcept nogil:
    """v: the entry's sid/seq (> 0 when the source is a valid integer in 1..2^63-1)."""
    cdef Span* sp
    if v <= 0:
        return put_env_slow(r, w, slot)
    sp = &r.spans[slot]
    if sp.esc == 0 and sp.end - sp.start <= 16:    # a plain literal of v: already canonical
        return ssmd_copy16(w, r.p + sp.start, sp.end - sp.start)
    return write_u64(w, <uint64_t>v)


cdef inline char* put_envelope(Rec* r, char* w, FrameEntry* e) noexcept nogil:
    ""","sid":..,"seq":.. of a record: when present, integers in 1..2^63-1 (already read into e)."""
    w = _lit(w, b',"sid":', 7)
    w = put_env_value(r, w, S_SID, e.sid)
    w = _lit(w, b',"seq":', 7)
    return put_env_value(r, w, S_SEQ, e.seq)


cdef char* build_trade(FrameBatch b, Rec* r, char* w, FrameEntry* e) noexcept:
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp
    cdef Py_ssize_t n
    cdef const uint8_t* s
    w = _lit(w, b'{"type":"trade","feed":"kalshi","ticker":', 41)
    w = put_ticker(b, r, w, fld(S, G, S_MARKET_TICKER), e)
    w = _lit(w, b',"trade_id":', 12)
    sp = fld(S, G, S_TRADE_ID)
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
        w = write_jstr(w, r.p, sp)
    w = _lit(w, b',"price":', 9)
    w = put_price(r, w, fld_dollars(S, G, S_YES_PRICE_DOLLARS), fld(S, G, S_YES_PRICE), fld(S, G, S_PRICE), True)
    w = _lit(w, b',"size":', 8)
    w = put_qty(r, w, fld(S, G, S_COUNT_FP), fld(S, G, S_COUNT), Q_POS, True)
    w = _lit(w, b',"side":', 8)
    sp = fld(S, G, S_TAKER_OUTCOME_SIDE)
    if sp == NULL:
        sp = fld(S, G, S_TAKER_SIDE)
    if sp == NULL:
        sp = fld(S, G, S_SIDE)
    if sp == NULL:
        _fail(r, R_MISSING)
    else:
        w = put_yes_no(r, w, sp)
    w = _lit(w, b',"block":', 9)
    sp = fld(S, G, S_IS_BLOCK_TRADE)
    if sp == NULL:
        w = _lit(w, b"false", 5)
    else:
        w = put_bool(r, w, sp)
    w = _lit(w, b',"ts":', 6)
    sp = fld(S, G, S_TS_MS)
    if sp != NULL:
        w = put_time(r, w, sp, 6)
    else:
        w = put_time(r, w, fld(S, G, S_TS), 9)
    return put_envelope(r, w, e)


cdef char* build_ticker(FrameBatch b, Rec* r, char* w, FrameEntry* e) noexcept:
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp
    w = _lit(w, b'{"type":"ticker","feed":"kalshi","ticker":', 42)
    w = put_ticker(b, r, w, fld(S, G, S_MARKET_TICKER), e)
    w = _lit(w, b',"yes_bid":', 11)
    w = put_price(r, w, fld_dollars(S, G, S_YES_BID_DOLLARS), fld(S, G, S_YES_BID), NULL, False)
    w = _lit(w, b',"yes_ask":', 11)
    w = put_price(r, w, fld_dollars(S, G, S_YES_ASK_DOLLARS), fld(S, G, S_YES_ASK), NULL, False)
    w = _lit(w, b',"last_price":', 14)
    w = put_price(r, w, fld_dollars(S, G, S_PRICE_DOLLARS), fld(S, G, S_PRICE), NULL, False)
    w = _lit(w, b',"yes_bid_size":', 16)
    w = put_qty(r, w, fld(S, G, S_YES_BID_SIZE_FP), NULL, Q_ANY, False)
    w = _lit(w, b',"yes_ask_size":', 16)
    w = put_qty(r, w, fld(S, G, S_YES_ASK_SIZE_FP), NULL, Q_ANY, False)
    w = _lit(w, b',"last_trade_size":', 19)
    w = put_qty(r, w, fld(S, G, S_LAST_TRADE_SIZE_FP), NULL, Q_ANY, False)
    w = _lit(w, b',"volume":', 10)
    w = put_qty(r, w, fld(S, G, S_VOLUME_FP), fld(S, G, S_VOLUME), Q_ANY, False)
    w = _lit(w, b',"open_interest":', 17)
    w = put_qty(r, w, fld(S, G, S_OPEN_INTEREST_FP), fld(S, G, S_OPEN_INTEREST), Q_ANY, False)
    w = _lit(w, b',"dollar_volume":', 17)
    w = put_qty(r, w, NULL, fld(S, G, S_DOLLAR_VOLUME), Q_ANY, False)
    w = _lit(w, b',"dollar_open_interest":', 24)
    w = put_qty(r, w, NULL, fld(S, G, S_DOLLAR_OPEN_INTEREST), Q_ANY, False)
    w = _lit(w, b',"ts":', 6)
    sp = fld(S, G, S_TS_MS)
    if sp != NULL:
        w = put_time(r, w, sp, 6)
    else:
        sp = fld(S, G, S_TIME)
        if sp != NULL:
            w = put_time_rfc(r, w, sp)
        else:
            w = put_time(r, w, fld(S, G, S_TS), 9)
    return put_envelope(r, w, e)


cdef char* build_delta(FrameBatch b, Rec* r, char* w, FrameEntry* e) noexcept:
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp
    w = _lit(w, b'{"type":"book_delta","feed":"kalshi","ticker":', 46)
    w = put_ticker(b, r, w, fld(S, G, S_MARKET_TICKER), e)
    w = _lit(w, b',"side":', 8)
    sp = fld(S, G, S_SIDE)
    if sp == NULL:
        _fail(r, R_MISSING)
    else:
        w = put_yes_no(r, w, sp)
    w = _lit(w, b',"price":', 9)
    w = put_price(r, w, fld_dollars(S, G, S_PRICE_DOLLARS), fld(S, G, S_PRICE), NULL, True)
    w = _lit(w, b',"delta":', 9)
    w = put_qty(r, w, fld(S, G, S_DELTA_FP), fld(S, G, S_DELTA), Q_ANY, True)
    w = _lit(w, b',"ts":', 6)
    sp = fld(S, G, S_TS_MS)
    if sp != NULL:
        w = put_time(r, w, sp, 6)
    else:
        sp = fld(S, G, S_TS)
        if sp != NULL and sp.kind == J_STRING:
            w = put_time_rfc(r, w, sp)
        else:
            w = put_time(r, w, sp, 9)
    return put_envelope(r, w, e)


cdef char* put_settlement(Rec* r, char* w, Span* sp) noexcept nogil:
    """A string is dollars; an integer-valued JSON number is legacy cents; another number is dollars."""
    cdef Dec d
    cdef int64_t v
    cdef int code
    if sp == NULL:
        return put_null(w)
    if sp.kind == J_STRING:
        return put_dec(r, w, sp, Q_PRICE)
    if sp.kind != J_NUMBER:
        _fail(r, R_TYPE)
        return w
    dec_from_number(&d, r.p + sp.start, r.p + sp.end, r.buf)
    if d.nd == 0 or d.pp >= d.nd:
        code = dec_to_int(&d, &v)
        if code == 0 and (v < 0 or v > 100):
            code = R_RANGE
        if code:
            _fail(r, code)
            return w
        return write_cents(w, v)
    code = dec_check(&d, Q_PRICE)
    if code:
        _fail(r, code)
        return w
    return write_dec(w, &d)


# metadata_updated without additional_metadata: these msg members, in this order, when their keys exist
# (filled in at module init, in _normalize.pyx)
cdef int _META_SLOTS[9]
cdef const char* _META_KEYS[9]


cdef char* build_market_lifecycle(FrameBatch b, Rec* r, char* w, FrameEntry* e) noexcept:
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp
    cdef Span* ev
    cdef int k
    cdef bint first
    w = _lit(w, b'{"type":"market_lifecycle","feed":"kalshi","ticker":', 52)
    w = put_ticker(b, r, w, fld(S, G, S_MARKET_TICKER), e)
    w = _lit(w, b',"event":', 9)
    ev = fld(S, G, S_EVENT_TYPE)
    if ev == NULL:
        _fail(r, R_MISSING)
    else:
        w = put_str(r, w, ev)
    w = _lit(w, b',"open_ts":', 11)
    w = put_time(r, w, fld(S, G, S_OPEN_TS), 9)
    w = _lit(w, b',"close_ts":', 12)
    w = put_time(r, w, fld(S, G, S_CLOSE_TS), 9)
    w = _lit(w, b',"determination_ts":', 20)
    w = put_time(r, w, fld(S, G, S_DETERMINATION_TS), 9)
    w = _lit(w, b',"settled_ts":', 14)
    w = put_time(r, w, fld(S, G, S_SETTLED_TS), 9)
    w = _lit(w, b',"result":', 10)
    w = put_str(r, w, fld(S, G, S_RESULT))
    w = _lit(w, b',"settlement_value":', 20)
    w = put_settlement(r, w, fld(S, G, S_SETTLEMENT_VALUE))
    w = _lit(w, b',"is_deactivated":', 18)
    w = put_bool(r, w, fld(S, G, S_IS_DEACTIVATED))
    w = _lit(w, b',"price_level_structure":', 25)
    w = put_str(r, w, fld(S, G, S_PRICE_LEVEL_STRUCTURE))
    w = _lit(w, b',"metadata":', 12)
    sp = fld(S, G, S_ADDITIONAL_METADATA)
    if sp != NULL:
        w = write_minified(w, r.p + sp.start, r.p + sp.end)
    elif ev != NULL and span_is(r.p, ev, b"metadata_updated", 16, r.buf):
        w[0] = 123
        w += 1
        first = True
        for k in range(9):
            sp = fld_exists(S, G, _META_SLOTS[k])
            if sp == NULL:
                continue
            if not first:
                w[0] = 44
                w += 1
            first = False
            w = _lit(w, _META_KEYS[k], strlen(_META_KEYS[k]))
            w = write_minified(w, r.p + sp.start, r.p + sp.end)
        w[0] = 125
        w += 1
    else:
        w = put_null(w)
    return put_envelope(r, w, e)


cdef char* build_event_lifecycle(FrameBatch b, Rec* r, char* w, FrameEntry* e) noexcept:
    cdef Span* S = r.spans
    cdef uint32_t G = r.gen
    cdef Span* sp
    cdef Py_ssize_t n
    cdef const uint8_t* s
    w = _lit(w, b'{"type":"event_lifecycle","feed":"kalshi","event_ticker":', 57)
    w = put_ticker(b, r, w, fld(S, G, S_EVENT_TICKER), e)
    w = _lit(w, b',"series_ticker":', 17)
    sp = fld(S, G, S_SERIES_TICKER)
    if sp == NULL:
        w = put_null(w)
    elif sp.kind != J_STRING:
        _fail(r, R_TYPE)
    else:
        s = span_text(r.p, sp, r.buf, &n)
        if n != 0 and not ticker_ok(s, n):
            _fail(r, R_TICKER)
        else:
            w = write_jstr(w, r.p, sp)
    w = _lit(w, b',"title":', 9)
    w = put_str(r, w, fld(S, G, S_TITLE))
    w = _lit(w, b',"subtitle":', 12)
    sp = fld(S, G, S_SUBTITLE)
    w = put_str(r, w, sp if sp != NULL else fld(S, G, S_SUB_TITLE))
    w = _lit(w, b',"collateral_return_type":', 26)
    w = put_str(r, w, fld(S, G, S_COLLATERAL_RETURN_TYPE))
    w = _lit(w, b',"strike_date":', 15)
    w = put_time(r, w, fld(S, G, S_STRIKE_DATE), 9)
    w = _lit(w, b',"strike_period":', 17)
    w = put_str(r, w, fld(S, G, S_STRIKE_PERIOD))
    return put_envelope(r, w, e)
