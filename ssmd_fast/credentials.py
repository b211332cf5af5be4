"""Kalshi API credentials: from the ``keys`` an environment file names, or from ``KALSHI_*`` variables;
and ``check_run_files``: every other file (and secret variable) ``run`` reads, read at start.

The private key is held as a ``config.Secret`` from the moment it is read; a key file that group or
others may read is refused (``chmod 600``), and every failure is a ``ConfigError`` naming the variable,
the file or the ``keys.{name}`` entry.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ssmd_fast.config import EnvironmentConfig, Secret
from ssmd_fast.errors import ConfigError


@dataclass(frozen=True)
class KalshiConfig:
    """Kalshi API credentials and environment choice. The private key never shows in ``repr``."""

    api_key: str
    private_key: Secret = field(repr=False)
    use_demo: bool = False

    def __repr__(self) -> str:
        return f"KalshiConfig(api_key={self.api_key!r}, private_key={self.private_key!r}, use_demo={self.use_demo})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KalshiConfig:
        """Read ``KALSHI_API_KEY``, ``KALSHI_PRIVATE_KEY`` (PEM) or ``KALSHI_PRIVATE_KEY_FILE``,
        and ``KALSHI_USE_DEMO`` (``true``/``false``)."""
        env = os.environ if environ is None else environ
        api_key = env.get("KALSHI_API_KEY", "").strip()
        if not api_key:
            raise ConfigError("KALSHI_API_KEY is not set", file="environment", key="KALSHI_API_KEY")
        pem = _private_key_from_env(env, "KALSHI_PRIVATE_KEY")
        return cls(api_key=api_key, private_key=pem, use_demo=demo_from_env(env))


def demo_from_env(env: Mapping[str, str]) -> bool:
    raw = env.get("KALSHI_USE_DEMO", "false").strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"must be true or false, got {raw!r}", file="environment", key="KALSHI_USE_DEMO")
    return raw == "true"


def with_exchange_choice(cfg: EnvironmentConfig, environ: Mapping[str, str] | None = None) -> EnvironmentConfig:
    """``cfg`` with ``KALSHI_USE_DEMO`` applied to ``exchange.use_demo``.

    The variable is read, as the other ``KALSHI_*`` ones, only without a ``keys`` section. It is applied
    to the configuration, once, so that ``exchange.resolved_url`` is the one place the exchange's URL is
    decided: the sessions, ``check-config`` and the logs all read it (the variable used to ride on the
    credentials, and the sessions' URL, built from the configuration alone, went to production)."""
    env = os.environ if environ is None else environ
    if cfg.keys or cfg.exchange.use_demo or not demo_from_env(env):
        return cfg
    if cfg.exchange.url:
        raise ConfigError(f"KALSHI_USE_DEMO=true and exchange.url ({cfg.exchange.url}) both choose the exchange; "
                          "unset one", file="environment", key="KALSHI_USE_DEMO")
    return dataclasses.replace(cfg, exchange=dataclasses.replace(cfg.exchange, use_demo=True))


def read_private_key_file(path: str | os.PathLike[str]) -> Secret:
    """Read a PEM private key file, refusing one that group or others may read."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read the private key file: {exc.strerror}", file=str(p))
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("the private key path is not a regular file", file=str(p))
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the private key file is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}", file=str(p))
    try:
        return Secret(p.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        raise ConfigError("cannot read the private key file as PEM text", file=str(p))


def _private_key_from_env(env: Mapping[str, str], name: str) -> Secret:
    text, file_path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if text.strip() and file_path.strip():
        raise ConfigError(f"set either {name} or {name}_FILE, not both", file="environment", key=name)
    if file_path.strip():
        return read_private_key_file(file_path.strip())
    if text.strip():
        # Containers often pass PEM with literal "\n" sequences: accept them.
        return Secret(text.replace("\\n", "\n"))
    raise ConfigError(f"neither {name} (PEM text) nor {name}_FILE (a path) is set", file="environment", key=name)


def resolve_credentials(cfg: EnvironmentConfig, environ: Mapping[str, str] | None = None) -> KalshiConfig:
    """Credentials from the ``keys`` named in the environment file.

    ``api_key`` keys name the variable holding the key id; ``api_secret`` keys name the variable
    holding the PEM text, or ``{NAME}_FILE`` holding a path (``source: file`` reads ``path``).
    Without a ``keys`` section, ``KalshiConfig.from_env`` is used.
    """
    env = os.environ if environ is None else environ
    use_demo = cfg.exchange.use_demo
    if not cfg.keys:
        creds = KalshiConfig.from_env(env)
        return dataclasses.replace(creds, use_demo=use_demo or creds.use_demo)
    api_key: str | None = None
    secret: Secret | None = None
    for key in cfg.keys:
        if key.type == "api_key":
            if key.source == "file":
                try:
                    api_key = Path(key.path).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the API key id from {key.path}: {getattr(exc, 'strerror', exc)}",
                                      file=os.path.basename(cfg.source) or None, key=f"keys.{key.name}")
            else:
                api_key = env.get(key.name, "").strip()
            if not api_key:
                raise ConfigError(f"environment variable {key.name} (the API key id) is not set",
                                  file=os.path.basename(cfg.source) or None, key=f"keys.{key.name}")
        else:
            secret = read_private_key_file(key.path) if key.source == "file" else _private_key_from_env(env, key.name)
    if api_key is None or secret is None:
        missing = "api_key" if api_key is None else "api_secret"
        raise ConfigError(f"no key of type {missing} is listed", file=os.path.basename(cfg.source) or None,
                          key="keys")
    return KalshiConfig(api_key=api_key, private_key=secret, use_demo=use_demo)


def check_run_files(cfg: EnvironmentConfig, environ: Mapping[str, str] | None = None) -> None:
    """Read, as ``run`` reads them, the files and variables it needs besides the Kalshi keys: NATS auth
    (``transport.auth``: the publisher's own reader), the NATS TLS files and ``exchange.ca_file``
    (loaded into an ``ssl.SSLContext``). ``ConfigError`` naming the key of the first that cannot be used.

    The publisher reads the TLS files when it connects, the sessions the CA file when they start: a
    missing one ended the publisher task with a FileNotFoundError naming no key, or a traceback."""
    file = os.path.basename(cfg.source) or None
    tr = cfg.transport
    if tr.type == "nats":
        from ssmd_fast.sinks.natsconn import Credentials

        try:
            Credentials.from_config(tr.auth, environ)
        except ConfigError as exc:
            if exc.key:       # a variable: the key is named already
                raise ConfigError(exc.reason, file=file, key=exc.key) from None
            method = "nkey_seed_file" if tr.auth.nkey_seed_file else "creds_file"
            raise ConfigError(str(exc), file=file, key=f"transport.auth.{method}") from None
        tls = tr.tls
        if tls.ca_file or tls.cert_file or any(u.startswith("tls://") for u in tr.url):
            _tls_context(file, "transport.tls", tls.ca_file, tls.cert_file, tls.key_file)
    ex = cfg.exchange
    if ex.ca_file and ex.resolved_url.startswith("wss://"):   # a ws:// session reads no CA file
        _tls_context(file, "exchange", ex.ca_file, None, None)


def _tls_context(file: str | None, section: str, ca_file: str | None, cert_file: str | None,
                 key_file: str | None) -> ssl.SSLContext:
    """The context the connection builds (``natsconn.Endpoint.ssl_context``, ``session.make_ssl_context``),
    each failure named by its key."""
    for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path:
            _readable_file(file, f"{section}.{name}", path)
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(f"{ca_file}: no CA certificate loads from it ({exc.reason or exc})",
                          file=file, key=f"{section}.ca_file") from None
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
        except _Encrypted:
            raise ConfigError(f"{key_file or cert_file}: the private key is encrypted, and a service has no one "
                              "to type the passphrase: store it unencrypted (chmod 600)", file=file,
                              key=f"{section}.{'key_file' if key_file else 'cert_file'}") from None
        except ssl.SSLError as exc:
            raise _cert_error(file, section, cert_file, key_file, exc) from None
    return ctx


def _readable_file(file: str | None, key: str, path: str) -> None:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file", file=file, key=key)
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", file=file, key=key) from None


class _Encrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    # called for an encrypted key only; without a callback OpenSSL would ask for it on the terminal
    raise _Encrypted


def _cert_error(file: str | None, section: str, cert_file: str, key_file: str | None,
                exc: ssl.SSLError) -> ConfigError:
    """Which file ``load_cert_chain`` failed on: OpenSSL says only "PEM lib" for most of them."""
    reason = exc.reason or str(exc)
    try:  # a file that holds a certificate loads as trust
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except ssl.SSLError:
        return ConfigError(f"{cert_file}: no PEM certificate in it ({reason})", file=file, key=f"{section}.cert_file")
    if key_file is None:
        return ConfigError(f"{cert_file}: holds a certificate but no matching private key ({reason}); "
                           f"give it in {section}.key_file", file=file, key=f"{section}.cert_file")
    if "KEY_VALUES_MISMATCH" in str(exc):
        return ConfigError(f"{key_file}: not the private key of {section}.cert_file {cert_file}",
                           file=file, key=f"{section}.key_file")
    return ConfigError(f"{key_file}: no PEM private key in it ({reason})", file=file, key=f"{section}.key_file")
