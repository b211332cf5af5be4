"""Secrets and transport security (nats-facts §8 S1-S4): key file permissions, no key material,
signature or NATS secret in any repr, log line (the connector at DEBUG) or config dump, wss://
certificate verification against a self-signed local exchange, and every NATS auth kind against a
nats-server configured for it, through the whole connector."""

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
import ssl
import subprocess
import sys
import time

import pytest
import uvloop
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from loop_thread import LoopThread
from rig import Rig, wait_for, wait_sync

from ssmd_fast.config import ConfigError, loads_environment
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.exchange import Exchange
from ssmd_fast.kalshi.exchange_feed import GeneratedFeed
from ssmd_fast.natsserver import free_port
from ssmd_fast.runner import Runner
from ssmd_fast.sinks.natsconn import Endpoint
from ssmd_fast.sinks.nkeys import PREFIX_ACCOUNT, PREFIX_OPERATOR, PREFIX_USER, NKey, encode_seed
from ssmd_fast.sinks.stream import management_connection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM block: none of them may ever appear anywhere."""
    return [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]


def minimal_env(tmp_path, **over) -> dict:
    env = {"name": "secrets", "feed": "kalshi", "status": "active",
           "transport": {"type": "none"}, "storage": {"type": "file", "path": str(tmp_path / "files")},
           "exchange": {"url": f"ws://127.0.0.1:{free_port()}/trade-api/ws/v2", "channels": ["ticker"],
                        "backoff_initial": "0.05s", "backoff_max": "0.5s", "handshake_timeout": "2s"},
           "metrics": {"enabled": False}}
    for k, v in over.items():
        env[k] = {**env.get(k, {}), **v} if isinstance(v, dict) else v
    return env


# --------------------------------------------------------------------------- S1 key file permissions


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
@pytest.mark.parametrize("how", ["KALSHI_PRIVATE_KEY_FILE", "keys: source file"])
def test_s1_a_key_file_readable_by_group_or_others_is_refused_without_key_material(tmp_path, key_pair, mode, how):
    private, _ = key_pair
    key = tmp_path / "kalshi.pem"
    key.write_bytes(private)
    os.chmod(key, mode)
    env = minimal_env(tmp_path)
    environ = {**os.environ, "KALSHI_API_KEY": "key-id"}
    environ.pop("KALSHI_PRIVATE_KEY", None)
    if how == "KALSHI_PRIVATE_KEY_FILE":
        environ["KALSHI_PRIVATE_KEY_FILE"] = str(key)
    else:
        env["keys"] = [{"name": "KALSHI_API_KEY", "type": "api_key"},
                       {"name": "KALSHI_SECRET", "type": "api_secret", "source": "file", "path": str(key)}]
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(env))
    proc = subprocess.run([sys.executable, "-m", "ssmd_fast", "run", "--env", str(tmp_path / "env.yaml")],
                          capture_output=True, text=True, timeout=60, env=environ)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"mode {mode:04o}" in out and "chmod 600" in out and "Traceback" not in out
    assert "BEGIN" not in out and not any(line in out for line in pem_body_lines(private))
    assert not (tmp_path / "files").exists()                # refused before any I/O


# --------------------------------------------------------------------------- S2 no secret anywhere


class RecordingExchange(Exchange):
    """The local exchange, keeping every signature header it was sent (to look for them in the logs)."""

    signatures: list[str]

    def _auth_failure(self, headers):
        sig = headers.get("KALSHI-ACCESS-SIGNATURE")
        if sig:
            self.signatures.append(sig)
        return super()._auth_failure(headers)


@pytest.mark.timeout(120)
def test_s2_no_key_signature_or_nats_password_in_the_debug_log_reprs_or_config_dump(tmp_path):
    password = "pw-" + secrets.token_hex(12)
    conf = f'authorization {{ users = [ {{ user: "ssmd", password: "{password}" }} ] }}'
    with Rig(tmp_path, events=30_000, rate=3000, book_markets=2, nats_config=conf) as rig:
        rig.start()
        rig.exchange.__class__ = RecordingExchange          # the running exchange starts recording
        rig.exchange.signatures = []
        over = {"transport": {"auth": {"user": "ssmd", "password_env": "SSMD_NATS_PASSWORD"}}}
        os.environ["SSMD_NATS_PASSWORD"] = password
        try:
            conn = rig.subprocess_connector(over, log_level="debug")
            wait_sync(lambda: (conn.metrics() or {}).get("ssmd_fast_acked_total", 0) > 2000, 30, "acked data")
            rig.ex("drop_all")                               # a reconnect signs again
            wait_sync(lambda: len(rig.exchange.signatures) >= 2 and
                      (conn.metrics() or {}).get("ssmd_fast_subscribed", 0) >= 1, 15, "the second handshake")
            time.sleep(1.0)
            gone = conn.stop(signal.SIGTERM, timeout=30)
            check = subprocess.run([sys.executable, "-m", "ssmd_fast", "check-config", "--env",
                                    str(rig.dir / "connector.yaml")], capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "KALSHI_API_KEY": "key-id",
                                        "KALSHI_PRIVATE_KEY_FILE": str(rig.key_file)})
        finally:
            os.environ.pop("SSMD_NATS_PASSWORD", None)
        log = conn.log_text()
        sigs = list(rig.exchange.signatures)
        secrets_ = [password, *sigs, *pem_body_lines(rig.private_pem)]
        # in-process reprs and dumps of everything that holds a secret
        os.environ["SSMD_NATS_PASSWORD"] = password
        try:
            cfg = loads_environment((rig.dir / "connector.yaml").read_text(), "connector.yaml")
            endpoint = Endpoint.from_config(cfg.transport)
        finally:
            os.environ.pop("SSMD_NATS_PASSWORD", None)
        creds = KalshiCredentials("key-id", rig.private_pem)
        dumps = [repr(cfg), str(cfg), json.dumps(cfg.to_dict()), repr(endpoint), repr(endpoint.credentials),
                 repr(creds), str(creds), check.stdout, check.stderr]
    assert gone.code == 0, log[-3000:]
    assert " DEBUG " in log and len(sigs) >= 2
    hits = [s[:12] for s in secrets_ if s in log]
    assert hits == [] and "BEGIN" not in log and "PRIVATE KEY" not in log, hits
    for text in dumps:
        assert not [s[:12] for s in secrets_ if s in text] and "BEGIN" not in text, text[:500]
    print(f"\nDRILL S2 secrets in the DEBUG log and dumps: {len(log):,} bytes of log, {len(sigs)} signatures "
          f"sent, {len(secrets_)} secret strings searched, 0 found")


def test_s4_credentials_in_urls_are_refused_without_echoing_them(tmp_path):
    for key, url in (("transport", "nats://ssmd:s3cr3t-pw@127.0.0.1:4222"),
                     ("transport", "tls://tok3n-value@127.0.0.1:4222"),
                     ("exchange", "wss://user:s3cr3t-pw@api.example.com/trade-api/ws/v2")):
        env = minimal_env(tmp_path)
        if key == "transport":
            env["transport"] = {"type": "nats", "url": url}
        else:
            env["exchange"]["url"] = url
        with pytest.raises(ConfigError) as err:
            loads_environment(yaml.safe_dump(env), "env.yaml")
        assert "not allowed" in str(err.value)
        assert "s3cr3t" not in str(err.value) and "tok3n" not in str(err.value)


# --------------------------------------------------------------------------- S3 wss:// verification


def self_signed(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "exchange.crt", tmp_path / "exchange.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return str(cert_path), str(key_path)


@pytest.mark.timeout(120)
def test_s3_wss_with_a_self_signed_certificate_is_refused_unless_configured(tmp_path):
    cert, key = self_signed(tmp_path)
    private, public = generate_key_pair()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    thread = LoopThread("tls-exchange")
    ex = Exchange(GeneratedFeed(20_000, markets=4, pregenerate=20_000), public, port=0, rate=2000)
    ex.ssl_context = ctx
    thread.run(ex.start())
    url = ex.url
    outcome = {}
    try:
        for case, extra in (("default trust", {}), ("ca_file", {"ca_file": cert}), ("tls_verify false",
                                                                                   {"tls_verify": False})):
            env = minimal_env(tmp_path / case.replace(" ", "_"), exchange={"url": url, **extra})
            cfg = loads_environment(yaml.safe_dump(env), "env.yaml")

            async def main(cfg=cfg):
                runner = Runner(cfg, KalshiCredentials("key-id", private))
                task = asyncio.get_running_loop().create_task(runner.run(install_signals=False))
                try:
                    await wait_for(lambda: runner.sessions and runner.sessions[0].core.subscribed, 4, "subscribed")
                    ok = True
                except AssertionError:
                    ok = False
                err = runner.sessions[0].last_error if runner.sessions else None
                frames = runner.totals()["frames"]
                runner.stop_requested.set()
                await asyncio.wait_for(task, 20)
                return ok, err, frames

            outcome[case] = uvloop.run(main())
    finally:
        thread.run(ex.close())
        thread.stop()
    print("\nDRILL S3 wss self-signed: " + " / ".join(
        f"{case}: {'connected' if ok else 'refused'} ({(err or '-')[:70]}, {frames} frames)"
        for case, (ok, err, frames) in outcome.items()))
    ok, err, frames = outcome["default trust"]
    assert not ok and frames == 0 and "certificate_verify_failed" in (err or "").lower(), err
    assert outcome["ca_file"][0] and outcome["ca_file"][2] > 0
    assert outcome["tls_verify false"][0] and outcome["tls_verify false"][2] > 0


# --------------------------------------------------------------------------- NATS auth kinds, whole connector


def _jwt(claims: dict, signer: NKey) -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    claims = {"jti": secrets.token_hex(16).upper(), "iat": int(time.time()), "iss": signer.public_key, **claims}
    head = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signer.sign(f'{head}.{body}'.encode()))}"


def _seed(role: int = PREFIX_USER) -> bytes:
    """A fresh NKey seed: an ed25519 key from cryptography, in the nkeys encoding."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return encode_seed(raw, role)


