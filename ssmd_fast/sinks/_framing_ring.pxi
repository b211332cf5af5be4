# PublishRing: framing, sending, fast-ingest batches, acks (included by _framing.pyx; API: _framing_py.py).


cdef class PublishRing:

    def __cinit__(self):
        self.ents = NULL
        self.buf = NULL

    def __init__(self, prefix, inbox, *, feed=b"kalshi", raw=True, normalized=True, acked=True, fast=False,
                 int flow=FLOW, int batch_max=BATCH_MAX, max_payload=1 << 20):
        cdef int k
        self.encoder = SubjectEncoder(prefix, feed)
        self.prefix_b = self.encoder.prefix
        self.feed_b = self.encoder.feed
        if len(self.prefix_b) > 1024 or len(self.feed_b) > 64:
            raise ValueError("subject prefix or feed name too long")
        if not 1 <= flow <= 9999:
            raise ValueError("flow must be 1..9999")
        self.inbox = bytes(inbox)
        self.inbox_b = self.inbox
        self.raw = raw
        self.normalized = normalized
        self.acked = acked
        self.mode = M_CORE if not acked else (M_FAST if fast else M_ACK)
        self.flow = flow
        if not 1 <= batch_max <= B_MAX:
            raise ValueError(f"batch_max must be 1..{B_MAX}")
        self.batch_max = batch_max
        self.flow_len = len(b"%d" % flow)
        self.reply_b = self._reply_template()
        heads = [self.prefix_b + b".json." + w + b"." for w in RAW_WORDS]
        heads += [self.prefix_b + b".norm." + w + b"." for w in NORM_WORDS]
        heads.append(self.prefix_b + b".json.other.")
        self.tmpl_b = b"".join(heads)
        off = 0
        for k in range(13):
            self.tmpl_off[k] = off
            self.tmpl_len[k] = len(heads[k])
            off += len(heads[k])
        self.max_payload = max_payload
        self.ents = <OutMsg*>malloc(1024 * sizeof(OutMsg))
        self.cap_mask = 1023
        self.buf_cap = 1 << 16
        self.buf = <char*>malloc(self.buf_cap)
        if self.ents == NULL or self.buf == NULL:
            raise MemoryError()
        self.wpos = 0
        self.head = self.tail = self.send_next = 1
        self._oversized = []
        self._counters = {}
        memset(self.batches_, 0, sizeof(self.batches_))
        self._first_subj = [b""] * NSLOTS
        self.good_subject = b""
        self.gate_starts = False

    def __dealloc__(self):
        free(self.ents)
        free(self.buf)

    def _reply_template(self):
        if self.mode == M_FAST:
            return b"%sb00000000.%d.ok.%s.1.$FI" % (self.inbox_b, self.flow, b"0" * SEQ_W)
        return self.inbox_b + b"."

    @property
    def fast(self):
        return self.mode == M_FAST

    # ------------------------------------------------------------------ memory

    cdef int _reserve(self, Py_ssize_t n) except -1:
        return log_reserve(self, n)     # _framing_log.pxi

    cdef int _grow_entries(self, uint64_t need) except -1:
        """Room for ``need`` entries from the head."""
        cdef uint64_t newcap = self.cap_mask + 1, p
        cdef OutMsg* ne
        if need <= newcap:
            return 0
        while newcap < need:
            newcap *= 2
        ne = <OutMsg*>malloc(newcap * sizeof(OutMsg))
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

    cdef Py_ssize_t _write_frame(self, char* o, OutMsg* e, uint64_t pseq, const char* s1, Py_ssize_t n1,
                                 const char* s2, Py_ssize_t n2, const char* mid, Py_ssize_t mid_len,
                                 const char* pay, Py_ssize_t pay_len) noexcept:
        """One frame at ``o`` (capacity checked by the caller); fills the entry's layout fields."""
        cdef Py_ssize_t w, line, hl
        if self.mode == M_CORE:  # no header: a msg id only means something to JetStream
            memcpy(o, b"PUB ", 4)
            w = 4 + put(o + 4, s1, n1)
            w += put(o + w, s2, n2)
            o[w] = b' '
            w += 1 + put_dec(o + w + 1, <uint64_t>pay_len)
            o[w] = b'\r'
            o[w + 1] = b'\n'
            line = w + 2
            e.subj_off = 4
            e.id_off = <uint32_t>line
            e.id_len = 0
            e.pay_off = <uint32_t>line
            e.rep_off = 0
        else:
            memcpy(o, b"HPUB ", 5)
            w = 5 + put(o + 5, s1, n1)
            w += put(o + w, s2, n2)
            o[w] = b' '
            w += 1
            if self.mode == M_FAST:
                e.rep_off = <uint32_t>(w + PyBytes_GET_SIZE(self.inbox_b) + 1)
                w += put(o + w, PyBytes_AS_STRING(self.reply_b), PyBytes_GET_SIZE(self.reply_b))
            else:
                e.rep_off = 0
                w += put(o + w, PyBytes_AS_STRING(self.reply_b), PyBytes_GET_SIZE(self.reply_b))
                w += put_dec(o + w, pseq)
            hl = HDR_HEAD_LEN + mid_len + 4
            o[w] = b' '
            w += 1 + put_dec(o + w + 1, <uint64_t>hl)
            o[w] = b' '
            w += 1 + put_dec(o + w + 1, <uint64_t>(hl + pay_len))
            o[w] = b'\r'
            o[w + 1] = b'\n'
            line = w + 2
            memcpy(o + line, HDR_HEAD, HDR_HEAD_LEN)
            put(o + line + HDR_HEAD_LEN, mid, mid_len)
            memcpy(o + line + HDR_HEAD_LEN + mid_len, b"\r\n\r\n", 4)
            e.subj_off = 5
            e.id_off = <uint32_t>(line + HDR_HEAD_LEN)
            e.id_len = <uint32_t>mid_len
            e.pay_off = <uint32_t>(line + hl)
        w = e.pay_off + put(o + e.pay_off, pay, pay_len)
        o[w] = b'\r'
        o[w + 1] = b'\n'
        e.subj_len = <uint32_t>(n1 + n2)
        e.pay_len = <uint32_t>pay_len
        e.len = <uint32_t>(w + 2)
        return w + 2

    cdef uint64_t _emit(self, const char* s1, Py_ssize_t n1, const char* s2, Py_ssize_t n2, const char* mid,
                        Py_ssize_t mid_len, const char* pay, Py_ssize_t pay_len, uint8_t origin) except? 0:
        """Frame one message at the tail (capacity reserved by the caller); its pseq, 0 when oversized."""
        cdef Py_ssize_t total = pay_len if self.mode == M_CORE else HDR_HEAD_LEN + mid_len + 4 + pay_len
        cdef uint64_t pseq = self.tail
        cdef OutMsg* e
        cdef Py_ssize_t w
        if total > self.max_payload:
            self._oversized.append((PyBytes_FromStringAndSize(s1, n1) + PyBytes_FromStringAndSize(s2, n2),
                                    PyBytes_FromStringAndSize(mid, mid_len if self.mode != M_CORE else 0),
                                    PyBytes_FromStringAndSize(pay, pay_len)))
            self.oversized += 1
            return 0
        e = &self.ents[pseq & self.cap_mask]
        w = self._write_frame(self.buf + self.wpos, e, pseq, s1, n1, s2, n2, mid, mid_len, pay, pay_len)
        e.pos = <uint64_t>self.wpos
        e.attempts = 0
        e.state = S_QUEUED
        e.origin = origin
        e.held = 0
        e.bno = 0
        e.bseq = 0
        e.first_sent = 0.0
        e.sent_at = 0.0
        e.recv_ns = self._recv_ns
        self.wpos += w
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
        cdef Py_ssize_t i, n = 0, stem, tok_len, fixed, need = 0, count = 0
        cdef FrameEntry* e
        cdef bint has_tid, want_raw = self.raw, want_norm = self.normalized
        cdef char* tok = self.scratch_tok
        cdef char* mid = self.scratch_id
        cdef const char* tm = PyBytes_AS_STRING(self.tmpl_b)
        cdef int k
        if PyBytes_GET_SIZE(conn_text) > 300:
            raise ValueError("connection id too long")
        # one capacity check per batch: a bound on every frame it can make
        fixed = (LINE_MAX + PyBytes_GET_SIZE(self.prefix_b) + 24 + PyBytes_GET_SIZE(self.reply_b) + 20
                 + HDR_HEAD_LEN + 6 + PyBytes_GET_SIZE(self.feed_b) + PyBytes_GET_SIZE(conn_text) + 64)
        for i in range(b.count):
            e = &b.entries[i]
            if e.flags & F_DUPLICATE:
                continue
            if e.outcome == OUT_RECORD or e.outcome == OUT_OTHER:
                need += 2 * (fixed + min(3 * e.key_len, MAX_TOKEN) + min(3 * e.tid_len, MAX_ID_TEXT) + 1) \
                    + e.raw_len + e.rec_len
                count += 2
        if count == 0:
            return 0
        self._reserve(need)
        self._grow_entries(self.tail - self.head + <uint64_t>count + 1)
        self._recv_ns = b.recv_ts
        for i in range(b.count):
            e = &b.entries[i]
            # a duplicate is not published at all; a book delta withheld while its book resyncs
            # (F_SUPPRESSED) is a frame the exchange sent: its raw form goes out (as in the raw files), its
            # normalized record waits for the fresh snapshot
            if e.flags & F_DUPLICATE:
                continue
            if e.outcome == OUT_RECORD:
                if e.kind > 5 or not (want_raw or want_norm):
                    continue
                has_tid = e.kind == K_TRADE and e.tid_len > 0
                if not has_tid and not (e.seq > 0 and e.sid > 0):
                    counter += 1
                tok_len = put_token(tok, <const unsigned char*>b.keys.data + e.key_off, e.key_len)
                stem = self._id_stem(mid, e, b, has_tid, conn_text, counter)  # shared by both forms
                if want_raw:
                    k = e.kind
                    if self._emit(tm + self.tmpl_off[k], self.tmpl_len[k], tok, tok_len,
                                  mid, stem + put(mid + stem, b":raw", 4), b.raw.data + e.raw_off, e.raw_len, O_LIVE):
                        n += 1
                if want_norm and not e.flags & F_SUPPRESSED:
                    k = 6 + e.kind
                    if self._emit(tm + self.tmpl_off[k], self.tmpl_len[k], tok, tok_len,
                                  mid, stem + put(mid + stem, b":norm", 5), b.out.data + e.rec_off, e.rec_len,
                                  O_LIVE):
                        n += 1
            elif e.outcome == OUT_OTHER and want_raw:
                if not (e.seq > 0 and e.sid > 0):
                    counter += 1
                tok_len = put_token(tok, <const unsigned char*>b.keys.data + e.key_off, e.key_len)
                stem = self._id_stem(mid, e, b, False, conn_text, counter)
                if self._emit(tm + self.tmpl_off[TMPL_OTHER], self.tmpl_len[TMPL_OTHER], tok, tok_len,
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
        if e.seq > 0 and e.sid > 0:    # a seq without its sid names nothing: two such frames would share an id
            w += put_dec(mid + w, <uint64_t>e.sid)
            mid[w] = b':'
            return w + 1 + put_dec(mid + w + 1, <uint64_t>e.seq)
        mid[w] = b'n'
        return w + 1 + put_dec(mid + w + 1, counter)

    def add_message(self, subject, msg_id, payload, int origin=ORIGIN_LIVE):
        return self._add_one(_exact_bytes(subject), _exact_bytes(msg_id), _exact_bytes(payload), <uint8_t>origin)

    def add_messages(self, list items, int origin=ORIGIN_LIVE):
        # one call for a spill replay's chunk (4,096 records): a Python call per record cost more than
        # its framing
        cdef Py_ssize_t k, n = len(items)
        for k in range(n):
            subject, msg_id, payload = items[k]
            if not self._add_one(_exact_bytes(subject), _exact_bytes(msg_id), _exact_bytes(payload),
                                 <uint8_t>origin):
                return k
        return n

    cdef uint64_t _add_one(self, bytes s, bytes m, bytes p, uint8_t origin) except? 0:
        self._recv_ns = 0  # events and spill replays: no receive time to measure from
        self._reserve(LINE_MAX + PyBytes_GET_SIZE(s) + PyBytes_GET_SIZE(self.reply_b) + 20 + HDR_HEAD_LEN
                      + PyBytes_GET_SIZE(m) + 6 + PyBytes_GET_SIZE(p))
        self._grow_entries(self.tail - self.head + 1)
        return self._emit(PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s), NULL, 0, PyBytes_AS_STRING(m),
                          PyBytes_GET_SIZE(m), PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p), origin)

    def pop_oversized(self):
        out, self._oversized = self._oversized, []
        return out

    def set_mode(self, int mode):
        if mode not in (M_ACK, M_FAST) or self.mode == M_CORE:
            raise ValueError("only an acked ring switches between MODE_ACK and MODE_FAST")
        self.drop_batches()
        if mode != self.mode:
            r_reframe(self, mode)

    # ------------------------------------------------------------------ sending

    @property
    def queued(self):
        return self.tail - self.send_next

    @property
    def inflight(self):
        return self.send_next - self.head

    @property
    def retained_bytes(self):
        """Bytes of the frames from the oldest unsettled one to the newest (what resends or a spill may need)."""
        cdef Py_ssize_t n = 0
        cdef uint64_t p = self.head
        while p < self.tail:
            n += self._at(p).len
            p += 1
        return n

    def can_send(self, Py_ssize_t window):
        cdef uint64_t end = self.tail
        if self.head + <uint64_t>window < end:
            end = self.head + <uint64_t>window
        return end > self.send_next

    cdef OutMsg* _at(self, uint64_t pseq) noexcept:
        return &self.ents[pseq & self.cap_mask]

    cdef Py_ssize_t _patch_begin(self, Batch* b, char* run) noexcept:
        """The reply fields of ``b``'s next message, "{bno:08x}.{flow}.ok.{seq:07d}.{op}", into ``run``
        (REPLY_RUN bytes at least); their length. ``_patch`` copies them into each frame it sends and
        moves the seq on in place: the digits are computed once per send, not once per message (7
        dependent divisions were most of the patch's cost)."""
        cdef Py_ssize_t w = 8
        put_hex8(run, b.bno)
        run[w] = b'.'
        w += 1 + put_dec(run + w + 1, <uint64_t>self.flow)
        memcpy(run + w, b".ok.", 4)
        w += 4
        put_fixed(run + w, b.next_seq, SEQ_W)
        w += SEQ_W
        run[w] = b'.'
        run[w + 1] = b'0' if b.next_seq == 1 else b'1'   # op 0 starts the batch, 1 appends
        return w + 2

    cdef void _patch(self, OutMsg* e, Batch* b, char* run, Py_ssize_t run_len) noexcept:
        """Write batch, seq and op (``run``, from ``_patch_begin``) into a fast frame's reply (fixed widths),
        assign it to ``b`` and move ``run`` on to the next seq."""
        cdef Py_ssize_t i = run_len - 3     # the seq's last digit
        memcpy(self.buf + e.pos + e.rep_off, run, run_len)
        e.bno = b.bno
        e.bseq = b.next_seq
        e.held = 0
        b.next_seq += 1
        run[run_len - 1] = b'1'
        while run[i] == b'9':               # decimal increment with carry (seqs stay below 10^SEQ_W)
            run[i] = b'0'
            i -= 1
        run[i] += 1

    cdef void _track(self, Batch* b, uint64_t pseq, OutMsg* e):
        if b.cursor == 0:
            b.cursor = pseq
            self._first_subj[b.bno & (NSLOTS - 1)] = PyBytes_FromStringAndSize(
                self.buf + e.pos + e.subj_off, e.subj_len)
        if pseq > b.last_pseq:
            b.last_pseq = pseq

    def take(self, Py_ssize_t window, double now, Py_ssize_t max_bytes=PY_SSIZE_T_MAX, int fd=-1):
        return r_take(self, window, now, max_bytes, fd)

    def resend(self, pseqs, double now):
        cdef list ok = []
        cdef uint64_t p
        for p in pseqs:
            if self.head <= p < self.send_next and self._at(p).state == S_SENT:
                ok.append(p)
        return r_resend(self, ok, now)

    def expired(self, double now, double timeout, Py_ssize_t limit=1 << 30):
        cdef list due = []
        cdef uint64_t p = self.head
        cdef OutMsg* e
        # With no resend in flight, every sent message went out once, in pseq order, so their send times
        # only grow: the first one not yet due ends the scan (a whole window's scan, every tick, cost
        # about 1.5% of the connector's CPU, mostly cache misses).
        cdef bint ordered = self.resends_pending == 0
        while p < self.send_next and len(due) < limit:
            e = self._at(p)
            if e.state == S_SENT:
                if now - e.sent_at >= timeout:
                    due.append(p)
                elif ordered:
                    break
            p += 1
        return due

    def resend_expired(self, double now, double timeout, Py_ssize_t limit=1 << 30):
        return r_resend(self, self.expired(now, timeout, limit), now)

    def resend_all(self, double now):
        cdef list due = []
        cdef uint64_t p = self.head
        while p < self.send_next:
            if self._at(p).state == S_SENT:
                due.append(p)
            p += 1
        return r_resend(self, due, now)

    def oldest_unacked_sent(self):
        cdef uint64_t p = self.head
        cdef OutMsg* e
        while p < self.send_next:
            e = self._at(p)
            if e.state == S_SENT:
                return e.first_sent
            p += 1
        return 0.0

    # ------------------------------------------------------------------ fast-ingest batches

    cdef Batch* _batch(self, uint32_t bno) noexcept:
        return b_get(self, bno)

    def open_batch(self):
        return b_open(self)

    @property
    def batch_full(self):
        cdef Batch* b = b_get(self, self.cur_batch)
        return b != NULL and b.next_seq > self.batch_max

    @property
    def live_batches(self):
        cdef int k, n = 0
        for k in range(NSLOTS):
            n += self.batches_[k].bno != 0
        return n

    def commit_batch(self):
        return b_commit(self)

    def recommit(self, uint32_t bno):
        return b_recommit(self, bno)

    def ping_frame(self, uint32_t bno):
        return b_ping(self, bno)

    def batches(self):
        return b_list(self)

    def fast_ack(self, uint32_t bno, uint32_t seq, uint32_t flow=0):
        return b_ack(self, bno, seq, flow)

    def finish_batch(self, uint32_t bno, uint32_t count):
        return b_finish(self, bno, count)

    def batch_pseq(self, uint32_t bno, uint32_t seq):
        return b_pseq(self, bno, seq)

    def hold(self, uint64_t pseq):
        if pseq < self.head or pseq >= self.send_next or self._at(pseq).state != S_SENT:
            return False
        self._at(pseq).held = 1
        return True

    def hold_range(self, uint32_t bno, uint32_t first, uint32_t end):
        return b_select(self, bno, first, end, 1)

    def held(self, uint32_t bno, uint32_t first, uint32_t end):
        return b_select(self, bno, first, end, 2)

    def batch_sent(self, uint32_t bno):
        return b_select(self, bno, 0, 0xFFFFFFFF, 0)

    def kill_batch(self, uint32_t bno):
        b_free(self, bno)

    def drop_batches(self):
        memset(self.batches_, 0, sizeof(self.batches_))
        self.cur_batch = 0

    def tail_state(self):
        return b_tail(self)

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
        """_framing_acks_py.latency_bucket, in C: 4 linear sub-buckets per power of two from 1024 ns."""
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
        if self.head == self.tail:  # all acked: start over at the front (the memory most recently used)
            self.wpos = 0

    cdef tuple _message(self, OutMsg* e):
        cdef const char* o = self.buf + e.pos
        return (PyBytes_FromStringAndSize(o + e.subj_off, e.subj_len),
                PyBytes_FromStringAndSize(o + e.id_off, e.id_len),
                PyBytes_FromStringAndSize(o + e.pay_off, e.pay_len), e.origin)

    cdef tuple _retire(self, uint64_t pseq):
        cdef OutMsg* e
        cdef tuple msg
        if pseq < self.head or pseq >= self.send_next or self._at(pseq).state != S_SENT:
            return None
        e = self._at(pseq)
        msg = self._message(e)
        e.state = S_RETIRED
        if e.attempts > 1:
            self.resends_pending -= 1
        if pseq == self.head:
            self._advance()
        return msg

    def reject(self, uint64_t pseq):
        msg = self._retire(pseq)
        self.rejected += msg is not None
        return msg

    def park(self, uint64_t pseq):
        msg = self._retire(pseq)
        self.parked += msg is not None
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
                    memcmp(self.buf + e.pos + e.subj_off, PyBytes_AS_STRING(s), e.subj_len) == 0:
                return p
            p += 1
        return 0

    def pop_spill_retired(self):
        n = self._spill_retired
        self._spill_retired = 0
        return n

    # ------------------------------------------------------------------ bulk moves

    def extract(self, uint64_t from_pseq=0, bint include_spill=False):
        return r_extract(self, from_pseq, include_spill)
