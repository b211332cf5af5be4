# The strict single-pass JSON scanner of _normalize.pyx (included there).
#
# One pass over the frame checks RFC 8259 syntax, UTF-8, depth and duplicate keys, and records where
# the fields of interest are: top-level type/sid/seq/id/msg and the msg members the six record types
# read. The frame is scanned from the batch's own copy, which ends with PAD zero bytes: a 0 byte is
# never valid outside a string nor inside one, so the sentinel replaces most bounds checks.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline uint64_t ssmd_load64(const void* p) {
        uint64_t w; memcpy(&w, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
    #endif
        return w;
    }
    /* First byte at or after p that is '"', '\\\\', below 0x20 or above 0x7F (8 bytes per step; the
       lowest flagged byte is exact: borrows only run upwards from a byte that is itself flagged). */
    /* The low n bytes of a loaded word (n <= 8). */
    static inline uint64_t ssmd_low_mask(size_t n) {
        return n >= 8 ? ~(uint64_t)0 : ((((uint64_t)1) << (n * 8)) - 1);
    }
    static const char ssmd_pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    static const uint64_t ssmd_p10[20] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL,
        1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
        1000000000000ULL, 10000000000000ULL, 100000000000000ULL, 1000000000000000ULL,
        10000000000000000ULL, 100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL};
    /* Decimal digits of v written at w (digit count first, then pairs from the end: no copy). */
    static inline char* ssmd_write_u64(char* w, uint64_t v) {
        int t, n;
        char* e;
        if (v < 10) { *w = (char)('0' + v); return w + 1; }
        t = ((64 - __builtin_clzll(v)) * 1233) >> 12;
        n = t + (v >= ssmd_p10[t]);
        e = w + n;
        while (v >= 100) { e -= 2; memcpy(e, ssmd_pairs + (v % 100) * 2, 2); v /= 100; }
        if (v >= 10) { e -= 2; memcpy(e, ssmd_pairs + v * 2, 2); } else { *--e = (char)('0' + v); }
        return w + n;
    }
    /* Any byte of the n (<= 8) low bytes of w outside 0x21..0x7E or equal to '*' or '>'. */
    static inline int ssmd_ticker_bad8(uint64_t w, size_t n) {
        const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        uint64_t m = ssmd_low_mask(n), a, b;
        w = (w & m) | (0x4141414141414141ULL & ~m);        /* pad with 'A' */
        a = w ^ (ones * 0x2A);
        b = w ^ (ones * 0x3E);
        return (((w - ones * 0x21) & ~w) | (w + ones) | w | ((a - ones) & ~a) | ((b - ones) & ~b)) & high ? 1 : 0;
    }
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* First byte at or after p that is '"', '\\', below 0x20 or above 0x7F (16 bytes per step: the
       signed compare with 0x20 catches both the control bytes and the non-ASCII ones). */
    static inline const uint8_t* ssmd_str_stop(const uint8_t* p) {
        const __m128i q = _mm_set1_epi8(0x22), b = _mm_set1_epi8(0x5C), c = _mm_set1_epi8(0x20);
        for (;;) {
            __m128i x = _mm_loadu_si128((const __m128i*)p);
            int m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, b)),
                                                   _mm_cmplt_epi8(x, c)));
            if (m) return p + __builtin_ctz((unsigned)m);
            p += 16;
        }
    }
    #else
    /* The same, 8 bytes per step (the lowest flagged byte is exact: borrows only run upwards from a
       byte that is itself flagged). */
    static inline const uint8_t* ssmd_str_stop(const uint8_t* p) {
        const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        for (;;) {
            uint64_t w = ssmd_load64(p);
            uint64_t q = w ^ (ones * 0x22), b = w ^ (ones * 0x5C);
            uint64_t m = (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & high;
            if (m) return p + (__builtin_ctzll(m) >> 3);
            p += 8;
        }
    }
    #endif
    /* Copy n bytes in 16-byte blocks: reads and writes up to 15 bytes past n. Only for buffers with
       that much slack (every frame copy and output buffer here has it); short copies stay inline. */
    static inline char* ssmd_copy(char* d, const void* src, size_t n) {
        const char* s = (const char*)src;
        char* e = d + n;
        for (;;) {
    #if defined(__SSE2__)
            _mm_storeu_si128((__m128i*)d, _mm_loadu_si128((const __m128i*)s));
    #else
            uint64_t a, b; memcpy(&a, s, 8); memcpy(&b, s + 8, 8); memcpy(d, &a, 8); memcpy(d + 8, &b, 8);
    #endif
            if (n <= 16) return e;
            d += 16; s += 16; n -= 16;
        }
    }
    /* n (<= 16) ASCII zeros, written as 16. */
    static inline char* ssmd_zeros(char* d, size_t n) {
        memcpy(d, "0000000000000000", 16);
        return d + n;
    }
    /* A decimal string's content s[0..n) with 1 <= n <= 16 (padded buffer): returns -1 unless it is
       [0-9]+ or [0-9]+.[0-9]+; else the position of the '.' (n when none), and in *lz, *tz the counts of
       leading and trailing '0' characters of the whole content. */
    static inline int ssmd_dec16(const uint8_t* s, int n, int* lz, int* tz) {
    #if defined(__SSE2__)
        __m128i x = _mm_loadu_si128((const __m128i*)s);
        unsigned valid = (1u << n) - 1, nd, dot, inv;
        nd = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x30)),
                                                      _mm_cmpgt_epi8(x, _mm_set1_epi8(0x39)))) & valid;
        dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x2E))) & valid;
        inv = ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x30))) & valid;
    #else
        unsigned valid = (1u << n) - 1, nd = 0, dot = 0, inv = 0;
        int i;
        for (i = 0; i < n; i++) {
            nd |= (unsigned)(s[i] < 0x30 || s[i] > 0x39) << i;
            dot |= (unsigned)(s[i] == 0x2E) << i;
            inv |= (unsigned)(s[i] != 0x30) << i;
        }
    #endif
        if (nd != dot || (dot & (dot - 1)) || (dot & 1) || (dot >> (n - 1)))
            return -1;
        *lz = inv ? __builtin_ctz(inv) : n;
        *tz = inv ? n - 1 - (31 - __builtin_clz(inv)) : n;
        return dot ? __builtin_ctz(dot) : n;
    }
    /* ssmd_str_stop, also telling (*quote) whether the byte found is the closing '"', from the masks
       already computed (no reload of the byte on the common path). */
    static inline const uint8_t* ssmd_str_stop_q(const uint8_t* p, int* quote) {
    #if defined(__SSE2__)
        const __m128i q = _mm_set1_epi8(0x22), b = _mm_set1_epi8(0x5C), c = _mm_set1_epi8(0x20);
        for (;;) {
            __m128i x = _mm_loadu_si128((const __m128i*)p);
            unsigned mq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, q));
            unsigned m = mq | (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, b), _mm_cmplt_epi8(x, c)));
            if (m) { *quote = (mq & m & (0u - m)) != 0; return p + __builtin_ctz(m); }
            p += 16;
        }
    #else
        const uint8_t* r = ssmd_str_stop(p);
        *quote = *r == 0x22;
        return r;
    #endif
    }
    /* The first byte at or after p that is not an ASCII digit, and (*stop) its value. */
    static inline const uint8_t* ssmd_digits_end_b(const uint8_t* p, uint8_t* stop) {
        for (;;) {
            uint64_t w = ssmd_load64(p);
            uint64_t m = ((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                       | (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
            if (m) { int k = __builtin_ctzll(m) >> 3; *stop = (uint8_t)(w >> (k * 8)); return p + k; }
            p += 8;
        }
    }
    /* The first byte at or after p that is not an ASCII digit (8 bytes per step). */
    static inline const uint8_t* ssmd_digits_end(const uint8_t* p) {
        for (;;) {
            uint64_t w = ssmd_load64(p);
            uint64_t m = ((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                       | (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
            if (m) return p + (__builtin_ctzll(m) >> 3);
            p += 8;
        }
    }
    /* Seeded hash of a key's unescaped bytes; reads whole 8-byte words (the buffers are padded). */
    static inline uint64_t ssmd_key_hash(const uint8_t* s, size_t n, uint64_t seed) {
        uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL), w;
        while (n > 8) {
            w = ssmd_load64(s);
            h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
            h ^= h >> 31;
            s += 8; n -= 8;
        }
        w = ssmd_load64(s);
        if (n < 8) w &= (((uint64_t)1) << (n * 8)) - 1;
        h = (h ^ w) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ULL;
        return h ^ (h >> 32);
    }
    """
    uint64_t ssmd_load64(const void* p) noexcept nogil
    const uint8_t* ssmd_str_stop(const uint8_t* p) noexcept nogil
    const uint8_t* ssmd_digits_end(const uint8_t* p) noexcept nogil
    const uint8_t* ssmd_digits_end_b(const uint8_t* p, uint8_t* stop) noexcept nogil
    const uint8_t* ssmd_str_stop_q(const uint8_t* p, int* quote) noexcept nogil
    char* ssmd_copy(char* d, const void* src, size_t n) noexcept nogil
    char* ssmd_zeros(char* d, size_t n) noexcept nogil
    int ssmd_dec16(const uint8_t* s, int n, int* lz, int* tz) noexcept nogil
    uint64_t ssmd_key_hash(const uint8_t* s, size_t n, uint64_t seed) noexcept nogil
    uint64_t ssmd_low_mask(size_t n) noexcept nogil
    char* ssmd_write_u64(char* w, uint64_t v) noexcept nogil
    int ssmd_ticker_bad8(uint64_t w, size_t n) noexcept nogil


cdef enum:
    J_NONE = 0
    J_STRING = 1
    J_NUMBER = 2
    J_OBJECT = 3
    J_ARRAY = 4
    J_TRUE = 5
    J_FALSE = 6
    J_NULL = 7

cdef enum:
    MAX_FRAME = 1048576
    MAX_DEPTH = 128
    RAW_INVALID_MAX = 256
    PAD = 16
    NO_SLOT = 255
    BLOOM_KEYS = 24         # keys per object checked on insert; bigger objects: sorted check at close
    KEY_ESC = 0x80000000

# Span slots: the top-level members, then the msg members of the six record types.
cdef enum:
    S_TYPE = 0
    S_SID
    S_SEQ
    S_ID
    S_MSG
    S_MARKET_TICKER
    S_TRADE_ID
    S_YES_PRICE_DOLLARS
    S_YES_PRICE
    S_PRICE
    S_COUNT_FP
    S_COUNT
    S_TAKER_OUTCOME_SIDE
    S_TAKER_SIDE
    S_SIDE
    S_IS_BLOCK_TRADE
    S_TS_MS
    S_TS
    S_YES_BID_DOLLARS
    S_YES_BID
    S_YES_ASK_DOLLARS
    S_YES_ASK
    S_PRICE_DOLLARS
    S_YES_BID_SIZE_FP
    S_YES_ASK_SIZE_FP
    S_LAST_TRADE_SIZE_FP
    S_VOLUME_FP
    S_VOLUME
    S_OPEN_INTEREST_FP
    S_OPEN_INTEREST
    S_DOLLAR_VOLUME
    S_DOLLAR_OPEN_INTEREST
    S_TIME
    S_YES_DOLLARS_FP
    S_YES_DOLLARS
    S_YES
    S_NO_DOLLARS_FP
    S_NO_DOLLARS
    S_NO
    S_DELTA_FP
    S_DELTA
    S_EVENT_TYPE
    S_OPEN_TS
    S_CLOSE_TS
    S_DETERMINATION_TS
    S_SETTLED_TS
    S_RESULT
    S_SETTLEMENT_VALUE
    S_IS_DEACTIVATED
    S_PRICE_LEVEL_STRUCTURE
    S_ADDITIONAL_METADATA
    S_STRIKE_TYPE
    S_FLOOR_STRIKE
    S_CAP_STRIKE
    S_CUSTOM_STRIKE
    S_YES_SUB_TITLE
    S_NO_SUB_TITLE
    S_TITLE
    S_RULES_PRIMARY
    S_RULES_SECONDARY
    S_EVENT_TICKER
    S_SERIES_TICKER
    S_SUBTITLE
    S_SUB_TITLE
    S_COLLATERAL_RETURN_TYPE
    S_STRIKE_DATE
    S_STRIKE_PERIOD
    S_COUNT_OF_SLOTS        # slots from here on: msg members every frame type ignores (dup check only)

cdef enum:
    N_SLOTS_MAX = 96        # the size of FrameBatch.spans
    P_START_TOP = 120       # pseudo slots for the key prediction: before the first key of an object,
    P_START_MSG = 121       #   and after a key that has no slot (per level: rows never mix levels)
    P_UNKNOWN1 = 122
    P_UNKNOWN2 = 123
    P_ROWS = 16             # prediction rows, one per record type (hashed from the type value)

# Names in slot order after the 5 top-level ones (which are looked up at depth 1, these inside msg).
_TOP_NAMES = (b"type", b"sid", b"seq", b"id", b"msg")
_MSG_NAMES = (
    b"market_ticker", b"trade_id", b"yes_price_dollars", b"yes_price", b"price", b"count_fp", b"count",
    b"taker_outcome_side", b"taker_side", b"side", b"is_block_trade", b"ts_ms", b"ts",
    b"yes_bid_dollars", b"yes_bid", b"yes_ask_dollars", b"yes_ask", b"price_dollars",
    b"yes_bid_size_fp", b"yes_ask_size_fp", b"last_trade_size_fp", b"volume_fp", b"volume",
    b"open_interest_fp", b"open_interest", b"dollar_volume", b"dollar_open_interest", b"time",
    b"yes_dollars_fp", b"yes_dollars", b"yes", b"no_dollars_fp", b"no_dollars", b"no",
    b"delta_fp", b"delta", b"event_type", b"open_ts", b"close_ts", b"determination_ts", b"settled_ts",
    b"result", b"settlement_value", b"is_deactivated", b"price_level_structure",
    b"additional_metadata", b"strike_type", b"floor_strike", b"cap_strike", b"custom_strike",
    b"yes_sub_title", b"no_sub_title", b"title", b"rules_primary", b"rules_secondary",
    b"event_ticker", b"series_ticker", b"subtitle", b"sub_title", b"collateral_return_type",
    b"strike_date", b"strike_period",
)
# Common msg members no record reads: a slot makes their duplicate check and key prediction cheap.
_IGNORED_NAMES = (b"market_id", b"Clock", b"no_price", b"no_price_dollars", b"taker_book_side",
                  b"exchange_index", b"price_ranges", b"client_order_id", b"subaccount", b"name")

# Name table: open addressing over the low 8 bits of the seeded key hash; len 0 = empty.
cdef uint64_t _hash_seed = 0
cdef uint64_t _name_hash[256]
cdef uint8_t _name_slot[256]
cdef uint8_t _name_level[256]
cdef uint8_t _name_len[256]
cdef bytes _name_store = b""
cdef int _n_slots = 0
# Per slot: the name's length and its first, second and last 8-byte words (names are <= 24 bytes).
cdef uint32_t _slot_len[128]
cdef uint64_t _slot_w0[128]
cdef uint64_t _slot_w1[128]
cdef uint64_t _slot_wl[128]
# Per slot: the member prefix '"name":' (length + 3 <= 32 bytes) as words, for the predicted-key test.
cdef uint32_t _mem_len[128]
cdef uint64_t _mem_w[128][4]
cdef uint64_t _mem_m[128][4]     # the mask of each word (the prefix's bytes)
# Key prediction: _pred[row * 128 + previous slot] = the slot that followed it last time. Wire key
# order is fixed per frame type, so most keys are recognized by comparing 1-3 words with one name.
cdef uint16_t _pred[P_ROWS * 128]        # slot | member prefix length << 8 (one load)

# Value of an ASCII hex digit, 0xFF for any other byte.
cdef uint8_t _HEX[256]
# Bytes allowed after a backslash (other than 'u').
cdef uint8_t _ESC_OK[256]


cdef void _init_scan_tables(uint64_t seed):
    global _hash_seed, _name_store, _n_slots
    cdef int i, k
    cdef Py_ssize_t o, nl
    cdef uint64_t h
    cdef const uint8_t* base
    _hash_seed = seed
    for i in range(256):
        _HEX[i] = 0xFF
        _ESC_OK[i] = 0
        _name_len[i] = 0
    for i in range(10):
        _HEX[48 + i] = i
    for i in range(6):
        _HEX[65 + i] = 10 + i
        _HEX[97 + i] = 10 + i
    for i in b'"\\/bfnrt':
        _ESC_OK[i] = 1
    names = [(n, s, 1) for s, n in enumerate(_TOP_NAMES)]
    names += [(n, S_MARKET_TICKER + s, 2) for s, n in enumerate(_MSG_NAMES)]
    assert len(names) == S_COUNT_OF_SLOTS
    names += [(n, S_COUNT_OF_SLOTS + s, 2) for s, n in enumerate(_IGNORED_NAMES)]
    assert len(names) <= N_SLOTS_MAX and max(len(n) for n, _, _ in names) <= 24
    cdef bytes member
    _n_slots = len(names)
    offsets = []
    store = bytearray()
    for n, s, level in names:
        offsets.append(len(store))
        store += n + bytes(8)
    store += bytes(PAD)
    _name_store = bytes(store)
    base = <const uint8_t*>_name_store
    for i in range(P_ROWS * 128):
        _pred[i] = NO_SLOT
    for (n, slot, level), off in zip(names, offsets):
        o = off
        nl = len(n)
        _slot_len[slot] = nl
        _slot_w0[slot] = ssmd_load64(base + o) & ssmd_low_mask(nl)
        _slot_w1[slot] = ssmd_load64(base + o + 8) & ssmd_low_mask(nl - 8 if nl > 8 else 0)
        _slot_wl[slot] = ssmd_load64(base + o + nl - 8) if nl >= 8 else 0
        member = b'"' + n + b'":' + bytes(40)
        _mem_len[slot] = nl + 3
        for k in range(4):
            _mem_m[slot][k] = ssmd_low_mask(max(0, min(8, nl + 3 - 8 * k)))
            _mem_w[slot][k] = ssmd_load64(<const uint8_t*>member + 8 * k) & _mem_m[slot][k]
        h = ssmd_key_hash(base + o, nl, seed)
        k = h & 255
        while _name_len[k] != 0:
            k = (k + 1) & 255
        _name_hash[k] = h
        _name_slot[k] = slot
        _name_level[k] = level
        _name_len[k] = nl


cdef inline bint _is_member(const uint8_t* s, uint32_t n, uint32_t slot) noexcept nogil:
    """The n bytes at s (padded buffer) are the member prefix '"name":' of slot (n = its length)."""
    cdef uint64_t* w = _mem_w[slot]
    cdef uint64_t* m = _mem_m[slot]
    if n <= 8:
        return (ssmd_load64(s) & m[0]) == w[0]
    if n <= 16:
        return ((ssmd_load64(s) ^ w[0]) | ((ssmd_load64(s + 8) & m[1]) ^ w[1])) == 0
    return ((ssmd_load64(s) ^ w[0]) | (ssmd_load64(s + 8) ^ w[1]) | ((ssmd_load64(s + 16) & m[2]) ^ w[2])
            | ((ssmd_load64(s + 24) & m[3]) ^ w[3])) == 0


cdef inline bint _is_name(const uint8_t* s, uint32_t n, uint32_t slot) noexcept nogil:
    """The n bytes at s (padded buffer) equal the name of slot."""
    if n != _slot_len[slot]:
        return False
    if n <= 8:
        return (ssmd_load64(s) & ssmd_low_mask(n)) == _slot_w0[slot]
    if ssmd_load64(s) != _slot_w0[slot] or ssmd_load64(s + n - 8) != _slot_wl[slot]:
        return False
    return n <= 16 or ssmd_load64(s + 8) == _slot_w1[slot]


cdef inline uint32_t _lookup_name(uint64_t h, const uint8_t* s, Py_ssize_t n, int level) noexcept nogil:
    cdef int k = h & 255
    while _name_len[k] != 0:
        if _name_hash[k] == h and _name_level[k] == level and _is_name(s, <uint32_t>n, _name_slot[k]):
            return _name_slot[k]
        k = (k + 1) & 255
    return NO_SLOT


cdef inline const uint8_t* skip_ws(const uint8_t* s) noexcept nogil:
    while s[0] <= 32 and (s[0] == 32 or s[0] == 10 or s[0] == 13 or s[0] == 9):
        s += 1
    return s


cdef inline int _hex4(const uint8_t* s) noexcept nogil:
    cdef uint32_t a = _HEX[s[0]], b = _HEX[s[1]], c = _HEX[s[2]], d = _HEX[s[3]]
    if (a | b | c | d) & 0xF0:
        return -1
    return <int>((a << 12) | (b << 8) | (c << 4) | d)


cdef inline int _utf8_len(const uint8_t* s) noexcept nogil:
    """Length of the valid UTF-8 sequence at s (lead byte >= 0x80), 0 when invalid."""
    cdef uint8_t c0 = s[0], c1 = s[1]
    if c0 < 0xC2:
        return 0
    if c0 < 0xE0:
        return 2 if (c1 & 0xC0) == 0x80 else 0
    if c0 < 0xF0:
        if c0 == 0xE0:
            if c1 < 0xA0 or c1 > 0xBF:
                return 0
        elif c0 == 0xED:
            if c1 < 0x80 or c1 > 0x9F:
                return 0
        elif (c1 & 0xC0) != 0x80:
            return 0
        return 3 if (s[2] & 0xC0) == 0x80 else 0
    if c0 < 0xF5:
        if c0 == 0xF0:
            if c1 < 0x90 or c1 > 0xBF:
                return 0
        elif c0 == 0xF4:
            if c1 < 0x80 or c1 > 0x8F:
                return 0
        elif (c1 & 0xC0) != 0x80:
            return 0
        return 4 if (s[2] & 0xC0) == 0x80 and (s[3] & 0xC0) == 0x80 else 0
    return 0


cdef bint _utf8_valid(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Whole-buffer check, on the error path only (the buffer has PAD zero bytes after n)."""
    cdef const uint8_t* end = s + n
    cdef int k
    while s < end:
        if s[0] < 0x80:
            s += 1
            continue
        k = _utf8_len(s)
        if k == 0 or s + k > end:
            return False
        s += k
    return True


cdef inline const uint8_t* _scan_string(const uint8_t* s, int* esc, int* fail) noexcept nogil:
    """s: first byte after the opening quote. Returns the closing quote, or NULL with *fail set."""
    cdef uint8_t c
    cdef int k, quote
    while True:
        s = ssmd_str_stop_q(s, &quote)
        if quote:
            return s
        c = s[0]
        if c == 92:
            esc[0] = 1
            c = s[1]
            if c == 117:
                k = _hex4(s + 2)
                if k < 0:
                    fail[0] = R_JSON
                    return NULL
                s += 6
                if 0xD800 <= k < 0xE000:
                    # a high surrogate escape must be followed by a low one; a lone one is invalid
                    if k >= 0xDC00 or s[0] != 92 or s[1] != 117:
                        fail[0] = R_JSON
                        return NULL
                    k = _hex4(s + 2)
                    if k < 0xDC00 or k >= 0xE000:
                        fail[0] = R_JSON
                        return NULL
                    s += 6
            elif _ESC_OK[c]:
                s += 2
            else:
                fail[0] = R_JSON
                return NULL
        elif c < 0x20:
            fail[0] = R_JSON
            return NULL
        else:
            k = _utf8_len(s)
            if k == 0:
                fail[0] = R_UTF8
                return NULL
            s += k


cdef Py_ssize_t decode_string(const uint8_t* s, const uint8_t* e, uint8_t* out) noexcept nogil:
    """Unescape the valid string content [s, e) into UTF-8 at out; returns the length."""
    cdef uint8_t* o = out
    cdef uint8_t c
    cdef uint32_t cp, lo
    while s < e:
        c = s[0]
        if c != 92:
            o[0] = c
            o += 1
            s += 1
            continue
        c = s[1]
        if c == 117:
            cp = <uint32_t>_hex4(s + 2)
            s += 6
            if 0xD800 <= cp < 0xDC00:
                lo = <uint32_t>_hex4(s + 2)
                s += 6
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            o = _put_utf8(o, cp)
            continue
        s += 2
        if c == 98:
            o[0] = 8
        elif c == 102:
            o[0] = 12
        elif c == 110:
            o[0] = 10
        elif c == 114:
            o[0] = 13
        elif c == 116:
            o[0] = 9
        else:
            o[0] = c        # " \ /
        o += 1
    return o - out


cdef inline uint8_t* _put_utf8(uint8_t* o, uint32_t cp) noexcept nogil:
    if cp < 0x80:
        o[0] = cp
        return o + 1
    if cp < 0x800:
        o[0] = 0xC0 | (cp >> 6)
        o[1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        o[0] = 0xE0 | (cp >> 12)
        o[1] = 0x80 | ((cp >> 6) & 0x3F)
        o[2] = 0x80 | (cp & 0x3F)
        return o + 3
    o[0] = 0xF0 | (cp >> 18)
    o[1] = 0x80 | ((cp >> 12) & 0x3F)
    o[2] = 0x80 | ((cp >> 6) & 0x3F)
    o[3] = 0x80 | (cp & 0x3F)
    return o + 4


cdef bint _keys_equal(FrameBatch b, const uint8_t* p, KeyRef* x, KeyRef* y) noexcept:
    """Exact comparison of two keys after unescaping (hashes already equal)."""
    cdef Py_ssize_t nx = x.len & ~KEY_ESC, ny = y.len & ~KEY_ESC
    cdef uint8_t* bx
    cdef uint8_t* by
    if not (x.len & KEY_ESC) and not (y.len & KEY_ESC):
        return nx == ny and memcmp(p + x.start, p + y.start, nx) == 0
    bx = <uint8_t*>b.scratch.data
    by = bx + nx + PAD
    nx = decode_string(p + x.start, p + x.start + nx, bx)
    ny = decode_string(p + y.start, p + y.start + ny, by)
    return nx == ny and memcmp(bx, by, nx) == 0


cdef int _cmp_keyref(const void* a, const void* b) noexcept nogil:
    cdef uint64_t ha = (<const KeyRef*>a).hash, hb = (<const KeyRef*>b).hash
    return (ha > hb) - (ha < hb)


cdef bint _large_object_has_dup(FrameBatch b, const uint8_t* p, uint32_t base) noexcept:
    """Keys of an object too big for the bloom check: sort by hash, compare equal-hash runs exactly."""
    cdef KeyRef* k = b.keyrefs + base
    cdef Py_ssize_t n = b.nkeys - base, i, j
    qsort(k, n, sizeof(KeyRef), _cmp_keyref)
    for i in range(n - 1):
        j = i + 1
        while j < n and k[j].hash == k[i].hash:
            if _keys_equal(b, p, &k[i], &k[j]):
                return True
            j += 1
    return False


cdef inline bint _insert_key(FrameBatch b, const uint8_t* p, Open* op, uint64_t h, uint32_t start,
                             uint32_t rawlen) noexcept:
    """Adds a key to the innermost open object; True when it repeats an earlier key of that object."""
    cdef uint32_t bit = <uint32_t>(h >> 56)
    cdef uint64_t m = (<uint64_t>1) << (bit & 63)
    cdef KeyRef* k = b.keyrefs + b.nkeys
    cdef Py_ssize_t j
    k.hash = h
    k.start = start
    k.len = rawlen
    if not op.large:
        if op.bloom[bit >> 6] & m:
            for j in range(op.key_base, b.nkeys):
                if b.keyrefs[j].hash == h and _keys_equal(b, p, &b.keyrefs[j], k):
                    return True
        op.bloom[bit >> 6] |= m
        if b.nkeys + 1 - op.key_base > BLOOM_KEYS:
            op.large = 1
    b.nkeys += 1
    return False


cdef const uint8_t* _scan_key_slow(FrameBatch b, const uint8_t* p, const uint8_t* s, int depth,
                                   uint32_t* prev, uint32_t row, uint32_t* slot, int* err,
                                   int* fail) noexcept:
    """The key whose opening quote is at s, when the predicted name did not match: returns its closing
    quote (NULL with *fail set when the string is bad), sets *slot (field slot or NO_SLOT) and *err on
    a duplicate. prev is NULL outside the top-level object and msg (no names there)."""
    cdef const uint8_t* q
    cdef const uint8_t* ks
    cdef uint32_t ps, kn
    cdef uint64_t h
    cdef int esc = 0
    slot[0] = NO_SLOT
    q = _scan_string(s + 1, &esc, fail)
    if q == NULL or err[0] != 0 or depth > MAX_DEPTH:
        return q
    ks = s + 1
    kn = <uint32_t>(q - ks)
    if esc:
        kn = <uint32_t>decode_string(ks, q, <uint8_t*>b.scratch.data)
        ks = <const uint8_t*>b.scratch.data
    h = ssmd_key_hash(ks, kn, _hash_seed)
    if prev != NULL:
        ps = _lookup_name(h, ks, kn, 1 if depth == 1 else 2)
        _pred[row + prev[0]] = <uint16_t>(ps | ((_mem_len[ps] if ps != NO_SLOT else 0) << 8))
        if ps != NO_SLOT:
            prev[0] = ps
            # a named key is a duplicate when its slot was already seen in this frame
            if b.spans[ps].gen == b.gen:
                err[0] = R_DUPLICATE_KEY
                return q
            b.spans[ps].gen = b.gen
            if ps < S_COUNT_OF_SLOTS:
                slot[0] = ps
            return q
        prev[0] = P_UNKNOWN1 if depth == 1 else P_UNKNOWN2
    if _insert_key(b, p, &b.opens[depth], h, <uint32_t>(s + 1 - p),
                   <uint32_t>(q - s - 1) | (KEY_ESC if esc else 0)):
        err[0] = R_DUPLICATE_KEY
    return q


cdef int scan_json(FrameBatch b, const uint8_t* p, Py_ssize_t n) noexcept:
    """Validate the frame at p (n bytes, PAD zero bytes after) and record the spans of interest.

    Returns R_NONE or the reason code of the first broken rule in the spec's order (utf8 before json
    before depth before duplicate_key, whatever their positions in the frame).
    """
    cdef const uint8_t* s = skip_ws(p)
    cdef const uint8_t* q
    cdef const uint8_t* end = p + n
    cdef uint8_t* ctype = b.ctype
    cdef int depth = 0, err = 0, fail = 0, esc
    cdef uint32_t slot = NO_SLOT, pe, ps, ln
    cdef uint32_t gen = b.gen
    cdef uint32_t prev = P_START_TOP, prev1 = P_START_TOP, row = 0     # prev: the current level's
    cdef bint in_msg = False        # the innermost open container is the msg object
    cdef bint goto_key = False
    cdef uint8_t c, kind, stop
    cdef Span* sp
    cdef Span* spans = b.spans
    cdef Open* op
    b.nkeys = 0
    while True:
        # ---- one value at s
        c = s[0]
        if c == 34:
            esc = 0
            q = _scan_string(s + 1, &esc, &fail)
            if q == NULL:
                break
            if slot != NO_SLOT:
                sp = &spans[slot]
                sp.start = <uint32_t>(s - p)
                sp.end = <uint32_t>(q + 1 - p)
                sp.kind = J_STRING
                sp.esc = esc
                if slot == S_TYPE:      # the prediction row of this frame type (distinct for the 6)
                    row = ((<uint32_t>(q - s) + s[1]) & (P_ROWS - 1)) * 128
            s = q + 1
        elif c == 123 or c == 91:
            depth += 1
            ctype[depth] = c
            in_msg = False
            if depth <= MAX_DEPTH:
                if err == 0:
                    op = &b.opens[depth]
                    op.slot = slot
                    if slot != NO_SLOT:
                        sp = &spans[slot]
                        sp.start = <uint32_t>(s - p)
                        sp.kind = J_OBJECT if c == 123 else J_ARRAY
                        sp.esc = 0
                        if slot == S_MSG and c == 123:
                            in_msg = True
                            prev1 = prev        # back to it when msg closes
                            prev = P_START_MSG
                    if c == 123:
                        op.key_base = <uint32_t>b.nkeys
                        op.large = 0
                        op.bloom[0] = 0
                        op.bloom[1] = 0
                        op.bloom[2] = 0
                        op.bloom[3] = 0
            else:
                err = R_DEPTH       # beats duplicate_key; only json/utf8 further on can override it
            s = skip_ws(s + 1)
            if s[0] == c + 2:       # '{' + 2 == '}', '[' + 2 == ']': empty, closes at once
                if depth <= MAX_DEPTH and err == 0:
                    op = &b.opens[depth]
                    if op.slot != NO_SLOT:
                        spans[op.slot].end = <uint32_t>(s + 1 - p)
                if depth == 2 and in_msg:
                    prev = prev1
                depth -= 1
                in_msg = depth == 2 and err == 0 and b.opens[2].slot == S_MSG
                s += 1
            elif c == 91:
                slot = NO_SLOT
                continue
            else:
                goto_key = True
        elif c == 45 or <uint8_t>(c - 48) < 10:
            q = s + 1 if c == 45 else s
            if q[0] == 48:
                q += 1
                stop = q[0]
            elif <uint8_t>(q[0] - 49) < 9:
                q = ssmd_digits_end_b(q + 1, &stop)
            else:
                fail = R_JSON
                break
            esc = 0                 # for numbers: 1 when there is a fraction or an exponent
            if stop == 46:
                q += 1
                if <uint8_t>(q[0] - 48) >= 10:
                    fail = R_JSON
                    break
                q = ssmd_digits_end_b(q + 1, &stop)
                esc = 1
            if stop | 0x20 == 101:
                q += 1
                if q[0] == 43 or q[0] == 45:
                    q += 1
                if <uint8_t>(q[0] - 48) >= 10:
                    fail = R_JSON
                    break
                q = ssmd_digits_end(q + 1)
                esc = 1
            if slot != NO_SLOT:
                sp = &spans[slot]
                sp.start = <uint32_t>(s - p)
                sp.end = <uint32_t>(q - p)
                sp.kind = J_NUMBER
                sp.esc = esc
            s = q
        else:
            if c == 116 and memcmp(s, b"true", 4) == 0:
                kind = J_TRUE
                q = s + 4
            elif c == 102 and memcmp(s, b"false", 5) == 0:
                kind = J_FALSE
                q = s + 5
            elif c == 110 and memcmp(s, b"null", 4) == 0:
                kind = J_NULL
                q = s + 4
            else:
                fail = R_JSON
                break
            if slot != NO_SLOT:
                sp = &spans[slot]
                sp.start = <uint32_t>(s - p)
                sp.end = <uint32_t>(q - p)
                sp.kind = kind
            s = q
        # ---- after a value: separators and closers, up to the next value or key
        if not goto_key:
            # the common case first: ',' then the predicted '"name":' in the top-level object or msg
            if s[0] == 44 and err == 0 and ((depth == 1 and ctype[1] == 123) or in_msg):
                pe = _pred[row + prev]
                ps = pe & 0xFF
                if ps != NO_SLOT and _is_member(s + 1, pe >> 8, ps) and spans[ps].gen != gen:
                    prev = ps
                    spans[ps].gen = gen
                    slot = ps if ps < S_COUNT_OF_SLOTS else NO_SLOT
                    s = skip_ws(s + 1 + (pe >> 8))
                    continue
            while True:
                s = skip_ws(s)
                if depth == 0:
                    if s != end:
                        fail = R_JSON
                    break
                c = s[0]
                if c == 44:
                    s = skip_ws(s + 1)
                    slot = NO_SLOT
                    goto_key = ctype[depth] == 123
                    break
                if c != ctype[depth] + 2:
                    fail = R_JSON
                    break
                if depth <= MAX_DEPTH and err == 0:
                    op = &b.opens[depth]
                    if c == 125:
                        if op.large and _large_object_has_dup(b, p, op.key_base):
                            err = R_DUPLICATE_KEY
                        b.nkeys = op.key_base
                    if op.slot != NO_SLOT:
                        spans[op.slot].end = <uint32_t>(s + 1 - p)
                if depth == 2 and in_msg:
                    prev = prev1
                depth -= 1
                in_msg = depth == 2 and err == 0 and b.opens[2].slot == S_MSG
                s += 1
            if fail or depth == 0:
                break
            if not goto_key:
                continue
        # ---- a key at s, then ':'
        goto_key = False
        slot = NO_SLOT
        if err == 0 and (depth == 1 or in_msg):
            pe = _pred[row + prev]
            ps = pe & 0xFF
            if ps != NO_SLOT and _is_member(s, pe >> 8, ps) and spans[ps].gen != gen:
                # '"name":' of the predicted name, not seen before in this frame
                prev = ps
                spans[ps].gen = gen
                if ps < S_COUNT_OF_SLOTS:
                    slot = ps
                s = skip_ws(s + (pe >> 8))
                continue
            if s[0] != 34:
                fail = R_JSON
                break
            q = _scan_key_slow(b, p, s, depth, &prev, row, &slot, &err, &fail)
        else:
            if s[0] != 34:
                fail = R_JSON
                break
            q = _scan_key_slow(b, p, s, depth, NULL, row, &slot, &err, &fail)
        if q == NULL:
            break
        s = skip_ws(q + 1)
        if s[0] != 58:
            fail = R_JSON
            break
        s = skip_ws(s + 1)
    if fail:
        if fail == R_UTF8 or not _utf8_valid(p, n):
            return R_UTF8
        return fail
    return err
