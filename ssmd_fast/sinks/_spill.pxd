# The append path of the spill file (API and contract: _spill_py.py docstrings).

from libc.stdint cimport uint32_t


cdef class SpillWriter:
    cdef public bytearray _buf
    cdef public long long _pos
    cdef public long long _n
    cdef public long long _limit
    cdef public long long _sync_at_n
    cdef public long long _handoff_pos
    cdef public double _deadline

    cdef int _put(self, object subject, object msg_id, object payload, long long appended) except -1


cdef uint32_t crc32_update(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil
