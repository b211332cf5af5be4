"""Kalshi request signing: RSA-PSS (SHA-256, MGF1-SHA256, salt = digest length) over
``{timestamp_ms}GET/trade-api/ws/v2``. Cold path (once per connect), plain Python."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ssmd_fast.config import Secret
from ssmd_fast.credentials import KalshiConfig
from ssmd_fast.errors import AuthError

WS_SIGN_PATH = "/trade-api/ws/v2"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def load_private_key(pem: str | bytes | Secret) -> rsa.RSAPrivateKey:
    """Load an unencrypted RSA private key from PEM text (PKCS#8 or PKCS#1).

    Errors never quote the key material.
    """
    if isinstance(pem, Secret):
        pem = pem.reveal()
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    if b"ENCRYPTED" in data:
        raise AuthError("the private key is encrypted (passphrase-protected); export it without a passphrase")
    if b"-----BEGIN" not in data:
        raise AuthError("the private key is not PEM text (expected -----BEGIN PRIVATE KEY----- "
                        "or -----BEGIN RSA PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise AuthError("the private key is encrypted (passphrase-protected); export it without a passphrase")
    except (ValueError, UnsupportedAlgorithm):
        raise AuthError("the private key PEM cannot be parsed (expected an unencrypted PKCS#8 or PKCS#1 RSA key)")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError(f"the private key is not an RSA key ({type(key).__name__.lstrip('_')}); Kalshi uses RSA")
    return key


def sign_message(key: rsa.RSAPrivateKey, message: str) -> str:
    """Standard base64 of the RSA-PSS signature of ``message`` (UTF-8)."""
    return base64.b64encode(key.sign(message.encode("utf-8"), _PSS, hashes.SHA256())).decode("ascii")


class KalshiCredentials:
    """An API key id and its RSA private key; signs WebSocket handshakes."""

    __slots__ = ("api_key", "_key", "_clock")

    def __init__(self, api_key: str, private_key: str | bytes | Secret | rsa.RSAPrivateKey,
                 *, clock: Callable[[], float] = time.time):
        if not api_key or not isinstance(api_key, str):
            raise AuthError("the API key id is empty")
        self.api_key = api_key
        self._key = private_key if isinstance(private_key, rsa.RSAPrivateKey) else load_private_key(private_key)
        self._clock = clock

    @classmethod
    def from_config(cls, cfg: KalshiConfig) -> KalshiCredentials:
        return cls(cfg.api_key, cfg.private_key)

    def __repr__(self) -> str:
        return f"KalshiCredentials(api_key={self.api_key!r}, private_key=<redacted>)"

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_websocket_request(self, timestamp_ms: int | None = None) -> tuple[int, str]:
        """``(timestamp_ms, signature_b64)`` over ``{timestamp_ms}GET/trade-api/ws/v2``."""
        if timestamp_ms is None:
            timestamp_ms = int(self._clock() * 1000)
        return timestamp_ms, sign_message(self._key, f"{timestamp_ms}GET{WS_SIGN_PATH}")

    def websocket_headers(self) -> dict[str, str]:
        """The three auth headers, freshly signed (call once per connect: the timestamp is signed)."""
        ts, signature = self.sign_websocket_request()
        return {
            "KALSHI-ACCESS-KEY": self.api_key,
            "KALSHI-ACCESS-SIGNATURE": signature,
            "KALSHI-ACCESS-TIMESTAMP": str(ts),
        }


def verify_signature(public_key_pem: bytes, message: str, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid RSA-PSS signature of ``message`` (used by the local exchange)."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key = serialization.load_pem_public_key(public_key_pem)
        sig = base64.b64decode(signature_b64, validate=True)
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    try:
        public_key.verify(sig, message.encode("utf-8"), _PSS, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def generate_key_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA key pair as ``(private_pkcs8_pem, public_pem)`` (for tests, demo and keygen)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public
