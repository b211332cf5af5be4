"""Environment files (YAML) and environment variables -> frozen dataclasses.

Strict on purpose: an unknown key, a wrong type or a bad value fails at load time with a
``ConfigError`` naming the file, the line and the key path (``kalshi-dev.yaml:7: transport.urll:
unknown key``). A typo never silently becomes a default. Validation walks PyYAML's node tree
(not the constructed dict) because only the nodes still know their line numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssmd_fast import config_checks
from ssmd_fast.errors import ConfigError

PRODUCTION_WS_URL = "wss://api.elections.kalshi.com/trade-api/ws/v2"
DEMO_WS_URL = "wss://demo-api.kalshi.co/trade-api/ws/v2"
WS_PATH = "/trade-api/ws/v2"

PUBLIC_CHANNELS = ("ticker", "trade", "market_lifecycle_v2", "orderbook_delta", "multivariate_market_lifecycle")
DEFAULT_CHANNELS = ("ticker", "trade", "market_lifecycle_v2")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUBJECT_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9,
               "GiB": 2**30, "TB": 10**12, "TiB": 2**40}
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Secret:
    """A secret value that never shows itself in ``repr``, ``str``, logs or dumps."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**redacted**')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # pickling would write the value out: refuse
        raise TypeError("Secret values cannot be pickled")


def is_valid_ticker(value: str) -> bool:
    """The schema's ticker rule: 1..1024 bytes of printable ASCII other than ``*`` and ``>``."""
    if not 1 <= len(value) <= 1024:
        return False
    return all(0x21 <= ord(c) <= 0x7E and c not in "*>" for c in value)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class OrderbookConfig:
    markets: tuple[str, ...] = ()
    max_markets_per_subscription: int = 200


@dataclass(frozen=True)
class ExchangeConfig:
    url: str | None = None
    use_demo: bool = False
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    markets: tuple[str, ...] = ()  # ticker/trade market filter; empty = all markets
    orderbook: OrderbookConfig = field(default_factory=OrderbookConfig)
    stale_after: float = 15.0
    ping_interval: float = 5.0
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    handshake_timeout: float = 10.0
    tls_verify: bool = True
    ca_file: str | None = None

    @property
    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return DEMO_WS_URL if self.use_demo else PRODUCTION_WS_URL


@dataclass(frozen=True)
class NatsAuthConfig:
    token_env: str | None = None
    user: str | None = None
    password_env: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None


@dataclass(frozen=True)
class NatsTlsConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class SpillConfig:
    path: str | None = None  # default: {storage.path or ./data/{name}}/spill
    max_bytes: int = 20 * 2**30   # at least transport.memory_queue_bytes (config_checks)
    # records between fsyncs; 0: by fsync_interval alone (both 0: only on rotation and close, which a
    # kill -9 survives, the records being handed to the OS at once, and a power failure does not)
    fsync_every: int = 1000
    fsync_interval: float = 0.05


@dataclass(frozen=True)
class TransportConfig:
    type: str = "none"
    url: tuple[str, ...] = ()
    stream: str = ""
    subject_prefix: str = ""
    publish: tuple[str, ...] = ("raw", "normalized")
    provision: str = "create"
    max_age: float = 7 * 86400.0
    duplicate_window: float = 120.0
    replicas: int = 1
    max_bytes: int = -1
    window: int = 16384      # unacked messages at most (FlightWindow: grows to it from window_min)
    window_min: int = 4096
    ack_timeout: float = 2.0
    retry_horizon: float = 60.0
    memory_queue_bytes: int = 64 * 2**20
    connect_timeout: float = 5.0
    batching: bool = True  # JetStream fast-ingest batches when the server and stream allow them
    auth: NatsAuthConfig = field(default_factory=NatsAuthConfig)
    tls: NatsTlsConfig = field(default_factory=NatsTlsConfig)
    spill: SpillConfig = field(default_factory=SpillConfig)


@dataclass(frozen=True)
class StorageConfig:
    type: str = "file"
    path: str = ""      # default (at load): ./data/{name}, so two environments never share a directory and its lock
    format: str = "raw"
    rotate: str = "hourly"


