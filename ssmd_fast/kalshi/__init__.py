"""Kalshi-specific pieces: auth, the sans-IO protocol, the session and the local exchange."""
