# The strict single-pass JSON scanner of _normalize.pyx (included there).
#
# One pass over the frame checks RFC 8259 syntax, UTF-8, depth and duplicate keys, and records where
# the fields of interest are: top-level type/sid/seq/id/msg and the msg members the six record types
# read. The frame is scanned from the batch's own copy, which ends with PAD zero bytes: a 0 byte is
# never valid outside a string nor inside one, so the sentinel replaces most bounds checks. It runs for
# the frames the template walk (_normalize_tmpl.pxi) did not decide, and notes where the values of the
# top-level object and msg are, for the template of the frame's type.

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


cdef const uint8_t* _scan_string_rest(const uint8_t* s, int* esc, int* fail) noexcept nogil:
    """_scan_string from a byte that stopped the vector scan: an escape, a control or a non-ASCII byte."""
    cdef uint8_t c
    cdef int k, quote
    while True:
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
        s = ssmd_str_stop_q(s, &quote)
        if quote:
            return s


# Called through a pointer: kept out of line, so the common case below stays small enough to inline.
cdef const uint8_t* (*_scan_string_rest_p)(const uint8_t* s, int* esc, int* fail) noexcept nogil
_scan_string_rest_p = _scan_string_rest


cdef inline const uint8_t* _scan_string(const uint8_t* s, int* esc, int* fail) noexcept nogil:
    """s: first byte after the opening quote. Returns the closing quote, or NULL with *fail set."""
    cdef int quote
    s = ssmd_str_stop_q(s, &quote)
    if quote:
        return s
    return _scan_string_rest_p(s, esc, fail)


