"""Load-time rules beyond one value's type and range: NATS server URLs, sizes below which the publisher
can only thrash or lose data, NATS auth combinations, TLS and ``keys`` structure.

``config.py`` parses and types the file; the rules here see the parsed values and raise ``Problem``
with the key path to report (and, when the line should be another key's, the path whose line to show);
``config.py`` turns it into a ``ConfigError`` naming file, line and key. Files are not read here: a
configuration is checked on a machine that may not hold them (``credentials.check_run_files`` reads
them at start, and ``check-config --credentials``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ssmd_fast.logs import scrub

NATS_SCHEMES = ("nats", "tls")   # what the publisher's connection speaks (natsconn: plain, or TLS for tls://)
NATS_DEFAULT_PORT = 4222

# One full socket read of the feed (kalshi/session.READ_SIZE: 128 KiB of frames) becomes about 340 KB in
# the publish queue (raw and normalized, with their headers); a queue smaller than a few reads spills at
# every burst and replays at once: slow, but nothing is lost, and the drills use 64 KiB on purpose to
# reach the spill at once. Below that it is only noise: a 0 gave 1,534 "spilling to" warnings in 7 s.
MIN_MEMORY_QUEUE_BYTES = 64 << 10

_HOST_RE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
_AUTH_METHODS = ("token_env", "user", "nkey_seed_file", "creds_file")


class Problem(ValueError):
    """A rule broken at ``key``; ``at`` is the key path whose line to report (default: ``key``'s)."""

    def __init__(self, key: str, reason: str, at: str | None = None):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason, self.at = key, reason, key if at is None else at   # "": the document


def split_nats_url(url: str):
    """``urlsplit`` of a NATS server URL, the scheme optional (``host:4222`` is ``nats://host:4222``).
    The publisher's connection (``natsconn.Endpoint.address``) and the load-time check below both read
    URLs with it, so what passes the check is what is connected to."""
    return urlsplit(url if "://" in url else "nats://" + url)


def nats_address(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS wanted) of a NATS server URL, the defaults filled in."""
    parts = split_nats_url(url)
    return parts.hostname or "127.0.0.1", parts.port or NATS_DEFAULT_PORT, parts.scheme == "tls"


def nats_url_problem(url: str, credentials_allowed: bool = False) -> str | None:
    """Why ``url`` (one ``transport.url`` entry, or ``tail --nats``, which has no other way to give a
    user and password: ``credentials_allowed``) cannot be connected to, or None.

    The URL is read by the publisher's own parser (``split_nats_url``, ``nats_address``), so what passes
    here is what it connects to; on top of it: one server per entry (a list takes several), a host name or IP
    address (``not a url`` parsed as a host with spaces), and a port in 1..65535 (0 was taken as 4222)."""
    try:
        parts = split_nats_url(url)
    except ValueError as exc:   # "Invalid IPv6 URL"
        return f"not a NATS server URL ({exc}): {scrub(url)!r}"
    if (parts.username or parts.password) and not credentials_allowed:   # before any message showing the URL
        return ("credentials in the URL are not allowed (they would be logged); "
                "use transport.auth (token_env, user + password_env, nkey_seed_file, creds_file)")
    if "," in url:
        return f"one server per URL; list several as url: [nats://a:4222, nats://b:4222]; got {scrub(url)!r}"
    shown = scrub(url)
    if parts.scheme not in NATS_SCHEMES or not parts.hostname:
        return f"expected a nats:// or tls:// URL with a host, got {shown!r}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"a NATS server URL has no path or query (nats://HOST:PORT); got {shown!r}"
    try:
        port = parts.port
    except ValueError:   # "Port out of range 0-65535", "Port could not be cast to integer value"
        port = 0
    if port == 0:        # nats_address would take 0 as 4222
        return f"the port must be a number in 1..65535; got {shown!r}"
    host = parts.hostname       # what nats_address connects to (the user and password are not part of it)
    if not _is_host(host, bracketed="[" in parts.netloc):
        return f"{host!r} is not a host name or IP address: {shown!r}"
    return None


def ws_url_problem(url: str) -> str | None:
    """Why ``url`` (``exchange.url``) cannot be connected to, or None: a ws:// or wss:// URL with a host
    name or IP address, a port in 1..65535 when one is given (the session took `:99999` or `:abc` and
    retried the connect forever), no credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:      # "Invalid IPv6 URL"
        return f"expected a ws:// or wss:// URL, got {url!r}"
    if parts.username or parts.password:    # before any message showing the URL
        return "credentials in the URL are not allowed (they would be logged)"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return f"expected a ws:// or wss:// URL, got {url!r}"
    try:
        port = parts.port
    except ValueError:      # "Port out of range 0-65535", "Port could not be cast to integer value"
        port = 0
    if port == 0:
        return f"the port must be a number in 1..65535; got {url!r}"
    if not _is_host(parts.hostname, bracketed="[" in parts.netloc):
        return f"{parts.hostname!r} is not a host name or IP address: {url!r}"
    return None


def _is_host(host: str, bracketed: bool) -> bool:
    if bracketed:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return False
        return True
    return bool(_HOST_RE.match(host)) and not host.startswith("-")


def check_environment(cfg) -> None:
    """The rules over the parsed ``EnvironmentConfig``; ``Problem`` for the first one broken."""
    _check_exchange(cfg.exchange)
    tr = cfg.transport
    if tr.type == "nats":
        _check_nats(tr)
    elif cfg.storage is None or cfg.storage.type == "none":
        raise Problem("transport", "nothing to write to: set transport.type: nats or a storage section", at="")
    _check_queue_and_spill(tr)
    _check_auth(cfg.transport.auth)
    tls = cfg.transport.tls
    if tls.key_file and not tls.cert_file:
        raise Problem("transport.tls.key_file", "needs transport.tls.cert_file (the key is the certificate's)")
    _check_keys(cfg.keys)


def _check_exchange(ex) -> None:
    if ex.url and ex.use_demo:
        raise Problem("exchange.use_demo", "give either exchange.url or exchange.use_demo, not both")
    if ex.backoff_max < ex.backoff_initial:
        raise Problem("exchange.backoff_max", "must not be smaller than exchange.backoff_initial")
    if "orderbook_delta" in ex.channels and not ex.orderbook.markets:
        raise Problem("exchange.channels", "orderbook_delta needs a market list in exchange.orderbook.markets")
    if not ex.channels and not ex.orderbook.markets:  # a book list implies orderbook_delta (config._finish)
        raise Problem("exchange.channels", "no channel to subscribe")


def _check_nats(tr) -> None:
    if not tr.url:
        raise Problem("transport.url", "required when transport.type is nats", at="transport")
    if not tr.publish:
        raise Problem("transport.publish", "must name raw, normalized or both")
    if tr.duplicate_window > tr.max_age:
        raise Problem("transport.duplicate_window", "must not be longer than transport.max_age")
    if tr.retry_horizon >= tr.duplicate_window:
        raise Problem("transport.retry_horizon",
                      "must be shorter than transport.duplicate_window (resends past it are not deduplicated)")


def _check_queue_and_spill(tr) -> None:
    if tr.memory_queue_bytes < MIN_MEMORY_QUEUE_BYTES:
        raise Problem("transport.memory_queue_bytes",
                      f"must be at least {MIN_MEMORY_QUEUE_BYTES} (64KiB): a queue that cannot hold a few frames "
                      f"sends every burst through the spill; got {tr.memory_queue_bytes}")
    # When NATS goes away everything unacked moves from the memory queue to the spill at once: a spill
    # that cannot take it stops the feed at the first outage (a 0 lost everything).
    if tr.spill.max_bytes < tr.memory_queue_bytes:
        raise Problem("transport.spill.max_bytes",
                      f"must be at least transport.memory_queue_bytes ({tr.memory_queue_bytes}): an outage moves "
                      f"the whole memory queue to the spill at once; got {tr.spill.max_bytes}")


def _check_auth(auth) -> None:
    if auth.password_env and not auth.user:
        raise Problem("transport.auth.user", "password_env needs user", at="transport.auth.password_env")
    given = [k for k in _AUTH_METHODS if getattr(auth, k)]
    if len(given) > 1:
        names = " and ".join("user + password_env" if k == "user" else k for k in given)
        raise Problem("transport.auth", f"give one NATS auth method, not {names}", at=f"transport.auth.{given[1]}")
    if auth.user and not auth.password_env:
        # the connection would go out with a user name and no password: the server takes it as no auth
        raise Problem("transport.auth.password_env",
                      "user needs password_env (the environment variable holding the password)",
                      at="transport.auth.user")


def _check_keys(keys) -> None:
    """A ``keys`` list names one key id (api_key) and one private key (api_secret)."""
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key.name in seen:
            raise Problem(f"keys[{i}].name", f"{key.name} is listed twice")
        seen.add(key.name)
        if key.source == "file" and not key.path:
            raise Problem(f"keys[{i}].path", "required when source is file", at=f"keys[{i}]")
    if not keys:
        return  # the KALSHI_* variables are read instead
    first: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key.type in first:
            raise Problem(f"keys[{i}].type", f"a second key of type {key.type} ({key.name}, after {first[key.type]}); "
                                             "list one", at=f"keys[{i}]")
        first[key.type] = key.name
    for kind in ("api_key", "api_secret"):
        if kind not in first:
            raise Problem("keys", f"no key of type {kind} is listed")
