# Keys of _normalize.pyx (included there): value kinds, span slots, the names of the fields of
# interest, the key-prediction table, and the duplicate-key check of every object.

cdef enum:
    J_NONE = 0
    J_STRING = 1
    J_NUMBER = 2
    J_OBJECT = 3
    J_ARRAY = 4
    J_TRUE = 5
    J_FALSE = 6
    J_NULL = 7

cdef enum:
    MAX_FRAME = 1048576
    MAX_DEPTH = 128
    PAD = 16
    NO_SLOT = 255
    BLOOM_KEYS = 24         # keys per object checked on insert; bigger objects: sorted check at close
    KEY_ESC = 0x80000000

# Span slots: the top-level members, then the msg members of the six record types.
cdef enum:
    S_TYPE = 0
    S_SID
    S_SEQ
    S_ID
    S_MSG
    S_MARKET_TICKER
    S_TRADE_ID
    S_YES_PRICE_DOLLARS
    S_YES_PRICE
    S_PRICE
    S_COUNT_FP
    S_COUNT
    S_TAKER_OUTCOME_SIDE
    S_TAKER_SIDE
    S_SIDE
    S_IS_BLOCK_TRADE
    S_TS_MS
    S_TS
    S_YES_BID_DOLLARS
    S_YES_BID
    S_YES_ASK_DOLLARS
    S_YES_ASK
    S_PRICE_DOLLARS
    S_YES_BID_SIZE_FP
    S_YES_ASK_SIZE_FP
    S_LAST_TRADE_SIZE_FP
    S_VOLUME_FP
    S_VOLUME
    S_OPEN_INTEREST_FP
    S_OPEN_INTEREST
    S_DOLLAR_VOLUME
    S_DOLLAR_OPEN_INTEREST
    S_TIME
    S_YES_DOLLARS_FP
    S_YES_DOLLARS
    S_YES
    S_NO_DOLLARS_FP
    S_NO_DOLLARS
    S_NO
    S_DELTA_FP
    S_DELTA
    S_EVENT_TYPE
    S_OPEN_TS
    S_CLOSE_TS
    S_DETERMINATION_TS
    S_SETTLED_TS
    S_RESULT
    S_SETTLEMENT_VALUE
    S_IS_DEACTIVATED
    S_PRICE_LEVEL_STRUCTURE
    S_ADDITIONAL_METADATA
    S_STRIKE_TYPE
    S_FLOOR_STRIKE
    S_CAP_STRIKE
    S_CUSTOM_STRIKE
    S_YES_SUB_TITLE
    S_NO_SUB_TITLE
    S_TITLE
    S_RULES_PRIMARY
    S_RULES_SECONDARY
    S_EVENT_TICKER
    S_SERIES_TICKER
    S_SUBTITLE
    S_SUB_TITLE
    S_COLLATERAL_RETURN_TYPE
    S_STRIKE_DATE
    S_STRIKE_PERIOD
    S_COUNT_OF_SLOTS        # slots from here on: msg members every frame type ignores (dup check only)

cdef enum:
    N_SLOTS_MAX = 96        # the size of FrameBatch.spans
    SLOT_SINK = 95          # the span of a value nobody reads (written unconditionally: no branch)
    P_START_TOP = 120       # pseudo slots for the key prediction: before the first key of an object,
    P_START_MSG = 121       #   and after a key that has no slot (per level: rows never mix levels)
    P_UNKNOWN1 = 122
    P_UNKNOWN2 = 123
    P_ROWS = 16             # prediction rows, one per record type (hashed from the type value)

