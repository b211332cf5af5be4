# Frame templates of _normalize.pyx (included there): the fast path of the scanner.
#
# Kalshi sends each frame type with the same members in the same order, compactly. Once a frame has
# passed the strict scanner (scan_json), its bytes between values ("pieces": '{"type":',
# ',"sid":', ',"msg":{"market_ticker":', ..., '}}') become the template of its frame type. A later
# frame that has exactly those pieces, byte for byte, around scalar values has the structure of a
# frame already proven valid: same keys (so no duplicates), depth 2, nothing after the end. Only its
# values remain to be checked, with the scanner's own string and number rules. Any difference at all
# (another member, whitespace, a container value, a bad value) and the frame goes to scan_json, which
# decides it and may replace the template.

cdef enum:
    T_ITEMS = 40            # values per template (top-level and msg members)
    T_PIECE = 32            # longest piece a template holds

# One value of a template and the piece before it (the last item: the tail piece, no value).
cdef struct TItem:
    uint64_t pat[4]         # the piece, zero-padded
    uint32_t need           # one bit per byte of the piece
    uint8_t plen            # its length
    uint8_t slot            # the value's span slot
    uint8_t mopen           # 1 + offset of msg's '{' in the piece, 0 when not in it
    uint8_t mclose          # 1 + offset of msg's '}' in the piece, 0 when not in it

cdef struct Tmpl:
    uint32_t n              # values (items[0] is type, checked up front); 0 = no template
    TItem items[T_ITEMS + 1]

cdef Tmpl _tmpl[P_ROWS]     # per prediction row (the frame type)
cdef uint8_t _tmiss[P_ROWS]     # misses in a row
cdef uint8_t _tskip[P_ROWS]     # frames of the type still to send straight to scan_json

cdef enum:
    T_HIT = 0
    T_MISS = 1
    T_SKIP = 2
cdef uint64_t _TYPE_PREFIX = ssmd_load64(<const uint8_t*><const char*>b'{"type":')

# What scan_json saw at depth 1 and in msg, for learning: each value's slot and extent, msg's braces.
cdef uint8_t _tv_slot[T_ITEMS]
cdef uint32_t _tv_start[T_ITEMS]
cdef uint32_t _tv_end[T_ITEMS]
cdef uint32_t _tv_n = 0
cdef uint32_t _tv_mopen = 0         # 1 + position of msg's '{', 0 when none
cdef uint32_t _tv_mclose = 0
cdef bint _tv_ok = False            # every value at depth 1 and in msg is a scalar, but msg an object


cdef inline int _row_of(const uint8_t* s, const uint8_t* q) noexcept nogil:
    """The prediction row of a type value whose quotes are at s and q (as scan_json computes it)."""
    return <int>((<uint32_t>(q - s) + s[1]) & (P_ROWS - 1))


cdef inline void _tmpl_msg(Span* spans, uint32_t gen, TItem* it, uint32_t at) noexcept nogil:
    """msg's braces in the piece at offset `at` of the frame."""
    cdef Span* sp = &spans[S_MSG]
    if it.mopen:
        sp.gen = gen
        sp.start = at + it.mopen - 1
        sp.kind = J_OBJECT
        sp.esc = 0
    if it.mclose:
        sp.end = at + it.mclose


cdef int scan_tmpl(FrameBatch b, const uint8_t* p, Py_ssize_t n) noexcept:
    """The frame at p (n bytes, padded) against the template of its type: T_HIT when it matches and
    its values are valid (spans recorded as scan_json records them), else T_MISS (nothing decided), or
    T_SKIP when the type's frames keep changing layout (scan_json decides; no template is learned)."""
    cdef const uint8_t* q
    cdef int esc = 0, fail = 0, row, r
    # '{"type":"' then the type string: it picks the template
    if ssmd_load64(p) != _TYPE_PREFIX or p[8] != 34:
        return T_MISS
    q = _scan_string(p + 9, &esc, &fail)
    if q == NULL:
        return T_MISS
    row = _row_of(p + 8, q)
    if _tskip[row]:
        _tskip[row] -= 1
        return T_SKIP
    if _tmpl[row].n == 0:
        return T_MISS
    r = _walk(b, p, n, &_tmpl[row], q, esc)
    if r == T_HIT:
        _tmiss[row] = 0
    else:
        _tmiss[row] += 1
        if _tmiss[row] == 3:        # three misses in a row: walk none of the next 15 of this type
            _tmiss[row] = 0
            _tskip[row] = 15
    return r


