# AckParser (included by _framing.pyx; API: _framing_acks_py.py): the data connection's bytes, acks
# resolved in C straight into the ring (per-message acks and fast-ingest flow acks), the rest as events.


cdef inline Py_ssize_t _num(const char* s, Py_ssize_t n) noexcept:
    """A non-negative decimal of at most 12 digits, or -1."""
    cdef Py_ssize_t v = 0, i
    if n == 0 or n > 12:
        return -1
    for i in range(n):
        if s[i] < b'0' or s[i] > b'9':
            return -1
        v = v * 10 + (s[i] - 48)
    return v


cdef inline int _hexval(char c) noexcept:
    if b'0' <= c <= b'9':
        return c - 48
    if b'a' <= c <= b'f':
        return c - 87
    return -1


cdef inline Py_ssize_t _digits(const char* p, Py_ssize_t k, Py_ssize_t n, uint64_t* out) noexcept:
    """Parse 1..10 decimal digits at p[k]; the index after them, or -1."""
    cdef Py_ssize_t d0 = k
    cdef uint64_t v = 0
    while k < n and k - d0 < 10 and b'0' <= p[k] <= b'9':
        v = v * 10 + <uint64_t>(p[k] - 48)
        k += 1
    out[0] = v
    return k if k > d0 else -1


