import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ssmd_fast.errors import AuthError
from ssmd_fast.kalshi.auth import KalshiCredentials, load_private_key, verify_signature


def _pkcs1(key_pair) -> bytes:
    key = serialization.load_pem_private_key(key_pair[0], None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _verify(public_pem: bytes, message: bytes, sig_b64: str) -> None:
    public = serialization.load_pem_public_key(public_pem)
    # exactly the parameters Kalshi documents: PSS, MGF1-SHA256, salt = digest length (32)
    public.verify(base64.b64decode(sig_b64, validate=True), message,
                  padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_signature_verifies_for_both_pem_formats(key_pair, fmt):
    pem = key_pair[0] if fmt == "pkcs8" else _pkcs1(key_pair)
    assert (b"BEGIN PRIVATE KEY" if fmt == "pkcs8" else b"BEGIN RSA PRIVATE KEY") in pem
    creds = KalshiCredentials("key-id", pem.decode())
    ts, sig = creds.sign_websocket_request(1771079400123)
    assert ts == 1771079400123
    _verify(key_pair[1], b"1771079400123GET/trade-api/ws/v2", sig)
    assert verify_signature(key_pair[1], "1771079400123GET/trade-api/ws/v2", sig)
    # a signature over another message or timestamp does not verify
    assert not verify_signature(key_pair[1], "1771079400124GET/trade-api/ws/v2", sig)


def test_pss_is_randomized_so_tests_verify(key_pair):
    creds = KalshiCredentials("k", key_pair[0])
    a, b = creds.sign_websocket_request(1)[1], creds.sign_websocket_request(1)[1]
    assert a != b
    for sig in (a, b):
        _verify(key_pair[1], b"1GET/trade-api/ws/v2", sig)


def test_headers_are_fresh_on_every_call(key_pair):
    now = [1700000000.0]
    creds = KalshiCredentials("key-id", key_pair[0], clock=lambda: now[0])
    h1 = creds.websocket_headers()
    now[0] += 1.5
    h2 = creds.websocket_headers()
    assert set(h1) == {"KALSHI-ACCESS-KEY", "KALSHI-ACCESS-SIGNATURE", "KALSHI-ACCESS-TIMESTAMP"}
    assert h1["KALSHI-ACCESS-KEY"] == "key-id"
    assert h1["KALSHI-ACCESS-TIMESTAMP"] == "1700000000000" and h2["KALSHI-ACCESS-TIMESTAMP"] == "1700000001500"
    _verify(key_pair[1], b"1700000001500GET/trade-api/ws/v2", h2["KALSHI-ACCESS-SIGNATURE"])
    assert "=" in h1["KALSHI-ACCESS-SIGNATURE"][-2:] or len(h1["KALSHI-ACCESS-SIGNATURE"]) % 4 == 0
    assert "\n" not in h1["KALSHI-ACCESS-SIGNATURE"]


def test_encrypted_key_rejected(key_pair):
    key = serialization.load_pem_private_key(key_pair[0], None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(AuthError, match="encrypted"):
        load_private_key(enc)


def test_non_rsa_key_rejected():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with pytest.raises(AuthError, match="not an RSA key"):
        load_private_key(pem)


@pytest.mark.parametrize("bad", ["", "hello", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
def test_garbage_rejected_without_echoing(bad):
    with pytest.raises(AuthError) as info:
        load_private_key(bad)
    assert "AAAA" not in str(info.value)


def test_repr_has_no_key_material(key_pair):
    creds = KalshiCredentials("key-id", key_pair[0])
    assert "BEGIN" not in repr(creds) and "key-id" in repr(creds)


def test_empty_api_key_rejected(key_pair):
    with pytest.raises(AuthError):
        KalshiCredentials("", key_pair[0])


def test_accepts_loaded_key_object():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds = KalshiCredentials("k", key)
    ts, sig = creds.sign_websocket_request()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _verify(pub, f"{ts}GET/trade-api/ws/v2".encode(), sig)
