# Moves out of the PublishRing's log (included by _framing.pyx; API: _framing_py.py): sends (take, written
# to the socket straight from the log), resends, reframing every held message for another reply mode,
# extracting the tail.


cdef enum:
    PATCH_AHEAD = 8   # messages between a prefetch of a reply and its patch
    REPLY_RUN = 48    # "{bno:08x}.{flow}.ok.{seq:07d}.{op}": 8 + 1 + 4 + 4 + 7 + 2 bytes at most


cdef object r_take(PublishRing r, Py_ssize_t window, double now, Py_ssize_t max_bytes, int fd):
    cdef uint64_t first = r.send_next, end = r.tail, p
    cdef OutMsg* a
    cdef OutMsg* z
    cdef OutMsg* e
    cdef Batch* b = NULL
    cdef Py_ssize_t size = 0, lo, n, run_len = 0
    cdef char run[REPLY_RUN]
    cdef bytes data
    if r.head + <uint64_t>window < end:
        end = r.head + <uint64_t>window
    if r.mode == M_FAST:
        b = r._batch(r.cur_batch)
        if b == NULL:
            return None
        n = r.batch_max + 1 - b.next_seq
        if r.gate_starts and not b.started:  # the start alone until the server acks it (see the twin)
            if b.next_seq > 1:
                return None
            n = 1
        if end > first + <uint64_t>n:
            end = first + <uint64_t>n
    if end <= first:
        return None
    p = first
    z = r._at(first)
    while p < end:  # at least one frame; then up to max_bytes, and never across the log's wrap
        e = r._at(p)
        size += e.len
        if p > first and (size > max_bytes or e.pos != z.pos + z.len):
            end = p
            break
        z = e
        p += 1
    if b != NULL:
        run_len = r._patch_begin(b, run)
    p = first
    while p < end:
        e = r._at(p)
        if b != NULL:
            if p + PATCH_AHEAD < end:  # the log is cold by now (queued behind the window): overlap the misses
                z = r._at(p + PATCH_AHEAD)
                __builtin_prefetch(r.buf + z.pos + z.rep_off, 1, 3)
            r._patch(e, b, run, run_len)
        r.queued_bytes -= e.len
        e.state = S_SENT
        e.attempts = 1
        e.first_sent = now
        e.sent_at = now
        p += 1
    if b != NULL:
        r._track(b, first, r._at(first))
        b.last_pseq = end - 1
        b.last_send = now
    a = r._at(first)
    z = r._at(end - 1)
    lo = <Py_ssize_t>a.pos
    n = <Py_ssize_t>(z.pos + z.len - a.pos)
    if fd < 0:
        data = PyBytes_FromStringAndSize(r.buf + lo, n)
    else:
        size = r_write_fd(r, fd, lo, n)
        data = b""
        if size < n:
            end, data = r_short_write(r, first, end, b, lo + size)
    r.send_next = end
    r.sent += end - first
    if not r.acked:
        p = first
        while p < end:
            r._at(p).state = S_RETIRED
            p += 1
        r._advance()
    return data


cdef bytes r_resend(PublishRing r, list pseqs, double now):
    cdef Py_ssize_t total = 0, w = 0, run_len = 0
    cdef char run[REPLY_RUN]
    cdef uint64_t p
    cdef OutMsg* e
    cdef Batch* b = NULL
    cdef bytes out
    cdef char* o
    if not pseqs:
        return None
    if r.mode == M_FAST:
        b = r._batch(r.cur_batch)
        if b == NULL or b.next_seq != 1:
            raise RuntimeError("fast-ingest resends go first into a new batch (open_batch)")
        run_len = r._patch_begin(b, run)
    for p in pseqs:
        total += r._at(p).len
    out = PyBytes_FromStringAndSize(NULL, total)
    o = PyBytes_AS_STRING(out)
    for p in pseqs:
        e = r._at(p)
        if b != NULL:
            r._patch(e, b, run, run_len)
            r._track(b, p, e)
        e.held = 0
        if e.attempts == 1:
            r.resends_pending += 1
        e.attempts += 1
        e.sent_at = now
        memcpy(o + w, r.buf + e.pos, e.len)
        w += e.len
    if b != NULL:
        b.last_send = now
    r.resent += len(pseqs)
    return out


