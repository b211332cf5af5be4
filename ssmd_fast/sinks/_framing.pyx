"""HPUB framing into a ring of in-flight messages, and the ack parser (compiled).

Same API and bytes as the twin ``_framing_py.py`` (read its docstrings). Here the FrameBatch is walked
in C (``batch.entries``), subjects and ids are written into scratch buffers, frames are appended to one
malloc'd log buffer, and acks are parsed from the socket bytes straight into the ring: no Python call,
object or future per message on the hot path.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from ssmd_fast._normalize cimport F_DROP, K_TRADE, OUT_OTHER, OUT_RECORD, FrameBatch, FrameEntry

from ssmd_fast.sinks._framing_py import LATENCY_BUCKETS, control_event, latency_upper_ns, parse_ack_error
from ssmd_fast.sinks import subjects as _subjects
from ssmd_fast.sinks.subjects import SubjectEncoder, id_text

IMPLEMENTATION = "cython"
if LATENCY_BUCKETS != 128:
    raise ImportError("_framing.pyx and _framing_py.py disagree on LATENCY_BUCKETS")

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

QUEUED, SENT, ACKED, RETIRED = 0, 1, 2, 3
ORIGIN_LIVE, ORIGIN_SPILL = 0, 1

cdef enum:
    S_QUEUED = 0
    S_SENT = 1
    S_ACKED = 2
    S_RETIRED = 3
    O_LIVE = 0
    O_SPILL = 1
    BIG_BUFFER = 64 << 20
    MAX_TOKEN = 1024
    MAX_ID_TEXT = 256

if (_subjects.MAX_TOKEN, _subjects.MAX_ID_TEXT) != (MAX_TOKEN, MAX_ID_TEXT):
    raise ImportError("_framing.pyx and subjects.py disagree on MAX_TOKEN / MAX_ID_TEXT")

cdef const char* HEXD = b"0123456789ABCDEF"
cdef const char* HDR_HEAD = b"NATS/1.0\r\nNats-Msg-Id: "
cdef Py_ssize_t HDR_HEAD_LEN = 23


cdef inline Py_ssize_t put_u64(char* out, uint64_t v) noexcept:
    cdef char tmp[20]
    cdef int n = 0, i
    if v == 0:
        out[0] = b'0'
        return 1
    while v:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t put(char* out, const char* s, Py_ssize_t n) noexcept:
    memcpy(out, s, n)
    return n


cdef Py_ssize_t put_token(char* out, const unsigned char* key, Py_ssize_t n) noexcept:
    """subjects.subject_token, in C."""
    cdef Py_ssize_t i, w = 0
    cdef unsigned char b
    if n == 0:
        out[0] = b'_'
        return 1
    for i in range(n):
        b = key[i]
        if b == 0x2E:
            if w + 1 > MAX_TOKEN:
                break
            out[w] = b'_'
            w += 1
        elif 0x21 <= b <= 0x7E and b != 0x2A and b != 0x3E:
            if w + 1 > MAX_TOKEN:
                break
            out[w] = <char>b
            w += 1
        else:
            if w + 3 > MAX_TOKEN:
                break
            out[w] = b'%'
            out[w + 1] = HEXD[b >> 4]
            out[w + 2] = HEXD[b & 15]
            w += 3
    return w


cdef Py_ssize_t put_id_text(char* out, const unsigned char* v, Py_ssize_t n) except -1:
    """subjects.id_text, in C (the rare long value goes through the Python version for its digest)."""
    cdef Py_ssize_t i, w = 0
    cdef unsigned char b
    cdef bytes slow
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
            out[w] = b'%'
            out[w + 1] = HEXD[b >> 4]
            out[w + 2] = HEXD[b & 15]
            w += 3
    return w


# subject words per record kind (subjects.RAW_WORDS / NORM_WORDS)
cdef const char* RAW_W[6]
cdef Py_ssize_t RAW_L[6]
cdef const char* NORM_W[6]
cdef Py_ssize_t NORM_L[6]
RAW_W[:] = [b"trade", b"ticker", b"orderbook", b"orderbook", b"lifecycle", b"event_lifecycle"]
RAW_L[:] = [5, 6, 9, 9, 9, 15]
NORM_W[:] = [b"trade", b"ticker", b"book_snapshot", b"book_delta", b"market_lifecycle", b"event_lifecycle"]
NORM_L[:] = [5, 6, 13, 10, 16, 15]


cdef inline Py_ssize_t _subject(char* subj, Py_ssize_t pl, const char* cat, const char* word,
                                Py_ssize_t word_len, const unsigned char* key, Py_ssize_t key_len) noexcept:
    """``{prefix}{cat}{word}.{token}`` into ``subj`` (whose first ``pl`` bytes hold the prefix)."""
    cdef Py_ssize_t w = pl + put(subj + pl, cat, 6)
    w += put(subj + w, word, word_len)
    subj[w] = b'.'
    return w + 1 + put_token(subj + w + 1, key, key_len)


cdef class PublishRing:

    def __cinit__(self):
        self.ents = NULL
        self.buf = NULL

    def __init__(self, prefix, inbox, *, feed=b"kalshi", raw=True, normalized=True, acked=True,
                 max_payload=1 << 20):
        self.encoder = SubjectEncoder(prefix, feed)
        self.prefix_b = self.encoder.prefix
        self.feed_b = self.encoder.feed
        if len(self.prefix_b) > 1024 or len(self.feed_b) > 64:
            raise ValueError("subject prefix or feed name too long")
        self.inbox = bytes(inbox)
        self.inbox_b = self.inbox
        self.raw = raw
        self.normalized = normalized
        self.acked = acked
        self.max_payload = max_payload
        self.ents = <OutMsg*>malloc(1024 * sizeof(OutMsg))
        self.cap_mask = 1023
        self.buf_cap = 1 << 16
        self.buf = <char*>malloc(self.buf_cap)
        if self.ents == NULL or self.buf == NULL:
            raise MemoryError()
        self.buf_len = 0
        self.base = 0
        self.head = self.tail = self.send_next = 1
        self._oversized = []
        self._counters = {}

    def __dealloc__(self):
        free(self.ents)
        free(self.buf)

    # ------------------------------------------------------------------ memory

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t dead, cap
        cdef char* nb
        if self.buf_len + n <= self.buf_cap:
            return 0
        dead = <Py_ssize_t>(self.ents[self.head & self.cap_mask].pos - self.base) if self.head < self.tail \
            else self.buf_len
        # compact (move the live frames to the front) only when that frees 3x what it moves, or the
        # buffer is already large; else grow: a live byte is moved at most ~1/3 time per byte framed
        if dead > 0 and (dead >= 3 * (self.buf_len - dead)
                         or (self.buf_cap >= BIG_BUFFER and dead * 2 >= self.buf_len)):
            memmove(self.buf, self.buf + dead, self.buf_len - dead)
            self.buf_len -= dead
            self.base += dead
        if self.buf_len + n <= self.buf_cap:
            return 0
        cap = self.buf_cap * 2
        while cap < self.buf_len + n:
            cap *= 2
        nb = <char*>realloc(self.buf, cap)
        if nb == NULL:
            raise MemoryError()
        self.buf = nb
        self.buf_cap = cap
        return 0

    cdef int _grow_entries(self) except -1:
        cdef uint64_t newcap = (self.cap_mask + 1) * 2, p
        cdef OutMsg* ne = <OutMsg*>malloc(newcap * sizeof(OutMsg))
        if ne == NULL:
            raise MemoryError()
        p = self.head
        while p < self.tail:
            ne[p & (newcap - 1)] = self.ents[p & self.cap_mask]
            p += 1
        free(self.ents)
        self.ents = ne
        self.cap_mask = newcap - 1
        return 0

    # ------------------------------------------------------------------ framing

    cdef uint64_t _frame(self, const char* subj, Py_ssize_t subj_len, const char* mid, Py_ssize_t mid_len,
                         const char* payload, Py_ssize_t pay_len, uint8_t origin) except? 0:
        cdef Py_ssize_t hdr_len = HDR_HEAD_LEN + mid_len + 4
        cdef Py_ssize_t total = hdr_len + pay_len
        cdef Py_ssize_t w, line_len
        cdef uint64_t pseq = self.tail
        cdef char* o
        cdef OutMsg* e
        if total > self.max_payload:
            self._oversized.append((PyBytes_FromStringAndSize(subj, subj_len),
                                    PyBytes_FromStringAndSize(mid, mid_len),
                                    PyBytes_FromStringAndSize(payload, pay_len)))
            self.oversized += 1
            return 0
        if self.tail - self.head > self.cap_mask:
            self._grow_entries()
        self._reserve(5 + subj_len + 2 + PyBytes_GET_SIZE(self.inbox_b) + 64 + total + 2)
        o = self.buf + self.buf_len
        w = put(o, b"HPUB ", 5)
        w += put(o + w, subj, subj_len)
        o[w] = b' '
        w += 1
        if self.acked:
            w += put(o + w, PyBytes_AS_STRING(self.inbox_b), PyBytes_GET_SIZE(self.inbox_b))
            o[w] = b'.'
            w += 1
            w += put_u64(o + w, pseq)
            o[w] = b' '
            w += 1
        w += put_u64(o + w, <uint64_t>hdr_len)
        o[w] = b' '
        w += 1
        w += put_u64(o + w, <uint64_t>total)
        o[w] = b'\r'
        o[w + 1] = b'\n'
        w += 2
        line_len = w
        w += put(o + w, HDR_HEAD, HDR_HEAD_LEN)
        w += put(o + w, mid, mid_len)
        w += put(o + w, b"\r\n\r\n", 4)
        w += put(o + w, payload, pay_len)
        o[w] = b'\r'
        o[w + 1] = b'\n'
        w += 2
        e = &self.ents[pseq & self.cap_mask]
        e.pos = self.base + <uint64_t>self.buf_len
        e.len = <uint32_t>w
        e.subj_len = <uint32_t>subj_len
        e.id_off = <uint32_t>(line_len + HDR_HEAD_LEN)
        e.id_len = <uint32_t>mid_len
        e.pay_off = <uint32_t>(line_len + hdr_len)
        e.pay_len = <uint32_t>pay_len
        e.attempts = 0
        e.state = S_QUEUED
        e.origin = origin
        e.first_sent = 0.0
        e.sent_at = 0.0
        e.recv_ns = self._recv_ns
        self.buf_len += w
        self.tail += 1
        self.queued_bytes += w
        self.framed += 1
        return pseq

    def add_batch(self, batch, conn):
        cdef FrameBatch b = <FrameBatch?>batch
        cdef tuple state = self._counters.get(conn)
        if state is None:  # a new connection: its id text is encoded once
            state = (0, id_text(conn.encode("ascii", "replace") if isinstance(conn, str) else bytes(conn)))
        cdef uint64_t counter = state[0]
        cdef bytes conn_text = state[1]
        cdef Py_ssize_t i, n = 0, stem, pl = PyBytes_GET_SIZE(self.prefix_b)
        cdef FrameEntry* e
        cdef bint has_tid, want_raw = self.raw, want_norm = self.normalized
        cdef const unsigned char* key
        cdef char* subj = self.scratch_subj
        cdef char* mid = self.scratch_id
        if PyBytes_GET_SIZE(conn_text) > 300:
            raise ValueError("connection id too long")
        memcpy(subj, PyBytes_AS_STRING(self.prefix_b), pl)  # every subject starts with "{prefix}."
        self._recv_ns = b.recv_ts
        for i in range(b.count):
            e = &b.entries[i]
            if e.flags & F_DROP:
                continue
            key = <const unsigned char*>b.keys.data + e.key_off
            if e.outcome == OUT_RECORD:
                if e.kind > 5 or not (want_raw or want_norm):
                    continue
                has_tid = e.kind == K_TRADE and e.tid_len > 0
                if not has_tid and e.seq == 0:
                    counter += 1
                stem = self._id_stem(mid, e, b, has_tid, conn_text, counter)  # shared by both forms
                if want_raw:
                    if self._frame(subj, _subject(subj, pl, b".json.", RAW_W[e.kind], RAW_L[e.kind],
                                                  key, e.key_len),
                                   mid, stem + put(mid + stem, b":raw", 4), b.raw.data + e.raw_off, e.raw_len, O_LIVE):
                        n += 1
                if want_norm:
                    if self._frame(subj, _subject(subj, pl, b".norm.", NORM_W[e.kind], NORM_L[e.kind],
                                                  key, e.key_len),
                                   mid, stem + put(mid + stem, b":norm", 5), b.out.data + e.rec_off, e.rec_len,
                                   O_LIVE):
                        n += 1
            elif e.outcome == OUT_OTHER and want_raw:
                if e.seq == 0:
                    counter += 1
                stem = self._id_stem(mid, e, b, False, conn_text, counter)
                if self._frame(subj, _subject(subj, pl, b".json.", b"other", 5, key, e.key_len),
                               mid, stem + put(mid + stem, b":raw", 4), b.raw.data + e.raw_off, e.raw_len, O_LIVE):
                    n += 1
        self._counters[conn] = (counter, conn_text)
        return n

    cdef Py_ssize_t _id_stem(self, char* mid, FrameEntry* e, FrameBatch b, bint has_tid, bytes conn_text,
                             uint64_t counter) except -1:
        """``{feed}:trade:{trade_id}``, ``{feed}:{conn}:{sid}:{seq}`` or ``{feed}:{conn}:n{counter}``."""
        cdef Py_ssize_t w = put(mid, PyBytes_AS_STRING(self.feed_b), PyBytes_GET_SIZE(self.feed_b))
        if has_tid:
            w += put(mid + w, b":trade:", 7)
            return w + put_id_text(mid + w, <const unsigned char*>b.keys.data + e.tid_off, e.tid_len)
        mid[w] = b':'
        w += 1
        w += put(mid + w, PyBytes_AS_STRING(conn_text), PyBytes_GET_SIZE(conn_text))
        mid[w] = b':'
        w += 1
        if e.seq != 0:
            w += put_u64(mid + w, <uint64_t>e.sid)
            mid[w] = b':'
            return w + 1 + put_u64(mid + w + 1, <uint64_t>e.seq)
        mid[w] = b'n'
        return w + 1 + put_u64(mid + w + 1, counter)

    def add_message(self, subject, msg_id, payload, int origin=ORIGIN_LIVE):
        cdef bytes s = bytes(subject), m = bytes(msg_id), p = bytes(payload)
        self._recv_ns = 0  # events and spill replays: no receive time to measure from
        return self._frame(PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s), PyBytes_AS_STRING(m), PyBytes_GET_SIZE(m),
                           PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p), <uint8_t>origin)

    def pop_oversized(self):
        out, self._oversized = self._oversized, []
        return out

    # ------------------------------------------------------------------ sending

    @property
    def queued(self):
        return self.tail - self.send_next

    @property
    def inflight(self):
        return self.send_next - self.head

    @property
    def retained_bytes(self):
        return self.buf_len

    cdef OutMsg* _at(self, uint64_t pseq) noexcept:
        return &self.ents[pseq & self.cap_mask]

    def take(self, Py_ssize_t window, double now, Py_ssize_t max_bytes=PY_SSIZE_T_MAX):
        cdef uint64_t first = self.send_next, end = self.tail, p
        cdef OutMsg* a
        cdef OutMsg* z
        cdef OutMsg* e
        cdef bytes data
        cdef Py_ssize_t size = 0
        if self.head + <uint64_t>window < end:
            end = self.head + <uint64_t>window
        if end <= first:
            return None
        p = first
        while p < end:  # at least one frame; then up to max_bytes
            size += self._at(p).len
            if size > max_bytes and p > first:
                end = p
                break
            p += 1
        a = self._at(first)
        z = self._at(end - 1)
        data = PyBytes_FromStringAndSize(self.buf + (a.pos - self.base), <Py_ssize_t>(z.pos + z.len - a.pos))
        p = first
        while p < end:
            e = self._at(p)
            self.queued_bytes -= e.len
            e.state = S_SENT if self.acked else S_RETIRED
            e.attempts = 1
            e.first_sent = now
            e.sent_at = now
            p += 1
        self.send_next = end
        self.sent += end - first
        if not self.acked:
            self._advance()
        return data

    cdef bytes _resend(self, list pseqs, double now):
        cdef Py_ssize_t total = 0, w = 0
        cdef uint64_t p
        cdef OutMsg* e
        cdef bytes out
        cdef char* o
        if not pseqs:
            return None
        for p in pseqs:
            total += self._at(p).len
        out = PyBytes_FromStringAndSize(NULL, total)
        o = PyBytes_AS_STRING(out)
        for p in pseqs:
            e = self._at(p)
            if e.attempts == 1:
                self.resends_pending += 1
            e.attempts += 1
            e.sent_at = now
            memcpy(o + w, self.buf + (e.pos - self.base), e.len)
            w += e.len
        self.resent += len(pseqs)
        return out

    def resend_expired(self, double now, double timeout, Py_ssize_t limit=1 << 30):
        cdef list due = []
        cdef uint64_t p = self.head
        cdef OutMsg* e
        while p < self.send_next and len(due) < limit:
            e = self._at(p)
            if e.state == S_SENT and now - e.sent_at >= timeout:
                due.append(p)
            p += 1
        return self._resend(due, now)

    def resend_all(self, double now):
        cdef list due = []
        cdef uint64_t p = self.head
        while p < self.send_next:
            if self._at(p).state == S_SENT:
                due.append(p)
            p += 1
        return self._resend(due, now)

    def oldest_unacked_sent(self):
        cdef uint64_t p = self.head
        cdef OutMsg* e
        while p < self.send_next:
            e = self._at(p)
            if e.state == S_SENT:
                return e.first_sent
            p += 1
        return 0.0

    # ------------------------------------------------------------------ acks

    cdef bint ack_c(self, uint64_t pseq, bint duplicate) noexcept:
        cdef OutMsg* e
        if pseq < self.head or pseq >= self.send_next:
            return False
        e = self._at(pseq)
        if e.state != S_SENT:
            return False
        e.state = S_ACKED
        self.acked_count += 1
        if duplicate:
            self.duplicates += 1
        if e.attempts > 1:
            self.resends_pending -= 1
        if e.recv_ns > 0 and self.now_ns > 0:
            self._latency(e.recv_ns)
        if pseq == self.head:
            self._advance()
        return True

    def ack(self, uint64_t pseq, bint duplicate=False):
        return self.ack_c(pseq, duplicate)

    cdef void _latency(self, int64_t recv_ns) noexcept:
        """_framing_py.latency_bucket, in C: 4 linear sub-buckets per power of two from 1024 ns."""
        cdef uint64_t v = <uint64_t>(self.now_ns - recv_ns) if self.now_ns > recv_ns else 0
        cdef int i = 0, e
        if v >= 1024:
            e = 63 - __builtin_clzll(v)
            i = 1 + (e - 10) * 4 + <int>((v >> (e - 2)) & 3)
            if i > 127:
                i = 127
        self.lat_counts[i] += 1
        self.latency_sum_ns += v

    def latency_counts(self):
        return [self.lat_counts[i] for i in range(128)]

    cdef void _advance(self) noexcept:
        cdef OutMsg* e
        while self.head < self.tail:
            e = self._at(self.head)
            if e.state < S_ACKED:
                break
            if e.origin == O_SPILL:
                self._spill_retired += 1
            self.head += 1
        if self.send_next < self.head:
            self.send_next = self.head
        if self.head == self.tail:  # all acked: start over at the front, nothing to move
            self.base += <uint64_t>self.buf_len
            self.buf_len = 0

    cdef tuple _message(self, OutMsg* e):
        cdef const char* o = self.buf + (e.pos - self.base)
        return (PyBytes_FromStringAndSize(o + 5, e.subj_len), PyBytes_FromStringAndSize(o + e.id_off, e.id_len),
                PyBytes_FromStringAndSize(o + e.pay_off, e.pay_len), e.origin)

    def reject(self, uint64_t pseq):
        cdef OutMsg* e
        cdef tuple msg
        if pseq < self.head or pseq >= self.send_next or self._at(pseq).state != S_SENT:
            return None
        e = self._at(pseq)
        msg = self._message(e)
        e.state = S_RETIRED
        self.rejected += 1
        if e.attempts > 1:
            self.resends_pending -= 1
        if pseq == self.head:
            self._advance()
        return msg

    def message(self, uint64_t pseq):
        if pseq < self.head or pseq >= self.tail or self._at(pseq).state >= S_ACKED:
            return None
        return self._message(self._at(pseq))

    def attempts(self, uint64_t pseq):
        if pseq < self.head or pseq >= self.tail:
            return 0
        return self._at(pseq).attempts

    def find_sent(self, subject):
        cdef bytes s = bytes(subject)
        cdef uint64_t p = self.head
        cdef OutMsg* e
        while p < self.send_next:
            e = self._at(p)
            if e.state == S_SENT and e.subj_len == <uint32_t>PyBytes_GET_SIZE(s) and \
                    memcmp(self.buf + (e.pos - self.base) + 5, PyBytes_AS_STRING(s), e.subj_len) == 0:
                return p
            p += 1
        return 0

    def pop_spill_retired(self):
        n = self._spill_retired
        self._spill_retired = 0
        return n

    # ------------------------------------------------------------------ bulk moves

    def extract(self, uint64_t from_pseq=0, bint include_spill=False):
        cdef uint64_t start = from_pseq if from_pseq > self.head else self.head, p
        cdef OutMsg* e
        cdef list out = []
        if start >= self.tail:
            return out
        p = start
        while p < self.tail:
            e = self._at(p)
            if e.state < S_ACKED and (include_spill or e.origin != O_SPILL):
                out.append(self._message(e)[:3])
            if e.state == S_QUEUED:
                self.queued_bytes -= e.len
            if e.attempts > 1 and e.state == S_SENT:
                self.resends_pending -= 1
            p += 1
        self.buf_len = <Py_ssize_t>(self._at(start).pos - self.base)
        self.tail = start
        if self.send_next > start:
            self.send_next = start
        if self.head == self.tail:
            self.base += <uint64_t>self.buf_len
            self.buf_len = 0
        return out


cdef class AckParser:

    def __cinit__(self):
        self.pend = NULL

    def __init__(self, PublishRing ring, inbox):
        self.ring = ring
        self.prefix_b = bytes(inbox) + b"."
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

    cdef Py_ssize_t _parse(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = 0, eol, k, ntok, size, hsize, body
        cdef const char* line
        cdef const char* cr
        cdef const char* q
        cdef Py_ssize_t line_len
        cdef const char* tok[7]
        cdef Py_ssize_t tlen[7]
        cdef bint is_msg, is_hmsg, bad
        cdef tuple ev
        cdef const char* pre = PyBytes_AS_STRING(self.prefix_b)
        cdef Py_ssize_t plen = PyBytes_GET_SIZE(self.prefix_b), d0, subj_end
        cdef uint64_t pseq
        while pos < n:
            # fast path, the shape of every ack: "MSG {inbox}.{pseq} {sid} {size}\r\n{payload}\r\n";
            # anything else (or a line cut by the read) takes the general path below
            if n - pos > 4 + plen and memcmp(p + pos, b"MSG ", 4) == 0 and memcmp(p + pos + 4, pre, plen) == 0:
                k = d0 = pos + 4 + plen
                pseq = 0
                while k < n and k - d0 < 19 and b'0' <= p[k] <= b'9':
                    pseq = pseq * 10 + <uint64_t>(p[k] - 48)
                    k += 1
                subj_end = k
                if pseq and k < n and p[k] == b' ':
                    k += 1
                    while k < n and b'0' <= p[k] <= b'9':
                        k += 1
                    if k < n and p[k] == b' ':
                        k = d0 = k + 1
                        size = 0
                        while k < n and k - d0 < 12 and b'0' <= p[k] <= b'9':
                            size = size * 10 + (p[k] - 48)
                            k += 1
                        if k > d0 and k + 1 < n and p[k] == b'\r' and p[k + 1] == b'\n':
                            body = k + 2
                            if body + size + 2 > n:
                                break
                            self._on_ack(pseq, p + pos + 4, subj_end - pos - 4, p + body, size)
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
            self.no_responders += 1
            self.events.append(("no_responders", pseq))
            return 0
        return self._on_ack(pseq, subj, subj_len, payload, pay_len)

    cdef int _on_ack(self, uint64_t pseq, const char* subj, Py_ssize_t subj_len, const char* payload,
                     Py_ssize_t pay_len) except -1:
        cdef int kind = _ack_kind(payload, pay_len)
        cdef bint dup
        if kind == ACK_ERROR:
            self.errors += 1
            self.events.append(("ack_error", pseq) + parse_ack_error(PyBytes_FromStringAndSize(payload, pay_len)))
            return 0
        if kind == ACK_NONE:
            self.events.append(("msg", PyBytes_FromStringAndSize(subj, subj_len),
                                PyBytes_FromStringAndSize(payload, pay_len)))
            return 0
        dup = kind == ACK_DUP
        self.acks += 1
        if dup:
            self.duplicates += 1
        if not self.ring.ack_c(pseq, dup):
            self.stale += 1
        return 0


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
