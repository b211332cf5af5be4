"""An event loop on its own thread, for the pieces a drill keeps out of the connector's loop (the
exchange, the proxies) or drives from synchronous code (a connector running as a subprocess)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import uvloop


class LoopThread:
    def __init__(self, name: str = "drill-loop"):
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float = 30.0):
        """Run a coroutine on the thread's loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args, timeout: float = 10.0, **kw):
        """Call ``fn`` on the loop thread (awaiting it when it is a coroutine function) and return its result."""
        async def invoke():
            out = fn(*args, **kw)
            return await out if inspect.isawaitable(out) else out
        return self.run(invoke(), timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(cancel_all(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
