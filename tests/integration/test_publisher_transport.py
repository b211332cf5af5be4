"""transport.py: the factory, publish/subscribe over JetStream, and the none transport."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from test_publisher import CONN, batches, expected, make_cfg, session

from ssmd_fast.config import TransportConfig
from ssmd_fast.errors import PublishError
from ssmd_fast.events import StatusEvent
from ssmd_fast.natsserver import NatsServer
from ssmd_fast.transport import NatsTransport, NullTransport, create_transport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_factory_picks_by_type(tmp_path):
    assert isinstance(create_transport(make_cfg("nats://127.0.0.1:1", str(tmp_path))), NatsTransport)
    assert isinstance(create_transport(TransportConfig(type="none")), NullTransport)
    with pytest.raises(PublishError, match="unknown transport.type"):
        create_transport(TransportConfig(type="kafka"))


def test_publish_and_subscribe_round_trip(tmp_path):
    bl = batches(session(200))
    want = expected(bl)
    with NatsServer() as srv:
        async def main():
            tr = create_transport(make_cfg(srv.url, str(tmp_path)))
            await tr.start()
            assert await tr.publisher.wait_connected(10)
            got = []

            async def reader():
                async for m in tr.subscribe("t.kalshi.>"):
                    got.append(m)
                    if len(got) == len(want) + 2:
                        return
            task = asyncio.create_task(reader())
            await asyncio.sleep(0.3)  # the ordered consumer delivers new messages from here on
            for b in bl:
                tr.publish_batch(b, CONN)
            tr.publish("t.kalshi.custom.x", b"hello", msg_id="custom-1")
            tr.submit_event(StatusEvent("resync", "aaaaaaaaaaaa", market="M"))
            await asyncio.wait_for(task, 20)
            rep = await tr.close(10)
            assert rep.lost == 0 and rep.written == len(want) + 2
            assert {m.msg_id for m in got} == set(want) | {"custom-1", "kalshi:event:aaaaaaaaaaaa:1"}
            assert next(m for m in got if m.msg_id == "custom-1").data == b"hello"
            with pytest.raises(ValueError):
                tr.publisher.submit_message(b"a.*", b"x", b"")  # no wildcard subjects, ever
        uvloop.run(main())


def test_none_transport_publishes_nothing_and_cannot_subscribe():
    async def main():
        tr = create_transport(TransportConfig(type="none"))
        await tr.start()
        tr.publish("a.b", b"x")
        tr.publish_batch(None, CONN)
        assert tr.stats()["discarded_calls"] == 2
        with pytest.raises(PublishError, match="none"):
            async for _ in tr.subscribe(">"):
                pass
        rep = await tr.close()
        assert rep.written == 0 and rep.lost == 0
    uvloop.run(main())
