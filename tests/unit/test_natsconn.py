"""The data connection against a real nats-server: handshake, every auth kind, TLS, keepalive, acks."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import logging
import os
import secrets
import signal
import time

import nats
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ssmd_fast.config import NatsAuthConfig, NatsTlsConfig, Secret
from ssmd_fast.errors import ConfigError
from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks import framing
from ssmd_fast.sinks.natsconn import AuthFailed, ConnectError, Credentials, Endpoint, connect
from ssmd_fast.sinks.nkeys import (
    PREFIX_ACCOUNT,
    PREFIX_OPERATOR,
    PREFIX_USER,
    NKey,
    NKeyError,
    crc16,
    decode_seed,
    encode_seed,
    parse_creds,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

INBOX = b"_INBOX.t" + secrets.token_hex(4).encode()


class Sink:
    """Collects what the connection reports."""

    def __init__(self):
        self.events, self.lost, self.writable = [], [], 0

    def kw(self):
        return {"on_events": self.events.extend, "on_lost": self.lost.append,
                "on_writable": lambda: setattr(self, "writable", self.writable + 1)}


async def _open(endpoint, sink, ring=None, **kw):
    ring = ring or framing.PublishRing(b"t", INBOX)
    parser = framing.AckParser(ring, INBOX)
    conn = await connect(endpoint, 0, parser, INBOX, timeout=3.0, **sink.kw(), **kw)
    return conn, ring


async def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- nkeys (sans-IO)


def test_crc16_xmodem_check_value():
    assert crc16(b"123456789") == 0x31C3


def test_seed_round_trip_and_public_key():
    raw = bytes(range(32))
    seed = encode_seed(raw, PREFIX_USER)
    assert seed.startswith(b"SU")
    assert decode_seed(seed) == (PREFIX_USER, raw)
    key = NKey(seed.decode())
    assert key.public_key.startswith("U") and len(key.public_key) == 56
    assert "S" + "U" not in repr(key) or seed.decode() not in repr(key)


@pytest.mark.parametrize("bad", ["", "SUXX", "not base32 !!", None])
def test_bad_seeds_are_refused_without_echoing_them(bad):
    seed = encode_seed(bytes(32)).decode()
    text = seed[:-1] + ("A" if seed[-1] != "A" else "B") if bad is None else bad  # None: checksum broken
    with pytest.raises(NKeyError) as err:
        decode_seed(text)
    assert (not text) or text not in str(err.value)


def test_parse_creds_file_text():
    seed = encode_seed(secrets.token_bytes(32)).decode()
    text = ("-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    jwt, key = parse_creds(text)
    assert jwt.reveal() == "eyJhbGciOi.x.y" and key.public_key == NKey(seed).public_key
    with pytest.raises(NKeyError):
        parse_creds("-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n")


def test_credentials_from_config_read_env_and_files(tmp_path):
    creds = Credentials.from_config(NatsAuthConfig(token_env="TOK"), {"TOK": "s3cr3t"})
    assert creds.kind == "token" and "s3cr3t" not in repr(creds)
    with pytest.raises(ConfigError, match="TOK"):
        Credentials.from_config(NatsAuthConfig(token_env="TOK"), {})
    with pytest.raises(ConfigError, match="one NATS auth method"):
        Credentials.from_config(NatsAuthConfig(token_env="TOK", user="u"), {"TOK": "x"})
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(encode_seed(secrets.token_bytes(32)) + b"\n")
    seed_file.chmod(0o644)
    with pytest.raises(ConfigError, match="group or others"):
        Credentials.from_config(NatsAuthConfig(nkey_seed_file=str(seed_file)), {})
    seed_file.chmod(0o600)
    assert Credentials.from_config(NatsAuthConfig(nkey_seed_file=str(seed_file)), {}).kind == "nkey"


def test_credentials_in_the_url_are_refused():
    with pytest.raises(ConfigError):
        Endpoint(urls=("nats://user:pw@127.0.0.1:4222",)).address(0)


# ---------------------------------------------------------------------- against nats-server


def run(coro):
    return uvloop.run(coro)


def test_connects_subscribes_and_parses_acks():
    with NatsServer() as srv:
        async def main():
            nc = await nats.connect(srv.url)
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            sink = Sink()
            conn, ring = await _open(Endpoint(urls=(srv.url,)), sink)
            assert conn.server_info["headers"] and conn.max_payload == 2 * 2**20
            for k in range(500):
                ring.add_message(b"t.x", b"id-%d" % k, b"payload %d" % k)
            conn.write(ring.take(1000, time.monotonic()))
            await _wait(lambda: ring.acked_count == 500)
            ring.add_message(b"t.x", b"id-7", b"again")          # a duplicate id
            ring.add_message(b"nostream.x", b"id-x", b"lost?")   # no stream: 503 no responders
            conn.write(ring.take(1000, time.monotonic()))
            await _wait(lambda: ring.duplicates == 1 and sink.events)
            assert sink.events == [("no_responders", 502)]
            info = await js.stream_info("T")
            assert info.state.messages == 500
            conn.close()
            conn.close("again")
            assert conn.closed and sink.lost == ["closed by the publisher"]  # reported once, whatever the cause
            await nc.close()
        run(main())


def test_server_side_close_is_reported_once():
    srv = NatsServer().start()
    try:
        async def main():
            sink = Sink()
            conn, _ = await _open(Endpoint(urls=(srv.url,)), sink)
            srv.kill()
            await _wait(lambda: sink.lost)
            assert len(sink.lost) == 1 and conn.closed
        run(main())
    finally:
        srv.close()


def test_lame_duck_notice_becomes_one_event_ahead_of_the_answers_after_it():
    """nats-server in lame-duck mode sends an INFO with "ldm" (then stops JetStream): the connection flags
    itself and hands the publisher one ("lame_duck",) event, in order with the answers."""
    srv = NatsServer(extra_config="lame_duck_duration: 30s\nlame_duck_grace_period: 2s\n").start()
    try:
        async def main():
            sink = Sink()
            conn, _ = await _open(Endpoint(urls=(srv.url,)), sink)
            assert not conn.lame_duck
            srv.proc.send_signal(signal.SIGUSR2)
            await _wait(lambda: sink.events)
            assert conn.lame_duck and sink.events == [("lame_duck",)] and conn.server_info["ldm"] is True
            await _wait(lambda: sink.lost)          # then the server closes the connection (after the grace)
            assert sink.events == [("lame_duck",)]  # one notice, even if the INFO came again
        run(main())
    finally:
        srv.close()


def test_refused_and_unreachable_are_connect_errors():
    async def main():
        port = NatsServer().port  # a free port nothing listens on
        with pytest.raises(ConnectError, match="cannot connect"):
            await _open(Endpoint(urls=(f"nats://127.0.0.1:{port}",)), Sink())
    run(main())


def test_keepalive_answers_server_pings_and_detects_a_stalled_server():
    with NatsServer(extra_config='ping_interval: "200ms"\nping_max: 2') as srv:
        async def main():
            sink = Sink()
            conn, _ = await _open(Endpoint(urls=(srv.url,)), sink, ping_interval=0.2, max_outstanding_pings=2)
            await asyncio.sleep(1.2)  # the server pinged us ~6 times; we answered, it kept us
            assert not conn.closed and sink.lost == []
            srv.pause()               # a silent server (no FIN, no RST)
            try:
                t0 = time.monotonic()
                await _wait(lambda: sink.lost, timeout=3.0)
                assert "stale" in sink.lost[0] and time.monotonic() - t0 < 1.5
            finally:
                srv.resume()
        run(main())


def _secret_free(caplog, *secret_values):
    text = "\n".join(r.getMessage() for r in caplog.records)
    for v in secret_values:
        assert v not in text


def test_token_auth(caplog):
    token = "tok-" + secrets.token_hex(8)
    with NatsServer(extra_config=f'authorization {{ token: "{token}" }}') as srv:
        async def main():
            caplog.set_level(logging.DEBUG)
            good = Endpoint(urls=(srv.url,), credentials=Credentials(kind="token", token=Secret(token)))
            conn, _ = await _open(good, Sink())
            conn.close()
            bad = Endpoint(urls=(srv.url,), credentials=Credentials(kind="token", token=Secret("wrong")))
            with pytest.raises(AuthFailed):
                await _open(bad, Sink())
            with pytest.raises(AuthFailed):
                await _open(Endpoint(urls=(srv.url,)), Sink())
        run(main())
    _secret_free(caplog, token)


def test_user_password_auth(caplog):
    password = "pw-" + secrets.token_hex(8)
    with NatsServer(extra_config=f'authorization {{ user: "pub", password: "{password}" }}') as srv:
        async def main():
            caplog.set_level(logging.DEBUG)
            good = Credentials.from_config(NatsAuthConfig(user="pub", password_env="NATS_PW"), {"NATS_PW": password})
            conn, _ = await _open(Endpoint(urls=(srv.url,), credentials=good), Sink())
            conn.close()
            bad = Credentials(kind="user", user="pub", password=Secret("nope"))
            with pytest.raises(AuthFailed) as err:
                await _open(Endpoint(urls=(srv.url,), credentials=bad), Sink())
            assert "nope" not in str(err.value)
        run(main())
    _secret_free(caplog, password)


def test_nkey_auth(tmp_path, caplog):
    seed = encode_seed(secrets.token_bytes(32))
    key = NKey(seed)
    path = tmp_path / "user.nk"
    path.write_bytes(b"# user seed\n" + seed + b"\n")
    path.chmod(0o600)
    with NatsServer(extra_config=f'authorization {{ users = [ {{ nkey: "{key.public_key}" }} ] }}') as srv:
        async def main():
            caplog.set_level(logging.DEBUG)
            creds = Credentials.from_config(NatsAuthConfig(nkey_seed_file=str(path)), {})
            conn, _ = await _open(Endpoint(urls=(srv.url,), credentials=creds), Sink())
            conn.close()
            other = Credentials(kind="nkey", nkey=NKey(encode_seed(secrets.token_bytes(32))))
            with pytest.raises(AuthFailed):
                await _open(Endpoint(urls=(srv.url,), credentials=other), Sink())
        run(main())
    _secret_free(caplog, seed.decode())


def _jwt(claims: dict, signer: NKey) -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    claims = {"jti": secrets.token_hex(16).upper(), "iat": int(time.time()), "iss": signer.public_key, **claims}
    head = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signer.sign(f'{head}.{body}'.encode()))}"


def test_creds_file_auth_in_operator_mode(tmp_path, caplog):
    op = NKey(encode_seed(secrets.token_bytes(32), PREFIX_OPERATOR))
    acc = NKey(encode_seed(secrets.token_bytes(32), PREFIX_ACCOUNT))
    user_seed = encode_seed(secrets.token_bytes(32), PREFIX_USER).decode()
    user = NKey(user_seed)
    op_jwt = _jwt({"sub": op.public_key, "name": "O", "nats": {"type": "operator", "version": 2}}, op)
    acc_jwt = _jwt({"sub": acc.public_key, "name": "A", "nats": {
        "type": "account", "version": 2, "default_permissions": {"pub": {}, "sub": {}},
        "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                   "conn": -1, "leaf": -1}}}, op)
    user_jwt = _jwt({"sub": user.public_key, "name": "U", "nats": {
        "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}}, acc)
    creds = tmp_path / "user.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n")
    creds.chmod(0o600)
    sys_acc = NKey(encode_seed(secrets.token_bytes(32), PREFIX_ACCOUNT))
    sys_jwt = _jwt({"sub": sys_acc.public_key, "name": "SYS", "nats": {"type": "account", "version": 2}}, op)
    conf = (f'operator: "{op_jwt}"\nsystem_account: "{sys_acc.public_key}"\nresolver: MEMORY\n'
            f'resolver_preload: {{ {acc.public_key}: "{acc_jwt}", {sys_acc.public_key}: "{sys_jwt}" }}')
    with NatsServer(extra_config=conf) as srv:
        async def main():
            caplog.set_level(logging.DEBUG)
            c = Credentials.from_config(NatsAuthConfig(creds_file=str(creds)), {})
            assert c.kind == "creds"
            conn, _ = await _open(Endpoint(urls=(srv.url,), credentials=c), Sink())
            conn.close()
            with pytest.raises(AuthFailed):
                await _open(Endpoint(urls=(srv.url,)), Sink())
        run(main())
    _secret_free(caplog, user_seed, user_jwt)


def _tls_files(tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ssmd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = {n: tmp_path / f"{n}.pem" for n in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


def test_tls_with_a_private_ca(tmp_path):
    p = _tls_files(tmp_path)
    with NatsServer(extra_config=f'tls {{ cert_file: "{p["cert"]}", key_file: "{p["key"]}" }}') as srv:
        async def main():
            good = Endpoint(urls=(f"tls://127.0.0.1:{srv.port}",), tls=NatsTlsConfig(ca_file=str(p["ca"])))
            sink = Sink()
            conn, ring = await _open(good, sink)
            nc = await nats.connect(f"tls://127.0.0.1:{srv.port}", tls=good.ssl_context())
            await nc.jetstream().add_stream(name="T", subjects=["t.>"])
            ring.add_message(b"t.a", b"tls-1", b"over tls")
            conn.write(ring.take(10, time.monotonic()))
            await _wait(lambda: ring.acked_count == 1)
            conn.close()
            await nc.close()
            # the server requires TLS: a nats:// URL is upgraded too, and an unknown CA is refused
            conn, _ = await _open(Endpoint(urls=(srv.url,), tls=NatsTlsConfig(ca_file=str(p["ca"]))), Sink())
            conn.close()
            with pytest.raises(ConnectError, match="handshake failed"):
                await _open(Endpoint(urls=(srv.url,)), Sink())
        run(main())


@pytest.mark.parametrize("r", [0.0, 0.999])
def test_the_publisher_reconnect_waits_stay_within_the_documented_50ms_to_1s(monkeypatch, tmp_path, r):
    # README, Guarantees: "Reconnects back off from 50 ms, doubling, to at most 1 s" (the jitter went
    # up to 1.5 s, and the provisioning retries to 1.05 s)
    import dataclasses
    import random

    from ssmd_fast.config import TransportConfig
    from ssmd_fast.sinks import nats as nats_sink

    cfg = dataclasses.replace(TransportConfig(), url=["nats://127.0.0.1:1"], subject_prefix="t.p")
    pub = nats_sink.JetStreamPublisher(cfg, spill_dir=str(tmp_path / "spill"), provision_stream=False)
    waits: list[float] = []

    async def no_sleep(d, *a, **k):
        waits.append(d)
        if len(waits) >= 12:
            pub._closed = True

    async def refused(*a, **k):
        raise ConnectError("connection refused")

    monkeypatch.setattr(nats_sink.natsconn, "connect", refused)
    monkeypatch.setattr(nats_sink.asyncio, "sleep", no_sleep)
    monkeypatch.setattr(random, "random", lambda: r)
    asyncio.run(pub._run())
    steps = [min(0.05 * 2 ** k, 1.0) for k in range(12)]
    assert waits == pytest.approx([s * (0.5 + 0.5 * r) for s in steps])
    assert max(waits) <= 1.0


@pytest.mark.parametrize("below", ["", "spill"])
def test_a_spill_path_that_cannot_be_a_directory_is_an_error_not_a_traceback(tmp_path, below):
    # transport.spill.path naming a file (or a path under one): start() raised FileExistsError or
    # NotADirectoryError from its own os.makedirs, and `ssmd-fast run` printed a traceback
    import dataclasses

    from ssmd_fast.config import TransportConfig
    from ssmd_fast.errors import StorageError
    from ssmd_fast.sinks import nats as nats_sink

    afile = tmp_path / "afile"
    afile.write_text("x")
    spill_dir = afile / below if below else afile
    cfg = dataclasses.replace(TransportConfig(), url=["nats://127.0.0.1:1"], subject_prefix="t.p")
    pub = nats_sink.JetStreamPublisher(cfg, spill_dir=str(spill_dir), provision_stream=False)
    with pytest.raises(StorageError) as got:
        asyncio.run(pub.start())
    assert str(got.value) == f"spill {spill_dir}: cannot open the spill directory: Not a directory (ENOTDIR)"
