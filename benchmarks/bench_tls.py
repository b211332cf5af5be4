"""wss:// receive path: uvloop's TLS transport (the session's) against aiofastnet's, side by side in one run.

    python -m benchmarks.bench_tls [--frames 200000] [--rounds 4] [--write 16384]

The session runs wss:// (Kalshi) on uvloop's own TLS transport, not on aiofastnet's, picows' default
(docs/design.md, "fd reuse"). This measures what that choice costs.

A picows TLS server (its own process, a fresh one per client run) sends a generated session
(``generate_session``: acks, snapshots, then the mixed stream) as pre-built WebSocket frames, ``--write``
bytes per write (16 KiB: one full TLS record each), so the client reads whole records in bounded reads
as in a backlog; a small ``--write`` (e.g. 200) gives about one frame per record and per read. Each
client runs in its own process on uvloop: the session's receive path (``BatchListener`` compiled ->
``FrameBatch``, ``BoundedReads``, the session's own frame parsing), no sinks. "CPU per frame" is the
client process's CPU time (``time.process_time``) from before the connect to the last frame, divided by
the frames. The two transports alternate over the rounds; medians are reported. Results go to
``benchmarks/results/bench_tls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "bench_tls.json"
VARIANTS = {"uvloop": "uvloop TLS transport (the session's)", "aiofastnet": "aiofastnet TLS transport"}
SEND_HIGH = 4 << 20          # the server waits while more than this is unsent
WRITE = 16 * 1024            # bytes of frames per server write: one full TLS record each


def _make_cert(tmp: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))


# ------------------------------------------------------------------ the server (a subprocess)


async def _serve(tmp: Path, frames: int, write: int) -> None:
    from picows import WSListener, ws_create_server

    from ssmd_fast.kalshi.exchange_conn import ws_frame
    from ssmd_fast.kalshi.generator import generate_session

    stream = b"".join(ws_frame(f) for f in generate_session(frames, seed=1, markets=20))

    class Sender(WSListener):
        def on_ws_connected(self, transport):
            asyncio.get_running_loop().create_task(self._send(transport))

        async def _send(self, transport):
            raw = transport.underlying_transport       # the frames pre-built: the server costs little
            for i in range(0, len(stream), write):
                raw.write(stream[i:i + write])
                while raw.get_write_buffer_size() > SEND_HIGH:
                    await asyncio.sleep(0.001)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    server = await ws_create_server(lambda _req: Sender(), "127.0.0.1", 0, ssl=ctx)
    (tmp / "port.tmp").write_text(str(server.sockets[0].getsockname()[1]))
    (tmp / "port.tmp").rename(tmp / "port")
    await asyncio.sleep(3600)


# ------------------------------------------------------------------ the client (a subprocess)


async def _receive(tmp: Path, port: int, frames: int, variant: str) -> dict:
    from picows import ws_connect

    from ssmd_fast import normalize
    from ssmd_fast.kalshi.session import BoundedReads
    from ssmd_fast.listener import MAX_MESSAGE_SIZE, BatchListener

    assert normalize.IMPLEMENTATION == "cython", "the benchmark needs the compiled normalizer"
    got = [0]
    done = asyncio.get_running_loop().create_future()

    def on_batch(batch) -> None:
        got[0] += len(batch)
        if got[0] >= frames and not done.done():
            done.set_result(None)

    ctx = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    t0 = time.process_time()
    transport, lst = await ws_connect(lambda: BatchListener(normalize.FrameBatch(), on_batch),
                                      f"wss://127.0.0.1:{port}/trade-api/ws/v2", ssl_context=ctx,
                                      enable_auto_pong=False, max_frame_size=MAX_MESSAGE_SIZE,
                                      use_aiofastnet=variant == "aiofastnet")
    raw = transport.underlying_transport
    raw.set_protocol(BoundedReads(raw.get_protocol(), lst))
    await asyncio.wait_for(done, 300)
    cpu = time.process_time() - t0
    parsing = raw.get_protocol().parsing
    transport.disconnect()
    return {"frames": got[0], "cpu": cpu, "ns_per_frame": cpu / got[0] * 1e9, "parsing": parsing,
            "frames_per_read": got[0] / max(1, lst.batches)}


def _one(tmp: Path, frames: int, write: int, variant: str) -> dict:
    port_file = tmp / "port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_tls", "--serve", str(tmp),
                               "--frames", str(frames), "--write", str(write)])
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the TLS server did not start")
            time.sleep(0.05)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_tls", "--client", str(tmp),
                               "--port", port_file.read_text(), "--frames", str(frames), "--variant", variant],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} client failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200_000, help="frames per run (default 200,000)")
    p.add_argument("--rounds", type=int, default=4, help="runs per transport, alternated (default 4)")
    p.add_argument("--write", type=int, default=WRITE, help=f"bytes per server write (default {WRITE:,})")
    p.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--client", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import uvloop

    if args.serve:
        uvloop.run(_serve(Path(args.serve), args.frames, args.write))
        return 0
    if args.client:
        print(json.dumps(uvloop.run(_receive(Path(args.client), args.port, args.frames, args.variant))))
        return 0
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        _make_cert(tmp)
        for rnd in range(args.rounds):
            order = list(VARIANTS) if rnd % 2 == 0 else list(VARIANTS)[::-1]
            for variant in order:
                r = _one(tmp, args.frames, args.write, variant)
                runs[variant].append(r)
                print(f"  round {rnd + 1} {VARIANTS[variant]:48s} {r['ns_per_frame']:8.0f} ns CPU/frame"
                      f" ({r['frames_per_read']:.0f} frames per read)", flush=True)
    med = {v: statistics.median(r["ns_per_frame"] for r in rs) for v, rs in runs.items()}
    ratio = med["uvloop"] / med["aiofastnet"]     # > 1: the session's choice costs CPU
    print(f"\nwss:// receive, {args.frames:,} frames in writes of {args.write:,} bytes, medians of {args.rounds}:")
    for v in VARIANTS:
        print(f"  {VARIANTS[v]:48s} {med[v]:8.0f} ns CPU/frame")
    print(f"  uvloop / aiofastnet: {ratio:.2f}")
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_tls", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "frames": args.frames, "write": args.write, "rounds": args.rounds, "median_ns_per_frame": med,
        "uvloop_over_aiofastnet": ratio, "runs": runs}, indent=1) + "\n")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
