"""Bookkeeping of the protocol core: the commands in flight and the subscriptions of a connection.

Plain data, no I/O. ``protocol.py`` decides; this module remembers (which command id asked for
what, which sid belongs to which channel and markets).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ssmd_fast.kalshi.shards import BOOK_CHANNEL, SubscriptionSpec

PENDING = "pending"              # subscribe sent, no `subscribed` yet
ACTIVE = "active"                # bound to a sid
UNSUBSCRIBING = "unsubscribing"  # unsubscribe sent (to renew it, or on close)
FAILED = "failed"                # the server refused it and it cannot be retried as is


def command_text(cmd_id: int, cmd: str, params: dict | None = None) -> str:
    """A client command as compact JSON: ``{"id":1,"cmd":"subscribe","params":{...}}``."""
    body: dict = {"id": cmd_id, "cmd": cmd}
    if params is not None:
        body["params"] = params
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Subscription:
    """One subscription on the current connection: its spec, sid and state."""

    spec: SubscriptionSpec
    state: str = PENDING
    sid: int | None = None
    markets: tuple[str, ...] = ()
    renew: bool = False          # unsubscribing in order to subscribe again (resync fallback)

    def __post_init__(self) -> None:
        if not self.markets:
            self.markets = self.spec.markets

    @property
    def channel(self) -> str:
        return self.spec.channel

    @property
    def is_book(self) -> bool:
        return self.spec.channel == BOOK_CHANNEL


@dataclass
class Command:
    """A command sent and not answered yet."""

    id: int
    kind: str                    # subscribe | unsubscribe | get_snapshot | add_markets | delete_markets | list
    text: str
    sent_at: float
    sub: Subscription | None = None
    sids: tuple[int, ...] = ()
    markets: tuple[str, ...] = ()
    retries: int = 0


class CommandLog:
    """Allocates increasing command ids (from 1 on every connection) and remembers what each asked."""

    def __init__(self) -> None:
        self.next_id = 1
        self.pending: dict[int, Command] = {}

    def reset(self) -> None:
        self.next_id = 1
        self.pending.clear()

    def new(self, kind: str, cmd: str, params: dict | None, now: float, *, sub: Subscription | None = None,
            sids: Sequence[int] = (), markets: Sequence[str] = (), retries: int = 0) -> Command:
        cmd_id = self.next_id
        self.next_id += 1
        command = Command(cmd_id, kind, command_text(cmd_id, cmd, params), now, sub, tuple(sids),
                          tuple(markets), retries)
        self.pending[cmd_id] = command
        return command

    def take(self, cmd_id: int | None) -> Command | None:
        """The command a reply answers (and forget it). ``id`` 0 means "no id"."""
        if not cmd_id:
            return None
        return self.pending.pop(cmd_id, None)

    def peek(self, cmd_id: int | None) -> Command | None:
        if not cmd_id:
            return None
        return self.pending.get(cmd_id)

    def expired(self, now: float, timeout: float) -> list[Command]:
        """Commands older than ``timeout`` (removed from the log)."""
        old = [c for c in self.pending.values() if now - c.sent_at > timeout]
        for c in old:
            del self.pending[c.id]
        return old

    def waiting_for(self, sub: Subscription, kind: str) -> Command | None:
        for c in self.pending.values():
            if c.sub is sub and c.kind == kind:
                return c
        return None


@dataclass
class SubscriptionTable:
    """The planned subscriptions of a session and their live state on the current connection."""

    specs: list[SubscriptionSpec]
    subs: list[Subscription] = field(default_factory=list)
    by_sid: dict[int, Subscription] = field(default_factory=dict)

    def restart(self) -> list[Subscription]:
        """A new connection: every planned subscription starts pending (Kalshi assigns new sids)."""
        self.subs = [Subscription(spec) for spec in self.specs]
        self.by_sid.clear()
        return list(self.subs)

    def bind(self, sub: Subscription, sid: int) -> None:
        if sub.sid is not None and self.by_sid.get(sub.sid) is sub:
            del self.by_sid[sub.sid]
        sub.sid = sid
        sub.state = ACTIVE
        self.by_sid[sid] = sub

    def unbind(self, sub: Subscription) -> None:
        if sub.sid is not None and self.by_sid.get(sub.sid) is sub:
            del self.by_sid[sub.sid]
        sub.sid = None

    def for_sid(self, sid: int | None) -> Subscription | None:
        return self.by_sid.get(sid) if sid is not None else None

    def pending_for_channel(self, channel: str) -> Subscription | None:
        for sub in self.subs:
            if sub.state == PENDING and sub.channel == channel:
                return sub
        return None

    def split(self, sub: Subscription) -> list[Subscription]:
        """Replace ``sub`` (and its spec in the plan) by its two halves; return the new subscriptions."""
        first, second = sub.spec.halves()
        i = self.specs.index(sub.spec)
        self.specs[i:i + 1] = [first, second]
        j = self.subs.index(sub)
        self.unbind(sub)
        new = [Subscription(first), Subscription(second)]
        self.subs[j:j + 1] = new
        return new

    def drop(self, sub: Subscription) -> None:
        """The server refused ``sub`` for good (kept out of the plan; reported by the caller)."""
        self.unbind(sub)
        sub.state = FAILED
        if sub.spec in self.specs:
            self.specs.remove(sub.spec)

    @property
    def all_active(self) -> bool:
        live = [s for s in self.subs if s.state != FAILED]
        return bool(live) and all(s.state == ACTIVE for s in live)

    def active_sids(self) -> list[int]:
        return [s.sid for s in self.subs if s.state == ACTIVE and s.sid is not None]

    def markets_of(self, sid: int) -> tuple[str, ...]:
        sub = self.by_sid.get(sid)
        return sub.markets if sub is not None else ()

    def update_markets(self, sub: Subscription, markets: Iterable[str]) -> None:
        sub.markets = tuple(markets)
