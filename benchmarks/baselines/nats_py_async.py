"""nats-py's windowed ``js.publish_async`` with a ``Nats-Msg-Id`` per message: the per-message API."""

from __future__ import annotations

import time

import nats

__all__ = ["run_nats_py"]


async def run_nats_py(url: str, messages, *, window: int = 256) -> dict:
    """Publish (subject, msg_id, payload) tuples, wait for every ack; wall time and this process's CPU."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=window)
    items = [(s.decode(), p, {"Nats-Msg-Id": i.decode()}) for s, i, p in messages]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for subject, payload, headers in items:
        await js.publish_async(subject, payload, headers=headers)
    await js.publish_async_completed()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await nc.close()
    return {"messages": len(items), "wall_s": wall, "cpu_s": cpu, "errors": 0}