@dataclass(frozen=True)
class KeyConfig:
    name: str
    type: str
    source: str = "env"
    path: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:9464"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RunnerConfig:
    stats_interval: float = 10.0
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    feed: str
    status: str = "active"
    transport: TransportConfig = field(default_factory=TransportConfig)
    storage: StorageConfig | None = None
    keys: tuple[KeyConfig, ...] = ()
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    source: str = field(default="", compare=False)

    @property
    def resolved_spill_path(self) -> str:
        """The spill directory: ``transport.spill.path``, else ``{storage.path}/spill`` with a file
        storage, else ``data/{name}/spill``."""
        if self.transport.spill.path:
            return self.transport.spill.path
        if self.storage is not None and self.storage.type == "file":
            return os.path.join(self.storage.path, "spill")
        return os.path.join("data", self.name, "spill")

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data (no secret values are ever stored here)."""
        return _plain(self)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "source"}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Secret):
        return repr(obj)
    return obj


# --------------------------------------------------------------------------- node walking


class _Ctx:
    def __init__(self, file: str):
        self.file = file
        self.constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node | None, path: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, file=self.file, line=line, key=path or None)

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise self.error(node, path, f"expected a single value, got {kind}")
        return self.constructor.construct_object(node, deep=True)


Parser = Callable[[_Ctx, yaml.Node, str], Any]


def _str(choices: tuple[str, ...] | None = None, pattern: re.Pattern | None = None,
         what: str = "") -> Parser:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> str:
        value = ctx.scalar(node, path)
        if not isinstance(value, str):
            raise ctx.error(node, path, f"expected a string, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise ctx.error(node, path, f"must be one of {', '.join(choices)}; got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise ctx.error(node, path, f"{what or 'bad value'}: {value!r}")
        return value
    return parse


def _opt_str(ctx: _Ctx, node: yaml.Node, path: str) -> str | None:
    if isinstance(node, yaml.ScalarNode) and ctx.scalar(node, path) is None:
        return None
    return _str()(ctx, node, path)


def _bool(ctx: _Ctx, node: yaml.Node, path: str) -> bool:
    value = ctx.scalar(node, path)
    if not isinstance(value, bool):
        raise ctx.error(node, path, f"expected true or false, got {value!r}")
    return value


def _int(lo: int, hi: int) -> Parser:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> int:
        value = ctx.scalar(node, path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(node, path, f"expected an integer, got {value!r}")
        if not lo <= value <= hi:
            raise ctx.error(node, path, f"must lie in {lo}..{hi}; got {value}")
        return value
    return parse


def _duration(lo: float = 0.0, hi: float = 10 * 365 * 86400.0) -> Parser:
    """Seconds as a number, or a string with a unit: ``500ms``, ``15s``, ``2m``, ``1h``, ``7d``."""
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> float:
        value = ctx.scalar(node, path)
        if isinstance(value, bool):
            raise ctx.error(node, path, f"expected a duration (15s, 2m, 7d), got {value!r}")
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            raise ctx.error(node, path, f"expected a duration (15s, 2m, 7d), got {value!r}")
        if not lo <= seconds <= hi:
            raise ctx.error(node, path, f"must lie in {lo:g}..{hi:g} seconds; got {seconds:g}")
        return seconds
    return parse


def _size(lo: int = -1) -> Parser:
    """Bytes as an integer, or a string with a unit: ``64MiB``, ``20GiB``."""
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> int:
        value = ctx.scalar(node, path)
        if isinstance(value, bool):
            raise ctx.error(node, path, f"expected a size (64MiB, 20GiB), got {value!r}")
        if isinstance(value, int):
            size = value
        elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
            size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
        else:
            raise ctx.error(node, path, f"expected a size (64MiB, 20GiB), got {value!r}")
        if size < lo:
            raise ctx.error(node, path, f"must be at least {lo}; got {size}")
        return size
    return parse


def _list(item: Parser, *, allow_scalar: bool = False, unique: bool = True) -> Parser:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> tuple:
        if allow_scalar and isinstance(node, yaml.ScalarNode):
            return (item(ctx, node, path),)
        if not isinstance(node, yaml.SequenceNode):
            raise ctx.error(node, path, "expected a list")
        out = []
        for i, child in enumerate(node.value):
            value = item(ctx, child, f"{path}[{i}]")
            if unique and value in out:
                raise ctx.error(child, f"{path}[{i}]", f"{value!r} is listed twice")
            out.append(value)
        return tuple(out)
    return parse


def _ticker(ctx: _Ctx, node: yaml.Node, path: str) -> str:
    value = _str()(ctx, node, path)
    if not is_valid_ticker(value):
        raise ctx.error(node, path, f"not a valid market ticker (1..1024 printable ASCII, no * or >): {value!r}")
    return value


def _host_port(ctx: _Ctx, node: yaml.Node, path: str) -> str:
    value = _str()(ctx, node, path)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ctx.error(node, path, f"expected host:port, got {value!r}")
    return value


def _ws_url(ctx: _Ctx, node: yaml.Node, path: str) -> str | None:
    value = _opt_str(ctx, node, path)
    if value is None:
        return None
    problem = config_checks.ws_url_problem(value)
    if problem:
        raise ctx.error(node, path, problem)
    return value


def _nats_url(ctx: _Ctx, node: yaml.Node, path: str) -> str:
    value = _str()(ctx, node, path)
    problem = config_checks.nats_url_problem(value)
    if problem:
        raise ctx.error(node, path, problem)
    return value


def _section(cls: type, schema: Mapping[str, Parser], required: tuple[str, ...] = ()) -> Parser:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and ctx.scalar(node, path) is None:
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        if not isinstance(node, yaml.MappingNode):
            raise ctx.error(node, path, "expected a mapping")
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = ctx.scalar(key_node, path)
            key_path = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key not in schema:
                hint = _suggest(str(key), schema)
                raise ctx.error(key_node, key_path, "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""))
            if key in values:
                raise ctx.error(key_node, key_path, "key given twice")
            values[key] = schema[key](ctx, value_node, key_path)
        for key in required:
            if key not in values:
                raise ctx.error(node, f"{path}.{key}" if path else key, "required key is missing")
        try:
            return cls(**values)
        except TypeError as exc:  # a required dataclass field without a schema default
            raise ctx.error(node, path, str(exc))
    return parse


def _suggest(key: str, schema: Mapping[str, Any]) -> str | None:
    import difflib

    close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.75)
    return close[0] if close else None


_ORDERBOOK = _section(OrderbookConfig, {
    "markets": _list(_ticker),
    "max_markets_per_subscription": _int(1, 100_000),
})
_EXCHANGE = _section(ExchangeConfig, {
    "url": _ws_url,
    "use_demo": _bool,
    "channels": _list(_str(PUBLIC_CHANNELS)),
    "markets": _list(_ticker),
    "orderbook": _ORDERBOOK,
    "stale_after": _duration(0.5, 3600),
    "ping_interval": _duration(0.5, 3600),
    "backoff_initial": _duration(0.001, 3600),
    "backoff_max": _duration(0.001, 86400),
    "handshake_timeout": _duration(0.1, 600),
    "tls_verify": _bool,
    "ca_file": _opt_str,
})
_TRANSPORT = _section(TransportConfig, {
    "type": _str(("nats", "none")),
    "url": _list(_nats_url, allow_scalar=True),
    "stream": _str(pattern=_STREAM_RE, what="stream names are 1..255 of A-Z a-z 0-9 _ -"),
    "subject_prefix": _str(pattern=re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
                           what="subject prefix must be dot-separated tokens of A-Z a-z 0-9 _ -"),
    "publish": _list(_str(("raw", "normalized"))),
    "provision": _str(("create", "verify")),
    "max_age": _duration(1.0),
    "duplicate_window": _duration(1.0),
    "replicas": _int(1, 5),
    "max_bytes": _size(-1),
    "window": _int(1, 1_000_000),
    "window_min": _int(1, 1_000_000),
    "ack_timeout": _duration(0.05, 600),
    "retry_horizon": _duration(0.1, 86400),
    "memory_queue_bytes": _size(0),
    "connect_timeout": _duration(0.1, 600),
    "batching": _bool,
    "auth": _section(NatsAuthConfig, {
        "token_env": _str(pattern=_ENV_NAME_RE, what="not an environment variable name"),
        "user": _str(),
        "password_env": _str(pattern=_ENV_NAME_RE, what="not an environment variable name"),
        "nkey_seed_file": _str(),
        "creds_file": _str(),
    }),
    "tls": _section(NatsTlsConfig, {"ca_file": _opt_str, "cert_file": _opt_str, "key_file": _opt_str}),
    "spill": _section(SpillConfig, {
        "path": _opt_str,
        "max_bytes": _size(0),
        "fsync_every": _int(0, 10**9),
        "fsync_interval": _duration(0.0, 3600),
    }),
})
_STORAGE = _section(StorageConfig, {
    "type": _str(("file", "none")),
    "path": _str(),
    "format": _str(("raw", "normalized", "both")),
    "rotate": _str(("hourly", "daily")),
}, required=("type",))
_KEY = _section(KeyConfig, {
    "name": _str(pattern=_ENV_NAME_RE, what="key names are environment variable names"),
    "type": _str(("api_key", "api_secret")),
    "source": _str(("env", "file")),
    "path": _str(),
}, required=("name", "type"))
_METRICS = _section(MetricsConfig, {"enabled": _bool, "listen": _host_port})
_RUNNER = _section(RunnerConfig, {
    "stats_interval": _duration(0.1, 86400),
    "shutdown_timeout": _duration(0.0, 3600),
})
_ENVIRONMENT = _section(EnvironmentConfig, {
    "name": _str(pattern=_NAME_RE, what="names are lower-case letters, digits, '-' and '_'"),
    "feed": _str(("kalshi",)),
    "status": _str(("active", "inactive")),
    "transport": _TRANSPORT,
    "storage": _STORAGE,
    "keys": _list(_KEY, unique=False),
    "exchange": _EXCHANGE,
    "metrics": _METRICS,
    "runner": _RUNNER,
}, required=("name", "feed"))


# --------------------------------------------------------------------------- loading


def load_environment(path: str | os.PathLike[str]) -> EnvironmentConfig:
    """Load and validate an environment file; raise ``ConfigError`` naming file, line and key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path))
    except OSError as exc:      # "Is a directory", "Permission denied": not "[Errno 21] ... '/tmp'"
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", file=str(path),
                          line=data.count(b"\n", 0, exc.start) + 1)
    return loads_environment(text, str(path))


class _Loader(yaml.SafeLoader):
    """The safe loader, with an alias standing at its own line: the composer hands back the anchored node
    itself, so an error in the value an alias stands for was reported at the anchor's line (line 1 for an
    anchor on the first line), not at the alias's."""

    def compose_node(self, parent, index):
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        node = copy.copy(super().compose_node(parent, index))  # same value (children), the alias's marks
        node.start_mark, node.end_mark = event.start_mark, event.end_mark
        return node


def loads_environment(text: str, file: str = "<string>") -> EnvironmentConfig:
    name = os.path.basename(file)
    ctx = _Ctx(name)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"YAML syntax: {exc.problem}", file=name, line=mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax: {exc}", file=name)
    if node is None:
        raise ConfigError("the file is empty", file=name)
    cfg: EnvironmentConfig = _ENVIRONMENT(ctx, node, "")
    return _finish(cfg, ctx, node, file)


def _node_at(node: yaml.Node, *keys: str | int) -> yaml.Node:
    """The node of a key path (for the line number of a cross-field error); an int indexes a list. A key
    not in the file gives the deepest node that is."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(node, yaml.SequenceNode) or key >= len(node.value):
                break
            node = node.value[key]
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                node = v
                break
        else:
            break
    return node


def _node_of(root: yaml.Node, path: str) -> yaml.Node:
    """``_node_at`` for a dotted key path with list indexes: ``keys[1].type``."""
    keys = [int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]
    return _node_at(root, *keys)


def _finish(cfg: EnvironmentConfig, ctx: _Ctx, root: yaml.Node, file: str) -> EnvironmentConfig:
    """Cross-field rules (config_checks.py) and derived defaults."""
    try:
        config_checks.check_environment(cfg)
    except config_checks.Problem as p:
        raise ctx.error(_node_of(root, p.at), p.key, p.reason) from None
    ex, tr = cfg.exchange, cfg.transport
    if ex.orderbook.markets and "orderbook_delta" not in ex.channels:
        # a configured book list implies the channel
        ex = dataclasses.replace(ex, channels=ex.channels + ("orderbook_delta",))
    feed_token = cfg.feed.replace("-", "_")
    name_token = cfg.name.replace("-", "_")
    tr = dataclasses.replace(
        tr,
        subject_prefix=tr.subject_prefix or f"{name_token}.{feed_token}",
        stream=tr.stream or re.sub(r"[^A-Za-z0-9_]", "_", f"{cfg.name}_{cfg.feed}").upper(),
    )
    storage = cfg.storage
    if storage is not None and not storage.path:
        storage = dataclasses.replace(storage, path=os.path.join(".", "data", cfg.name))
    return dataclasses.replace(cfg, exchange=ex, transport=tr, storage=storage, source=file)
