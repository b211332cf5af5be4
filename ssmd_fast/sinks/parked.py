"""ParkedMessages: messages nats-server answered with "no responders" (no stream stores their subject now),
held out of the publish window so the rest of the stream flows.

A parked message is retried on a slowing cadence (``retry``, then 2x, 4x, ... after it was first parked)
and dead-lettered once it was first parked ``horizon`` seconds ago; its id keeps its first-park time
across retries (and across a trip through the spill), so the horizon is the message's, not the retry's.
Sans-IO: time comes in, messages come out.
"""

from __future__ import annotations

import heapq
import itertools

Message = tuple[bytes, bytes, bytes]   # subject, msg id, payload


class ParkedMessages:
    def __init__(self, retry: float, horizon: float):
        self.retry = max(0.05, retry)
        self.horizon = horizon
        self._heap: list[tuple[float, int, Message]] = []
        self._seen: dict[bytes, tuple[float, int]] = {}   # msg id -> (first parked, retries so far)
        self._order = itertools.count()
        self.bytes = 0
        self.total = 0                                    # messages ever parked

    def __len__(self) -> int:
        return len(self._heap)

    def park(self, msg: Message, now: float) -> bool:
        """Hold ``msg`` until its next retry; False when its horizon has passed (dead-letter it)."""
        first, tries = self._seen.get(msg[1], (now, 0))
        if now - first >= self.horizon:
            self._seen.pop(msg[1], None)
            return False
        self._seen[msg[1]] = (first, tries + 1)
        due = min(now + self.retry * (1 << min(tries, 16)), first + self.horizon)
        heapq.heappush(self._heap, (due, next(self._order), msg))
        self.bytes += len(msg[2])
        self.total += 1
        return True

    def due(self, now: float) -> tuple[list[Message], list[Message]]:
        """(messages to retry now, messages past their horizon to dead-letter)."""
        retry, dead = [], []
        while self._heap and self._heap[0][0] <= now:
            msg = heapq.heappop(self._heap)[2]
            self.bytes -= len(msg[2])
            first = self._seen.get(msg[1], (now, 0))[0]
            if now - first >= self.horizon:
                self._seen.pop(msg[1], None)
                dead.append(msg)
            else:
                retry.append(msg)
        if len(self._seen) > 4 * len(self._heap) + 1024:   # ids whose message got stored meanwhile
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 2 * self.horizon}
        return retry, dead

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else 0.0

    def drain(self) -> list[Message]:
        """Every parked message, oldest park first (shutdown and spill keep them)."""
        out = [m for _due, _n, m in sorted(self._heap, key=lambda x: x[1])]
        self._heap.clear()
        self.bytes = 0
        return out
