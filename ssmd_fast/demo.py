"""The whole pipeline on one machine, checked end to end (``ssmd-fast demo``, tests/integration/test_runner.py).

    local exchange (subprocess: generated session, --record) --WebSocket--> ssmd-fast run (subprocess)
        --> embedded nats-server (JetStream) + file sink (raw and normalized JSONL)

then the stream and the files are read back and compared with every frame the exchange sent: the raw
messages must be those frames byte for byte (as a multiset), the normalized ones their offline
normalization, every message id unique. ``Pipeline`` owns the processes; ``verify`` does the checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ssmd_fast.errors import SsmdError
from ssmd_fast.natsserver import NatsServer, free_port

_RECV_TS = re.compile(rb',"recv_ts":\d+\}\Z')
_STATUS_LINE = b'{"type":"status"'
_CONTROL_TYPES = ("subscribed", "unsubscribed", "ok", "error")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def strip_recv_ts(record: bytes) -> bytes:
    """A live record without its trailing ``recv_ts`` (the only field the offline normalizer omits)."""
    return _RECV_TS.sub(b"}", record)


def _wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise SsmdError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise SsmdError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- the exchange


class ExchangeProcess:
    """``ssmd-fast exchange`` as a subprocess on free loopback ports, with its control port."""

    def __init__(self, public_key: Path, record: Path, log_dir: Path, *, generate: int, markets: int,
                 rate: float = 0.0, seed: int = 1):
        self.args = [sys.executable, "-m", "ssmd_fast", "exchange", "--public-key", str(public_key),
                     "--generate", str(generate), "--markets", str(markets), "--rate", repr(float(rate)),
                     "--seed", str(seed), "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                     "--record", str(record)]
        self.record = record
        self.out_path, self.err_path = log_dir / "exchange.out", log_dir / "exchange.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.control_port = 0

    def start(self, timeout: float = 60.0) -> ExchangeProcess:
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

        def ready():
            # stderr names the control port before stdout names the URL (stderr is line-buffered)
            m = re.search(r"^listening on (\S+)$", self.out_path.read_text(errors="replace"), re.M)
            c = re.search(r"control on [^:\s]+:(\d+)", self.err_path.read_text(errors="replace"))
            return (m.group(1), int(c.group(1))) if m and c else None

        self.url, self.control_port = _wait_for(ready, timeout, "the local exchange to listen", self.proc,
                                                self.err_path)
        return self

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One control-port command and its one-line answer."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=timeout) as s:
            s.sendall(line.encode() + b"\n")
            return s.makefile("rb").readline().decode().rstrip("\n")

    def stats(self) -> dict:
        return json.loads(self.command("stats"))

    @staticmethod
    def finished(stats: dict, connections: int) -> bool:
        """Every one of ``connections`` connections has been sent the whole session."""
        conns = stats["conns"]
        return len(conns) >= connections and all(c["cursor"] is not None and c["cursor"] >= stats["events"]
                                                 for c in conns)

    def stop(self, timeout: float = 15.0) -> str:
        """SIGTERM (closes the record file) and wait; returns what it printed on stdout."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""


# --------------------------------------------------------------------------- the connector


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> ``{series name: sum over its label sets}`` (enough for totals)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


@dataclass
class ConnectorExit:
    code: int
    cpu_seconds: float          # user + system over the process's life (its rusage)
    stop_seconds: float         # from the signal to the exit, seen from outside
    report: dict | None         # the runner's RunReport (--report-json), None if it did not get there


