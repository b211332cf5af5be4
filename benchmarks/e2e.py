"""End-to-end benchmark: the connector and the peer stacks side by side, in one run, on one machine.

    python -m benchmarks.e2e [--events 150000] [--core-events 400000] [--rounds 3] [--quick]

Every pipeline is its own process, reading from its own fresh local exchange process (``ssmd-fast
exchange --generate N --rate 0``: the same generated session, as fast as the pipeline reads) and
publishing into one shared nats-server (JetStream, file storage, a fresh stream per run, acks on every
message). Pipelines (interleaved over the rounds, medians reported):

- ``ssmd-fast``: the connector (``e2e_connector.py``: ``runner.Runner``'s objects, ``publish: [raw,
  normalized]``, window 16384 from window_min 4096, following the ack rate), acked JetStream;
- ``ssmd-fast core``: the same with the publisher in core mode (plain ``PUB``, no stream, no ack),
  on a longer session (``--core-events``);
- ``(a) websockets + json + nats-py``: ``baselines/ws_json_natspy.py``;
- ``(b) picows + msgspec + nats-py``: ``baselines/picows_msgspec_natspy.py``;
- ``(c) raw pipelined JetStream``: ``baselines/raw_jetstream.py`` replaying the connector's messages
  for the same session, pre-built, one ack per message (nats-server's own per-message-ack ceiling here;
  no exchange, no WebSocket); ``(c') raw fast-ingest``: the same messages in one fast-ingest batch, one
  flow ack per 100 messages (the ceiling of the connector's default path);
- ``(d) raw core``: the connector's core-mode frames (plain ``PUB``) replayed as fast as nats-server reads.

A **message** is one NATS message. Every pipeline publishes each data frame twice (the raw frame and
its normalized record, as the connector's default ``publish: [raw, normalized]``), so one WebSocket
frame is two messages; the table gives frames/s too. **Connector CPU per message** is the pipeline
process's own CPU time (user + system, ``time.process_time``) from its start (NATS ready, before the
WebSocket connect) to the last ack, divided by the messages acked; nats-server and the exchange run in
their own processes and are not counted. **Latency** is frame receive (the socket read) -> JetStream ack
(the ack read), from the publisher's histogram. **Peak RSS** is the process's ``ru_maxrss``. The
connector's runs (JetStream and core) also give their figures **without their start-up**, from the
meter's first poll past a third of their messages framed to the end, over the messages framed after
that poll (``steady`` in the JSON, a second block under the table): the connect, the subscriptions and the buffers growing to their working size (page
faults) cost the first ~20k messages about twice the rest, which the whole-run figure spreads over a
short run. The thresholds and the ratios use the whole-run figures, as for the peers.
Results: ``benchmarks/results/e2e-{time}.json`` and ``latest.json``, a chart ``e2e-latest.png``; a run of
some of the pipelines, or a ``--quick`` one, only ``e2e-partial-{time}.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.e2e_common import emit, read_result

RESULTS = Path(__file__).resolve().parent / "results"
MARKETS = 20
WINDOW = 16384    # transport.window for every pipeline (the connector's default cap; --window to try another):
#                   the peers' fixed window, the most the connector's FlightWindow grows to from window_min
SETTLE = 0.5      # seconds of quiet after each run's flush (see one_run)
WARMUP_SHARE = 3   # the connector runs also report their figures after the first 1/3 of their messages
PIPELINES = {
    "ssmd": "ssmd-fast connector (JetStream, acked)",
    "core": "ssmd-fast connector (core NATS)",
    "lat": "ssmd-fast connector, paced (latency)",
    "a": "(a) websockets + json + nats-py",
    "b": "(b) picows + msgspec + nats-py",
    "c": "(c) raw pipelined JetStream (ceiling)",
    "cf": "(c') raw fast-ingest JetStream (ceiling)",
    "cc": "(d) raw core PUB replay (core ceiling)",
}
EVENTS_OF = {"core": "core_events", "cc": "core_events", "lat": "lat_events"}
BASELINE_MODULES = {"a": "benchmarks.baselines.ws_json_natspy", "b": "benchmarks.baselines.picows_msgspec_natspy"}


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exchange:
    """A fresh ``ssmd-fast exchange`` process serving ``events`` generated events at full speed."""

    def __init__(self, public_key: Path, events: int, markets: int, log: Path, rate: float = 0.0):
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}/trade-api/ws/v2"
        pregenerate = min(events, 2_000_000)      # more would cost memory; the rest comes on demand
        self.log = open(log, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssmd_fast", "exchange", "--listen", f"127.0.0.1:{self.port}",
             "--public-key", str(public_key), "--generate", str(events), "--pregenerate", str(pregenerate),
             "--markets", str(markets), "--rate", repr(float(rate)), "--ping-interval", "600"],
            stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL)

    def wait_listening(self, timeout: float = 120.0) -> Exchange:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the exchange exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the exchange did not start listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def run_process(args: list[str], timeout: float) -> dict:
    """Run one pipeline process; its RESULT line, and its rusage as seen by the parent (os.wait4)."""
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{args[0]} timed out after {timeout:g} s:\n{err[-2000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited with {proc.returncode}:\n{err[-3000:]}")
    try:
        return read_result(out)
    except ValueError:
        raise RuntimeError(f"{args[0]} printed no result:\n{err[-3000:]}") from None


def env_file(path: Path, *, name: str, exchange_url: str, nats_url: str, stream: str, prefix: str,
             markets: list[str], spill: Path, window: int = WINDOW) -> Path:
    """The connector's environment file: every channel and every book on one connection, NATS only."""
    path.write_text(f"""# written by benchmarks/e2e.py
name: {name}
feed: kalshi
status: active
transport:
  type: nats
  url: {nats_url}
  stream: {stream}
  subject_prefix: {prefix}
  publish: [raw, normalized]
  provision: create
  window: {window}
  spill:
    path: {json.dumps(str(spill))}
exchange:
  url: {exchange_url}
  channels: [ticker, trade, market_lifecycle_v2]
  orderbook:
    markets: {json.dumps(markets)}
    max_markets_per_subscription: 256
metrics:
  enabled: false
runner:
  stats_interval: 1h
""")
    return path


