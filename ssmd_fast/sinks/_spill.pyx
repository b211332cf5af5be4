# The spill file's record format: the append path (record encoding, CRC-32 included, straight into the
# buffer), the read path and the recovery scan. API, record format and the contract with spill.SpillFile:
# see the twin, _spill_py.py.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from ssmd_fast.errors import StorageError

IMPLEMENTATION = "cython"

# zlib's CRC-32 (reflected polynomial 0xEDB88320), slice-by-8: the module cannot link zlib itself.
cdef uint32_t CRC_T[8][256]


cdef void _init_crc_tables() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0xEDB88320u if c & 1 else 0)
        CRC_T[0][i] = c
    for i in range(256):
        c = CRC_T[0][i]
        for k in range(1, 8):
            c = CRC_T[0][c & 0xFF] ^ (c >> 8)
            CRC_T[k][i] = c


_init_crc_tables()


cdef uint32_t crc32_update(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """``crc`` is the running (inverted) state: start with 0xFFFFFFFF, invert at the end."""
    cdef uint32_t a, b
    while n >= 8:
        a = (p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)) ^ crc
        b = p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        crc = (CRC_T[7][a & 0xFF] ^ CRC_T[6][(a >> 8) & 0xFF] ^ CRC_T[5][(a >> 16) & 0xFF]
               ^ CRC_T[4][a >> 24] ^ CRC_T[3][b & 0xFF] ^ CRC_T[2][(b >> 8) & 0xFF]
               ^ CRC_T[1][(b >> 16) & 0xFF] ^ CRC_T[0][b >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = CRC_T[0][(crc ^ p[0]) & 0xFF] ^ (crc >> 8)
        p += 1
        n -= 1
    return crc


def crc32(data, uint32_t value=0):
    """Same result as ``zlib.crc32(data, value)``."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return crc32_update(value ^ 0xFFFFFFFFu, <const unsigned char*>view.buf, view.len) ^ 0xFFFFFFFFu
    finally:
        PyBuffer_Release(&view)


cdef inline int _view(object o, Py_buffer* view, const unsigned char** p, Py_ssize_t* n) except -1:
    """Pointer and length of a bytes-like object; 1 if ``view`` must be released."""
    if PyBytes_CheckExact(o):
        p[0] = <const unsigned char*>PyBytes_AS_STRING(o)
        n[0] = PyBytes_GET_SIZE(o)
        return 0
    PyObject_GetBuffer(o, view, PyBUF_SIMPLE)
    p[0] = <const unsigned char*>view.buf
    n[0] = view.len
    return 1


cdef inline void _le32(unsigned char* out, uint32_t v) noexcept nogil:
    out[0] = v & 0xFF
    out[1] = (v >> 8) & 0xFF
    out[2] = (v >> 16) & 0xFF
    out[3] = v >> 24


cdef inline Py_ssize_t _encode_into(char* out, const unsigned char* s, Py_ssize_t sl,
                                    const unsigned char* m, Py_ssize_t ml,
                                    const unsigned char* p, Py_ssize_t pl) noexcept nogil:
    cdef unsigned char* o = <unsigned char*>out
    cdef Py_ssize_t total = 12 + sl + ml + pl
    cdef uint32_t crc
    o[8] = sl & 0xFF
    o[9] = sl >> 8
    o[10] = ml & 0xFF
    o[11] = ml >> 8
    memcpy(o + 12, s, sl)
    memcpy(o + 12 + sl, m, ml)
    memcpy(o + 12 + sl + ml, p, pl)
    crc = crc32_update(0xFFFFFFFFu, o + 8, total - 8) ^ 0xFFFFFFFFu
    _le32(o, <uint32_t>total)
    _le32(o + 4, crc)
    return total


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)  # the clock behind time.monotonic() on Linux
    return ts.tv_sec + ts.tv_nsec * 1e-9


def encode_record(subject, msg_id, payload):
    """One record in the segment format."""
    cdef Py_buffer bs, bm, bp
    cdef int rs = 0, rm = 0, rp = 0
    cdef const unsigned char* s
    cdef const unsigned char* m
    cdef const unsigned char* p
    cdef Py_ssize_t sl, ml, pl
    cdef bytes out
    rs = _view(subject, &bs, &s, &sl)
    try:
        rm = _view(msg_id, &bm, &m, &ml)
        rp = _view(payload, &bp, &p, &pl)
        if sl > 0xFFFF or ml > 0xFFFF:
            raise ValueError(f"subject ({sl} bytes) and msg_id ({ml} bytes) must be shorter than 64 KiB")
        out = PyBytes_FromStringAndSize(NULL, 12 + sl + ml + pl)
        _encode_into(PyBytes_AS_STRING(out), s, sl, m, ml, p, pl)
        return out
    finally:
        if rs:
            PyBuffer_Release(&bs)
        if rm:
            PyBuffer_Release(&bm)
        if rp:
            PyBuffer_Release(&bp)


cdef inline uint32_t _ld32(const unsigned char* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline Py_ssize_t _check(const unsigned char* d, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The length of the valid record at d[i:end], else why not (see _reason): 0 and -2 mean it does not
    end within d[:end], -1 and -3 that it is bad."""
    cdef Py_ssize_t total, sl, ml
    if end - i < 12:
        return 0
    total = _ld32(d + i)
    sl = d[i + 8] | (d[i + 9] << 8)
    ml = d[i + 10] | (d[i + 11] << 8)
    if total < 12 + sl + ml:
        return -1
    if total > end - i:
        return -2
    if crc32_update(0xFFFFFFFFu, d + i + 8, total - 8) ^ 0xFFFFFFFFu != _ld32(d + i + 4):
        return -3
    return total


def parse_records(bytes data, Py_ssize_t want, list out, list ends, long long pos):
    """The read path (a spill replay reads 4,096 records per step on the event loop): see the twin."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i = 0, took = 0, total, sl, ml
    while took < want:
        total = _check(d, i, n)
        if total == 0 or total == -2:
            break  # not whole in data
        if total < 0:
            return i, took, i
        sl = d[i + 8] | (d[i + 9] << 8)
        ml = d[i + 10] | (d[i + 11] << 8)
        out.append((PyBytes_FromStringAndSize(<const char*>d + i + 12, sl),
                    PyBytes_FromStringAndSize(<const char*>d + i + 12 + sl, ml),
                    PyBytes_FromStringAndSize(<const char*>d + i + 12 + sl + ml, total - 12 - sl - ml)))
        i += total
        ends.append(pos + i)
        took += 1
    return i, took, -1


cdef str _reason(const unsigned char* d, Py_ssize_t i, Py_ssize_t code):
    if code == 0:
        return "truncated header"
    if code == -1:
        return f"bad length {_ld32(d + i)}"
    if code == -2:
        return f"length {_ld32(d + i)} runs past the end of the file"
    return "CRC mismatch"


cdef const unsigned char* _segment_view(object data, Py_buffer* view, Py_ssize_t end) except NULL:
    """The bytes of a segment's buffer (its mmap), ``end`` checked; the caller releases ``view``."""
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    if end > view.len:
        PyBuffer_Release(view)
        raise ValueError(f"end {end} past the buffer's {view.len} bytes")
    return <const unsigned char*>view.buf if view.buf != NULL else <const unsigned char*>b""


def scan_records(data, Py_ssize_t end, long long cursor_off):
    """The recovery path (every record of every segment is checked when a spill opens, before capture
    starts: 2 µs per record in Python): see the twin."""
    cdef Py_buffer view
    cdef const unsigned char* d
    cdef Py_ssize_t i = 0, total = 1, records = 0, before_n = 0, before_off = 0
    d = _segment_view(data, &view, end)
    try:
        with nogil:
            while i < end:
                if 0 <= cursor_off and i <= cursor_off:
                    before_n = records
                    before_off = i
                total = _check(d, i, end)
                if total <= 0:
                    break
                i += total
                records += 1
        return i, records, before_n, before_off, (_reason(d, i, total) if i < end else None)
    finally:
        PyBuffer_Release(&view)


def next_valid(data, Py_ssize_t start, Py_ssize_t end):
    """See the twin."""
    cdef Py_buffer view
    cdef const unsigned char* d
    cdef Py_ssize_t j = start + 1, k, total, sl, ml
    cdef bint found = False
    d = _segment_view(data, &view, end)
    try:
        with nogil:
            while j <= end - 12:
                if d[j] == 0 and d[j + 1] == 0 and d[j + 2] == 0 and d[j + 3] == 0:
                    k = j + 4  # a valid total_len has a non-zero byte among its 4: skip the zero run
                    while k < end and d[k] == 0:
                        k += 1
                    if k >= end:
                        break
                    j = j + 1 if k - 3 <= j else k - 3
                    continue
                total = _ld32(d + j)
                sl = d[j + 8] | (d[j + 9] << 8)
                ml = d[j + 10] | (d[j + 11] << 8)
                if 12 + sl + ml <= total <= end - j and _check(d, j, end) > 0:
                    found = True
                    break
                j += 1
        return j if found else None
    finally:
        PyBuffer_Release(&view)


cdef class SpillWriter:
    """The append path; see _spill_py.py for the contract with the subclass."""

    def __cinit__(self):
        self._buf = bytearray()
        self._limit = -1
        self._deadline = float("inf")

    def __init__(self):
        self._buf = bytearray()
        self._pos = 0
        self._n = 0
        self._limit = -1
        self._sync_at_n = 0
        self._handoff_pos = 0
        self._deadline = float("inf")

    cdef int _put(self, object subject, object msg_id, object payload, long long appended) except -1:
        cdef Py_buffer bs, bm, bp
        cdef int rs = 0, rm = 0, rp = 0
        cdef const unsigned char* s
        cdef const unsigned char* m
        cdef const unsigned char* p
        cdef Py_ssize_t sl, ml, pl, old, total
        cdef bytearray buf
        rs = _view(subject, &bs, &s, &sl)
        try:
            rm = _view(msg_id, &bm, &m, &ml)
            rp = _view(payload, &bp, &p, &pl)
            if sl > 0xFFFF or ml > 0xFFFF:
                raise ValueError(f"subject ({sl} bytes) and msg_id ({ml} bytes) must be shorter than "
                                 f"64 KiB (after {appended} records were appended)")
            total = 12 + sl + ml + pl
            if total > 0xFFFFFFFFLL:
                raise ValueError(f"a spill record holds at most 4 GiB, not {total} bytes")
            if self._pos + total > self._limit:
                self._make_room(total, appended)  # raises to refuse the record
            buf = self._buf
            old = PyByteArray_GET_SIZE(buf)
            PyByteArray_Resize(buf, old + total)
            _encode_into(PyByteArray_AS_STRING(buf) + old, s, sl, m, ml, p, pl)
        finally:
            if rs:
                PyBuffer_Release(&bs)
            if rm:
                PyBuffer_Release(&bm)
            if rp:
                PyBuffer_Release(&bp)
        self._pos += total
        self._n += 1
        if self._n >= self._sync_at_n or self._pos >= self._handoff_pos or _now() >= self._deadline:
            self._after_append()
        return 0

    def append(self, subject, msg_id, payload):
        self._put(subject, msg_id, payload, 0)

    def append_many(self, items):
        """Append in order; returns the count. On an error, ``exc.appended`` says how many were."""
        cdef long long count = 0
        try:
            for subject, msg_id, payload in items:
                self._put(subject, msg_id, payload, count)
                count += 1
        except StorageError as exc:
            exc.appended = count
            raise
        return count
