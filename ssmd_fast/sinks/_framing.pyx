"""Message framing into a ring of in-flight messages, fast-ingest batches, and the ack parser (compiled).

Same API and bytes as the twin ``_framing_py.py`` (read its docstrings). Here the FrameBatch is walked
in C (``batch.entries``): one capacity check per batch, subjects from per-(kind, form) templates plus
the entry's token, ids from the entry's stem, frames written straight into one malloc'd log buffer;
sends patch fast-ingest replies in place and can write from that buffer to the socket; acks are parsed
from the socket bytes straight into the ring (``_framing_acks.pxi``): no Python call, object or future
per message on the hot path.
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport write as c_write

from ssmd_fast._normalize cimport F_DUPLICATE, F_SUPPRESSED, K_TRADE, OUT_OTHER, OUT_RECORD, FrameBatch, FrameEntry

from ssmd_fast.sinks import _framing_py as _twin
from ssmd_fast.sinks._framing_acks_py import (LATENCY_BUCKETS, control_event, latency_upper_ns, on_fast_reply,
                                              parse_ack_error)
from ssmd_fast.sinks import subjects as _subjects
from ssmd_fast.sinks.subjects import NORM_WORDS, RAW_WORDS, SubjectEncoder, id_text

IMPLEMENTATION = "cython"
if LATENCY_BUCKETS != 128:
    raise ImportError("_framing.pyx and _framing_py.py disagree on LATENCY_BUCKETS")

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil
    void __builtin_prefetch(const void*, int, int) nogil

# Byte moves of the framer. Most pieces of a frame (subject head, token, reply, id) are 5-64 bytes: a libc
# memcpy call per piece was a good part of the framing's instructions, so those are copied inline with
# two to four overlapping loads and stores (reading and writing only [s, s+n) and [d, d+n)).
# ssmd_plain16 makes a subject token or an id text 16 bytes at a time when nothing needs a %-escape; else
# the caller's byte loop does it (put_token, put_id_text).
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static inline void ssmd_copy_short(char* d, const char* s, size_t n) {
    #if defined(__SSE2__)
        if (n > 16) {
            if (n > 32) {
                __m128i a = _mm_loadu_si128((const __m128i*)s), b = _mm_loadu_si128((const __m128i*)(s + 16));
                __m128i c = _mm_loadu_si128((const __m128i*)(s + n - 32));
                __m128i e = _mm_loadu_si128((const __m128i*)(s + n - 16));
                _mm_storeu_si128((__m128i*)d, a);
                _mm_storeu_si128((__m128i*)(d + 16), b);
                _mm_storeu_si128((__m128i*)(d + n - 32), c);
                _mm_storeu_si128((__m128i*)(d + n - 16), e);
            } else {
                __m128i a = _mm_loadu_si128((const __m128i*)s);
                __m128i b = _mm_loadu_si128((const __m128i*)(s + n - 16));
                _mm_storeu_si128((__m128i*)d, a);
                _mm_storeu_si128((__m128i*)(d + n - 16), b);
            }
            return;
        }
    #else
        if (n > 16) { memcpy(d, s, n); return; }
    #endif
        if (n >= 8) {
            uint64_t a, b;
            memcpy(&a, s, 8); memcpy(&b, s + n - 8, 8);
            memcpy(d, &a, 8); memcpy(d + n - 8, &b, 8);
        } else if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4); memcpy(&b, s + n - 4, 4);
            memcpy(d, &a, 4); memcpy(d + n - 4, &b, 4);
        } else if (n > 0) {
            d[0] = s[0]; d[n / 2] = s[n / 2]; d[n - 1] = s[n - 1];
        }
    }
    /* n bytes from s to d: inline up to 64, memcpy beyond. */
    static inline Py_ssize_t ssmd_put(char* d, const char* s, Py_ssize_t n) {
        if (n <= 64) ssmd_copy_short(d, s, (size_t)n); else memcpy(d, s, (size_t)n);
        return n;
    }
    /* v[0:n] (n >= 16) copied to out 16 bytes a step when no byte needs a %-escape: 1; else 0 (what was
       written is then of no use). Escaped: outside 0x21..0x7E, and '*' and '>' for a subject token (where
       '.' becomes '_'), '%' for an id text. Reads and writes [0, n) only: the last step overlaps. */
    static inline int ssmd_plain16(char* out, const unsigned char* v, Py_ssize_t n, int token) {
    #if defined(__SSE2__)
        const __m128i lo = _mm_set1_epi8(0x21), del = _mm_set1_epi8(0x7F);
        const __m128i e1 = _mm_set1_epi8(token ? 0x2A : 0x25), e2 = _mm_set1_epi8(token ? 0x3E : 0x25);
        const __m128i dot = _mm_set1_epi8(0x2E), flip = _mm_set1_epi8(token ? 0x2E ^ 0x5F : 0);
        Py_ssize_t i = 0;
        for (;;) {
            __m128i x = _mm_loadu_si128((const __m128i*)(v + i));
            /* signed compare: below 0x21 and 0x80..0xFF (negative) at once */
            __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(x, lo), _mm_cmpeq_epi8(x, del)),
                                       _mm_or_si128(_mm_cmpeq_epi8(x, e1), _mm_cmpeq_epi8(x, e2)));
            if (_mm_movemask_epi8(bad)) return 0;
            x = _mm_xor_si128(x, _mm_and_si128(_mm_cmpeq_epi8(x, dot), flip));
            _mm_storeu_si128((__m128i*)(out + i), x);
            if (i + 16 >= n) return 1;
            i = (i + 32 <= n) ? i + 16 : n - 16;
        }
    #else
        (void)out; (void)v; (void)n; (void)token;
        return 0;
    #endif
    }
    """
    void ssmd_copy_short(char* d, const char* s, size_t n) noexcept nogil
    Py_ssize_t ssmd_put(char* d, const char* s, Py_ssize_t n) noexcept nogil
    int ssmd_plain16(char* out, const unsigned char* v, Py_ssize_t n, int token) noexcept nogil