# --------------------------------------------------------------------------- NATS streams


def _transport_cfg(nats_url: str, stream: str, prefix: str):
    from ssmd_fast.config import TransportConfig

    return TransportConfig(type="nats", url=(nats_url,), stream=stream, subject_prefix=prefix)


async def _streams(nats_url: str, create: list[tuple[str, str]], delete: list[str]) -> None:
    import nats

    from ssmd_fast.sinks.stream import wanted_config

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for name in delete:
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
    for name, prefix in create:
        await js.add_stream(wanted_config(_transport_cfg(nats_url, name, prefix)))
    await nc.close()


def streams(nats_url: str, create=(), delete=()) -> None:
    asyncio.run(_streams(nats_url, list(create), list(delete)))


# --------------------------------------------------------------------------- the raw ceiling process


async def run_raw_core(host: str, port: int, data: bytes, messages: int) -> dict:
    """(d): pre-built core ``PUB`` frames written in 1 MiB pieces (flow control honoured), then a PING:
    its PONG says the server has read them all."""
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()                                           # INFO
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nPING\r\n')
    while not (await reader.readline()).startswith(b"PONG"):
        pass
    view = memoryview(data)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for k in range(0, len(data), 1 << 20):
        writer.write(view[k:k + (1 << 20)])
        await writer.drain()
    writer.write(b"PING\r\n")
    while not (await reader.readline()).startswith(b"PONG"):
        pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    writer.close()
    return {"messages": messages, "wall_s": wall, "cpu_s": cpu, "errors": 0}


