"""What nats-server spends per message, by protocol feature, at one fixed rate (the e2e ceiling's cost).

    python -m benchmarks.bench_server_cost [--events 60000] [--rate 50000] [--rounds 2]

The connector's messages for a generated session (raw + normalized, the framer's subjects and ids) are
written over one raw socket at ``--rate`` messages per second, in variants interleaved over the rounds,
and nats-server's own CPU time (``/proc/PID/stat``) is divided by the messages:

- ``ack``: JetStream, a reply subject per message (an ack each), ``Nats-Msg-Id`` header: the connector;
- ``no ack``: the same without a reply subject (the server stores, sends nothing back);
- ``ack, no id``: with the ack, without the ``Nats-Msg-Id`` header (no duplicate tracking);
- ``core``: the same ``HPUB`` frames on subjects no stream stores (parse and route only).

Every JetStream variant waits until the stream holds every message. The rate is fixed so that the
variants do the same work per second (a server at its limit batches differently).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

VARIANTS = ("ack", "no ack", "ack, no id", "core")
CHUNK = 200


def build(events: int, prefix: str) -> list[tuple[bytes, bytes, bytes]]:
    from ssmd_fast import normalize
    from ssmd_fast.kalshi.generator import generate_session
    from ssmd_fast.sinks import framing

    frames = list(generate_session(events, seed=1, markets=20))
    ring = framing.PublishRing(prefix, b"_INBOX.x")
    batch = normalize.FrameBatch()
    for k in range(0, len(frames), 256):
        for f in frames[k:k + 256]:
            batch.add(f)
        ring.add_batch(batch, f"c0ffee{k:06d}")
        batch.reset()
    return ring.extract(include_spill=True)


def wire(messages, inbox: bytes | None, ids: bool) -> list[bytes]:
    out = []
    for n, (subject, msg_id, payload) in enumerate(messages, 1):
        reply = b" %s.%d" % (inbox, n) if inbox else b""
        if ids:
            hdr = b"NATS/1.0\r\nNats-Msg-Id: " + msg_id + b"\r\n\r\n"
            out.append(b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subject, reply, len(hdr), len(hdr) + len(payload), hdr,
                                                          payload))
        else:
            out.append(b"PUB %s%s %d\r\n%s\r\n" % (subject, reply, len(payload), payload))
    return out


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stored(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


async def one(srv, variant: str, rnd: int, events: int, rate: float) -> float:
    """nats-server CPU ns per message of one variant."""
    import nats

    from ssmd_fast.config import TransportConfig
    from ssmd_fast.sinks.stream import wanted_config

    key = variant.replace(", ", "_").replace(" ", "")
    stream, prefix = f"COST_{key.upper()}_{rnd}", f"cost_{key}_{rnd}.kalshi"
    js_stream = variant != "core"
    if js_stream:
        nc = await nats.connect(srv.url)
        await nc.jetstream().add_stream(wanted_config(TransportConfig(type="nats", url=(srv.url,), stream=stream,
                                                                      subject_prefix=prefix)))
        await nc.close()
    inbox = b"_INBOX.cost%d" % rnd if variant.startswith("ack") else None
    data = wire(build(events, prefix), inbox, ids=variant != "ack, no id")
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
    if inbox:
        writer.write(b"SUB %s.* 1\r\n" % inbox)
    writer.write(b"PING\r\n")
    while not (await reader.readline()).startswith(b"PONG"):
        pass
    acks = [0]

    async def read_acks():
        while True:
            line = await reader.readline()
            if line.startswith(b"MSG "):
                await reader.readexactly(int(line.split()[-1]) + 2)
                acks[0] += 1

    task = asyncio.get_running_loop().create_task(read_acks())
    cpu0, t0 = server_cpu(srv.proc.pid), time.perf_counter()
    for k in range(0, len(data), CHUNK):
        writer.write(b"".join(data[k:k + CHUNK]))
        await writer.drain()
        delay = t0 + (k + CHUNK) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if inbox:
            if acks[0] >= len(data):
                break
        elif not js_stream or await stored(srv.url, stream) >= len(data):
            break
        await asyncio.sleep(0.01)
    cpu = server_cpu(srv.proc.pid) - cpu0
    if js_stream and await stored(srv.url, stream) != len(data):
        raise RuntimeError(f"{variant}: the stream does not hold every message")
    task.cancel()
    writer.close()
    return cpu * 1e9 / len(data)


async def main_async(args) -> dict[str, list[float]]:
    from ssmd_fast.natsserver import NatsServer

    out: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with NatsServer() as srv:
        for rnd in range(args.rounds):
            for v in VARIANTS:
                ns = await one(srv, v, rnd, args.events, args.rate)
                out[v].append(ns)
                print(f"  round {rnd + 1} {v:12s} nats-server {ns:8,.0f} ns CPU per message", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000, help="generated events (x2 messages)")
    ap.add_argument("--rate", type=float, default=50_000.0, help="messages per second")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    res = asyncio.run(main_async(args))
    print(f"\nnats-server CPU per message at {args.rate:,.0f} msgs/s (median of {args.rounds}):")
    for v, xs in res.items():
        print(f"  {v:12s} {statistics.median(xs):8,.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
