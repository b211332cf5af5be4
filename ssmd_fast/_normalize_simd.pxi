# Byte-parallel helpers of _normalize.pyx (included there): SSE2 on x86-64, 64-bit SWAR otherwise.
# All of them may read up to 15 bytes past what they report: every buffer they see is padded.

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
    /* Copy n <= 16 bytes as 16 (reads and writes up to 15 bytes past n). */
    static inline char* ssmd_copy16(char* d, const void* src, size_t n) {
    #if defined(__SSE2__)
        _mm_storeu_si128((__m128i*)d, _mm_loadu_si128((const __m128i*)src));
    #else
        memcpy(d, src, 16);
    #endif
        return d + n;
    }
    /* n (<= 16) ASCII zeros, written as 16. */
    static inline char* ssmd_zeros(char* d, size_t n) {
        memcpy(d, "0000000000000000", 16);
        return d + n;
    }
    /* A decimal string's content after any '-' (s[0..n), 1 <= n <= 16, padded buffer): unless it is
       [0-9]+ or [0-9]+.[0-9]+ or breaks the sign/range rule q (0 any, 1 > 0, 2 >= 0, 3 in [0, 1]),
       returns 1; else writes the canonical form at *wp, a slice of the input, and returns 0. One
       classification of the 16 bytes gives the '.', the leading zeros and the last significant digit. */
    static inline int ssmd_dec_short(char** wp, const uint8_t* s, int n, int neg, int q) {
        unsigned valid = (1u << n) - 1, nd, dot, inv;
        int dp, lz, hi, ni, nf;
        char* w = *wp;
    #if defined(__SSE2__)
        __m128i x = _mm_loadu_si128((const __m128i*)s);
        __m128i t = _mm_sub_epi8(x, _mm_set1_epi8(0x30));
        nd = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(t, _mm_set1_epi8(10)), t)) & valid;
        dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x2E))) & valid;
        inv = ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(t, _mm_setzero_si128())) & valid;
    #else
        int i;
        nd = dot = inv = 0;
        for (i = 0; i < n; i++) {
            nd |= (unsigned)(s[i] < 0x30 || s[i] > 0x39) << i;
            dot |= (unsigned)(s[i] == 0x2E) << i;
            inv |= (unsigned)(s[i] != 0x30) << i;
        }
    #endif
        if (nd != dot || (dot & (dot - 1)) || (dot & 1) || (dot >> (n - 1)))
            return 1;
        if (inv == 0) {                     /* only '0' characters: zero, whatever the sign */
            if (q == 1) return 1;
            *w = '0';
            *wp = w + 1;
            return 0;
        }
        dp = dot ? __builtin_ctz(dot) : n;  /* the '.' (or the end) */
        lz = __builtin_ctz(inv);            /* leading '0's: never past the '.', which is in inv */
        hi = 31 - __builtin_clz(inv);       /* the last character that is not '0' */
        ni = dp - lz;                       /* integer digits without leading zeros */
        nf = dot ? hi - dp : 0;             /* fraction digits without trailing zeros */
        if (ni == 0 && nf == 0) {           /* zero with a '.': "0.00" */
            if (q == 1) return 1;
            *w = '0';
            *wp = w + 1;
            return 0;
        }
        if (neg && q != 0) return 1;
        if (q == 3 && (ni > 1 || (ni == 1 && (s[lz] != '1' || nf > 0)))) return 1;
        if (neg) *w++ = '-';
        if (ni == 0) {                      /* "0" then ".ddd" */
            *w++ = '0';
            lz = dp;
        }
        *wp = ssmd_copy16(w, s + lz, (size_t)((nf ? hi + 1 : dp) - lz));
        return 0;
    }
    /* The commonest decimal on the wire, a price "0.dddd" (s: its 6 content bytes, padded buffer):
       written canonically at *wp ("0.55", "0") and 1 returned; 0 when s has another form (or is zero
       under rule q 1, "> 0"): the general path then decides. Valid under every other rule. */
    static inline int ssmd_price4(char** wp, const uint8_t* s, int q) {
        uint64_t w = ssmd_load64(s) & 0xFFFFFFFFFFFFULL;
        uint64_t x = w ^ 0x303030302E30ULL;         /* '0', '.', then each digit's value */
        int hi;
        if ((x & 0xF0F0F0F0FFFFULL) | ((x + 0x060606060000ULL) & 0xF0F0F0F00000ULL))
            return 0;
        if (x == 0) {
            if (q == 1) return 0;
            **wp = '0';
            *wp += 1;
            return 1;
        }
        hi = (63 - __builtin_clzll(x)) >> 3;       /* the last digit that is not 0 */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        memcpy(*wp, s, 8);
    #else
        memcpy(*wp, &w, 8);
    #endif
        *wp += hi + 1;
        return 1;
    }
    /* 1 to 1024 bytes of printable ASCII (0x21..0x7E) other than '*' and '>' (padded buffer). */
    static inline int ssmd_ticker_ok(const uint8_t* s, size_t n) {
        size_t i;
        if (n < 1 || n > 1024) return 0;
    #if defined(__SSE2__)
        for (i = 0; i < n; i += 16) {
            /* the signed compare with 0x21 catches the control bytes, space and every byte >= 0x80 */
            __m128i x = _mm_loadu_si128((const __m128i*)(s + i));
            __m128i bad = _mm_or_si128(
                _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x21)), _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7F))),
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x2A)), _mm_cmpeq_epi8(x, _mm_set1_epi8(0x3E))));
            unsigned m = (unsigned)_mm_movemask_epi8(bad);
            if (n - i < 16) m &= (1u << (n - i)) - 1;
            if (m) return 0;
        }
    #else
        for (i = 0; i < n; i += 8)
            if (ssmd_ticker_bad8(ssmd_load64(s + i), n - i < 8 ? n - i : 8)) return 0;
    #endif
        return 1;
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
    #if defined(__SSE2__)
        /* 16 bytes per step: byte - '0' (wrapping) is a digit iff it is below 10 (unsigned) */
        const __m128i z = _mm_set1_epi8(0x30), ten = _mm_set1_epi8(10);
        for (;;) {
            __m128i x = _mm_sub_epi8(_mm_loadu_si128((const __m128i*)p), z);
            unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(x, ten), x));
            if (m) { p += __builtin_ctz(m); *stop = *p; return p; }
            p += 16;
        }
    #else
        for (;;) {
            uint64_t w = ssmd_load64(p);
            uint64_t m = ((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                       | (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
            if (m) { int k = __builtin_ctzll(m) >> 3; *stop = (uint8_t)(w >> (k * 8)); return p + k; }
            p += 8;
        }
    #endif
    }
    /* The 32 bytes at s begin with a member prefix '"name":': pat holds its bytes (zero after them),
       need has one bit per prefix byte. Branch-free whatever the prefix length. */
    static inline int ssmd_member_eq(const uint8_t* s, const uint64_t* pat, uint32_t need) {
    #if defined(__SSE2__)
        __m128i a = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i*)s), _mm_loadu_si128((const __m128i*)pat));
        __m128i b = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i*)(s + 16)),
                                   _mm_loadu_si128((const __m128i*)(pat + 2)));
        uint32_t m = (uint32_t)_mm_movemask_epi8(a) | ((uint32_t)_mm_movemask_epi8(b) << 16);
        return (~m & need) == 0;
    #else
        uint64_t d = 0;
        int k;
        for (k = 0; k < 4; k++) {
            uint32_t nb = (need >> (8 * k)) & 0xFF;
            uint64_t mk = 0;
            int i;
            for (i = 0; i < 8; i++) if (nb & (1u << i)) mk |= (uint64_t)0xFF << (8 * i);
            d |= (ssmd_load64(s + 8 * k) ^ pat[k]) & mk;
        }
        return d == 0;
    #endif
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
    char* ssmd_copy16(char* d, const void* src, size_t n) noexcept nogil
    char* ssmd_zeros(char* d, size_t n) noexcept nogil
    int ssmd_dec_short(char** wp, const uint8_t* s, int n, int neg, int q) noexcept nogil
    int ssmd_ticker_ok(const uint8_t* s, size_t n) noexcept nogil
    int ssmd_price4(char** wp, const uint8_t* s, int q) noexcept nogil
    uint64_t ssmd_key_hash(const uint8_t* s, size_t n, uint64_t seed) noexcept nogil
    uint64_t ssmd_low_mask(size_t n) noexcept nogil
    char* ssmd_write_u64(char* w, uint64_t v) noexcept nogil
    int ssmd_ticker_bad8(uint64_t w, size_t n) noexcept nogil
    int ssmd_member_eq(const uint8_t* s, const uint64_t* pat, uint32_t need) noexcept nogil