cdef class AckParser:

    def __cinit__(self):
        self.pend = NULL

    def __init__(self, PublishRing ring, inbox):
        self.ring = ring
        self.prefix_b = bytes(inbox) + b"."
        self.fast_b = bytes(inbox) + b"b"
        self.events = []
        self.pend_cap = 1 << 16
        self.pend = <char*>malloc(self.pend_cap)
        if self.pend == NULL:
            raise MemoryError()
        self.pend_len = 0

    def __dealloc__(self):
        free(self.pend)

    def reset(self):
        self.pend_len = 0

    def feed(self, data, int64_t now_ns=0):
        cdef bytes d = data if type(data) is bytes else bytes(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(d), used
        cdef timespec ts
        if now_ns <= 0:
            clock_gettime(CLOCK_REALTIME, &ts)
            now_ns = <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
        self.ring.now_ns = now_ns
        if self.pend_len == 0:
            used = self._parse(PyBytes_AS_STRING(d), n)
            if used < n:
                self._keep(PyBytes_AS_STRING(d) + used, n - used)
        else:
            self._keep(PyBytes_AS_STRING(d), n)
            used = self._parse(self.pend, self.pend_len)
            memmove(self.pend, self.pend + used, self.pend_len - used)
            self.pend_len -= used
        return len(self.events)

    cdef int _keep(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap = self.pend_cap
        cdef char* np
        while self.pend_len + n > cap:
            cap *= 2
        if cap != self.pend_cap:
            np = <char*>realloc(self.pend, cap)
            if np == NULL:
                raise MemoryError()
            self.pend = np
            self.pend_cap = cap
        memcpy(self.pend + self.pend_len, p, n)
        self.pend_len += n
        return 0

    cdef int _fast_bno(self, const char* subj, Py_ssize_t subj_len) noexcept:
        """The batch number of a fast-ingest reply subject ``{inbox}b{8 hex}.``, or -1."""
        cdef Py_ssize_t fl = PyBytes_GET_SIZE(self.fast_b), k
        cdef uint32_t v = 0
        cdef int h
        if subj_len < fl + 9 or memcmp(subj, PyBytes_AS_STRING(self.fast_b), fl) != 0 or subj[fl + 8] != b'.':
            return -1
        for k in range(fl, fl + 8):
            h = _hexval(subj[k])
            if h < 0:
                return -1
            v = (v << 4) | <uint32_t>h
        return <int>v if v <= 0x7FFFFFFF else -1

    cdef Py_ssize_t _parse(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = 0, eol, k, ntok, size, hsize, body, subj_end, plen, flen
        cdef const char* line
        cdef const char* cr
        cdef const char* q
        cdef Py_ssize_t line_len
        cdef const char* tok[7]
        cdef Py_ssize_t tlen[7]
        cdef bint is_msg, is_hmsg, bad
        cdef tuple ev
        cdef const char* pre = PyBytes_AS_STRING(self.prefix_b)
        cdef const char* fpre = PyBytes_AS_STRING(self.fast_b)
        cdef uint64_t pseq, seq, flow
        cdef int bno
        plen = PyBytes_GET_SIZE(self.prefix_b)
        flen = PyBytes_GET_SIZE(self.fast_b)
        while pos < n:
            # fast paths, the shape of every ack: "MSG {inbox}.{pseq} {sid} {size}\r\n{payload}\r\n" and
            # "MSG {inbox}b{batch}.{...}.$FI {sid} {size}\r\n{"type":"ack","seq":N,"msgs":F}\r\n";
            # anything else (or a line cut by the read) takes the general path below
            if n - pos > 4 + plen and memcmp(p + pos, b"MSG ", 4) == 0 and memcmp(p + pos + 4, pre, plen) == 0:
                k = pos + 4 + plen
                pseq = 0
                while k < n and k - (pos + 4 + plen) < 19 and b'0' <= p[k] <= b'9':
                    pseq = pseq * 10 + <uint64_t>(p[k] - 48)
                    k += 1
                subj_end = k
                if pseq and k < n and p[k] == b' ':
                    k += 1
                    while k < n and b'0' <= p[k] <= b'9':
                        k += 1
                    if k < n and p[k] == b' ':
                        k += 1
                        body = k
                        size = 0
                        while k < n and k - body < 12 and b'0' <= p[k] <= b'9':
                            size = size * 10 + (p[k] - 48)
                            k += 1
                        if k > body and k + 1 < n and p[k] == b'\r' and p[k + 1] == b'\n':
                            body = k + 2
                            if body + size + 2 > n:
                                break
                            self._on_ack(pseq, p + pos + 4, subj_end - pos - 4, p + body, size)
                            pos = body + size + 2
                            continue
            elif n - pos > 13 + flen and memcmp(p + pos, b"MSG ", 4) == 0 and memcmp(p + pos + 4, fpre, flen) == 0:
                bno = self._fast_bno(p + pos + 4, n - pos - 4)
                q = <const char*>memchr(p + pos + 4, b' ', n - pos - 4) if bno > 0 else NULL
                if q != NULL:
                    k = q - p + 1
                    while k < n and b'0' <= p[k] <= b'9':
                        k += 1
                    if k < n and p[k] == b' ':
                        k += 1
                        body = k
                        size = 0
                        while k < n and k - body < 12 and b'0' <= p[k] <= b'9':
                            size = size * 10 + (p[k] - 48)
                            k += 1
                        if k > body and k + 1 < n and p[k] == b'\r' and p[k + 1] == b'\n':
                            body = k + 2
                            if body + size + 2 > n:
                                break
                            if size > 24 and memcmp(p + body, b'{"type":"ack","seq":', 20) == 0:
                                k = _digits(p, body + 20, body + size, &seq)
                                if k > 0 and k + 8 < body + size and memcmp(p + k, b',"msgs":', 8) == 0:
                                    k = _digits(p, k + 8, body + size, &flow)
                                    if k == body + size - 1 and p[k] == b'}':
                                        self.replies += 1
                                        self.acks += 1
                                        if not b_ack(self.ring, <uint32_t>bno, <uint32_t>seq, <uint32_t>flow):
                                            self.stale += 1
                                        pos = body + size + 2
                                        continue
            # the next "\r\n" at or after pos
            k = pos
            cr = NULL
            while k < n:
                q = <const char*>memchr(p + k, b'\n', n - k)
                if q == NULL:
                    break
                if q - p > pos and (q - 1)[0] == b'\r':
                    cr = q - 1
                    break
                k = q - p + 1
            if cr == NULL:
                break
            eol = cr - p
            line = p + pos
            line_len = eol - pos
            is_msg = line_len >= 4 and memcmp(line, b"MSG ", 4) == 0
            is_hmsg = line_len >= 4 and memcmp(line, b"HMSG", 4) == 0
            if is_msg or is_hmsg:
                ntok = 0
                k = 0
                bad = False
                while k < line_len:
                    while k < line_len and (line[k] == b' ' or line[k] == b'\t'):
                        k += 1
                    if k >= line_len:
                        break
                    if ntok == 7:
                        bad = True
                        break
                    tok[ntok] = line + k
                    while k < line_len and line[k] != b' ' and line[k] != b'\t':
                        k += 1
                    tlen[ntok] = line + k - tok[ntok]
                    ntok += 1
                hsize = 0
                if is_msg:
                    bad = bad or ntok < 4 or ntok > 5 or tlen[0] != 3
                    size = -1 if bad else _num(tok[ntok - 1], tlen[ntok - 1])
                    bad = bad or size < 0
                else:
                    bad = bad or ntok < 5 or ntok > 6 or tlen[0] != 4
                    hsize = -1 if bad else _num(tok[ntok - 2], tlen[ntok - 2])
                    size = -1 if bad else _num(tok[ntok - 1], tlen[ntok - 1])
                    bad = bad or hsize < 0 or size < 0 or hsize > size
                if bad:
                    self.protocol_errors += 1
                    self.events.append(("err", "malformed protocol line: " +
                                        PyBytes_FromStringAndSize(line, min(line_len, 80)).decode("utf-8", "replace")))
                    pos = eol + 2
                    continue
                body = eol + 2
                if body + size + 2 > n:
                    break
                self._on_msg(tok[1], tlen[1], p + body, hsize, p + body + hsize, size - hsize)
                pos = body + size + 2
                continue
            if not (line_len >= 3 and memcmp(line, b"+OK", 3) == 0):  # control lines are rare: Python
                ev = control_event(PyBytes_FromStringAndSize(line, line_len))
                if ev[0] == "err" and ev[1].startswith("unexpected"):
                    self.protocol_errors += 1
                self.events.append(ev)
            pos = eol + 2
        return pos

    cdef int _on_msg(self, const char* subj, Py_ssize_t subj_len, const char* hdr, Py_ssize_t hdr_len,
                     const char* payload, Py_ssize_t pay_len) except -1:
        cdef Py_ssize_t plen = PyBytes_GET_SIZE(self.prefix_b), k
        cdef uint64_t pseq = 0
        cdef int bno = self._fast_bno(subj, subj_len)
        if bno > 0:
            on_fast_reply(self, bno, PyBytes_FromStringAndSize(subj, subj_len), PyBytes_FromStringAndSize(hdr, hdr_len),
                          PyBytes_FromStringAndSize(payload, pay_len))
            return 0
        if subj_len > plen and subj_len - plen <= 19 and memcmp(subj, PyBytes_AS_STRING(self.prefix_b), plen) == 0:
            for k in range(plen, subj_len):
                if subj[k] < b'0' or subj[k] > b'9':
                    pseq = 0
                    break
                pseq = pseq * 10 + <uint64_t>(subj[k] - 48)
        if pseq == 0:
            self.events.append(("msg", PyBytes_FromStringAndSize(subj, subj_len),
                                PyBytes_FromStringAndSize(payload, pay_len)))
            return 0
        if hdr_len >= 12 and memcmp(hdr, b"NATS/1.0 503", 12) == 0:
            self.replies += 1
            self.no_responders += 1
            self.events.append(("no_responders", pseq))
            return 0
        return self._on_ack(pseq, subj, subj_len, payload, pay_len)

    cdef int _on_ack(self, uint64_t pseq, const char* subj, Py_ssize_t subj_len, const char* payload,
                     Py_ssize_t pay_len) except -1:
        cdef int kind = _ack_kind(payload, pay_len)
        cdef bint dup
        self.replies += 1
        if kind == ACK_NONE:
            self.events.append(("msg", PyBytes_FromStringAndSize(subj, subj_len),
                                PyBytes_FromStringAndSize(payload, pay_len)))
            return 0
        if kind == ACK_ERROR:
            self.errors += 1
            self.events.append(("ack_error", pseq) + parse_ack_error(PyBytes_FromStringAndSize(payload, pay_len)))
            return 0
        dup = kind == ACK_DUP
        self.acks += 1
        if dup:
            self.duplicates += 1
        if not self.ring.ack_c(pseq, dup):
            self.stale += 1
        return 0


cdef enum:
    ACK_NONE = 0
    ACK_OK = 1
    ACK_DUP = 2
    ACK_ERROR = 3


cdef int _ack_kind(const char* p, Py_ssize_t n) noexcept:
    """One pass over the keys of a JetStream reply: ``"error":`` anywhere -> ACK_ERROR; else ``"seq":``
    -> ACK_OK, or ACK_DUP with ``"duplicate":`` + blanks + ``true`` (nats-server writes a space)."""
    cdef const char* end = p + n
    cdef const char* q = p
    cdef bint seq = False, dup = False
    while q < end:
        q = <const char*>memchr(q, b'"', end - q)
        if q == NULL:
            break
        q += 1
        if end - q >= 7 and q[0] == b'e' and memcmp(q, b'error":', 7) == 0:
            return ACK_ERROR
        if end - q >= 5 and q[0] == b's' and memcmp(q, b'seq":', 5) == 0:
            seq = True
            q += 5
        elif end - q >= 11 and q[0] == b'd' and memcmp(q, b'duplicate":', 11) == 0:
            q += 11
            while q < end and (q[0] == b' ' or q[0] == b'\t'):
                q += 1
            dup = end - q >= 4 and memcmp(q, b"true", 4) == 0
        else:  # skip to the closing quote of this string (keys and values hold no escaped quotes here)
            q = <const char*>memchr(q, b'"', end - q)
            if q == NULL:
                break
            q += 1
    if not seq:
        return ACK_NONE
    return ACK_DUP if dup else ACK_OK