QUEUED, SENT, ACKED, RETIRED = 0, 1, 2, 3
ORIGIN_LIVE, ORIGIN_SPILL = 0, 1
MODE_CORE, MODE_ACK, MODE_FAST = 0, 1, 2
BATCH_OPEN, BATCH_CLOSING = 1, 2
BATCH_MAX = 999_999
SEQ_DIGITS = 7
FLOW = 50

cdef enum:
    S_QUEUED = 0
    S_SENT = 1
    S_ACKED = 2
    S_RETIRED = 3
    O_LIVE = 0
    O_SPILL = 1
    M_CORE = 0
    M_ACK = 1
    M_FAST = 2
    B_OPEN = 1
    B_CLOSING = 2
    B_MAX = 999999
    SEQ_W = 7
    NSLOTS = 16
    MAX_TOKEN = 1024
    MAX_ID_TEXT = 256
    HDR_HEAD_LEN = 23
    LINE_MAX = 5 + 1 + 20 + 1 + 20 + 2 + 1   # "HPUB " + the spaces, the two numbers and CRLF
    TMPL_OTHER = 12

if (_subjects.MAX_TOKEN, _subjects.MAX_ID_TEXT) != (MAX_TOKEN, MAX_ID_TEXT):
    raise ImportError("_framing.pyx and subjects.py disagree on MAX_TOKEN / MAX_ID_TEXT")
if (_twin.BATCH_MAX, _twin.SEQ_DIGITS, _twin.MODE_FAST) != (B_MAX, SEQ_W, M_FAST):
    raise ImportError("_framing.pyx and _framing_py.py disagree on the fast-ingest layout")

cdef const char* HEXD = b"0123456789ABCDEF"     # %-escapes (subjects.py)
cdef const char* HEXL = b"0123456789abcdef"     # batch numbers in replies
cdef const char* DIG2 = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                         b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                         b"8081828384858687888990919293949596979899")
cdef const char* HDR_HEAD = b"NATS/1.0\r\nNats-Msg-Id: "


cdef inline bytes _exact_bytes(object o):
    return <bytes>o if PyBytes_CheckExact(o) else bytes(o)


cdef inline int ndigits(uint64_t v) noexcept:
    cdef int n = 1
    while v >= 10000:
        v //= 10000
        n += 4
    if v >= 100:
        n += 2
        v //= 100
    return n + (v >= 10)


