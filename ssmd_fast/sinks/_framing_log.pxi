# The PublishRing's log (included by _framing.pyx before _framing_ring.pxi): a circular buffer of frames.
#
# Frames follow each other up to the end of the buffer, then start again at its front once the oldest held
# frame lies beyond the room the next batch needs. A framed byte is never moved, and memory is written
# again as soon as its frames are acked, so the log is as large as what is held plus a batch. A linear log
# that moved its live frames to the front now and then (what it was) wrote every frame into memory further
# on: 16 MiB of it in the saturated benchmark, a page fault per 4 KiB on first use and a cache miss per
# line written after that, plus the moves.


cdef int log_reserve(PublishRing r, Py_ssize_t n) except -1:
    """``n`` contiguous bytes at ``r.wpos`` for the next frames (the checks are strict: ``wpos`` at the
    oldest held frame's position only ever means an empty log)."""
    cdef Py_ssize_t hp
    if r.head == r.tail:
        r.wpos = 0
        if n < r.buf_cap:
            return 0
    else:
        hp = <Py_ssize_t>r._at(r.head).pos
        if r.wpos > hp:                     # held frames in [hp, wpos): room after them, else at the front
            if r.buf_cap - r.wpos >= n:
                return 0
            if n < hp:
                r.wpos = 0
                return 0
        elif hp - r.wpos > n:               # wrapped: the gap [wpos, hp) is the room
            return 0
    return log_relayout(r, n)


cdef int log_relayout(PublishRing r, Py_ssize_t n) except -1:
    """A buffer 1.5 x larger than what the held frames and two reservations of ``n`` need (one may be lost
    at the end of the buffer when frames wrap). ``realloc`` keeps the pages already in use; frames that had
    wrapped to the front are moved after the others, so that the held frames lie in one run again."""
    cdef Py_ssize_t top_end = r.wpos, front = 0, cap
    cdef uint64_t p = r.head, wrap = r.tail
    cdef OutMsg* e
    cdef OutMsg* prev = NULL
    cdef char* nb
    if r.head == r.tail:
        r.wpos = top_end = 0
    elif r.wpos <= <Py_ssize_t>r._at(r.head).pos:    # wrapped: the first frame back at the front
        while p < r.tail:
            e = r._at(p)
            if prev != NULL and e.pos < prev.pos:
                wrap = p
                break
            prev = e
            p += 1
        top_end = <Py_ssize_t>(prev.pos + prev.len)
        front = r.wpos
    cap = (top_end + front + 2 * n) * 3 // 2
    if cap < r.buf_cap + r.buf_cap // 2:
        cap = r.buf_cap + r.buf_cap // 2
    cap = (cap + 0xFFFF) & ~0xFFFF
    nb = <char*>realloc(r.buf, cap)
    if nb == NULL:
        raise MemoryError()
    r.buf = nb
    r.buf_cap = cap
    if wrap < r.tail:
        memcpy(r.buf + top_end, r.buf, front)
        p = wrap
        while p < r.tail:
            r._at(p).pos += <uint64_t>top_end
            p += 1
        r.wpos = top_end + front
    return 0
