"""A session's connection reset before its transport started reading, then a socket given the same fd
number: the F8 drill's rare SIGABRT, made deterministic.

picows uses aiofastnet's socket transport by default. That transport registers its reader with
``call_soon``; when the connection fails first (picows' upgrade request meets the peer's reset), the
transport closes its socket and the deferred ``add_reader`` still runs, so uvloop keeps a reader for a
closed fd. The next socket that gets that number, watched for writing and then closed in one loop turn
(a connect that fails), makes uvloop re-arm the stale reader: libuv stages an ``EPOLL_CTL_ADD`` in its
io_uring batch, the close makes it fail with EBADF, and libuv calls ``abort()``. The session (ws:// and
wss://) and the local exchange use uvloop's own transports, whose fds libuv closes itself.

Each case runs in a child process (an abort must not take pytest with it): a real ``KalshiSession`` under
uvloop whose first connect meets a reset at the exact moment above (``ws_connect`` wrapped to hand picows a
socket the peer resets before the transport's first turn), then the same fd number watched and closed.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHILD = r'''
import asyncio, socket, struct, sys
import uvloop
import ssmd_fast.kalshi.session as session_mod
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.shards import plan_connections

FORCE_AIOFASTNET = sys.argv[1] == "aiofastnet"
SCHEME = sys.argv[2]


async def main():
    loop = asyncio.get_running_loop()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    fds = []

    def reset_before_reading(_url):
        """A connected socket whose peer resets it after picows made its transport, before the first turn."""
        sock = socket.create_connection(("127.0.0.1", port))
        peer, _ = server.accept()

        def reset():
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
        loop.call_soon(reset)
        fds.append(sock.fileno())
        return sock

    real_connect = session_mod.ws_connect

    def ws_connect(*args, **kwargs):       # the session's own options, plus the socket above
        if FORCE_AIOFASTNET:
            kwargs["use_aiofastnet"] = True
        return real_connect(*args, socket_factory=reset_before_reading, **kwargs)
    session_mod.ws_connect = ws_connect

    plan = plan_connections(["ticker", "trade"])[0]
    s = session_mod.KalshiSession(KalshiCredentials("k", generate_key_pair()[0]),
                                  f"{SCHEME}://127.0.0.1:{port}/trade-api/ws/v2", plan, [],
                                  backoff_initial=5.0, backoff_max=5.0)
    s.start()
    for _ in range(500):                   # bounded: 5 s
        if s.last_error:
            break
        await asyncio.sleep(0.01)
    print("first connect:", s.last_error, flush=True)
    for _ in range(3):                     # the transport's deferred callbacks and its close run
        await asyncio.sleep(0)
    sock = socket.socket()
    sock.setblocking(False)
    print("fd", fds[0], "then", sock.fileno(), flush=True)
    done = loop.create_future()

    def writable():                        # what a failed asynchronous connect does in one turn
        loop.remove_writer(sock.fileno())
        sock.close()
        done.set_result(None)
    loop.add_writer(sock.fileno(), writable)
    await done
    await asyncio.sleep(0.05)              # the next poll flushes libuv's batched epoll_ctl
    await s.close(timeout=2)
    print("survived", flush=True)


uvloop.run(main())
'''


def _child(mode: str, scheme: str = "ws") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, mode, scheme], capture_output=True, text=True, timeout=45)


@pytest.mark.parametrize("scheme, failure", [
    ("ws", "connection closed during the WebSocket handshake"),
    ("wss", "ConnectionResetError"),       # the reset meets the TLS handshake
])
def test_session_survives_a_reset_before_reading_and_the_fd_reused(scheme, failure):
    proc = _child("session", scheme)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stdout + proc.stderr
    assert "first connect:" in proc.stdout and failure in proc.stdout.split("first connect:", 1)[1].split("\n")[0]
    fd, _, again = proc.stdout.split("fd ", 1)[1].split()[:3]
    assert fd == again                     # the scenario happened: the same number came back


def test_the_same_scenario_aborts_over_aiofastnets_transport():
    """Why the session does not use picows' default: this fails when aiofastnet stops leaving the reader
    behind (then the session may use it again: measure it first, see docs/design.md "fd reuse")."""
    proc = _child("aiofastnet")
    assert "first connect:" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == -signal.SIGABRT, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout
