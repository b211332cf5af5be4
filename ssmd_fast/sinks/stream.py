"""The JetStream stream behind the publisher, managed with nats-py (the data path does not use nats-py).

``provision: create`` creates the stream, or updates it when its settings differ from the config;
``provision: verify`` only checks that it exists and stores ``{prefix}.>``, and says what differs.
With ``transport.batching`` the stream allows JetStream fast-ingest batches (``allow_batched``, asked only
of nats-server 2.14+: older servers reject unknown stream settings); the report says whether the stream
takes them (``batched``), and the publisher publishes with per-message acks when it does not.
The management connection reuses the publisher's credentials (``natsconn.Credentials``): nkey and
creds auth go through nats-py's signature callbacks, so no extra nkeys package is needed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field

import nats
from nats.js import api
from nats.js.errors import APIError, NotFoundError

from ssmd_fast.config import TransportConfig
from ssmd_fast.errors import PublishError
from ssmd_fast.sinks.natsconn import Endpoint

log = logging.getLogger(__name__)

MAX_FRAME = 1 << 20
MAX_MSG_SIZE = MAX_FRAME + 4096   # a 1 MiB Kalshi frame plus its headers
FAST_INGEST_VERSION = (2, 14, 0)  # the first nats-server with fast-ingest batches


class StreamMismatch(PublishError):
    """``provision: verify`` found no stream, or one that does not store the connector's subjects."""


@dataclass
class StreamReport:
    name: str
    action: str                       # created | updated | unchanged | verified
    differences: list[str] = field(default_factory=list)
    messages: int = 0
    batched: bool = False             # the stream allows fast-ingest batches


def version_tuple(text: str | None) -> tuple[int, int, int]:
    try:
        parts = str(text or "").split("-")[0].split(".")
        return int(parts[0]), int(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        return 0, 0, 0


def wanted_config(cfg: TransportConfig, batched: bool | None = None) -> api.StreamConfig:
    """The stream the connector wants; ``allow_batched`` when ``batched`` (default: ``cfg.batching``)."""
    return api.StreamConfig(
        name=cfg.stream,
        subjects=[f"{cfg.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=cfg.max_age,
        duplicate_window=cfg.duplicate_window,
        num_replicas=cfg.replicas,
        max_bytes=cfg.max_bytes,
        max_msg_size=MAX_MSG_SIZE,
        discard=api.DiscardPolicy.OLD,
        allow_batched=True if (cfg.batching if batched is None else batched) else None,
    )


def _covers(subjects: list[str], wanted: str) -> bool:
    """Does one of the stream's subject filters cover every subject under ``wanted`` (``x.y.>``)?"""
    want = wanted.split(".")
    for s in subjects or []:
        toks = s.split(".")
        ok = True
        for i, t in enumerate(toks):
            if t == ">":
                break
            if i >= len(want) or want[i] == ">" or (t != "*" and t != want[i]):
                ok = False
                break
        else:
            ok = len(toks) == len(want) and toks[-1] == ">"
        if ok:
            return True
    return False


def differences(have: api.StreamConfig, want: api.StreamConfig) -> list[str]:
    """Human-readable differences that matter to the connector (a second apart counts as equal)."""
    out = []
    if not _covers(have.subjects, want.subjects[0]):
        out.append(f"subjects {have.subjects} do not cover {want.subjects[0]}")
    for name in ("storage", "num_replicas", "max_bytes", "max_msg_size", "retention"):
        h, w = getattr(have, name), getattr(want, name)
        if h != w and not (name == "num_replicas" and (h or 1) == (w or 1)):
            out.append(f"{name} is {h}, wanted {w}")
    for name in ("max_age", "duplicate_window"):
        h, w = getattr(have, name) or 0.0, getattr(want, name) or 0.0
        if abs(h - w) > 1.0:
            out.append(f"{name} is {h:g} s, wanted {w:g} s")
    if want.allow_batched and not have.allow_batched:
        out.append("allow_batched is off (fast-ingest batches): messages are acked one by one")
    return out


async def _quiet_error(exc: Exception) -> None:
    # nats-py logs every failed attempt with a traceback by default; the caller reports the outcome
    log.debug("nats-py: %s: %s", type(exc).__name__, exc)


def nats_py_options(endpoint: Endpoint) -> dict:
    """nats-py ``connect()`` keywords for the management connection (no secret is logged)."""
    creds = endpoint.credentials
    opts: dict = {"servers": list(endpoint.urls), "name": endpoint.name + "-admin", "error_cb": _quiet_error}
    if creds.kind == "token":
        opts["token"] = creds.token.reveal()
    elif creds.kind == "user":
        opts["user"] = creds.user
        if creds.password is not None:
            opts["password"] = creds.password.reveal()
    elif creds.kind in ("nkey", "creds"):
        key = creds.nkey
        opts["signature_cb"] = lambda nonce: base64.b64encode(key.sign(nonce.encode()))
        if creds.kind == "creds":
            opts["user_jwt_cb"] = lambda: creds.jwt.reveal().encode()
    if endpoint.tls.ca_file or endpoint.tls.cert_file or any(u.startswith("tls://") for u in endpoint.urls):
        opts["tls"] = endpoint.ssl_context()
    return opts


async def management_connection(endpoint: Endpoint, timeout: float):
    """A nats-py client, or PublishError within ``timeout`` (nats-py alone would block for minutes)."""
    opts = nats_py_options(endpoint)
    nc = nats.NATS()
    if endpoint.credentials.kind == "nkey":
        # nats-py sends "nkey" only when it derived the key itself (it needs the nkeys package for that)
        nc._public_nkey = endpoint.credentials.nkey.public_key
    try:
        await asyncio.wait_for(nc.connect(**opts, connect_timeout=timeout, allow_reconnect=False,
                                          max_reconnect_attempts=1, reconnect_time_wait=0.1), timeout + 1.0)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        try:
            await nc.close()
        except Exception:  # half-open client: nothing else to release
            pass
        raise PublishError(f"cannot reach NATS for stream management: {type(exc).__name__}: {exc}") from None
    return nc


async def provision(cfg: TransportConfig, endpoint: Endpoint, *, timeout: float = 5.0,
                    only_if_missing: bool = False) -> StreamReport | None:
    """Create/update (``provision: create``) or check (``verify``) the stream; see the module docstring.

    ``only_if_missing`` (while running with ``create``, when messages find no stream): create the stream
    again if it is gone, else None: a stream that exists is left as it is, even if someone changed it (its
    messages are parked, then dead-lettered, as documented)."""
    nc = await management_connection(endpoint, timeout)
    try:
        fast = cfg.batching and version_tuple((nc._server_info or {}).get("version")) >= FAST_INGEST_VERSION
        return await asyncio.wait_for(_provision(nc.jetstream(), cfg, fast, only_if_missing), timeout)
    except TimeoutError:
        raise PublishError(f"stream {cfg.stream}: JetStream did not answer within {timeout} s") from None
    finally:
        await nc.close()


async def _provision(js, cfg: TransportConfig, fast: bool, only_if_missing: bool = False) -> StreamReport | None:
    want = wanted_config(cfg, fast)
    try:
        info = await js.stream_info(cfg.stream)
    except NotFoundError:
        info = None
    except APIError as exc:
        raise PublishError(f"stream {cfg.stream}: {exc.description or exc}") from None
    if only_if_missing and info is not None:
        return None
    if cfg.provision == "verify":
        if info is None:
            raise StreamMismatch(f"stream {cfg.stream} does not exist (transport.provision is verify: "
                                 f"create it with subjects {want.subjects[0]!r}, or set provision: create)")
        diffs = differences(info.config, want)
        if not _covers(info.config.subjects, want.subjects[0]):
            raise StreamMismatch(f"stream {cfg.stream} exists but differs: " + "; ".join(diffs))
        for d in diffs:
            log.warning("stream %s: %s (provision: verify leaves it as it is)", cfg.stream, d)
        return StreamReport(cfg.stream, "verified", diffs, info.state.messages, fast and bool(info.config.allow_batched))
    try:
        if info is None:
            info = await js.add_stream(want)
            log.info("stream %s created for %s", cfg.stream, want.subjects[0])
            return StreamReport(cfg.stream, "created", [], info.state.messages, fast and bool(info.config.allow_batched))
        diffs = differences(info.config, want)
        if not diffs:
            return StreamReport(cfg.stream, "unchanged", [], info.state.messages,
                                fast and bool(info.config.allow_batched))
        merged = info.config
        for name in ("subjects", "max_age", "duplicate_window", "num_replicas", "max_bytes", "max_msg_size"):
            setattr(merged, name, getattr(want, name))
        if want.allow_batched:
            merged.allow_batched = True
        if not _covers(merged.subjects, want.subjects[0]):
            merged.subjects = want.subjects
        info = await js.update_stream(merged)
        log.info("stream %s updated: %s", cfg.stream, "; ".join(diffs))
        return StreamReport(cfg.stream, "updated", diffs, info.state.messages, fast and bool(info.config.allow_batched))
    except APIError as exc:
        raise PublishError(f"stream {cfg.stream}: the server refused the configuration: "
                           f"{exc.description or exc} (err_code {exc.err_code})") from None