# Names in slot order after the 5 top-level ones (which are looked up at depth 1, these inside msg).
_TOP_NAMES = (b"type", b"sid", b"seq", b"id", b"msg")
_MSG_NAMES = (
    b"market_ticker", b"trade_id", b"yes_price_dollars", b"yes_price", b"price", b"count_fp", b"count",
    b"taker_outcome_side", b"taker_side", b"side", b"is_block_trade", b"ts_ms", b"ts",
    b"yes_bid_dollars", b"yes_bid", b"yes_ask_dollars", b"yes_ask", b"price_dollars",
    b"yes_bid_size_fp", b"yes_ask_size_fp", b"last_trade_size_fp", b"volume_fp", b"volume",
    b"open_interest_fp", b"open_interest", b"dollar_volume", b"dollar_open_interest", b"time",
    b"yes_dollars_fp", b"yes_dollars", b"yes", b"no_dollars_fp", b"no_dollars", b"no",
    b"delta_fp", b"delta", b"event_type", b"open_ts", b"close_ts", b"determination_ts", b"settled_ts",
    b"result", b"settlement_value", b"is_deactivated", b"price_level_structure",
    b"additional_metadata", b"strike_type", b"floor_strike", b"cap_strike", b"custom_strike",
    b"yes_sub_title", b"no_sub_title", b"title", b"rules_primary", b"rules_secondary",
    b"event_ticker", b"series_ticker", b"subtitle", b"sub_title", b"collateral_return_type",
    b"strike_date", b"strike_period",
)
# Common msg members no record reads: a slot makes their duplicate check and key prediction cheap.
_IGNORED_NAMES = (b"market_id", b"Clock", b"no_price", b"no_price_dollars", b"taker_book_side",
                  b"exchange_index", b"price_ranges", b"client_order_id", b"subaccount", b"name")

# Name table: open addressing over the low 8 bits of the seeded key hash; len 0 = empty.
cdef uint64_t _hash_seed = 0
cdef uint64_t _name_hash[256]
cdef uint8_t _name_slot[256]
cdef uint8_t _name_level[256]
cdef uint8_t _name_len[256]
cdef bytes _name_store = b""
cdef int _n_slots = 0
# Per slot: the name's length and its first, second and last 8-byte words (names are <= 24 bytes).
cdef uint32_t _slot_len[128]
cdef uint64_t _slot_w0[128]
cdef uint64_t _slot_w1[128]
cdef uint64_t _slot_wl[128]
# Per slot: the member prefix '"name":' (length + 3 <= 32 bytes) as words, for the predicted-key test.
cdef uint32_t _mem_len[128]
cdef uint64_t _mem_w[128][4]
cdef uint32_t _mem_need[128]     # one bit per byte of the prefix (its length <= 32)
# Key prediction: _pred[row * 128 + previous slot] = the slot that followed it last time. Wire key
# order is fixed per frame type, so most keys are recognized by comparing 1-3 words with one name.
cdef uint16_t _pred[P_ROWS * 128]        # slot | member prefix length << 8 (one load)

# Value of an ASCII hex digit, 0xFF for any other byte.
cdef uint8_t _HEX[256]
# Bytes allowed after a backslash (other than 'u').
cdef uint8_t _ESC_OK[256]


cdef void _init_scan_tables(uint64_t seed):
    global _hash_seed, _name_store, _n_slots
    cdef int i, k
    cdef Py_ssize_t o, nl
    cdef uint64_t h
    cdef const uint8_t* base
    _hash_seed = seed
    for i in range(256):
        _HEX[i] = 0xFF
        _ESC_OK[i] = 0
        _name_len[i] = 0
    for i in range(10):
        _HEX[48 + i] = i
    for i in range(6):
        _HEX[65 + i] = 10 + i
        _HEX[97 + i] = 10 + i
    for i in b'"\\/bfnrt':
        _ESC_OK[i] = 1
    names = [(n, s, 1) for s, n in enumerate(_TOP_NAMES)]
    names += [(n, S_MARKET_TICKER + s, 2) for s, n in enumerate(_MSG_NAMES)]
    assert len(names) == S_COUNT_OF_SLOTS
    names += [(n, S_COUNT_OF_SLOTS + s, 2) for s, n in enumerate(_IGNORED_NAMES)]
    assert len(names) <= SLOT_SINK and max(len(n) for n, _, _ in names) <= 24
    cdef bytes member
    _n_slots = len(names)
    offsets = []
    store = bytearray()
    for n, s, level in names:
        offsets.append(len(store))
        store += n + bytes(8)
    store += bytes(PAD)
    _name_store = bytes(store)
    base = <const uint8_t*>_name_store
    for i in range(P_ROWS * 128):
        _pred[i] = NO_SLOT
    for (n, slot, level), off in zip(names, offsets):
        o = off
        nl = len(n)
        _slot_len[slot] = nl
        _slot_w0[slot] = ssmd_load64(base + o) & ssmd_low_mask(nl)
        _slot_w1[slot] = ssmd_load64(base + o + 8) & ssmd_low_mask(nl - 8 if nl > 8 else 0)
        _slot_wl[slot] = ssmd_load64(base + o + nl - 8) if nl >= 8 else 0
        member = b'"' + n + b'":' + bytes(40)
        _mem_len[slot] = nl + 3
        _mem_need[slot] = <uint32_t>((<uint64_t>1 << (nl + 3)) - 1)
        for k in range(4):
            _mem_w[slot][k] = (ssmd_load64(<const uint8_t*>member + 8 * k)
                               & ssmd_low_mask(max(0, min(8, nl + 3 - 8 * k))))
        h = ssmd_key_hash(base + o, nl, seed)
        k = h & 255
        while _name_len[k] != 0:
            k = (k + 1) & 255
        _name_hash[k] = h
        _name_slot[k] = slot
        _name_level[k] = level
        _name_len[k] = nl