def auth_setup(kind: str, tmp_path) -> tuple[str, dict, dict, list[str]]:
    """(server config, transport.auth, environment, secret strings) for one auth kind."""
    if kind == "token":
        token = "tok-" + secrets.token_hex(12)
        return (f'authorization {{ token: "{token}" }}', {"token_env": "SSMD_NATS_TOKEN"},
                {"SSMD_NATS_TOKEN": token}, [token])
    if kind == "user":
        pw = "pw-" + secrets.token_hex(12)
        return (f'authorization {{ users = [ {{ user: "ssmd", password: "{pw}" }} ] }}',
                {"user": "ssmd", "password_env": "SSMD_NATS_PW"}, {"SSMD_NATS_PW": pw}, [pw])
    if kind == "nkey":
        seed = _seed()
        path = tmp_path / "user.nk"
        path.write_bytes(seed + b"\n")
        path.chmod(0o600)
        return (f'authorization {{ users = [ {{ nkey: "{NKey(seed).public_key}" }} ] }}',
                {"nkey_seed_file": str(path)}, {}, [seed.decode()])
    # creds: operator mode, an account with JetStream, a user JWT signed by the account
    op, acc, sys_acc = NKey(_seed(PREFIX_OPERATOR)), NKey(_seed(PREFIX_ACCOUNT)), NKey(_seed(PREFIX_ACCOUNT))
    user_seed = _seed(PREFIX_USER).decode()
    user = NKey(user_seed)
    op_jwt = _jwt({"sub": op.public_key, "name": "O", "nats": {"type": "operator", "version": 2}}, op)
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
              "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    acc_jwt = _jwt({"sub": acc.public_key, "name": "A", "nats": {"type": "account", "version": 2,
                                                                   "limits": limits}}, op)
    sys_jwt = _jwt({"sub": sys_acc.public_key, "name": "SYS", "nats": {"type": "account", "version": 2}}, op)
    user_jwt = _jwt({"sub": user.public_key, "name": "U", "nats": {
        "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}}, acc)
    creds = tmp_path / "user.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n")
    creds.chmod(0o600)
    conf = (f'operator: "{op_jwt}"\nsystem_account: "{sys_acc.public_key}"\nresolver: MEMORY\n'
            f'resolver_preload: {{ {acc.public_key}: "{acc_jwt}", {sys_acc.public_key}: "{sys_jwt}" }}')
    return conf, {"creds_file": str(creds)}, {}, [user_seed, user_jwt.rsplit(".", 1)[1]]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["token", "user", "nkey", "creds"])
def test_nats_auth_kinds_work_through_the_whole_connector_and_never_show(tmp_path, kind, caplog, monkeypatch):
    conf, auth, environ, secret_values = auth_setup(kind, tmp_path)
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    with Rig(tmp_path, events=20_000, rate=2000, book_markets=2, nats_config=conf) as rig:
        rig.start()

        async def main():
            caplog.set_level(logging.DEBUG)
            conn = await rig.connector({"transport": {"auth": auth}})
            pub = conn.publisher
            await wait_for(lambda: pub.stats()["acked"] > 1000, 20, "acks")
            report = await conn.stop()
            cfg = rig.config({"transport": {"auth": auth}})
            nc = await management_connection(Endpoint.from_config(cfg.transport), 5)   # the same credentials
            stored = (await nc.jetstream().stream_info(rig.stream)).state.messages
            await nc.close()
            return report, pub.stats(), stored

        report, st, stored = run(main())
        # a connection without the credentials is refused
        import nats.errors

        with pytest.raises((nats.errors.Error, OSError)):
            async def anonymous():
                import nats
                nc = await nats.connect(rig.nats.url, connect_timeout=2, allow_reconnect=False,
                                        max_reconnect_attempts=0)
                await nc.close()
            run(anonymous())
    text = "\n".join(r.getMessage() for r in caplog.records)
    print(f"\nDRILL NATS auth {kind}: acked {st['acked']}, stored {stored}, lost {report.lost}, "
          f"secret strings in {len(caplog.records)} DEBUG log records: "
          f"{sum(1 for s in secret_values if s in text)}")
    assert report.exit_code == 0 and st["acked"] == st["published"] and stored == st["acked"]
    assert not [s[:10] for s in secret_values if s in text]


def run(coro):
    return uvloop.run(coro)
