# Stamping and framing a batch of the exchange's timeline for one connection: the compiled twin
# of _exchange_render_py.py (same contract, same bytes). Two passes over the batch: the sizes (from
# the precomputed body lengths), then one bytes object written with memcpy, no object per frame.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

IMPLEMENTATION = "cython"

cdef const char* SEQ_KEY = b',"seq":'
cdef const char* MSG_KEY = b',"msg":'


cdef Py_ssize_t digits(long long v) noexcept:
    cdef Py_ssize_t d = 1
    while v >= 10:
        v = v // 10
        d += 1
    return d


cdef inline Py_ssize_t header_len(Py_ssize_t n) noexcept:
    if n < 126:
        return 2
    if n < 65536:
        return 4
    return 10


cdef inline char* put_header(char* p, Py_ssize_t n) noexcept:
    cdef int i
    p[0] = <char>0x81
    if n < 126:
        p[1] = <char>n
        return p + 2
    if n < 65536:
        p[1] = <char>126
        p[2] = <char>((n >> 8) & 0xFF)
        p[3] = <char>(n & 0xFF)
        return p + 4
    p[1] = <char>127
    for i in range(8):
        p[2 + i] = <char>((n >> (56 - 8 * i)) & 0xFF)
    return p + 10


cdef inline char* put_uint(char* p, long long v, Py_ssize_t nd) noexcept:
    cdef Py_ssize_t i = nd
    while i > 0:
        i -= 1
        p[i] = <char>(48 + v % 10)
        v = v // 10
    return p + nd


def render(list ids, list bodies, list blens, Py_ssize_t a, Py_ssize_t b, list pre_tab, list slot_tab,
           list seqs, list counts, bint record):
    cdef Py_ssize_t nk = len(pre_tab), ns = len(seqs)
    cdef Py_ssize_t i, k, kid, sl, blen, plen, nd, n = 0, total = 0, rtotal = 0
    cdef Py_ssize_t* pre_len = <Py_ssize_t*>malloc((nk + 1) * sizeof(Py_ssize_t))
    cdef const char** pre_ptr = <const char**>malloc((nk + 1) * sizeof(char*))
    cdef Py_ssize_t* slot = <Py_ssize_t*>malloc((nk + 1) * sizeof(Py_ssize_t))
    cdef long long* cnt = <long long*>calloc(nk + 1, sizeof(long long))
    cdef long long* seq = <long long*>malloc((ns + 1) * sizeof(long long))
    cdef char* p
    cdef char* q
    cdef char* r = NULL
    cdef bytes body, out, rec = None
    if not (pre_len and pre_ptr and slot and cnt and seq):
        free(pre_len); free(pre_ptr); free(slot); free(cnt); free(seq)
        raise MemoryError()
    if len(slot_tab) != nk or len(counts) != nk or a < 0 or b > len(ids) or b > len(bodies) or b > len(blens):
        free(pre_len); free(pre_ptr); free(slot); free(cnt); free(seq)
        raise ValueError("render: inconsistent tables or range")
    try:
        for k in range(nk):
            obj = pre_tab[k]
            if obj is None:
                pre_len[k] = -1
            else:
                pre_ptr[k] = PyBytes_AS_STRING(obj)
                pre_len[k] = PyBytes_GET_SIZE(obj)
            slot[k] = slot_tab[k]
            if slot[k] >= ns:
                raise ValueError("render: slot out of range")
        for k in range(ns):
            seq[k] = seqs[k]
        for i in range(a, b):                       # pass 1: sizes
            kid = ids[i]
            if kid < 0 or kid >= nk:
                raise IndexError("render: route key id out of range")
            if pre_len[kid] < 0:
                continue
            blen = blens[i]
            sl = slot[kid]
            plen = pre_len[kid] + 7 + blen + 1
            if sl >= 0:
                seq[sl] += 1
                plen += 7 + digits(seq[sl])
            total += header_len(plen) + plen
            rtotal += plen + 1
            n += 1
        for k in range(ns):
            seq[k] = seqs[k]
        out = PyBytes_FromStringAndSize(NULL, total)
        p = PyBytes_AS_STRING(out)
        if record:
            rec = PyBytes_FromStringAndSize(NULL, rtotal)
            r = PyBytes_AS_STRING(rec)
        for i in range(a, b):                       # pass 2: the frames
            kid = ids[i]
            if pre_len[kid] < 0:
                continue
            body = bodies[i]
            blen = PyBytes_GET_SIZE(body)
            if blen != <Py_ssize_t>blens[i]:        # pass 1 sized the buffer from blens
                raise ValueError("render: body lengths disagree with blens")
            sl = slot[kid]
            plen = pre_len[kid] + 7 + blen + 1
            nd = 0
            if sl >= 0:
                seq[sl] += 1
                nd = digits(seq[sl])
                plen += 7 + nd
            p = put_header(p, plen)
            q = p
            memcpy(p, pre_ptr[kid], pre_len[kid])
            p += pre_len[kid]
            if sl >= 0:
                memcpy(p, SEQ_KEY, 7)
                p = put_uint(p + 7, seq[sl], nd)
            memcpy(p, MSG_KEY, 7)
            memcpy(p + 7, PyBytes_AS_STRING(body), blen)
            p += 7 + blen
            p[0] = b'}'
            p += 1
            cnt[kid] += 1
            if record:
                memcpy(r, q, p - q)
                r += p - q
                r[0] = b'\n'
                r += 1
        for k in range(ns):
            seqs[k] = seq[k]
        for k in range(nk):
            if cnt[k]:
                counts[k] += cnt[k]
        return out, rec, n
    finally:
        free(pre_len)
        free(pre_ptr)
        free(slot)
        free(cnt)
        free(seq)