cdef inline bint _is_member(const uint8_t* s, uint32_t slot) noexcept nogil:
    """The bytes at s (padded buffer: 32 readable) begin with the member prefix '"name":' of slot."""
    return ssmd_member_eq(s, _mem_w[slot], _mem_need[slot])


cdef inline bint _is_name(const uint8_t* s, uint32_t n, uint32_t slot) noexcept nogil:
    """The n bytes at s (padded buffer) equal the name of slot."""
    if n != _slot_len[slot]:
        return False
    if n <= 8:
        return (ssmd_load64(s) & ssmd_low_mask(n)) == _slot_w0[slot]
    if ssmd_load64(s) != _slot_w0[slot] or ssmd_load64(s + n - 8) != _slot_wl[slot]:
        return False
    return n <= 16 or ssmd_load64(s + 8) == _slot_w1[slot]


cdef inline uint32_t _lookup_name(uint64_t h, const uint8_t* s, Py_ssize_t n, int level) noexcept nogil:
    cdef int k = h & 255
    while _name_len[k] != 0:
        if _name_hash[k] == h and _name_level[k] == level and _is_name(s, <uint32_t>n, _name_slot[k]):
            return _name_slot[k]
        k = (k + 1) & 255
    return NO_SLOT


cdef bint _keys_equal(FrameBatch b, const uint8_t* p, KeyRef* x, KeyRef* y) noexcept:
    """Exact comparison of two keys after unescaping (hashes already equal)."""
    cdef Py_ssize_t nx = x.len & ~KEY_ESC, ny = y.len & ~KEY_ESC
    cdef uint8_t* bx
    cdef uint8_t* by
    if not (x.len & KEY_ESC) and not (y.len & KEY_ESC):
        return nx == ny and memcmp(p + x.start, p + y.start, nx) == 0
    bx = <uint8_t*>b.scratch.data
    by = bx + nx + PAD
    nx = decode_string(p + x.start, p + x.start + nx, bx)
    ny = decode_string(p + y.start, p + y.start + ny, by)
    return nx == ny and memcmp(bx, by, nx) == 0


cdef int _cmp_keyref(const void* a, const void* b) noexcept nogil:
    cdef uint64_t ha = (<const KeyRef*>a).hash, hb = (<const KeyRef*>b).hash
    return (ha > hb) - (ha < hb)


cdef bint _large_object_has_dup(FrameBatch b, const uint8_t* p, uint32_t base) noexcept:
    """Keys of an object too big for the bloom check: sort by hash, compare equal-hash runs exactly."""
    cdef KeyRef* k = b.keyrefs + base
    cdef Py_ssize_t n = b.nkeys - base, i, j
    qsort(k, n, sizeof(KeyRef), _cmp_keyref)
    for i in range(n - 1):
        j = i + 1
        while j < n and k[j].hash == k[i].hash:
            if _keys_equal(b, p, &k[i], &k[j]):
                return True
            j += 1
    return False


cdef inline bint _insert_key(FrameBatch b, const uint8_t* p, Open* op, uint64_t h, uint32_t start,
                             uint32_t rawlen) noexcept:
    """Adds a key to the innermost open object; True when it repeats an earlier key of that object."""
    cdef uint32_t bit = <uint32_t>(h >> 56)
    cdef uint64_t m = (<uint64_t>1) << (bit & 63)
    cdef KeyRef* k = b.keyrefs + b.nkeys
    cdef Py_ssize_t j
    k.hash = h
    k.start = start
    k.len = rawlen
    if not op.large:
        if op.bloom[bit >> 6] & m:
            for j in range(op.key_base, b.nkeys):
                if b.keyrefs[j].hash == h and _keys_equal(b, p, &b.keyrefs[j], k):
                    return True
        op.bloom[bit >> 6] |= m
        if b.nkeys + 1 - op.key_base > BLOOM_KEYS:
            op.large = 1
    b.nkeys += 1
    return False
