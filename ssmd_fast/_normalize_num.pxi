# Exact value conversions of _normalize.pyx (included there): decimals, integers, times, strings.
#
# Nothing goes through a binary float. A decimal is kept as its significant digits and the position
# of the decimal point; integers are int64; times are int64 nanoseconds, or __int128 beyond that.

cdef extern from *:
    """
    typedef __int128 ssmd_i128;
    typedef unsigned __int128 ssmd_u128;
    #define SSMD_EXP_CAP 1000000000000LL
    """
    ctypedef long long i128 "ssmd_i128"
    ctypedef unsigned long long u128 "ssmd_u128"
    const int64_t EXP_CAP "SSMD_EXP_CAP"


# A decimal value: 0.dig * 10^pp, dig without leading or trailing zeros (nd == 0 means zero).
cdef struct Dec:
    const uint8_t* dig
    int64_t nd
    int64_t pp
    int neg

# Exponents beyond EXP_CAP (10^12) decide every rule the same way (a frame has < 2^20 digits).
cdef enum:
    MAX_DIGITS = 40

cdef enum:
    Q_ANY = 0       # sign free
    Q_POS = 1       # greater than 0
    Q_NONNEG = 2    # at least 0
    Q_PRICE = 3     # in [0, 1]

cdef const char* _HEXCHARS = b"0123456789abcdef"
cdef const char* _DIGIT_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899")


cdef inline bint _is_digit(uint8_t c) noexcept nogil:
    return <uint8_t>(c - 48) < 10


cdef inline void _dec_trim(Dec* d) noexcept nogil:
    while d.nd > 0 and d.dig[0] == 48:
        d.dig += 1
        d.nd -= 1
        d.pp -= 1
    while d.nd > 0 and d.dig[d.nd - 1] == 48:
        d.nd -= 1
    if d.nd == 0:
        d.neg = 0
        d.pp = 0


cdef inline void _dec_parts(Dec* d, const uint8_t* ip, Py_ssize_t ni, const uint8_t* fp, Py_ssize_t nf,
                            uint8_t* buf) noexcept nogil:
    """Digits ip[0:ni] '.' fp[0:nf] -> d (copied into buf only when both parts carry digits)."""
    while ni > 0 and ip[0] == 48:
        ip += 1
        ni -= 1
    while nf > 0 and fp[nf - 1] == 48:
        nf -= 1
    if nf == 0:
        d.dig = ip
        d.nd = ni
        d.pp = ni
    elif ni == 0:
        d.dig = fp
        d.nd = nf
        d.pp = 0
    else:
        memcpy(buf, ip, ni)
        memcpy(buf + ni, fp, nf)
        d.dig = buf
        d.nd = ni + nf
        d.pp = ni


cdef inline void dec_from_number(Dec* d, const uint8_t* s, const uint8_t* e, uint8_t* buf) noexcept nogil:
    """A valid JSON number text [s, e) -> its exact decimal value."""
    cdef const uint8_t* ip
    cdef const uint8_t* fp = s
    cdef Py_ssize_t ni, nf = 0
    cdef int64_t ex = 0
    cdef bint eneg = False
    d.neg = s[0] == 45
    if d.neg:
        s += 1
    ip = s
    while s < e and _is_digit(s[0]):
        s += 1
    ni = s - ip
    if s < e and s[0] == 46:
        s += 1
        fp = s
        while s < e and _is_digit(s[0]):
            s += 1
        nf = s - fp
    if s < e:       # exponent
        s += 1
        if s[0] == 43 or s[0] == 45:
            eneg = s[0] == 45
            s += 1
        while s < e:
            if ex < EXP_CAP:
                ex = ex * 10 + (s[0] - 48)
            s += 1
        if ex > EXP_CAP:
            ex = EXP_CAP
        if eneg:
            ex = -ex
    _dec_parts(d, ip, ni, fp, nf, buf)
    d.pp += ex
    _dec_trim(d)


cdef inline int dec_from_text(Dec* d, const uint8_t* s, const uint8_t* e, uint8_t* buf) noexcept nogil:
    """A decimal string's content: must match -?[0-9]+(\\.[0-9]+)? exactly; else R_RANGE."""
    cdef const uint8_t* ip
    cdef const uint8_t* fp = s
    cdef Py_ssize_t ni, nf = 0
    d.neg = s < e and s[0] == 45
    if d.neg:
        s += 1
    ip = s
    while s < e and _is_digit(s[0]):
        s += 1
    ni = s - ip
    if ni == 0:
        return R_RANGE
    if s < e:
        if s[0] != 46:
            return R_RANGE
        fp = s + 1
        s = fp
        while s < e and _is_digit(s[0]):
            s += 1
        nf = s - fp
        if nf == 0 or s != e:
            return R_RANGE
    _dec_parts(d, ip, ni, fp, nf, buf)
    _dec_trim(d)
    return R_NONE


