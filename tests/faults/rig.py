"""The drill rig: the local exchange and the fault proxies on their own loop thread, a real nats-server,
the connector (in-process ``Runner`` or ``ssmd-fast run`` as a subprocess), then the read-back and the
comparison with every frame the exchange sent (``ssmd_fast.demo.verify``), and the DRILL figures line.

    rig = Rig(tmp_path, events=40_000, rate=4000).start()
    conn = await rig.connector()            # in-process; rig.subprocess_connector() for process drills
    ... fault ...
    report = await conn.stop(); rig.stop_exchange(); fig = rig.figures("name", report)
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from loop_thread import LoopThread
from proxy import ThreadedProxy

from ssmd_fast.config import loads_environment
from ssmd_fast.demo import ConnectorProcess, verify
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.exchange import Exchange
from ssmd_fast.kalshi.exchange_feed import GeneratedFeed
from ssmd_fast.natsserver import NatsServer, free_port
from ssmd_fast.runner import Runner
from ssmd_fast.sinks.stream_read import read_stream

API_KEY = "drill-key"


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """What a drill reports: ``DRILL <name>: sent N / stored N / lost N / duplicated N / resent N /
    detection T s`` and the drill's own figures after it."""

    name: str
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    resent: int = 0
    detection: float | None = None
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        det = "-" if self.detection is None else f"{self.detection:.2f}"
        parts = [f"sent {self.sent}", f"stored {self.stored}", f"lost {self.lost}",
                 f"duplicated {self.duplicated}", f"resent {self.resent}", f"detection {det} s"]
        parts += [f"{k} {_fmt(v)}" for k, v in self.extra.items()]
        return f"DRILL {self.name}: " + " / ".join(parts)

    def emit(self) -> Figures:
        """Print the line (``-s`` shows it) and append it to $SSMD_FAST_DRILL_LOG (JSON lines) if set."""
        print("\n" + self.line(), flush=True)
        path = os.environ.get("SSMD_FAST_DRILL_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"name": self.name, "line": self.line(), "time": time.time()}) + "\n")
        return self


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return str(v)


def stream_figures(name: str, v, report=None, **extra) -> Figures:
    """Figures from a ``demo.Verification``: data messages (raw + normalized) expected vs stored. Messages
    without an id (a core-publish control run) are not duplicates: they are reported as ``missing ids``."""
    expected = v.sent + (v.sent - v.offline_invalid)
    stored = v.stream_raw + v.stream_normalized - v.stream_duplicated - v.stream_foreign
    resent = 0
    if report is not None:
        resent = report.get("resent", 0) if isinstance(report, dict) else getattr(report, "resent", 0)
    if v.missing_ids:
        extra = {"missing ids": v.missing_ids, **extra}
    return Figures(name, sent=expected, stored=stored, lost=v.stream_lost,
                   duplicated=v.stream_duplicated + v.duplicate_ids, resent=resent, extra=extra)


# --------------------------------------------------------------------------- waiting


async def wait_for(pred, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def wait_sync(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- the connector


class InProcessConnector:
    """``Runner`` on the caller's loop (the production code path minus the signal handlers)."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.task: asyncio.Task | None = None
        self.report = None

    async def start(self, subscribed_timeout: float | None = 15.0) -> InProcessConnector:
        self.task = asyncio.get_running_loop().create_task(self.runner.run(install_signals=False))
        await wait_for(lambda: self.runner.sessions or self.task.done(), 10, "the sessions")
        if self.task.done():
            self.task.result()
        if subscribed_timeout:
            await wait_for(lambda: all(s.core.subscribed for s in self.runner.sessions), subscribed_timeout,
                           "every session subscribed")
        return self

    @property
    def publisher(self):
        return self.runner.publisher

    @property
    def sessions(self) -> list:
        return self.runner.sessions

    def totals(self) -> dict:
        return self.runner.totals()

    async def stop(self, timeout: float = 30.0):
        self.runner.stop_requested.set()
        self.report = await asyncio.wait_for(self.task, timeout)
        return self.report

    async def wait_caught_up(self, rig: Rig, timeout: float = 60.0) -> None:
        """The exchange sent its whole session and the publisher has nothing unacked or spilled."""
        await wait_for(lambda: rig.exchange_finished(len(self.sessions)), timeout, "the exchange's whole session")
        pub = self.publisher
        await wait_for(lambda: pub.ring.head == pub.ring.tail and not pub.spill.pending_records
                       and pub.store == "memory", timeout, "every message acked")


class CorePublishRunner(Runner):
    """The control run: the same connector with core NATS publish (no acks, no resend, no spill)."""

    def _build_sinks(self) -> None:
        from ssmd_fast.sinks.nats import JetStreamPublisher

        self.publisher = JetStreamPublisher(self.cfg.transport, spill_dir=self.cfg.resolved_spill_path,
                                            feed=self.cfg.feed, on_event=self._from_publisher, mode="core")
        self.sinks.append(self.publisher)


# --------------------------------------------------------------------------- the rig


class Rig:
    """Key pair, exchange (+ record of every frame sent), nats-server, proxies and the environment."""

    def __init__(self, tmp_path: Path, *, events: int = 40_000, rate: float = 4000.0, markets: int = 6,
                 book_markets: int = 4, books_per_connection: int | None = None, era: str = "both",
                 nats_proxy: bool = True, exchange_proxy: bool = False, nats_config: str = "",
                 exchange_faults: str = "", ping_interval: float = 10.0, seed: int = 1, feed=None):
        self.dir = Path(tmp_path)
        self.events, self.rate, self.markets, self.era, self.seed = events, rate, markets, era, seed
        self.book_markets = book_markets
        self.books_per_connection = books_per_connection or max(1, book_markets)
        self.use_nats_proxy, self.use_exchange_proxy = nats_proxy, exchange_proxy
        self.nats_config = nats_config
        self.exchange_faults = exchange_faults
        self.ping_interval = ping_interval
        self.feed = feed
        self.sent_file = self.dir / "exchange-sent.jsonl"
        self.files = self.dir / "files"
        self.spill = self.dir / "spill"
        self.thread: LoopThread | None = None
        self.exchange: Exchange | None = None
        self.nats: NatsServer | None = None
        self.nats_proxy: ThreadedProxy | None = None
        self.exchange_proxy: ThreadedProxy | None = None
        self.private_pem = b""
        self.key_file = self.dir / "keys" / "kalshi_private.pem"
        self.tickers: list[str] = []
        self.stream = "DRILL_KALSHI"
        self.prefix = "drill.kalshi"
        self._exchange_stopped = False

    # ------------------------------------------------------------------ start / stop

    def start(self, nats_up: bool = True) -> Rig:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.private_pem, public = generate_key_pair()
        self.key_file.parent.mkdir(exist_ok=True)
        self.key_file.write_bytes(self.private_pem)
        os.chmod(self.key_file, 0o600)
        self.thread = LoopThread("drill-exchange")
        feed = self.feed or GeneratedFeed(self.events, seed=self.seed, markets=self.markets, era=self.era,
                                          pregenerate=self.events)
        self.tickers = list(feed.markets)
        self.exchange = Exchange(feed, public, port=0, rate=self.rate, record=self.sent_file,
                                 faults=self.exchange_faults, ping_interval=self.ping_interval)
        self.thread.run(self.exchange.start())
        self.nats = NatsServer(extra_config=self.nats_config)
        if nats_up:
            self.nats.start()
        if self.use_nats_proxy:
            self.nats_proxy = ThreadedProxy("127.0.0.1", self.nats.port, loop_thread=self.thread)
        if self.use_exchange_proxy:
            self.exchange_proxy = ThreadedProxy("127.0.0.1", self.exchange.port, loop_thread=self.thread)
        return self

    def close(self) -> None:
        for p in (self.nats_proxy, self.exchange_proxy):
            if p is not None:
                try:
                    p.close()
                except Exception:
                    pass
        if self.exchange is not None and not self._exchange_stopped:
            try:
                self.thread.run(self.exchange.close())
            except Exception:
                pass
        if self.thread is not None:
            self.thread.stop()
        if self.nats is not None:
            self.nats.close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the exchange

    def ex(self, method: str, *args, **kw):
        """Call an Exchange method on its loop thread (``set_faults``, ``drop_all``, ``set_accepting``...)."""
        return self.thread.call(getattr(self.exchange, method), *args, **kw)

    def exchange_stats(self) -> dict:
        return self.ex("stats")

    def exchange_finished(self, connections: int = 1) -> bool:
        st = self.exchange_stats()
        conns = st["conns"]
        return len(conns) >= connections and all(c["cursor"] is not None and c["cursor"] >= st["events"]
                                                 for c in conns)

    def stop_exchange(self) -> dict:
        """Close the exchange (which closes its record file); returns its last stats."""
        st = self.exchange_stats()
        if not self._exchange_stopped:
            self.thread.run(self.exchange.close())
            self._exchange_stopped = True
        return st

    # ------------------------------------------------------------------ the environment

    @property
    def nats_url(self) -> str:
        port = self.nats_proxy.port if self.nats_proxy is not None else self.nats.port
        return f"nats://127.0.0.1:{port}"

    @property
    def exchange_url(self) -> str:
        port = self.exchange_proxy.port if self.exchange_proxy is not None else self.exchange.port
        return f"ws://127.0.0.1:{port}/trade-api/ws/v2"

    def env_dict(self, overrides: dict | None = None) -> dict:
        books = self.tickers[:self.book_markets]
        env = {
            "name": "drill", "feed": "kalshi", "status": "active",
            "transport": {"type": "nats", "url": self.nats_url, "stream": self.stream,
                          "subject_prefix": self.prefix, "duplicate_window": "2m", "retry_horizon": "60s",
                          "spill": {"path": str(self.spill)}},
            "storage": {"type": "file", "path": str(self.files), "format": "both"},
            "exchange": {"url": self.exchange_url, "channels": ["ticker", "trade", "market_lifecycle_v2"],
                         "orderbook": {"markets": books, "max_markets_per_subscription": self.books_per_connection},
                         "backoff_initial": "0.1s", "backoff_max": "2s"},
            "metrics": {"enabled": False},
            "runner": {"stats_interval": "1s", "shutdown_timeout": "10s"},
        }
        if not books:
            env["exchange"].pop("orderbook")
        return deep_merge(env, overrides or {})

    def write_env(self, overrides: dict | None = None, name: str = "environment.yaml") -> Path:
        path = self.dir / name
        path.write_text(yaml.safe_dump(self.env_dict(overrides), sort_keys=False))
        return path

    def config(self, overrides: dict | None = None):
        path = self.write_env(overrides)
        return loads_environment(path.read_text(), str(path))

    def credentials(self) -> KalshiCredentials:
        return KalshiCredentials(API_KEY, self.private_pem)

    async def connector(self, overrides: dict | None = None, *, runner_cls=Runner,
                        subscribed_timeout: float | None = 15.0) -> InProcessConnector:
        cfg = self.config(overrides)
        return await InProcessConnector(runner_cls(cfg, self.credentials())).start(subscribed_timeout)

    def subprocess_connector(self, overrides: dict | None = None, *, log_level: str = "info",
                             name: str = "connector", metrics: bool = True) -> ConnectorProcess:
        port = free_port()
        over = deep_merge({"metrics": {"enabled": True, "listen": f"127.0.0.1:{port}"}} if metrics else {},
                          overrides or {})
        env_file = self.write_env(over, f"{name}.yaml")
        environ = {**os.environ, "KALSHI_API_KEY": API_KEY, "KALSHI_PRIVATE_KEY_FILE": str(self.key_file)}
        environ.pop("KALSHI_PRIVATE_KEY", None)
        proc = ConnectorProcess(env_file, self.dir / f"{name}.log", self.dir / f"{name}-report.json", port, environ)
        proc.args += ["--log-level", log_level]
        return proc.start()

    # ------------------------------------------------------------------ read-back

    reader_auth = ""      # "user:password@" when the server wants credentials (the reader is test code)

    async def read_stream(self, timeout: float = 120.0) -> list:
        url = self.nats.url.replace("//", "//" + self.reader_auth, 1)
        return await read_stream(url, self.stream, timeout=timeout)

    def read_stream_sync(self, timeout: float = 120.0) -> list:
        return asyncio.run(self.read_stream(timeout))

    def verify(self, messages: list, files: bool = True):
        return verify(self.sent_file, messages, self.prefix, self.files if files else None)

    def events_in(self, messages: list, kind: str | None = None) -> list[dict]:
        out = []
        for m in messages:
            if m.subject.startswith(self.prefix + ".events."):
                ev = json.loads(m.data)
                if kind is None or ev["kind"] == kind:
                    out.append(ev)
        return out


class LoopLagProbe:
    """How late the connector's loop runs a 5 ms timer: the time a socket read waits for its turn."""

    def __init__(self, period: float = 0.005):
        self.period = period
        self.samples: list[float] = []
        self.task: asyncio.Task | None = None

    def start(self) -> LoopLagProbe:
        # The drills share this process with the connector, and earlier drills leave large containers
        # (the stream messages they read back): a full collection walking them took up to 270 ms and
        # showed as loop lag. Frozen, the collector walks only what is made while the probe runs.
        gc.collect()
        gc.freeze()
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.period)
            self.samples.append(max(0.0, loop.time() - t - self.period))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
            gc.unfreeze()

    def quantile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))]

    @property
    def max(self) -> float:
        return max(self.samples, default=0.0)
