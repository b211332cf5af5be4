"""Regression tests for the root causes the drills found in the shared mechanism (fast; part of make test).

- A peer that accepts the TCP connection and closes it before the WebSocket upgrade completes (a load
  balancer whose backend is down): picows' ``ws_connect`` then returns ``(transport, None)`` instead of
  raising. The session took that for a connection: connect/disconnect events under the previous
  connection's id, a reconnect counted, and the backoff of a failed *session* (growing to
  ``backoff_max``) instead of the short retry of a refused connect.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.session import KalshiSession
from ssmd_fast.kalshi.shards import plan_connections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


class Events:
    def __init__(self):
        self.events = []

    def submit(self, batch, conn):
        pass

    def submit_event(self, event):
        self.events.append(event)


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_a_peer_closing_during_the_handshake_is_a_failed_connect_not_a_connection(close):
    import socket
    import struct

    private, _ = generate_key_pair()
    accepted = []

    async def main():
        async def handle(reader, writer):
            accepted.append(1)
            await reader.read(100)                 # the upgrade request arrives, then the door shuts
            if close == "rst":
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = Events()
        plan = plan_connections(("ticker",))[0]
        s = KalshiSession(KalshiCredentials("k", private), f"ws://127.0.0.1:{port}/trade-api/ws/v2", plan, [sink],
                          backoff_initial=0.05, backoff_max=30.0, refused_retry_max=0.2)
        s.start()
        await asyncio.sleep(1.5)
        await s.close()
        server.close()
        return s, sink

    s, sink = uvloop.run(main())
    assert len(accepted) >= 4                      # retried at the refused pace (at most 0.2 s apart)
    assert sink.events == [] and s.core.connections == 0 and s.stats()["reconnects"] == 0
    assert "handshake" in (s.last_error or "")