cdef inline Py_ssize_t put_dec(char* out, uint64_t v) noexcept:
    """``v`` in decimal, two digits per division."""
    cdef int n = ndigits(v)
    cdef char* p = out + n
    cdef uint64_t q
    while v >= 100:
        q = v // 100
        p -= 2
        memcpy(p, DIG2 + 2 * (v - q * 100), 2)
        v = q
    if v >= 10:
        memcpy(p - 2, DIG2 + 2 * v, 2)
    else:
        (p - 1)[0] = <char>(48 + v)
    return n


cdef inline void put_fixed(char* out, uint64_t v, int width) noexcept:
    """``v`` zero-padded to ``width`` digits (it fits)."""
    cdef int i = width
    while i > 0:
        i -= 1
        out[i] = <char>(48 + v % 10)
        v //= 10


cdef inline void put_hex8(char* out, uint32_t v) noexcept:
    cdef int i
    for i in range(8):
        out[7 - i] = HEXL[v & 15]
        v >>= 4


cdef inline Py_ssize_t put(char* out, const char* s, Py_ssize_t n) noexcept:
    return ssmd_put(out, s, n)


# subject token byte classes: 0 kept, 1 '.' -> '_', 2 %-escaped (subjects.subject_token)
cdef unsigned char TOKEN_CLASS[256]
for _b in range(256):
    TOKEN_CLASS[_b] = 1 if _b == 0x2E else (0 if 0x21 <= _b <= 0x7E and _b != 0x2A and _b != 0x3E else 2)


cdef inline void put_pct(char* out, unsigned char b) noexcept:
    """``b`` as ``%XX`` (subjects.py's escape)."""
    out[0] = b'%'
    out[1] = HEXD[b >> 4]
    out[2] = HEXD[b & 15]


cdef Py_ssize_t put_token(char* out, const unsigned char* key, Py_ssize_t n) noexcept:
    """subjects.subject_token, in C."""
    cdef Py_ssize_t i, w = 0, k
    cdef unsigned char b, c
    if n == 0:
        out[0] = b'_'
        return 1
    if n >= 16 and 3 * n <= MAX_TOKEN and ssmd_plain16(out, key, n, 1):   # the common ticker: 16 bytes a step
        return n
    if 3 * n <= MAX_TOKEN:  # cannot reach the cap: no per-byte limit checks
        for i in range(n):
            b = key[i]
            c = TOKEN_CLASS[b]
            if c == 0:
                out[w] = <char>b
                w += 1
            elif c == 1:
                out[w] = b'_'
                w += 1
            else:
                put_pct(out + w, b)
                w += 3
        return w
    for i in range(n):
        b = key[i]
        c = TOKEN_CLASS[b]
        k = 3 if c == 2 else 1
        if w + k > MAX_TOKEN:
            break
        if c == 0:
            out[w] = <char>b
        elif c == 1:
            out[w] = b'_'
        else:
            put_pct(out + w, b)
        w += k
    return w


cdef Py_ssize_t put_id_text(char* out, const unsigned char* v, Py_ssize_t n) except -1:
    """subjects.id_text, in C (the rare long value goes through the Python version for its digest)."""
    cdef Py_ssize_t i, w = 0
    cdef unsigned char b
    cdef bytes slow
    if 16 <= n <= MAX_ID_TEXT and ssmd_plain16(out, v, n, 0):    # a trade id (a UUID): 16 bytes a step
        return n
    for i in range(n):
        b = v[i]
        if 0x21 <= b <= 0x7E and b != 0x25:
            w += 1
        else:
            w += 3
    if w > MAX_ID_TEXT:
        slow = id_text(PyBytes_FromStringAndSize(<const char*>v, n))
        memcpy(out, PyBytes_AS_STRING(slow), PyBytes_GET_SIZE(slow))
        return PyBytes_GET_SIZE(slow)
    w = 0
    for i in range(n):
        b = v[i]
        if 0x21 <= b <= 0x7E and b != 0x25:
            out[w] = <char>b
            w += 1
        else:
            put_pct(out + w, b)
            w += 3
    return w


include "_framing_batches.pxi"
include "_framing_log.pxi"
include "_framing_moves.pxi"
include "_framing_ring.pxi"
include "_framing_acks.pxi"