def raw_process(args) -> None:
    """(c): the connector's messages for the session, pre-built, replayed by ``raw_jetstream.run_raw``;
    (c') with ``--fast``: the same in one fast-ingest batch (``run_raw_fast``); (d) with ``--core``: the
    connector's core frames (plain ``PUB``, no reply, no header), written as fast as the server reads."""
    import resource

    import uvloop

    from benchmarks.baselines.raw_jetstream import build_fast_frames, build_frames, run_raw, run_raw_fast
    from ssmd_fast import normalize
    from ssmd_fast.kalshi.generator import generate_session
    from ssmd_fast.sinks import framing

    frames = list(generate_session(args.events, seed=1, markets=MARKETS))
    ring = framing.PublishRing(args.prefix, b"_INBOX.x", acked=not args.core)
    batch = normalize.FrameBatch()
    for k in range(0, len(frames), 256):
        for f in frames[k:k + 256]:
            batch.add(f)
        ring.add_batch(batch, "c0ffee00c0de")
        batch.reset()
    host, port = args.nats.rsplit("/", 1)[-1].split(":")
    if args.core:
        n = ring.tail - ring.head
        data = b"".join(iter(lambda: ring.take(1 << 30, 0.0, 1 << 24), None))   # the framer's own core frames
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res = uvloop.run(run_raw_core(host, int(port), data, n))
    elif args.fast:
        inbox = b"_INBOX.e2efast"
        built = build_fast_frames(ring.extract(include_spill=True), inbox)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res = uvloop.run(run_raw_fast(host, int(port), built, inbox, window=args.window))
    else:
        inbox = b"_INBOX.e2eraw"
        built = build_frames(ring.extract(include_spill=True), inbox)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res = uvloop.run(run_raw(host, int(port), built, inbox, window=args.window))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    res.update(frames=len(frames), user_s=ru1.ru_utime - ru0.ru_utime, sys_s=ru1.ru_stime - ru0.ru_stime)
    emit(res)


# --------------------------------------------------------------------------- one run