cdef inline int _walk(FrameBatch b, const uint8_t* p, Py_ssize_t n, Tmpl* t, const uint8_t* q,
                      int esc) noexcept:
    """scan_tmpl past the type string (closing quote at q): T_HIT or T_MISS."""
    cdef const uint8_t* s
    cdef TItem* it
    cdef Span* spans = b.spans
    cdef Span* sp
    cdef uint32_t gen = b.gen, i
    cdef int fail = 0
    cdef uint8_t c, kind
    sp = &spans[S_TYPE]
    sp.gen = gen
    sp.start = 8
    sp.end = <uint32_t>(q + 1 - p)
    sp.kind = J_STRING
    sp.esc = esc
    s = q + 1
    for i in range(1, t.n):
        it = &t.items[i]
        if not ssmd_member_eq(s, it.pat, it.need):
            return T_MISS
        if it.mopen | it.mclose:
            _tmpl_msg(spans, gen, it, <uint32_t>(s - p))
        s += it.plen
        # a scalar value, whatever its kind (the pieces around it are the structure)
        c = s[0]
        if c == 34:
            esc = 0
            q = _scan_string(s + 1, &esc, &fail)
            if q == NULL:
                return T_MISS
            q += 1
            kind = J_STRING
        elif c == 45 or <uint8_t>(c - 48) < 10:
            q = _scan_number(s, c, &esc)
            if q == NULL:
                return T_MISS
            kind = J_NUMBER
        elif c == 116 and memcmp(s, b"true", 4) == 0:
            q = s + 4
            kind = J_TRUE
        elif c == 102 and memcmp(s, b"false", 5) == 0:
            q = s + 5
            kind = J_FALSE
        elif c == 110 and memcmp(s, b"null", 4) == 0:
            q = s + 4
            kind = J_NULL
        else:
            return T_MISS
        sp = &spans[it.slot]
        sp.gen = gen
        sp.start = <uint32_t>(s - p)
        sp.end = <uint32_t>(q - p)
        sp.kind = kind
        sp.esc = esc
        s = q
    it = &t.items[t.n]          # the tail piece, then the end of the frame
    if not ssmd_member_eq(s, it.pat, it.need):
        return T_MISS
    if it.mopen | it.mclose:
        _tmpl_msg(spans, gen, it, <uint32_t>(s - p))
    return T_HIT if s + it.plen == p + n else T_MISS


cdef inline void _tv_add(uint32_t slot, const uint8_t* s, const uint8_t* q, const uint8_t* p) noexcept nogil:
    """scan_json: a scalar value [s, q) of the top-level object or msg."""
    global _tv_n, _tv_ok
    if _tv_n < T_ITEMS:
        _tv_slot[_tv_n] = <uint8_t>slot
        _tv_start[_tv_n] = <uint32_t>(s - p)
        _tv_end[_tv_n] = <uint32_t>(q - p)
        _tv_n += 1
    else:
        _tv_ok = False


cdef void _set_piece(TItem* it, const uint8_t* p, uint32_t a, uint32_t e) noexcept nogil:
    cdef uint8_t piece[T_PIECE]
    cdef uint32_t k
    memset(piece, 0, T_PIECE)
    memcpy(piece, p + a, e - a)
    for k in range(4):
        it.pat[k] = ssmd_load64(piece + 8 * k)
    it.plen = <uint8_t>(e - a)
    it.need = <uint32_t>((<uint64_t>1 << (e - a)) - 1)
    it.mopen = <uint8_t>(_tv_mopen - a) if a < _tv_mopen <= e else 0
    it.mclose = <uint8_t>(_tv_mclose - a) if a < _tv_mclose <= e else 0


cdef void learn_template(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """After scan_json accepted the frame at p: make it the template of its type when it qualifies
    (starts with '{"type":"', scalar members but msg, pieces of at most T_PIECE bytes)."""
    cdef Tmpl* t
    cdef uint32_t i, a, e
    if (not _tv_ok or _tv_n == 0 or _tv_slot[0] != S_TYPE or _tv_start[0] != 8
            or ssmd_load64(p) != _TYPE_PREFIX or p[8] != 34):
        return
    t = &_tmpl[_row_of(p + 8, p + _tv_end[0] - 1)]
    t.n = 0                             # unusable until complete
    a = _tv_end[0]
    for i in range(1, _tv_n + 1):
        e = _tv_start[i] if i < _tv_n else <uint32_t>n
        if e - a > T_PIECE or e <= a:
            return
        _set_piece(&t.items[i], p, a, e)
        if i < _tv_n:
            t.items[i].slot = _tv_slot[i]
            a = _tv_end[i]
    t.n = _tv_n
