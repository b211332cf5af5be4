"""NATS NKey seeds and credentials files: decode, derive the public key, sign the server's nonce.

An NKey seed is base32 (no padding) of ``[0x90 | role >> 5, (role & 31) << 3] + 32-byte ed25519 seed +
CRC16/XMODEM (little-endian)``; a public key is base32 of ``[role] + 32-byte public key + CRC16``.
A ``.creds`` file holds a user JWT and the user's seed between ``-----BEGIN ...-----`` markers.
The values are secrets: they are returned wrapped in ``Secret`` and never logged.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ssmd_fast.config import Secret
from ssmd_fast.errors import ConfigError

PREFIX_SEED = 18 << 3        # 'S'
PREFIX_OPERATOR = 14 << 3    # 'O'
PREFIX_ACCOUNT = 0           # 'A'
PREFIX_USER = 20 << 3        # 'U'
PREFIX_SERVER = 13 << 3      # 'N'
PREFIX_CLUSTER = 2 << 3      # 'C'
_ROLES = (PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER, PREFIX_SERVER, PREFIX_CLUSTER)


class NKeyError(ValueError):
    """A seed or credentials file that cannot be used (the message never contains the secret)."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0), as NKeys use it."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _b32decode(text: bytes) -> bytes:
    try:
        return base64.b32decode(text + b"=" * (-len(text) % 8))
    except (ValueError, base64.binascii.Error):
        raise NKeyError("not base32") from None


def decode_seed(seed: str | bytes) -> tuple[int, bytes]:
    """(role prefix, 32-byte ed25519 seed); NKeyError on a bad length, prefix or checksum."""
    raw = _b32decode(seed.strip().encode("ascii") if isinstance(seed, str) else bytes(seed).strip())
    if len(raw) != 36:
        raise NKeyError("an nkey seed decodes to 36 bytes")
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if crc16(body) != crc:
        raise NKeyError("nkey seed checksum mismatch")
    if body[0] & 0xF8 != PREFIX_SEED:
        raise NKeyError("not an nkey seed (it must start with 'S')")
    role = ((body[0] & 0x07) << 5) | ((body[1] & 0xF8) >> 3)
    if role not in _ROLES:
        raise NKeyError("unknown nkey role")
    return role, body[2:]


def encode_seed(raw: bytes, role: int = PREFIX_USER) -> bytes:
    """The seed text for a 32-byte ed25519 seed (tests and tooling)."""
    if len(raw) != 32 or role not in _ROLES:
        raise NKeyError("a 32-byte seed and a known role are needed")
    body = bytes((PREFIX_SEED | role >> 5, (role & 31) << 3)) + raw
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).rstrip(b"=")


def encode_public(raw_public: bytes, role: int) -> str:
    body = bytes((role,)) + raw_public
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).rstrip(b"=").decode("ascii")


class NKey:
    """One key pair from a seed: its public key (printable) and nonce signatures."""

    __slots__ = ("_key", "public_key", "role")

    def __init__(self, seed: str | bytes | Secret):
        text = seed.reveal() if isinstance(seed, Secret) else seed
        self.role, raw = decode_seed(text)
        self._key = Ed25519PrivateKey.from_private_bytes(raw)
        pub = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = encode_public(pub, self.role)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def sign_nonce(self, nonce: str) -> str:
        """The CONNECT ``sig``: base64url without padding of the ed25519 signature of the nonce."""
        return base64.urlsafe_b64encode(self.sign(nonce.encode("ascii"))).rstrip(b"=").decode("ascii")

    def __repr__(self) -> str:
        return f"NKey(public_key={self.public_key!r})"


def _read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    p = Path(path)
    try:
        st = p.stat()
        if st.st_mode & 0o077:
            raise ConfigError(f"the {what} is accessible by group or others (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {p}", file=str(p))
        return p.read_text(encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", file=str(p))
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} is not ASCII text", file=str(p))


def read_seed_file(path: str | os.PathLike[str]) -> NKey:
    """An nkey seed file: the first line starting with ``S`` (comments and blank lines skipped)."""
    text = _read_secret_file(path, "nkey seed file")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("S"):
            try:
                return NKey(line)
            except NKeyError as exc:
                raise ConfigError(f"bad nkey seed: {exc}", file=str(path)) from None
    raise ConfigError("no nkey seed (a line starting with 'S') found", file=str(path))


_BLOCK = re.compile(r"-{3,}\s*BEGIN ([A-Z ]+?)\s*-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}\s*END", re.MULTILINE)


def parse_creds(text: str) -> tuple[Secret, NKey]:
    """(user JWT, user key) from the text of a ``.creds`` file."""
    jwt = seed = None
    for name, value in _BLOCK.findall(text.replace("\r\n", "\n")):
        if "JWT" in name:
            jwt = value
        elif "SEED" in name:
            seed = value
    if not jwt or not seed:
        raise NKeyError("a creds file needs a JWT block and an NKEY SEED block")
    return Secret(jwt), NKey(seed)


def read_creds_file(path: str | os.PathLike[str]) -> tuple[Secret, NKey]:
    try:
        return parse_creds(_read_secret_file(path, "creds file"))
    except NKeyError as exc:
        raise ConfigError(f"bad creds file: {exc}", file=str(path)) from None