def one_run(key: str, rnd: int, ctx: dict) -> dict:
    """One pipeline once: fresh stream (JetStream pipelines), fresh exchange, the process; its result."""
    nats_url, tmp = ctx["nats_url"], ctx["tmp"]
    name = f"e2e-{key}-{rnd}"
    stream, prefix = f"E2E_{key.upper()}_{rnd}", f"e2e_{key}_{rnd}.kalshi"
    events = ctx[EVENTS_OF.get(key, "events")]
    jetstream = key not in ("core", "cc")
    if jetstream:
        streams(nats_url, create=[(stream, prefix)])
    try:
        if key in ("c", "cf", "cc"):
            return run_process(["benchmarks.e2e", "--raw-process", "--events", str(events), "--nats", nats_url,
                                "--prefix", prefix, "--window", str(ctx["window"])]
                               + {"c": [], "cf": ["--fast"], "cc": ["--core"]}[key], ctx["timeout"])
        ex = Exchange(ctx["public_key"], events, MARKETS, tmp / "exchange.log",
                      rate=ctx["lat_rate"] if key == "lat" else 0.0).wait_listening()
        try:
            if key in ("ssmd", "core", "lat"):
                env = env_file(tmp / f"{name}.yaml", name=name, exchange_url=ex.url, nats_url=nats_url,
                               stream=stream, prefix=prefix, markets=ctx["tickers"], spill=tmp / f"spill-{name}",
                               window=ctx["window"])
                argv = ["benchmarks.e2e_connector", "--env", str(env), "--key", str(ctx["private_key"]),
                        "--mode", "core" if key == "core" else "jetstream"]
                if ctx.get("rss_interval"):
                    argv += ["--rss-interval", str(ctx["rss_interval"])]
                if key != "lat":    # each event makes 2 messages: the steady figures leave out the first third
                    argv += ["--warmup", str(2 * events // WARMUP_SHARE)]
            else:
                argv = [BASELINE_MODULES[key], "--url", ex.url, "--nats", nats_url, "--key", str(ctx["private_key"]),
                        "--prefix", prefix, "--markets", json.dumps(ctx["tickers"]), "--window", str(ctx["window"])]
            return run_process(argv, ctx["timeout"])
        finally:
            ex.stop()
    finally:
        if jetstream:
            streams(nats_url, delete=[stream])
        # the stream's file storage is written back by the kernel after the run: flush it now, so that the
        # next run's CPU and throughput do not carry this run's writeback (IO completions, page reclaim)
        os.sync()
        time.sleep(SETTLE)


# --------------------------------------------------------------------------- summary


def summarize(runs: dict[str, list[dict]]) -> dict:
    rows = {}
    for key, rs in runs.items():
        if not rs:
            continue
        def med(f, rs=rs):
            return statistics.median(f(r) for r in rs)
        row = {"pipeline": key, "label": PIPELINES[key], "rounds": len(rs), "messages": rs[0]["messages"],
               "frames": rs[0].get("frames"),
               "msgs_per_s": med(lambda r: r["messages"] / r["wall_s"]),
               "frames_per_s": med(lambda r: r.get("frames", 0) / r["wall_s"]),
               "cpu_ns_per_msg": med(lambda r: r["cpu_s"] * 1e9 / r["messages"]),
               "user_ns_per_msg": med(lambda r: r["user_s"] * 1e9 / r["messages"]),
               "sys_ns_per_msg": med(lambda r: r["sys_s"] * 1e9 / r["messages"]),
               "runs": rs}
        row["cpu_ns_per_frame"] = row["cpu_ns_per_msg"] * row["messages"] / max(1, row["frames"] or 1)
        if key not in ("c", "cf", "cc"):
            row["peak_rss_mib"] = med(lambda r: r["peak_rss_kib"] / 1024)
        if all("steady" in r for r in rs):
            st = [r["steady"] for r in rs]
            row["steady"] = {"after": st[0]["after"], "messages": st[0]["messages"],
                             "cpu_ns_per_msg": statistics.median(x["cpu_s"] * 1e9 / x["messages"] for x in st),
                             "user_ns_per_msg": statistics.median(x["user_s"] * 1e9 / x["messages"] for x in st),
                             "sys_ns_per_msg": statistics.median(x["sys_s"] * 1e9 / x["messages"] for x in st),
                             "msgs_per_s": statistics.median(x["messages"] / x["wall_s"] for x in st)}
        # how much each read carries: the per-read costs (Python glue, syscalls, wakeups) spread over it
        if all(r.get("reads") for r in rs):
            row["frames_per_read"] = med(lambda r: r["frames"] / r["reads"])
        if all(r.get("nats_reads") for r in rs):
            row["msgs_per_nats_read"] = med(lambda r: r["messages"] / r["nats_reads"])
        if rs[0].get("latency_p50_s") is not None:
            row["latency_p50_ms"] = med(lambda r: r["latency_p50_s"] * 1e3)
            row["latency_p99_ms"] = med(lambda r: r["latency_p99_s"] * 1e3)
        rows[key] = row
    ratios = {}
    if "ssmd" in rows:
        s = rows["ssmd"]
        for k in ("a", "b"):
            if k in rows:
                ratios[f"cpu_{k}_over_ssmd"] = rows[k]["cpu_ns_per_msg"] / s["cpu_ns_per_msg"]
        if "c" in rows:
            ratios["throughput_ssmd_over_c"] = s["msgs_per_s"] / rows["c"]["msgs_per_s"]
        if "cf" in rows:   # reported, not a threshold: the fast-ingest ceiling of the same messages
            ratios["throughput_ssmd_over_cf"] = s["msgs_per_s"] / rows["cf"]["msgs_per_s"]
    if "core" in rows and "cc" in rows:
        ratios["throughput_core_over_d"] = rows["core"]["msgs_per_s"] / rows["cc"]["msgs_per_s"]
        # per run, the two pipelines of the same round (less noise than a ratio of medians)
        for k in ("a", "b", "c"):
            pairs = list(zip(runs.get("ssmd", []), runs.get(k, []), strict=False))
            if pairs and k != "c":
                ratios[f"cpu_{k}_over_ssmd_per_round"] = [r2["cpu_s"] / r2["messages"] / (r1["cpu_s"] / r1["messages"])
                                                          for r1, r2 in pairs]
    return {"rows": rows, "ratios": ratios}


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def table(summary: dict) -> str:
    rows = summary["rows"]
    head = (f"{'pipeline':40s} {'msgs/s':>10s} {'frames/s':>10s} {'CPU/msg':>9s} {'user':>7s} {'sys':>7s} "
            f"{'CPU/frame':>10s} {'peak RSS':>9s} {'p50':>8s} {'p99':>8s}")
    lines = [head, "-" * len(head)]
    for key in PIPELINES:
        r = rows.get(key)
        if r is None:
            continue
        lines.append(f"{r['label']:40s} {r['msgs_per_s']:>10,.0f} {r['frames_per_s']:>10,.0f} "
                     f"{r['cpu_ns_per_msg']:>6,.0f} ns {r['user_ns_per_msg']:>7,.0f} {r['sys_ns_per_msg']:>7,.0f} "
                     f"{r['cpu_ns_per_frame']:>7,.0f} ns {_fmt(r.get('peak_rss_mib'), '>5.0f')} MiB "
                     f"{_fmt(r.get('latency_p50_ms'), '>5.1f')} ms {_fmt(r.get('latency_p99_ms'), '>5.1f')} ms")
    steady = [(rows[k]["label"], rows[k]["steady"], rows[k]["cpu_ns_per_msg"]) for k in PIPELINES
              if k in rows and "steady" in rows[k]]
    if steady:
        lines += ["", "the same runs without their start-up (from the poll after the first third of their messages framed):"]
        for label, st, whole in steady:
            lines.append(f"{label:40s} {st['msgs_per_s']:>10,.0f} {'':>10s} {st['cpu_ns_per_msg']:>6,.0f} ns "
                         f"{st['user_ns_per_msg']:>7,.0f} {st['sys_ns_per_msg']:>7,.0f}   "
                         f"(start-up: {whole / st['cpu_ns_per_msg'] - 1:+.0%} on the whole run's figure)")
    per_read = [(rows[k]["label"], rows[k]["frames_per_read"], rows[k].get("msgs_per_nats_read")) for k in PIPELINES
                if k in rows and "frames_per_read" in rows[k]]
    if per_read:
        lines += ["", "per socket read (the per-read costs spread over this many):"]
        for label, fpr, mpr in per_read:
            lines.append(f"{label:40s} {fpr:>10,.1f} frames per WebSocket read"
                         + (f", {mpr:,.0f} messages per NATS read" if mpr else ""))
    ra = summary["ratios"]
    lines.append("")
    for k, label in (("cpu_a_over_ssmd", "CPU per message, (a) / ssmd-fast"),
                     ("cpu_b_over_ssmd", "CPU per message, (b) / ssmd-fast"),
                     ("throughput_ssmd_over_c", "acked msgs/s, ssmd-fast / (c)"),
                     ("throughput_ssmd_over_cf", "acked msgs/s, ssmd-fast / (c')"),
                     ("throughput_core_over_d", "core msgs/s, ssmd-fast / (d)")):
        if k in ra:
            lines.append(f"{label:40s} {ra[k]:8.2f}" + ("" if k.startswith("cpu") else f"  ({ra[k]:.0%})"))
    return "\n".join(lines)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("picows", "msgspec", "websockets", "uvloop", "Cython"):
        try:
            from importlib.metadata import version
            versions[mod] = version(mod.lower() if mod != "Cython" else "cython")
        except Exception:
            versions[mod] = None
    from importlib.metadata import version

    versions["nats-py"] = version("nats-py")
    from ssmd_fast.natsserver import find_nats_server

    ns = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "nats_server": ns.replace("nats-server: ", ""), **versions,
            "loadavg_start": os.getloadavg()}


# --------------------------------------------------------------------------- main


@dataclass
class Plan:
    """What one e2e run does (``python -m benchmarks`` and ``benchmarks.e2e`` fill it from options)."""

    events: int = 150_000           # per JetStream run (ssmd, a, b, c): the first ~20k messages cost 2x
    core_events: int = 400_000      # per core-NATS run
    lat_events: int = 40_000        # the paced latency run ...
    lat_rate: float = 20_000.0      # ... at this many events per second
    rounds: int = 3
    pipelines: tuple[str, ...] = tuple(PIPELINES)
    timeout: float = 600.0
    rss_interval: float = 0.0       # the long run samples the connector's RSS
    window: int = WINDOW


def run(plan: Plan, log=print) -> dict:
    """Every pipeline ``plan.rounds`` times, interleaved (the order rotates per round); the summary."""
    from ssmd_fast import normalize
    from ssmd_fast.kalshi.auth import generate_key_pair
    from ssmd_fast.kalshi.generator import SessionGenerator
    from ssmd_fast.natsserver import NatsServer

    if normalize.IMPLEMENTATION != "cython":
        raise RuntimeError("the compiled extensions are not built (make build)")
    pipelines = list(plan.pipelines)
    runs: dict[str, list[dict]] = {k: [] for k in pipelines}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ssmd-e2e-") as tmp_s:
        tmp = Path(tmp_s)
        private, public = generate_key_pair()
        (tmp / "private.pem").write_bytes(private)
        os.chmod(tmp / "private.pem", 0o600)
        (tmp / "public.pem").write_bytes(public)
        with NatsServer(store_dir=tmp / "nats") as srv:
            ctx = {"nats_url": srv.url, "tmp": tmp, "events": plan.events, "core_events": plan.core_events,
                   "lat_events": plan.lat_events, "lat_rate": plan.lat_rate, "public_key": tmp / "public.pem",
                   "private_key": tmp / "private.pem", "timeout": plan.timeout, "rss_interval": plan.rss_interval,
                   "window": plan.window,
                   "tickers": list(SessionGenerator(seed=1, markets=MARKETS).tickers)}
            for rnd in range(plan.rounds):
                order = pipelines[rnd % len(pipelines):] + pipelines[:rnd % len(pipelines)]
                for key in order:
                    res = one_run(key, rnd, ctx)
                    runs[key].append(res)
                    lat = f"  p50 {res['latency_p50_s'] * 1e3:6.1f} ms" if res.get("latency_p50_s") else ""
                    log(f"  round {rnd + 1} {PIPELINES[key]:40s} {res['messages']:>9,} msgs "
                        f"{res['messages'] / res['wall_s']:>11,.0f} msgs/s {res['cpu_s'] * 1e9 / res['messages']:>8,.0f}"
                        f" ns CPU/msg{lat}")
                    if res.get("lost") or res.get("spilled") or res.get("errors"):
                        raise RuntimeError(f"{key}: run not clean: {res}")
                    if key not in ("c", "cf", "cc") and res["frames"] < 0.9 * ctx[EVENTS_OF.get(key, "events")]:
                        raise RuntimeError(f"{key}: {res['frames']} frames of {ctx[EVENTS_OF.get(key, 'events')]} events")
    summary = summarize(runs)
    summary.update(benchmark="e2e", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                   seconds=round(time.time() - started, 1), machine=machine(), plan=dataclasses.asdict(plan),
                   markets=MARKETS, window=plan.window,
                   message="one NATS message; each data frame is published raw + normalized (2 messages)")
    return summary


def write_results(summary: dict, out_dir: Path = RESULTS, name: str = "e2e") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = summary["time"].replace(":", "").replace("-", "")
    path = out_dir / f"{name}-{stamp}.json"
    text = json.dumps(summary, indent=1)
    path.write_text(text)
    if name == "e2e":       # latest.json (the chart's and README's source) is the scoreboard run's only
        (out_dir / "latest.json").write_text(text)
    return path


def pipeline_keys(text: str) -> tuple[str, ...]:
    """``--pipelines``: the keys of PIPELINES, checked before a nats-server or an exchange is started."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in PIPELINES]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown pipeline {', '.join(unknown) or '(none given)'}; "
                                         f"the pipelines are {', '.join(PIPELINES)}")
    return keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=150_000, help="events per JetStream run (default 150000)")
    ap.add_argument("--core-events", type=int, default=400_000, help="events per core-NATS run (default 400000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pipelines", default=",".join(PIPELINES), type=pipeline_keys,
                    help="comma-separated keys, in this order by default: "
                         + ", ".join(f"{k} = {v}" for k, v in PIPELINES.items()))
    ap.add_argument("--quick", action="store_true", help="20000 / 100000 events, 1 round (while developing)")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--window", type=int, default=WINDOW,
                    help=f"transport.window of every pipeline (default {WINDOW}, the connector's default: its window "
                         "grows to it from transport.window_min 4096); the connector's pacing thresholds do not "
                         "move with it")
    # the raw ceiling's own process (internal)
    ap.add_argument("--raw-process", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nats", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--core", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_process:
        raw_process(args)
        return 0
    plan = Plan(args.events, args.core_events, rounds=args.rounds,
                pipelines=args.pipelines, window=args.window)
    if args.quick:
        plan.events, plan.core_events, plan.lat_events, plan.rounds = 20_000, 100_000, 20_000, 1
    summary = run(plan)
    print()
    print(table(summary))
    # A run of some pipelines, or a --quick one, is kept apart: latest.json and the chart are the README's
    # scoreboard, and a developer's partial run must not replace them.
    partial = args.quick or set(plan.pipelines) != set(PIPELINES)
    path = write_results(summary, name="e2e-partial" if partial else "e2e")
    if not (args.no_chart or partial):
        from benchmarks.chart import chart

        chart(summary, RESULTS / "e2e-latest.png")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
