"""KalshiSession over TLS (wss://): verification is on; a private CA given as ``ca_file`` is trusted,
an unknown certificate is refused and retried with backoff. The server is a picows TLS server on
127.0.0.1 that answers subscriptions, then sends trades (the local exchange itself speaks plain ws://)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from picows import WSListener, WSMsgType, ws_create_server

from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.session import KalshiSession, make_ssl_context
from ssmd_fast.kalshi.shards import plan_connections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# the session's wss path on both loops: uvloop's TLS transport is the one `ssmd-fast run` uses
LOOPS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ssmd test CA")])
    ca = _cert("ssmd test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, ca_name, ca_key, ca=False)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d


TRADES = 3000       # sent in bursts after the subscriptions: the session's own frame parsing takes over


def trade(sid: int, seq: int) -> bytes:
    return json.dumps({"type": "trade", "sid": sid, "seq": seq, "msg": {
        "trade_id": f"t{seq}", "market_ticker": "KX-TLS", "yes_price_dollars": "0.5000",
        "no_price_dollars": "0.5000", "count_fp": "1.00", "taker_side": "yes", "ts": 1771079400,
        "pad": "x" * (seq % 700)}}).encode()


class MiniKalshi(WSListener):
    """Answers every subscribe with one `subscribed` per channel (sids from 1), then sends TRADES trades
    on the trade channel in bursts of 500."""

    def __init__(self):
        super().__init__()
        self.sid = 0

    def _trades(self, transport, sid: int, first: int) -> None:
        if transport.is_disconnected:
            return
        for seq in range(first, min(first + 500, TRADES + 1)):
            transport.send(WSMsgType.TEXT, trade(sid, seq))
        if first + 500 <= TRADES:
            asyncio.get_running_loop().call_later(0.01, self._trades, transport, sid, first + 500)

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.TEXT:
            cmd = json.loads(frame.get_payload_as_bytes())
            if cmd.get("cmd") == "subscribe":
                for ch in cmd["params"]["channels"]:
                    self.sid += 1
                    reply = {"id": cmd["id"], "type": "subscribed", "msg": {"channel": ch, "sid": self.sid}}
                    transport.send(WSMsgType.TEXT, json.dumps(reply).encode())
                    if ch == "trade":
                        asyncio.get_running_loop().call_later(0.05, self._trades, transport, self.sid, 1)
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close()
            transport.disconnect()


async def _tls_server(pki):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    # uvloop's own transports, as the session and the local exchange (docs/design.md, "fd reuse"): the refused
    # certificate case resets connections, which on aiofastnet's transport can leave the loop a stale reader
    server = await ws_create_server(lambda _req: MiniKalshi(), "127.0.0.1", 0, ssl=ctx, use_aiofastnet=False)
    return server, server.sockets[0].getsockname()[1]


def _session(port: int, ca_file: str | None) -> KalshiSession:
    creds = KalshiCredentials("k", generate_key_pair()[0])
    plan = plan_connections(["ticker", "trade"])[0]
    return KalshiSession(creds, f"wss://127.0.0.1:{port}/trade-api/ws/v2", plan, [], ca_file=ca_file,
                         backoff_initial=0.1, backoff_max=0.5, stale_after=5.0, ping_interval=1.0)


@LOOPS
def test_private_ca_is_trusted(pki, run):
    """And the trades arrive whole through the session's own frame parsing, over TLS too."""
    async def main():
        server, port = await _tls_server(pki)
        s = _session(port, str(pki / "ca.pem"))
        try:
            s.start()
            await s.wait_subscribed(5)
            secure = s.transport.is_secure
            for _ in range(500):                # bounded: 5 s
                if s.stats()["records"].get("trade", 0) >= TRADES:
                    break
                await asyncio.sleep(0.01)
            parsing = s.transport.underlying_transport.get_protocol().parsing
        finally:
            await s.close()
            server.close()
        st = s.stats()
        assert secure and st["reconnects"] == 0
        assert parsing and st["records"].get("trade") == TRADES and st["gaps"] == 0 and st["duplicates"] == 0

    run(main())


@LOOPS
def test_unknown_certificate_is_refused_and_retried(pki, run):
    async def main():
        server, port = await _tls_server(pki)
        s = _session(port, None)                 # system trust only: the test CA is unknown
        try:
            s.start()
            await asyncio.sleep(1.5)
            stats, attempts = s.stats(), s.core.backoff.attempt
        finally:
            await s.close()
            server.close()
        assert not stats["connected"] and attempts >= 2
        assert "TLS" in stats["last_error"] and "CERTIFICATE_VERIFY_FAILED" in stats["last_error"]

    run(main())


def test_ssl_context_choices(pki):
    assert make_ssl_context("ws://127.0.0.1:1/x") is None
    ctx = make_ssl_context("wss://example.com/x")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with_ca = make_ssl_context("wss://example.com/x", str(pki / "ca.pem"))
    assert any(c["subject"] == ((("commonName", "ssmd test CA"),),) for c in with_ca.get_ca_certs())
    off = make_ssl_context("wss://example.com/x", verify=False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