class ConnectorProcess:
    """``ssmd-fast run --env FILE`` as a real process: the production signal path, and its rusage."""

    def __init__(self, env_file: Path, log_path: Path, report_path: Path, metrics_port: int,
                 environ: dict[str, str]):
        self.args = [sys.executable, "-m", "ssmd_fast", "run", "--env", str(env_file),
                     "--report-json", str(report_path)]
        self.log_path, self.report_path = log_path, report_path
        self.base = f"http://127.0.0.1:{metrics_port}"
        self.environ = environ
        self.proc: subprocess.Popen | None = None
        self.exit: ConnectorExit | None = None

    def start(self) -> ConnectorProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environ)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit is None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """``(status, body)`` of an HTTP GET on the metrics port, None when nothing answers."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, urllib.error.URLError):
            return None

    def metrics(self) -> dict[str, float] | None:
        got = self.get("/metrics")
        return parse_metrics(got[1].decode()) if got and got[0] == 200 else None

    def cpu_seconds(self) -> float | None:
        """CPU used so far (Linux /proc), for a baseline taken once the process is up."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> ConnectorExit:
        """Send ``sig`` and reap the process with ``os.wait4`` (its exit code and CPU)."""
        if self.exit is not None:
            return self.exit
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout, started)

    def wait(self, timeout: float = 30.0, started: float | None = None) -> ConnectorExit:
        """Reap the process (SIGKILL after ``timeout``); ``stop_seconds`` counts from ``started``."""
        if self.exit is not None:
            return self.exit
        started = time.monotonic() if started is None else started
        deadline = started + timeout
        while True:
            if self.proc.returncode is not None:    # reaped by poll() already: rusage is gone
                code, cpu = self.proc.returncode, float("nan")
                break
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                code, cpu = os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime
                self.proc.returncode = code
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                timeout, deadline = 5.0, time.monotonic() + 5.0
            time.sleep(0.002)
        stopped = time.monotonic() - started
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else None
        self.exit = ConnectorExit(code, cpu, stopped, report)
        return self.exit


# --------------------------------------------------------------------------- the environment file


def write_environment(path: Path, *, name: str, exchange_url: str, nats_url: str, storage: Path,
                      markets: list[str], max_per_subscription: int, metrics_port: int,
                      stats_interval: float = 5.0, shutdown_timeout: float = 10.0) -> None:
    """An environment file for the local exchange: ticker/trade/lifecycle for every market, the books
    of ``markets`` (split over connections by ``max_per_subscription``), NATS and files (both forms)."""
    tickers = ", ".join(json.dumps(m) for m in markets)
    path.write_text(f"""# written by ssmd-fast demo
name: {name}
feed: kalshi
status: active
transport:
  type: nats
  url: {nats_url}
  provision: create
  duplicate_window: 2m
  retry_horizon: 60s
storage:
  type: file
  path: {json.dumps(str(storage))}
  format: both
  rotate: hourly
keys:
  - name: KALSHI_API_KEY
    type: api_key
    source: env
  - name: KALSHI_PRIVATE_KEY
    type: api_secret
    source: env
exchange:
  url: {exchange_url}
  channels: [ticker, trade, market_lifecycle_v2]
  orderbook:
    markets: [{tickers}]
    max_markets_per_subscription: {max_per_subscription}
metrics:
  listen: 127.0.0.1:{metrics_port}
runner:
  stats_interval: {stats_interval:g}s
  shutdown_timeout: {shutdown_timeout:g}s
""")


# --------------------------------------------------------------------------- the pipeline