cdef inline const uint8_t* _scan_number(const uint8_t* s, uint8_t c, int* esc) noexcept nogil:
    """s: a number's first byte c ('-' or a digit). Returns the byte after the number, NULL when it
    breaks the grammar; *esc = 1 when it has a fraction or an exponent."""
    cdef const uint8_t* q
    cdef uint8_t stop
    # the digits after the first byte straight from s: the next position does not wait for the sign
    # test; the integer part's rules are checked beside it
    q = ssmd_digits_end_b(s + 1, &stop)
    if c == 45:
        if <uint8_t>(s[1] - 48) >= 10 or (s[1] == 48 and q != s + 2):
            return NULL
    elif c == 48 and q != s + 1:
        return NULL
    esc[0] = 0
    if stop == 46:
        q += 1
        if <uint8_t>(q[0] - 48) >= 10:
            return NULL
        q = ssmd_digits_end_b(q + 1, &stop)
        esc[0] = 1
    if stop | 0x20 == 101:
        q += 1
        if q[0] == 43 or q[0] == 45:
            q += 1
        if <uint8_t>(q[0] - 48) >= 10:
            return NULL
        q = ssmd_digits_end(q + 1)
        esc[0] = 1
    return q


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
    slot[0] = SLOT_SINK
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
    cdef uint32_t slot = SLOT_SINK, pe, ps
    cdef uint32_t gen = b.gen
    cdef uint32_t prev = P_START_TOP, prev1 = P_START_TOP, row = 0     # prev: the current level's
    cdef bint in_msg = False        # the innermost open container is the msg object
    cdef bint fast = False          # err == 0 and the innermost container is the top-level object or msg
    cdef bint goto_key = False
    cdef uint8_t c, kind
    cdef Span* sp
    cdef Span* spans = b.spans
    cdef Open* op
    global _tv_n, _tv_ok, _tv_mopen, _tv_mclose
    b.nkeys = 0
    _tv_n = 0
    _tv_ok = True
    _tv_mopen = 0
    _tv_mclose = 0
    while True:
        # ---- one value at s; its span goes to `slot` (SLOT_SINK when nobody reads it)
        c = s[0]
        if c == 34:
            esc = 0
            q = _scan_string(s + 1, &esc, &fail)
            if q == NULL:
                break
            sp = &spans[slot]
            sp.start = <uint32_t>(s - p)
            sp.end = <uint32_t>(q + 1 - p)
            sp.kind = J_STRING
            sp.esc = esc
            if slot == S_TYPE:      # the prediction row of this frame type (distinct for the 6)
                row = ((<uint32_t>(q - s) + s[1]) & (P_ROWS - 1)) * 128
            if fast:
                _tv_add(slot, s, q + 1, p)
            s = q + 1
        elif c == 45 or <uint8_t>(c - 48) < 10:
            q = _scan_number(s, c, &esc)
            if q == NULL:
                fail = R_JSON
                break
            sp = &spans[slot]
            sp.start = <uint32_t>(s - p)
            sp.end = <uint32_t>(q - p)
            sp.kind = J_NUMBER
            sp.esc = esc
            if fast:
                _tv_add(slot, s, q, p)
            s = q
        elif c == 123 or c == 91:
            if fast:                # a container value in the top-level object or msg
                if depth == 1 and slot == S_MSG and c == 123:
                    _tv_mopen = <uint32_t>(s - p) + 1
                else:
                    _tv_ok = False
            depth += 1
            ctype[depth] = c
            in_msg = False
            if depth <= MAX_DEPTH:
                if err == 0:
                    op = &b.opens[depth]
                    op.slot = slot
                    sp = &spans[slot]
                    sp.start = <uint32_t>(s - p)
                    sp.kind = J_OBJECT if c == 123 else J_ARRAY
                    sp.esc = 0
                    if c == 123:
                        if slot == S_MSG:
                            in_msg = True
                            prev1 = prev        # back to it when msg closes
                            prev = P_START_MSG
                        op.key_base = <uint32_t>b.nkeys
                        op.large = 0
                        op.bloom[0] = 0
                        op.bloom[1] = 0
                        op.bloom[2] = 0
                        op.bloom[3] = 0
            else:
                err = R_DEPTH       # beats duplicate_key; only json/utf8 further on can override it
            fast = err == 0 and (in_msg or (depth == 1 and c == 123))
            s = skip_ws(s + 1)
            if s[0] == c + 2:       # '{' + 2 == '}', '[' + 2 == ']': empty, closes at once
                if depth <= MAX_DEPTH and err == 0:
                    spans[b.opens[depth].slot].end = <uint32_t>(s + 1 - p)
                if depth == 2 and in_msg:
                    prev = prev1
                    _tv_mclose = <uint32_t>(s - p) + 1
                depth -= 1
                in_msg = depth == 2 and err == 0 and b.opens[2].slot == S_MSG and ctype[2] == 123
                fast = err == 0 and (in_msg or (depth == 1 and ctype[1] == 123))
                s += 1
            elif c == 91:
                slot = SLOT_SINK
                continue
            else:
                goto_key = True
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
            sp = &spans[slot]
            sp.start = <uint32_t>(s - p)
            sp.end = <uint32_t>(q - p)
            sp.kind = kind
            if fast:
                _tv_add(slot, s, q, p)
            s = q
        # ---- after a value: separators and closers, up to the next value or key
        if not goto_key:
            # the common case first: ',' then the predicted '"name":' in the top-level object or msg
            if fast and s[0] == 44:
                pe = _pred[row + prev]
                ps = pe & 0xFF
                if ps != NO_SLOT and _is_member(s + 1, ps) and spans[ps].gen != gen:
                    prev = ps
                    spans[ps].gen = gen
                    slot = ps
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
                    slot = SLOT_SINK
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
                    spans[op.slot].end = <uint32_t>(s + 1 - p)
                if depth == 2 and in_msg:
                    prev = prev1
                    _tv_mclose = <uint32_t>(s - p) + 1
                depth -= 1
                in_msg = depth == 2 and err == 0 and b.opens[2].slot == S_MSG and ctype[2] == 123
                fast = err == 0 and (in_msg or (depth == 1 and ctype[1] == 123))
                s += 1
            if fail or depth == 0:
                break
            if not goto_key:
                continue
        # ---- a key at s, then ':'
        goto_key = False
        slot = SLOT_SINK
        if fast:
            pe = _pred[row + prev]
            ps = pe & 0xFF
            if ps != NO_SLOT and _is_member(s, ps) and spans[ps].gen != gen:
                # '"name":' of the predicted name, not seen before in this frame
                prev = ps
                spans[ps].gen = gen
                slot = ps
                s = skip_ws(s + (pe >> 8))
                continue
            if s[0] != 34:
                fail = R_JSON
                break
            q = _scan_key_slow(b, p, s, depth, &prev, row, &slot, &err, &fail)
            fast = err == 0
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
