# Stamping and framing a batch of the exchange's timeline for one connection (see
# _exchange_render_py.py for the contract). Python-level API only: render().

cdef Py_ssize_t digits(long long v) noexcept