cdef inline int64_t dec_digits(Dec* d) noexcept nogil:
    """How many digits the canonical form has."""
    if d.nd == 0:
        return 1
    if d.pp <= 0:
        return 1 - d.pp + d.nd
    if d.pp >= d.nd:
        return d.pp
    return d.nd


cdef inline int dec_check(Dec* d, int q) noexcept nogil:
    if dec_digits(d) > MAX_DIGITS:
        return R_RANGE
    if q == Q_ANY:
        return R_NONE
    if d.neg:
        return R_RANGE
    if q == Q_POS:
        return R_RANGE if d.nd == 0 else R_NONE
    if q == Q_PRICE and d.pp > 0 and not (d.pp == 1 and d.nd == 1 and d.dig[0] == 49):
        return R_RANGE
    return R_NONE


cdef inline char* _zeros(char* w, int64_t k) noexcept nogil:
    if k <= 16:
        return ssmd_zeros(w, k)
    memset(w, 48, k)
    return w + k


cdef inline char* write_dec(char* w, Dec* d) noexcept nogil:
    """Canonical form: no exponent, no leading zeros, no trailing fractional zeros, no -0."""
    if d.nd == 0:
        w[0] = 48
        return w + 1
    if d.neg:
        w[0] = 45
        w += 1
    if d.pp <= 0:
        w[0] = 48
        w[1] = 46
        w = _zeros(w + 2, -d.pp)
        return ssmd_copy(w, d.dig, d.nd)
    if d.pp >= d.nd:
        w = ssmd_copy(w, d.dig, d.nd)
        return _zeros(w, d.pp - d.nd)
    w = ssmd_copy(w, d.dig, d.pp)
    w[0] = 46
    return ssmd_copy(w + 1, d.dig + d.pp, d.nd - d.pp)


cdef inline int dec_to_int(Dec* d, int64_t* out) noexcept nogil:
    """The integer rule: an exact integer value (R_TYPE otherwise) within int64 (R_RANGE otherwise)."""
    cdef uint64_t v = 0
    cdef int64_t i
    if d.nd == 0:
        out[0] = 0
        return R_NONE
    if d.pp < d.nd:
        return R_TYPE
    if d.pp > 19:
        return R_RANGE
    for i in range(d.nd):
        v = v * 10 + (d.dig[i] - 48)
    for i in range(d.pp - d.nd):
        v *= 10
    if d.neg:
        if v > 9223372036854775808ULL:
            return R_RANGE
        out[0] = <int64_t>(0 - v)
    else:
        if v > 9223372036854775807ULL:
            return R_RANGE
        out[0] = <int64_t>v
    return R_NONE


cdef inline int span_int(const uint8_t* p, Span* sp, int64_t* out, uint8_t* buf) noexcept nogil:
    """A span under the integer rule (a JSON number with an exact int64 value)."""
    cdef const uint8_t* s
    cdef const uint8_t* e
    cdef uint64_t v = 0
    cdef bint neg
    cdef Dec d
    if sp.kind != J_NUMBER:
        return R_TYPE
    s = p + sp.start
    e = p + sp.end
    neg = s[0] == 45
    if neg:
        s += 1
    if e - s <= 18:         # plain literals of up to 18 digits: the common case
        while s < e and _is_digit(s[0]):
            v = v * 10 + (s[0] - 48)
            s += 1
        if s == e:
            out[0] = -<int64_t>v if neg else <int64_t>v
            return R_NONE
    dec_from_number(&d, p + sp.start, e, buf)
    return dec_to_int(&d, out)


cdef inline int span_dec(const uint8_t* p, Span* sp, Dec* d, uint8_t* buf) noexcept nogil:
    """A decimal source: a decimal string (escapes decoded) or a JSON number taken exactly."""
    cdef Py_ssize_t n
    if sp.kind == J_STRING:
        if sp.esc:
            n = decode_string(p + sp.start + 1, p + sp.end - 1, buf)
            return dec_from_text(d, buf, buf + n, buf + n)
        return dec_from_text(d, p + sp.start + 1, p + sp.end - 1, buf)
    if sp.kind == J_NUMBER:
        dec_from_number(d, p + sp.start, p + sp.end, buf)
        return R_NONE
    return R_TYPE


cdef inline char* write_u64(char* w, uint64_t v) noexcept nogil:
    return ssmd_write_u64(w, v)


