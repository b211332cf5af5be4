"""The files and variables run reads besides the Kalshi keys (credentials.check_run_files), and check-config:
a missing NATS creds file, TLS file or exchange CA file is reported naming its key, by check-config
--credentials and before anything starts, not as a FileNotFoundError of the publisher task."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ssmd_fast.config import load_environment
from ssmd_fast.credentials import check_run_files, resolve_credentials
from ssmd_fast.errors import ConfigError
from ssmd_fast.sinks.natsconn import Endpoint
from ssmd_fast.sinks.nkeys import encode_seed

NATS = "name: a\nfeed: kalshi\ntransport:\n  type: nats\n  url: {url}\n{extra}"


def _pem_key(key, password: bytes | None = None) -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A CA, a client certificate and its key, another key, an encrypted key: paths by name."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM), "cert": cert.public_bytes(serialization.Encoding.PEM),
             "key": _pem_key(key), "other_key": _pem_key(other), "encrypted_key": _pem_key(key, b"pw"),
             "text": b"not PEM\n"}
    files["cert_and_key"] = files["cert"] + files["key"]
    out = {}
    for name, data in files.items():
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(data)
        out[name].chmod(0o600)
    out["dir"] = d
    return {k: str(v) for k, v in out.items()}


def _cfg(tmp_path, url="nats://h:4222", extra=""):
    path = tmp_path / "c.yaml"
    path.write_text(NATS.format(url=url, extra=extra))
    return load_environment(path)


def _error(cfg, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        check_run_files(cfg, environ or {})
    return str(info.value)


# --------------------------------------------------------------------------- NATS auth files and variables


def test_a_missing_creds_file_is_named_by_its_key(tmp_path):
    msg = _error(_cfg(tmp_path, extra="  auth: {creds_file: /nonexistent/nats.creds}\n"))
    assert msg == ("c.yaml: transport.auth.creds_file: /nonexistent/nats.creds: cannot read the creds file: "
                   "No such file or directory")


def test_a_bad_nkey_seed_file_is_named_by_its_key(tmp_path):
    seed = tmp_path / "seed"
    seed.write_text("SUAnotaseed\n")
    seed.chmod(0o600)
    msg = _error(_cfg(tmp_path, extra=f"  auth: {{nkey_seed_file: {seed}}}\n"))
    assert msg.startswith(f"c.yaml: transport.auth.nkey_seed_file: {seed}: bad nkey seed"), msg
    seed.write_bytes(encode_seed(bytes(32)) + b"\n")
    check_run_files(_cfg(tmp_path, extra=f"  auth: {{nkey_seed_file: {seed}}}\n"), {})


def test_an_unset_auth_variable_is_named_by_its_key(tmp_path):
    cfg = _cfg(tmp_path, extra="  auth: {user: bob, password_env: NATS_PW}\n")
    assert _error(cfg).startswith("c.yaml: transport.auth.password_env: environment variable NATS_PW")
    check_run_files(cfg, {"NATS_PW": "x"})


# --------------------------------------------------------------------------- TLS files


@pytest.mark.parametrize("tls, key, reason", [
    ("ca_file: /nonexistent/ca.pem", "ca_file", "cannot read /nonexistent/ca.pem: No such file or directory"),
    ("ca_file: {dir}", "ca_file", "{dir} is not a regular file"),
    ("ca_file: {text}", "ca_file", "{text}: no CA certificate loads from it"),
    ("cert_file: /nonexistent/c.pem", "cert_file", "cannot read /nonexistent/c.pem"),
    ("{{cert_file: {cert}, key_file: /nonexistent/k.pem}}", "key_file", "cannot read /nonexistent/k.pem"),
    ("cert_file: {cert}", "cert_file", "{cert}: holds a certificate but no matching private key"),
    ("cert_file: {key}", "cert_file", "{key}: no PEM certificate in it"),
    ("{{cert_file: {text}, key_file: {key}}}", "cert_file", "{text}: no PEM certificate in it"),
    ("{{cert_file: {cert}, key_file: {other_key}}}", "key_file", "{other_key}: not the private key of"),
    ("{{cert_file: {cert}, key_file: {text}}}", "key_file", "{text}: no PEM private key in it"),
    ("{{cert_file: {cert}, key_file: {encrypted_key}}}", "key_file", "{encrypted_key}: the private key is encrypted"),
])
def test_a_tls_file_that_cannot_be_used_is_named_by_its_key(tmp_path, pki, tls, key, reason):
    tls, reason = tls.format(**pki), reason.format(**pki)
    msg = _error(_cfg(tmp_path, "tls://h:4222", f"  tls: {tls if tls.startswith('{') else '{' + tls + '}'}\n"))
    assert msg.startswith(f"c.yaml: transport.tls.{key}: {reason}"), msg


@pytest.mark.parametrize("tls", ["{{ca_file: {ca}}}", "{{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}",
                                 "{{cert_file: {cert_and_key}}}"])
def test_good_tls_files_pass_and_the_publisher_builds_the_same_context(tmp_path, pki, tls):
    cfg = _cfg(tmp_path, "tls://h:4222", f"  tls: {tls.format(**pki)}\n")
    check_run_files(cfg, {})
    assert isinstance(Endpoint.from_config(cfg.transport, environ={}).ssl_context(), ssl.SSLContext)


def test_tls_files_are_not_read_when_nats_is_not_used(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nfeed: kalshi\ntransport: {type: none, tls: {ca_file: /nonexistent}}\n"
                    f"storage: {{type: file, path: {tmp_path}}}\n")
    check_run_files(load_environment(path), {})


# --------------------------------------------------------------------------- exchange.ca_file


def test_a_missing_exchange_ca_file_is_named_by_its_key(tmp_path, pki):
    cfg = _cfg(tmp_path, extra="exchange: {ca_file: /nonexistent/ca.pem}\n")
    assert _error(cfg) == "c.yaml: exchange.ca_file: cannot read /nonexistent/ca.pem: No such file or directory"
    check_run_files(_cfg(tmp_path, extra=f"exchange: {{ca_file: {pki['ca']}}}\n"), {})
    # a ws:// session reads no CA file (as the session does: make_ssl_context)
    check_run_files(_cfg(tmp_path, extra="exchange: {url: 'ws://127.0.0.1:1/x', ca_file: /nonexistent}\n"), {})


# --------------------------------------------------------------------------- keys


def test_an_api_key_file_that_cannot_be_read_is_a_config_error(tmp_path, key_pair):
    path = tmp_path / "c.yaml"
    path.write_text(NATS.format(url="nats://h:4222", extra="keys:\n  - {name: KID, type: api_key, source: file, "
                                "path: /nonexistent/kid}\n  - {name: KALSHI_PRIVATE_KEY, type: api_secret}\n"))
    with pytest.raises(ConfigError, match="c.yaml: keys.KID: cannot read the API key id from /nonexistent/kid"):
        resolve_credentials(load_environment(path), {"KALSHI_PRIVATE_KEY": key_pair[0].decode()})


# --------------------------------------------------------------------------- check-config


def _check_config(tmp_path, text: str, *flags: str) -> int:
    from ssmd_fast.cli import main

    (tmp_path / "c.yaml").write_text(text)
    return main(["check-config", "--env", str(tmp_path / "c.yaml"), *flags])


@pytest.fixture
def kalshi_env(tmp_path, key_pair, monkeypatch):
    key = tmp_path / "k.pem"
    key.write_bytes(key_pair[0])
    key.chmod(0o600)
    monkeypatch.setenv("KALSHI_API_KEY", "k")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_FILE", str(key))
    monkeypatch.delenv("KALSHI_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("KALSHI_USE_DEMO", raising=False)


def test_check_config_credentials_reads_the_creds_file_and_prints_nothing_on_failure(tmp_path, kalshi_env, capsys):
    text = NATS.format(url="nats://h:4222", extra="  auth: {creds_file: /nonexistent/nats.creds}\n")
    assert _check_config(tmp_path, text) == 0                  # without --credentials: files are not read
    capsys.readouterr()
    assert _check_config(tmp_path, text, "--credentials") == 1
    out, err = capsys.readouterr()
    assert out == "" and "transport.auth.creds_file: /nonexistent/nats.creds: cannot read" in err and "OK" not in err


def test_check_config_credentials_reads_the_tls_files(tmp_path, kalshi_env, capsys):
    text = NATS.format(url="tls://h:4222", extra="  tls: {ca_file: /nonexistent/ca.pem}\n")
    assert _check_config(tmp_path, text, "--credentials") == 1
    out, err = capsys.readouterr()
    assert out == "" and "c.yaml: transport.tls.ca_file: cannot read /nonexistent/ca.pem" in err


def test_check_config_prints_the_resolved_spill_path(tmp_path, capsys):
    text = NATS.format(url="nats://h:4222", extra=f"storage: {{type: file, path: {tmp_path}/store}}\n")
    assert _check_config(tmp_path, text) == 0
    out = capsys.readouterr().out
    assert f"path: {tmp_path}/store/spill\n" in out and "path: null" not in out


def test_check_config_without_credentials_reports_a_keys_list_without_api_key(tmp_path, capsys):
    text = NATS.format(url="nats://h:4222", extra="keys:\n  - {name: KALSHI_PRIVATE_KEY, type: api_secret}\n")
    assert _check_config(tmp_path, text) == 1
    out, err = capsys.readouterr()
    assert out == "" and "c.yaml:7: keys: no key of type api_key is listed" in err
