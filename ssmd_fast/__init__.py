"""ssmd-fast: a Kalshi market-data connector (picows + Cython normalizer + acked JetStream)."""

__version__ = "0.1.0"