cdef inline char* write_i64(char* w, int64_t v) noexcept nogil:
    if v < 0:
        w[0] = 45
        return write_u64(w + 1, <uint64_t>0 - <uint64_t>v)
    return write_u64(w, <uint64_t>v)


cdef char* write_i128(char* w, i128 v) noexcept nogil:
    cdef u128 u
    cdef uint64_t lo
    cdef char tmp[48]
    cdef int i = 48, j
    if v >= -9223372036854775807LL and v <= 9223372036854775807LL:
        return write_i64(w, <int64_t>v)
    if v < 0:
        w[0] = 45
        w += 1
        u = <u128>0 - <u128>v
    else:
        u = <u128>v
    while u >= 10000000000000000000ULL:
        lo = <uint64_t>(u % 10000000000000000000ULL)
        u //= 10000000000000000000ULL
        for j in range(19):
            i -= 1
            tmp[i] = <char>(48 + lo % 10)
            lo //= 10
    lo = <uint64_t>u
    while lo:
        i -= 1
        tmp[i] = <char>(48 + lo % 10)
        lo //= 10
    memcpy(w, tmp + i, 48 - i)
    return w + 48 - i


cdef inline char* write_frac9(char* w, uint32_t f) noexcept nogil:
    """f (< 10^9) as exactly 9 digits."""
    cdef int i
    for i in range(8, -1, -1):
        w[i] = <char>(48 + f % 10)
        f //= 10
    return w + 9


cdef inline char* write_scaled(char* w, int64_t v, int zeros) noexcept nogil:
    """v * 10^zeros exactly: the digits of v followed by the zeros (0 stays 0)."""
    if v == 0:
        w[0] = 48
        return w + 1
    return ssmd_zeros(write_i64(w, v), zeros)