class Pipeline:
    """Key pair, nats-server, exchange and connector of one run, everything written under ``data_dir``.

    A context manager: leaving it stops whatever still runs (the connector with SIGTERM first)."""

    def __init__(self, data_dir: Path, *, messages: int, rate: float = 0.0, markets: int = 20,
                 max_per_subscription: int | None = None, seed: int = 1, name: str = "demo",
                 stats_interval: float = 5.0, shutdown_timeout: float = 10.0):
        self.dir = Path(data_dir)
        self.messages, self.rate, self.markets, self.seed, self.name = messages, rate, markets, seed, name
        # books over (at least) three connections, so sharding shows
        self.max_per_subscription = max_per_subscription or max(1, -(-markets // 3))
        self.stats_interval, self.shutdown_timeout = stats_interval, shutdown_timeout
        self.keys = self.dir / "keys"
        self.env_file = self.dir / "environment.yaml"
        self.sent_file = self.dir / "exchange-sent.jsonl"
        self.files = self.dir / "files"
        self.nats: NatsServer | None = None
        self.exchange: ExchangeProcess | None = None
        self.connector: ConnectorProcess | None = None
        self.cfg = None
        self.tickers: list[str] = []

    @property
    def connections(self) -> int:
        from ssmd_fast.kalshi.shards import plan_from_config

        return len(plan_from_config(self.cfg.exchange))

    def start(self) -> Pipeline:
        from ssmd_fast.commands.keygen import write_key_pair
        from ssmd_fast.config import load_environment
        from ssmd_fast.kalshi.generator import SessionGenerator

        self.dir.mkdir(parents=True, exist_ok=True)
        private, public = write_key_pair(self.keys, what="the key directory")   # private key created 0600
        self.tickers = list(SessionGenerator(seed=self.seed, markets=self.markets).tickers)
        self.nats = NatsServer().start()
        self.exchange = ExchangeProcess(public, self.sent_file, self.dir, generate=self.messages,
                                        markets=self.markets, rate=self.rate, seed=self.seed).start()
        metrics_port = free_port()
        write_environment(self.env_file, name=self.name, exchange_url=self.exchange.url, nats_url=self.nats.url,
                          storage=self.files, markets=self.tickers, max_per_subscription=self.max_per_subscription,
                          metrics_port=metrics_port, stats_interval=self.stats_interval,
                          shutdown_timeout=self.shutdown_timeout)
        self.cfg = load_environment(self.env_file)
        environ = {**os.environ, "KALSHI_API_KEY": "demo", "KALSHI_PRIVATE_KEY_FILE": str(private)}
        environ.pop("KALSHI_PRIVATE_KEY", None)
        self.connector = ConnectorProcess(self.env_file, self.dir / "connector.log", self.dir / "run-report.json",
                                          metrics_port, environ).start()
        return self

    def read_stream(self, timeout: float = 180.0) -> list:
        from ssmd_fast.sinks.stream_read import read_stream

        return asyncio.run(read_stream(self.nats.url, self.cfg.transport.stream, timeout=timeout))

    def verify(self, messages: list) -> Verification:
        return verify(self.sent_file, messages, self.cfg.transport.subject_prefix, self.files)

    def close(self) -> None:
        if self.connector is not None and self.connector.running:
            self.connector.stop(timeout=15.0)
        if self.exchange is not None:
            self.exchange.stop()
        if self.nats is not None:
            self.nats.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- the checks


@dataclass
class Verification:
    """What the stream and the files hold, compared with what the exchange sent."""

    sent: int = 0                   # data frames the exchange sent (its --record file)
    offline_invalid: int = 0        # sent frames the offline normalizer rejects (0 for generated sessions)
    stream_messages: int = 0
    stream_raw: int = 0
    stream_normalized: int = 0
    stream_events: int = 0
    stream_lost: int = 0            # sent frames missing from the raw messages, or their record from the normalized
    stream_duplicated: int = 0      # extra copies of sent frames / records
    stream_foreign: int = 0         # raw or normalized messages that match nothing sent
    duplicate_ids: int = 0          # messages sharing a Nats-Msg-Id with an earlier one
    missing_ids: int = 0            # messages without a Nats-Msg-Id (core NATS publishes carry none)
    file_raw: int = 0
    file_normalized: int = 0
    file_events: int = 0
    file_controls: int = 0          # subscribed/unsubscribed replies: raw files keep them, the exchange does not record them
    file_unfinished: int = 0        # .partial files left behind
    file_lost: int = 0
    file_duplicated: int = 0
    file_foreign: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _compare(expected: Counter, got: Counter) -> tuple[int, int, int]:
    """(lost, duplicated, foreign) of a multiset against the expected one."""
    lost = sum((expected - got).values())
    surplus = got - expected
    duplicated = sum(n for item, n in surplus.items() if item in expected)
    return lost, duplicated, sum(surplus.values()) - duplicated


def _is_control(line: bytes) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("type") in _CONTROL_TYPES


def _file_lines(paths: list[Path]) -> tuple[list[bytes], int]:
    lines, events = [], 0
    for p in paths:
        with open(p, "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if line.startswith(_STATUS_LINE):
                    events += 1
                else:
                    lines.append(line)
    return lines, events


def verify(sent_file: Path, messages: list, prefix: str, files: Path | None) -> Verification:
    """Compare the stream (``read_stream`` messages) and the file sink's files with the sent frames."""
    from ssmd_fast.errors import InvalidFrame
    from ssmd_fast.normalize import normalize_frame

    v = Verification()
    with open(sent_file, "rb") as f:
        sent = [line.rstrip(b"\n") for line in f if line.strip()]
    v.sent = len(sent)
    expected_raw = Counter(sent)
    expected_norm: Counter = Counter()
    for frame in sent:
        try:
            record = normalize_frame(frame)
        except InvalidFrame:
            v.offline_invalid += 1
            continue
        if record is not None:
            expected_norm[record] += 1

    raw_p, norm_p, ev_p = f"{prefix}.json.", f"{prefix}.norm.", f"{prefix}.events."
    raw = Counter(m.data for m in messages if m.subject.startswith(raw_p))
    norm = Counter(strip_recv_ts(m.data) for m in messages if m.subject.startswith(norm_p))
    v.stream_messages = len(messages)
    v.stream_raw, v.stream_normalized = sum(raw.values()), sum(norm.values())
    v.stream_events = sum(1 for m in messages if m.subject.startswith(ev_p))
    other = v.stream_messages - v.stream_raw - v.stream_normalized - v.stream_events
    (rl, rd, rf), (nl, nd, nf) = _compare(expected_raw, raw), _compare(expected_norm, norm)
    v.stream_lost, v.stream_duplicated, v.stream_foreign = rl + nl, rd + nd, rf + nf + other
    ids = Counter(m.msg_id for m in messages)
    v.missing_ids = ids.pop(None, 0)
    v.duplicate_ids = sum(n - 1 for n in ids.values() if n > 1)

    if files is not None:
        found = [p for p in files.rglob("*") if p.is_file() and "spill" not in p.relative_to(files).parts]
        v.file_unfinished = sum(1 for p in found if p.name.endswith(".partial"))
        raw_files = sorted(p for p in found if p.name.endswith(".jsonl") and not p.name.endswith(".norm.jsonl"))
        norm_files = sorted(p for p in found if p.name.endswith(".norm.jsonl"))
        raw_lines, ev1 = _file_lines(raw_files)
        norm_lines, ev2 = _file_lines(norm_files)
        v.file_raw, v.file_normalized, v.file_events = len(raw_lines), len(norm_lines), ev1 + ev2
        raw_c = Counter(raw_lines)
        for line in [x for x in raw_c if x not in expected_raw and _is_control(x)]:
            v.file_controls += raw_c.pop(line)
        v.file_raw -= v.file_controls
        (rl, rd, rf) = _compare(expected_raw, raw_c)
        (nl, nd, nf) = _compare(expected_norm, Counter(map(strip_recv_ts, norm_lines)))
        v.file_lost, v.file_duplicated, v.file_foreign = rl + nl, rd + nd, rf + nf

    for what, n in (("sent frames rejected by the offline normalizer", v.offline_invalid),
                     ("stream: lost", v.stream_lost), ("stream: duplicated", v.stream_duplicated),
                     ("stream: messages matching nothing sent", v.stream_foreign),
                     ("stream: repeated message ids", v.duplicate_ids),
                     ("stream: messages without an id", v.missing_ids),
                     ("files: lost", v.file_lost), ("files: duplicated", v.file_duplicated),
                     ("files: lines matching nothing sent", v.file_foreign),
                     ("files: left unfinished (.partial)", v.file_unfinished)):
        if n:
            v.problems.append(f"{what}: {n:,}")
    if v.sent == 0:
        v.problems.append("the exchange sent no data frame")
    return v
