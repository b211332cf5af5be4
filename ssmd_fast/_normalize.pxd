# The batch buffer shared by the hot path: listener -> normalizer -> sequencer -> sinks.
# Layout contract: docs/design.md "FrameBatch". The pure-Python twin (_normalize_py.py) exposes the
# same Python-level API; Cython consumers (listener, sequencer, framer) read these structs directly.

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

# outcome of one frame (normalized-schema v1, "Outcome of one frame")
cdef enum:
    OUT_RECORD = 0
    OUT_CONTROL = 1
    OUT_OTHER = 2
    OUT_INVALID = 3

# kind: the record type for OUT_RECORD, the reply type for OUT_CONTROL, K_NONE otherwise
cdef enum:
    K_TRADE = 0
    K_TICKER = 1
    K_BOOK_SNAPSHOT = 2
    K_BOOK_DELTA = 3
    K_MARKET_LIFECYCLE = 4
    K_EVENT_LIFECYCLE = 5
    K_SUBSCRIBED = 8
    K_OK = 9
    K_ERROR = 10
    K_UNSUBSCRIBED = 11
    K_NONE = 255

# invalid reason codes, in the spec's precedence order (the first that applies wins)
cdef enum:
    R_NONE = 0
    R_SIZE = 1
    R_UTF8 = 2
    R_JSON = 3
    R_DEPTH = 4
    R_DUPLICATE_KEY = 5
    R_SHAPE = 6
    R_MISSING = 7
    R_TYPE = 8
    R_RANGE = 9
    R_TICKER = 10
    R_COUNT = 11

cdef enum:
    RAW_INVALID_MAX = 256   # bytes of an invalid frame's raw the batch keeps (the listener keeps as much of a
                            # message above its limit)

# flags set after normalization (the normalizer writes 0); the sinks' normalized output skips entries with
# F_DROP set, their raw output only F_DUPLICATE ones
cdef enum:
    F_DUPLICATE = 1     # sequencer: seq <= last for the sid -> not published
    F_SUPPRESSED = 2    # sequencer: book of this market invalid after a gap -> published raw only
    F_GAP = 4           # sequencer: first frame after a detected gap (kept; an event was emitted)
    F_DROP = 3          # F_DUPLICATE | F_SUPPRESSED

cdef struct FrameEntry:
    uint8_t outcome
    uint8_t kind
    uint8_t reason      # R_* for OUT_INVALID, R_NONE otherwise
    uint8_t flags       # F_*
    uint32_t raw_off    # frame bytes in batch.raw (invalid frames: at most the first 256 bytes)
    uint32_t raw_len
    uint32_t rec_off    # normalized record (compact JSON, no newline) in batch.out
    uint32_t rec_len    # 0 = no record
    uint32_t key_off    # unescaped ticker (event_ticker for event_lifecycle; the type string for
    uint32_t key_len    #   OUT_OTHER) in batch.keys; 0 = none
    uint32_t tid_off    # unescaped trade_id (UTF-8) in batch.keys, trade records only
    uint32_t tid_len
    int64_t sid         # envelope sid when it is an integer in 1..2^63-1, else 0
    int64_t seq         # envelope seq when it is an integer in 1..2^63-1, else 0
    int64_t cmd_id      # envelope id when it is an integer in 0..2^63-1, else -1

cdef struct ByteBuf:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity

# --- scanner/converter state (extension of the layout above; internal to _normalize.pyx) ---

# A value's position in the frame (fields of interest only). `gen` tells stale spans from current ones.
cdef struct Span:
    uint32_t gen
    uint32_t start      # first byte of the value (the opening quote of a string)
    uint32_t end        # one past its last byte
    uint8_t kind        # J_* value kind
    uint8_t esc         # string: holds a backslash escape; number: has a fraction or an exponent

# One key of an open object: hash of its unescaped bytes, and where its raw text is.
cdef struct KeyRef:
    uint64_t hash
    uint32_t start      # first byte after the opening quote
    uint32_t len        # raw bytes up to the closing quote; bit 31 set when escaped

# An open container at depth <= 128.
cdef struct Open:
    uint32_t key_base   # index of its first key in keyrefs
    uint32_t slot       # span slot whose end is set when it closes, or NO_SLOT
    uint32_t large      # more keys than the bloom check handles: sorted check at close
    uint64_t bloom[4]

# One snapshot level: exact price as a key (integer part * 10^19 + fractional digits 1-19, digits
# 20-38, digit 39) and the level's text in `lvl`.
cdef struct LevelRef:
    uint64_t k_hi
    uint64_t k_lo
    uint32_t k_last
    uint32_t off
    uint32_t len


cdef class FrameBatch:
    cdef FrameEntry* entries
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef ByteBuf raw
    cdef ByteBuf out
    cdef ByteBuf keys
    cdef int64_t recv_ts            # ns since the epoch written as "recv_ts" into records; 0 = omit
    cdef int64_t rts_val            # the recv_ts whose member text ',"recv_ts":N' rts_txt holds (0: none)
    cdef Py_ssize_t rts_len
    cdef char rts_txt[32]
    # cumulative counters since creation (clear() keeps them)
    cdef uint64_t n_outcome[4]
    cdef uint64_t n_kind[16]
    cdef uint64_t n_reason[16]
    cdef uint64_t n_bytes
    cdef dict n_other               # type string -> count (OUT_OTHER is rare)

    # scanner/converter state, reused across frames and sized by the largest frame seen
    cdef ByteBuf scratch            # decoded strings and number digits (one value at a time)
    cdef ByteBuf lvl                # snapshot level texts before sorting
    cdef uint8_t* ctype             # container type per nesting depth (any depth)
    cdef Py_ssize_t ctype_cap
    cdef KeyRef* keyrefs            # keys of the open objects (duplicate-key check), a stack
    cdef Py_ssize_t nkeys
    cdef Py_ssize_t keys_cap
    cdef LevelRef* levels           # one snapshot side's levels, then their sort order
    cdef uint32_t* order
    cdef uint32_t* order_tmp
    cdef Py_ssize_t levels_cap
    cdef Open opens[130]            # per open container at depth 1..128
    cdef Span spans[96]             # the fields of interest of the current frame (valid when gen matches)
    cdef uint32_t gen

    cdef int add_ptr(self, const char* data, Py_ssize_t size) except -1
    cdef int add_oversized_ptr(self, const char* prefix, Py_ssize_t avail, Py_ssize_t size) except -1
    cdef void reset(self) noexcept
    cdef int add_lines_ptr(self, const char* data, Py_ssize_t size) except -1