cdef inline char* write_cents(char* w, int64_t c) noexcept nogil:
    """Legacy cents 0..100 as dollars: 55 -> 0.55, 5 -> 0.05, 50 -> 0.5, 100 -> 1."""
    if c == 0:
        w[0] = 48
        return w + 1
    if c == 100:
        w[0] = 49
        return w + 1
    w[0] = 48
    w[1] = 46
    w[2] = <char>(48 + c // 10)
    if c % 10 == 0:
        return w + 3
    w[3] = <char>(48 + c % 10)
    return w + 4


# ---- times

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    cdef int64_t era, yoe, doy
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


cdef inline int _d2(const uint8_t* s) noexcept nogil:
    if not _is_digit(s[0]) or not _is_digit(s[1]):
        return -1
    return (s[0] - 48) * 10 + (s[1] - 48)


# The last date-time prefix "YYYY-MM-DDThh:mm:ss" that parsed, as three words, and its local seconds:
# the frames of one burst share it (a hit skips the date checks and the calendar arithmetic).
cdef uint64_t _rfc_w0 = 0, _rfc_w1 = 0, _rfc_w2 = 0
cdef int64_t _rfc_local_secs = 0
cdef bint _rfc_have = False


cdef int _rfc_local(const uint8_t* s, int64_t* out) noexcept nogil:
    """The 19 bytes YYYY-MM-DD"T"hh:mm:ss as seconds since the epoch before any offset; R_RANGE if not."""
    cdef int y1, y2, mo, d, hh, mi, ss, dim
    y1 = _d2(s)
    y2 = _d2(s + 2)
    mo = _d2(s + 5)
    d = _d2(s + 8)
    hh = _d2(s + 11)
    mi = _d2(s + 14)
    ss = _d2(s + 17)
    if (y1 < 0 or y2 < 0 or mo < 0 or d < 0 or hh < 0 or mi < 0 or ss < 0 or s[4] != 45 or s[7] != 45
            or (s[10] | 0x20) != 116 or s[13] != 58 or s[16] != 58):
        return R_RANGE
    if mo < 1 or mo > 12 or hh > 23 or mi > 59 or ss > 59:
        return R_RANGE
    y1 = y1 * 100 + y2
    if mo == 2:
        dim = 29 if (y1 % 4 == 0 and (y1 % 100 != 0 or y1 % 400 == 0)) else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        dim = 30
    else:
        dim = 31
    if d < 1 or d > dim:
        return R_RANGE
    out[0] = _days_from_civil(y1, mo, d) * 86400 + hh * 3600 + mi * 60 + ss
    return R_NONE


cdef int rfc3339_ns(const uint8_t* s, Py_ssize_t n, i128* out, int64_t* secs_out, int* nfrac) noexcept nogil:
    """YYYY-MM-DD"T"hh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm), T and Z in either case; R_RANGE if not.
    Also the whole seconds (*secs_out) and how many fraction digits there are (*nfrac)."""
    global _rfc_w0, _rfc_w1, _rfc_w2, _rfc_local_secs, _rfc_have
    cdef int oh, om, k
    cdef int64_t frac = 0, secs, off = 0
    cdef Py_ssize_t i = 19
    cdef uint64_t w0, w1, w2
    if n < 20:
        return R_RANGE
    w0 = ssmd_load64(s)
    w1 = ssmd_load64(s + 8)
    w2 = ssmd_load64(s + 11)        # bytes 11..18 (overlapping): all 19 bytes compared
    if _rfc_have and w0 == _rfc_w0 and w1 == _rfc_w1 and w2 == _rfc_w2:
        secs = _rfc_local_secs
    else:
        if _rfc_local(s, &secs):
            return R_RANGE
        _rfc_w0 = w0
        _rfc_w1 = w1
        _rfc_w2 = w2
        _rfc_local_secs = secs
        _rfc_have = True
    if s[19] == 46:
        i = 20
        while i < n and _is_digit(s[i]) and i < 29:
            frac = frac * 10 + (s[i] - 48)
            i += 1
        if i == 20 or (i < n and _is_digit(s[i])):
            return R_RANGE
        for k in range(29 - <int>i):
            frac *= 10
    nfrac[0] = <int>(i - 20) if i > 19 else 0
    if i >= n:
        return R_RANGE
    if (s[i] | 0x20) == 122:
        if i + 1 != n:
            return R_RANGE
    elif s[i] == 43 or s[i] == 45:
        if i + 6 != n or s[i + 3] != 58:
            return R_RANGE
        oh = _d2(s + i + 1)
        om = _d2(s + i + 4)
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return R_RANGE
        off = oh * 3600 + om * 60
        if s[i] == 45:
            off = -off
    else:
        return R_RANGE
    secs -= off
    out[0] = <i128>secs * 1000000000 + frac
    secs_out[0] = secs
    return R_NONE


# ---- strings

cdef inline bint ticker_ok(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """1 to 1024 bytes of printable ASCII (0x21..0x7E) other than '*' and '>' (16 bytes per step)."""
    return ssmd_ticker_ok(s, <size_t>n)


cdef char* write_jstr(char* w, const uint8_t* p, Span* sp) noexcept nogil:
    """A string value re-encoded as json.dumps(s, ensure_ascii=False) writes it (quotes included)."""
    cdef const uint8_t* s = p + sp.start
    cdef const uint8_t* e = p + sp.end
    cdef uint8_t c
    cdef uint32_t cp, lo
    cdef Py_ssize_t n = sp.end - sp.start
    if not sp.esc:      # no escapes: the raw text is already the canonical form
        return ssmd_copy(w, s, n)
    w[0] = 34
    w += 1
    s += 1
    e -= 1
    while s < e:
        c = s[0]
        if c != 92:
            w[0] = c
            w += 1
            s += 1
            continue
        c = s[1]
        if c != 117:
            s += 2
            if c == 47:         # \/ is written as a plain /
                w[0] = 47
                w += 1
            else:
                w[0] = 92
                w[1] = c
                w += 2
            continue
        cp = <uint32_t>_hex4(s + 2)
        s += 6
        if 0xD800 <= cp < 0xDC00:
            lo = <uint32_t>_hex4(s + 2)
            s += 6
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
        if cp < 0x20:
            w[0] = 92
            if cp == 8:
                w[1] = 98
            elif cp == 9:
                w[1] = 116
            elif cp == 10:
                w[1] = 110
            elif cp == 12:
                w[1] = 102
            elif cp == 13:
                w[1] = 114
            else:
                memcpy(w + 1, b"u00", 3)
                w[4] = _HEXCHARS[cp >> 4]
                w[5] = _HEXCHARS[cp & 15]
                w += 4
            w += 2
        elif cp == 34 or cp == 92:
            w[0] = 92
            w[1] = <char>cp
            w += 2
        else:
            w = <char*>_put_utf8(<uint8_t*>w, cp)
    w[0] = 34
    return w + 1


cdef char* write_minified(char* w, const uint8_t* s, const uint8_t* e) noexcept nogil:
    """A valid JSON value's text minus the whitespace between tokens (strings copied byte for byte)."""
    cdef const uint8_t* q
    cdef uint8_t c
    while s < e:
        c = s[0]
        if c == 34:
            q = s + 1
            while True:
                q = ssmd_str_stop(q)
                if q[0] == 34:
                    break
                q += 2 if q[0] == 92 else 1
            q += 1
            w = ssmd_copy(w, s, q - s)
            s = q
        elif c == 32 or c == 10 or c == 13 or c == 9:
            s += 1
        else:
            w[0] = c
            w += 1
            s += 1
    return w
