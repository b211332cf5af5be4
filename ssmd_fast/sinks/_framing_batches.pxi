# Fast-ingest batch bookkeeping of the PublishRing (included by _framing.pyx; API and semantics:
# _framing_py.py, "fast-ingest batches"). Batches live in 16 slots indexed by their number; a batch's
# sent, unacked messages lie between its cursor and last_pseq, with seqs rising with the pseq.


cdef inline Batch* b_get(PublishRing r, uint32_t bno) noexcept:
    cdef Batch* b
    if bno == 0:
        return NULL
    b = &r.batches_[bno & (NSLOTS - 1)]
    return b if b.bno == bno else NULL


cdef void b_free(PublishRing r, uint32_t bno) noexcept:
    cdef Batch* b = b_get(r, bno)
    if b != NULL:
        memset(b, 0, sizeof(Batch))
    if r.cur_batch == bno:
        r.cur_batch = 0


cdef uint32_t b_open(PublishRing r) except 0:
    cdef Batch* b
    if r.mode != M_FAST:
        raise RuntimeError("not in fast-ingest mode")
    if r.cur_batch:
        return r.cur_batch
    r._bno = r._bno % 0x7FFFFFFF + 1
    b = &r.batches_[r._bno & (NSLOTS - 1)]
    memset(b, 0, sizeof(Batch))   # a batch 16 numbers older still here is forgotten: its messages expire
    b.bno = r._bno
    b.state = B_OPEN
    b.next_seq = 1
    b.flow = <uint32_t>r.flow
    r._first_subj[r._bno & (NSLOTS - 1)] = b""
    r.cur_batch = r._bno
    return r._bno


cdef bytes b_reply(PublishRing r, Batch* b, uint32_t seq, int op):
    return b"%sb%08x.%d.ok.%0*d.%d.$FI" % (r.inbox_b, b.bno, r.flow, SEQ_W, seq, op)


cdef bytes b_subject(PublishRing r, Batch* b):
    return r.good_subject or r._first_subj[b.bno & (NSLOTS - 1)]


cdef object b_commit(PublishRing r):
    cdef Batch* b = b_get(r, r.cur_batch)
    r.cur_batch = 0
    if b == NULL:
        return None
    if b.next_seq == 1:
        memset(b, 0, sizeof(Batch))
        return None
    b.state = B_CLOSING
    b.eob_seq = b.next_seq
    return b_recommit(r, b.bno)


cdef object b_recommit(PublishRing r, uint32_t bno):
    cdef Batch* b = b_get(r, bno)
    if b == NULL or b.state != B_CLOSING:
        return None
    return b"PUB %s %s 0\r\n\r\n" % (b_subject(r, b), b_reply(r, b, b.eob_seq, 3))


cdef object b_ping(PublishRing r, uint32_t bno):
    cdef Batch* b = b_get(r, bno)
    if b == NULL or b.next_seq == 1:
        return None
    return b"PUB %s %s 0\r\n\r\n" % (b_subject(r, b), b_reply(r, b, b.eob_seq if b.state == B_CLOSING
                                                                  else b.next_seq - 1, 4))


cdef list b_list(PublishRing r):
    cdef list out = []
    cdef uint32_t bno = r._bno, k
    cdef Batch* b
    for k in range(NSLOTS):   # oldest first: numbers below the last one handed out, in order
        b = &r.batches_[(bno + 1 + k) & (NSLOTS - 1)]
        if b.bno:
            out.append((b.bno, b.state, (b.eob_seq if b.eob_seq else b.next_seq) - 1, b.acked, b.flow,
                        b.started != 0))
    out.sort()
    return out


cdef bint b_ack(PublishRing r, uint32_t bno, uint32_t seq, uint32_t flow):
    """Flow ack: settle the batch's sent messages with seq <= ``seq`` that no notice held."""
    cdef Batch* b = b_get(r, bno)
    cdef uint64_t p, stop, cursor = 0
    cdef OutMsg* e
    cdef const char* subj = NULL
    cdef Py_ssize_t subj_len = 0
    if b == NULL:
        return False
    b.started = 1
    if flow > 0:
        b.flow = flow
    if seq > b.acked:
        b.acked = seq
    p = b.cursor if b.cursor > r.head else r.head
    stop = b.last_pseq + 1 if b.last_pseq + 1 < r.send_next else r.send_next
    while p < stop:
        if p < r.head:
            p = r.head
            continue
        e = r._at(p)
        if e.state == S_SENT and e.bno == bno:
            if e.bseq > seq:
                if cursor == 0:
                    cursor = p
                break
            if e.held:
                if cursor == 0:
                    cursor = p
            else:
                # the subject is read before the ack: an emptied ring moves its base (not its memory)
                subj = r.buf + e.pos + e.subj_off
                subj_len = e.subj_len
                r.ack_c(p, False)
        p += 1
    b.cursor = cursor if cursor else stop
    if subj != NULL:
        r.good_subject = PyBytes_FromStringAndSize(subj, subj_len)
    return True


cdef list b_select(PublishRing r, uint32_t bno, uint32_t first, uint32_t end, int what):
    """The batch's sent messages with ``first <= seq < end``: what 0 all of them, 1 hold them, 2 the held."""
    cdef Batch* b = b_get(r, bno)
    cdef uint64_t p, stop
    cdef OutMsg* e
    cdef list out = []
    if b == NULL:
        return out
    p = b.cursor if b.cursor > r.head else r.head
    stop = b.last_pseq + 1 if b.last_pseq + 1 < r.send_next else r.send_next
    while p < stop:
        e = r._at(p)
        if e.state == S_SENT and e.bno == bno:
            if e.bseq >= end:
                break
            if e.bseq >= first:
                if what == 1:
                    e.held = 1
                if what != 2 or e.held:
                    out.append(p)
        p += 1
    return out


cdef uint64_t b_pseq(PublishRing r, uint32_t bno, uint32_t seq):
    cdef list found = b_select(r, bno, seq, seq + 1, 0)
    return found[0] if found else 0


cdef object b_finish(PublishRing r, uint32_t bno, uint32_t count):
    """The commit's pub ack: settle, forget; the unsettled messages not held (to resend)."""
    cdef list rest = []
    cdef uint64_t p
    if b_get(r, bno) == NULL:
        return None
    b_ack(r, bno, count, 0)
    for p in b_select(r, bno, 0, 0xFFFFFFFF, 0):
        if not r._at(p).held:
            rest.append(p)
    b_free(r, bno)
    return rest


cdef tuple b_tail(PublishRing r):
    cdef Batch* b = b_get(r, r.cur_batch)
    cdef uint64_t p, stop
    cdef OutMsg* e
    cdef double first = 0.0
    if b == NULL:
        return (0, 0.0, 0.0, 0)
    p = b.cursor if b.cursor > r.head else r.head
    stop = b.last_pseq + 1 if b.last_pseq + 1 < r.send_next else r.send_next
    while p < stop:   # the oldest of its sent, unacked messages
        e = r._at(p)
        if e.state == S_SENT and e.bno == b.bno:
            first = e.sent_at
            break
        p += 1
    return (<int64_t>b.next_seq - 1 - <int64_t>b.acked, b.last_send, first, b.flow)