cdef int r_reframe(PublishRing r, int mode) except -1:
    cdef uint64_t p
    cdef OutMsg* e
    cdef Py_ssize_t need = 0, w = 0, n, cap
    cdef char* nb
    cdef const char* o
    cdef const char* subj
    cdef const char* mid
    cdef const char* pay
    cdef Py_ssize_t subj_len, mid_len, pay_len
    r.mode = mode
    r.reply_b = r._reply_template()
    p = r.head
    while p < r.tail:
        need += r._at(p).len + PyBytes_GET_SIZE(r.reply_b) + 24
        p += 1
    cap = max(r.buf_cap, need)
    nb = <char*>malloc(cap)
    if nb == NULL:
        raise MemoryError()
    r.queued_bytes = 0
    p = r.head
    while p < r.tail:
        e = r._at(p)
        o = r.buf + e.pos
        subj, subj_len = o + e.subj_off, e.subj_len
        mid, mid_len = o + e.id_off, e.id_len
        pay, pay_len = o + e.pay_off, e.pay_len
        n = r._write_frame(nb + w, e, p, subj, subj_len, NULL, 0, mid, mid_len, pay, pay_len)
        e.pos = <uint64_t>w
        e.bno = 0
        e.bseq = 0
        e.held = 0
        if e.state == S_QUEUED:
            r.queued_bytes += n
        w += n
        p += 1
    free(r.buf)
    r.buf = nb
    r.buf_cap = cap
    r.wpos = w
    return 0


cdef Py_ssize_t r_write_fd(PublishRing r, int fd, Py_ssize_t lo, Py_ssize_t n):
    """buf[lo:lo+n] to ``fd``; the bytes it took (on EAGAIN, or an error the transport will report)."""
    cdef Py_ssize_t done = 0, k
    while done < n:
        k = c_write(fd, r.buf + lo + done, n - done)
        if k < 0:
            if errno == EINTR:
                continue
            break
        done += k
    r.direct_bytes += done
    return done


cdef tuple r_short_write(PublishRing r, uint64_t first, uint64_t end, Batch* b, Py_ssize_t at):
    """The socket stopped at buf[at] inside [first, end) (see the twin's take): the new end and the rest of
    the message holding that byte; the messages after it back in the queue, their seqs given back."""
    cdef uint64_t k = first, p
    cdef OutMsg* e = r._at(k)
    while <Py_ssize_t>(e.pos + e.len) <= at:
        k += 1
        e = r._at(k)
    rest = PyBytes_FromStringAndSize(r.buf + at, <Py_ssize_t>(e.pos + e.len) - at)
    p = k + 1
    while p < end:
        e = r._at(p)
        r.queued_bytes += e.len
        e.state = S_QUEUED
        e.attempts = 0
        e.first_sent = 0.0
        e.sent_at = 0.0
        e.bno = 0
        e.bseq = 0
        p += 1
    if b != NULL:
        b.next_seq -= <uint32_t>(end - (k + 1))
        b.last_pseq = k
    return k + 1, rest


cdef list r_extract(PublishRing r, uint64_t from_pseq, bint include_spill):
    cdef uint64_t start = from_pseq if from_pseq > r.head else r.head, p
    cdef OutMsg* e
    cdef list out = []
    if start >= r.tail:
        return out
    p = start
    while p < r.tail:
        e = r._at(p)
        if e.state < S_ACKED and (include_spill or e.origin != O_SPILL):
            out.append(r._message(e)[:3])
        if e.state == S_QUEUED:
            r.queued_bytes -= e.len
        if e.attempts > 1 and e.state == S_SENT:
            r.resends_pending -= 1
        p += 1
    r.wpos = <Py_ssize_t>r._at(start).pos     # the held frames before `start` all lie before it
    if start == r.head and r.send_next > start:
        r.head = r.tail = r.send_next    # skip the numbers that went out
    else:
        r.tail = start
        if r.send_next > start:
            r.send_next = start
    if r.head == r.tail:
        r.wpos = 0
    return out
