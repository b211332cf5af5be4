"""The sans-IO protocol core of a Kalshi session.

It decides, the session acts: every entry point takes the time (a monotonic clock, seconds) and
returns a list of actions (send this command, ping, reconnect, emit a status event, log a line).
No sockets, no clock reads, no sleeping, so every decision is unit-tested directly.

What it owns: the command ids and the commands in flight, the subscriptions (channel -> sid,
markets per sid), the replies (`subscribed`, `ok`, `unsubscribed`, `error`), book resyncs asked for
by the Sequencer (`get_snapshot`, then unsubscribe + subscribe as the fallback), the stale-feed
watchdog and the reconnect backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ssmd_fast.kalshi.shards import SubscriptionSpec
from ssmd_fast.kalshi.subscriptions import (
    ACTIVE,
    FAILED,
    PENDING,
    UNSUBSCRIBING,
    Command,
    CommandLog,
    Subscription,
    SubscriptionTable,
    command_text,
)
from ssmd_fast.kalshi.watchdog import Backoff, Failure, Watchdog

TERMINAL_CODES = (10, 25)        # channel error, subscription buffer overflow: the subscription is over
MARKET_LIMIT_CODE = 26           # subscription market limit exceeded: split the markets
RETRY_CODES = (18, 27)           # command timeout, too many requests: the same command later
MAX_COMMAND_RETRIES = 3


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text frame (a JSON command)."""

    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    """Send a WebSocket ping (its pong proves the peer alive)."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close this connection and connect again (after the backoff delay)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Emit:
    """A status event; the session adds the connection id and the time."""

    kind: str
    market: str | None = None
    sid: int | None = None
    last_seq: int | None = None
    received_seq: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Log:
    """A log line. With ``throttle`` (a key), lines of that key that repeat fast are summarized:
    at most one per interval, the next one saying how many were held back (``logs.Throttle``)."""

    level: int
    message: str
    throttle: str | None = None


Action = Send | Ping | Reconnect | Emit | Log


def auth_rejected_message(status: int) -> str:
    return f"authentication rejected (HTTP {status}): check the API key id and private key"


@dataclass
class _Resync:
    sub: Subscription
    started_at: float


class KalshiProtocol:
    """Decisions of one session (one connection at a time), kept across its reconnects."""

    def __init__(self, specs: Iterable[SubscriptionSpec], *, stale_after: float = 15.0, ping_interval: float = 5.0,
                 backoff_initial: float = 0.25, backoff_max: float = 30.0, refused_retry_max: float = 0.75,
                 command_timeout: float = 10.0, resync_timeout: float = 10.0, healthy_after: float = 5.0,
                 rng: random.Random | None = None):
        self.table = SubscriptionTable(list(specs))
        self.commands = CommandLog()
        self.backoff = Backoff(backoff_initial, backoff_max, refused_max=refused_retry_max, rng=rng)
        self.watchdog = Watchdog(stale_after, ping_interval)
        self.command_timeout = command_timeout
        self.resync_timeout = resync_timeout
        self.healthy_after = healthy_after
        self.conn: str | None = None
        self.connected = False
        self.closing = False
        self.connected_at = 0.0
        self.resyncs: dict[int, _Resync] = {}
        self._retry: list[tuple[float, Subscription, int]] = []   # (due, sub, retries) for codes 18/27
        self._closing_sids: set[int] = set()
        self.server_subscriptions: list | None = None
        # counters (cumulative over the session)
        self.connections = 0
        self.auth_failures = 0
        self.stale_count = 0
        self.renewals = 0
        self.splits = 0
        self.errors: dict[int, int] = {}

    # ------------------------------------------------------------------ connection lifecycle

    @property
    def subscribed(self) -> bool:
        return self.connected and self.table.all_active

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    def on_connected(self, conn: str, now: float) -> list[Action]:
        """The WebSocket is open: subscribe to every planned subscription."""
        self.conn = conn
        self.connected = True
        self.closing = False
        self.connected_at = now
        self.connections += 1
        self.commands.reset()
        self.resyncs.clear()
        self._retry.clear()
        self._closing_sids.clear()
        self.watchdog.start(now)
        actions: list[Action] = [self._subscribe(sub, now) for sub in self.table.restart()]
        plan = ", ".join(s.describe() for s in self.table.specs)
        actions.append(Emit("connect", detail=f"subscribing: {plan}"))
        return actions

    def on_disconnected(self, reason: str, now: float, failure: Failure = Failure.OTHER) -> tuple[float, list[Action]]:
        """The connection ended: the delay before the next attempt, and the disconnect event."""
        healthy = self.table.all_active and now - self.connected_at >= self.healthy_after
        if healthy:
            self.backoff.reset()
        was_connected = self.connected
        self.connected = False
        self.commands.reset()
        self.resyncs.clear()
        self._retry.clear()
        delay = self.backoff.next_delay(failure)
        actions: list[Action] = []
        if was_connected:
            actions.append(Emit("disconnect", detail=reason))
            actions.append(Log(logging.WARNING if not self.closing else logging.INFO,
                               f"disconnected: {reason}" + ("" if self.closing else f"; reconnecting in {delay:.2f}s")))
        return delay, actions

    def on_connect_failed(self, failure: Failure, detail: str, now: float,
                          status: int | None = None) -> tuple[float, list[Action]]:
        """A connection attempt failed: the delay before the next one, and what to log."""
        delay = self.backoff.next_delay(failure)
        if failure is Failure.AUTH:
            self.auth_failures += 1
            text = auth_rejected_message(status or 401)
            return delay, [Log(logging.ERROR, f"{text}; retrying in {delay:.2f}s")]
        # an outage repeats this at every attempt: summarized, not one line per attempt
        return delay, [Log(logging.WARNING, f"connect failed: {detail}; retrying in {delay:.2f}s",
                           throttle="connect failed")]

    # ------------------------------------------------------------------ gaps

    def connection_gaps(self, reason: str, what: str = "connection lost") -> list[Emit]:
        """The connection was lost (or closed on purpose while capture must go on: ``what``): the gap events
        of everything it carried until the resubscribe."""
        out: list[Emit] = []
        for sub in self.table.subs:
            if sub.sid is not None:
                out += subscription_gaps(sub, f"{what} ({reason})")
        return out

    # ------------------------------------------------------------------ replies

    def on_control(self, kind: str, frame: dict, now: float) -> list[Action]:
        """A control reply (``kind`` = its type) parsed into ``frame``."""
        if kind == "subscribed":
            return self._on_subscribed(frame)
        if kind == "ok":
            return self._on_ok(frame)
        if kind == "unsubscribed":
            return self._on_unsubscribed(frame, now)
        if kind == "error":
            return self._on_error(frame, now)
        return [Log(logging.DEBUG, f"ignored control reply {kind!r}")]

    def _on_subscribed(self, frame: dict) -> list[Action]:
        body = frame.get("msg") if isinstance(frame.get("msg"), dict) else {}
        channel, sid = body.get("channel"), _int(body.get("sid"))
        cmd = self.commands.peek(_int(frame.get("id")))
        sub = cmd.sub if cmd is not None and cmd.kind == "subscribe" else None
        if sub is None and isinstance(channel, str):
            sub = self.table.pending_for_channel(channel)
        if cmd is not None and cmd.kind == "subscribe":
            self.commands.take(cmd.id)
        if sub is None or sub.state not in (PENDING, ACTIVE):
            return [Log(logging.WARNING, f"unexpected subscribed reply: {frame!r}")]
        if sid is None:  # the old reply form without msg: no sid to track
            sub.state = ACTIVE
            return []
        self.table.bind(sub, sid)
        return [Log(logging.INFO, f"subscribed {sub.spec.describe()} as sid {sid}")]

    def _on_ok(self, frame: dict) -> list[Action]:
        cmd = self.commands.take(_int(frame.get("id")))
        if cmd is None:
            return []
        body = frame.get("msg")
        if cmd.kind == "list":
            self.server_subscriptions = body if isinstance(body, list) else []
            return [Log(logging.INFO, f"server subscriptions: {self.server_subscriptions!r}")]
        if cmd.kind in ("add_markets", "delete_markets") and cmd.sub is not None:
            markets = body.get("market_tickers") if isinstance(body, dict) else None
            if markets is None:
                markets = frame.get("market_tickers")
            if isinstance(markets, list):
                self.table.update_markets(cmd.sub, (m for m in markets if isinstance(m, str)))
        return []

    def _on_unsubscribed(self, frame: dict, now: float) -> list[Action]:
        sid = _int(frame.get("sid"))
        cmd = self.commands.peek(_int(frame.get("id")))
        sub = self.table.for_sid(sid)
        if sub is None and cmd is not None:
            sub = cmd.sub
        if cmd is not None and cmd.kind == "unsubscribe":
            if len(cmd.sids) <= 1 or sid is None:
                self.commands.take(cmd.id)
            else:
                cmd.sids = tuple(s for s in cmd.sids if s != sid)
        self._closing_sids.discard(sid)
        if sub is None:
            return []
        self.table.unbind(sub)
        if sub.renew and not self.closing:
            return [self._subscribe(sub, now)]
        sub.state = UNSUBSCRIBING if self.closing else PENDING
        return []

    def _on_error(self, frame: dict, now: float) -> list[Action]:
        body = frame.get("msg") if isinstance(frame.get("msg"), dict) else {}
        code, text = _int(body.get("code")), body.get("msg")
        sid = _int(frame.get("sid")) or _int(body.get("sid"))
        cmd = self.commands.take(_int(frame.get("id")))
        self.errors[code or 0] = self.errors.get(code or 0, 0) + 1
        what = f"Kalshi error {code} ({text})"
        cause = f"; command: {cmd.text}" if cmd is not None else ""

        if code in TERMINAL_CODES:
            sub = self.table.for_sid(sid) or (cmd.sub if cmd is not None else None)
            if sub is None:
                return [Log(logging.WARNING, f"{what} on unknown sid {sid}{cause}")]
            return self._resubscribe_now(sub, now, f"{what} ended the subscription", sid)
        if cmd is None:
            return [Log(logging.WARNING, f"{what} for no known command: {frame!r}")]
        sub = cmd.sub
        if code == MARKET_LIMIT_CODE and cmd.kind == "subscribe" and sub is not None:
            return self._split(sub, now, what)
        if cmd.kind == "get_snapshot" and sub is not None:
            return [Log(logging.WARNING, f"{what}{cause}"), *self._renew(sub, now, f"get_snapshot failed: {what}")]
        if cmd.kind == "unsubscribe" and sub is not None and sub.renew:
            return [self._subscribe(sub, now)]   # the old subscription is gone already (e.g. code 7)
        if cmd.kind == "subscribe" and sub is not None:
            if code in RETRY_CODES and cmd.retries < MAX_COMMAND_RETRIES:
                self._retry.append((now + self.backoff.initial * 2 ** (cmd.retries + 1), sub, cmd.retries + 1))
                return [Log(logging.WARNING, f"{what}; subscribing again shortly{cause}")]
            self.table.drop(sub)
            return [Log(logging.ERROR, f"{what}: {sub.spec.describe()} is not captured{cause}"),
                    Emit("subscription", sid=sid, detail=f"{what}: {sub.spec.describe()} refused, not captured")]
        return [Log(logging.WARNING, f"{what}{cause}")]

    # ------------------------------------------------------------------ book resyncs

    def request_snapshot(self, sid: int, markets: Sequence[str], now: float) -> list[Action]:
        """The Sequencer found a gap on an order book sid: ask for fresh snapshots of its markets."""
        sub = self.table.for_sid(sid)
        if sub is None or not sub.is_book or sub.state != ACTIVE:
            return [Log(logging.INFO, f"no resync for sid {sid}: not an active order book subscription")]
        wanted = sub.markets or tuple(markets)
        cmd = self.commands.new("get_snapshot", "update_subscription",
                                {"sids": [sid], "market_tickers": list(wanted), "action": "get_snapshot"},
                                now, sub=sub, sids=(sid,), markets=wanted)
        self.resyncs.setdefault(sid, _Resync(sub, now))
        return [Send(cmd.text)]

    def resync_done(self, sid: int) -> None:
        """Every book of ``sid`` has a fresh snapshot again."""
        self.resyncs.pop(sid, None)

    def update_subscription(self, sid: int, action: str, markets: Sequence[str], now: float) -> list[Action]:
        """``add_markets`` / ``delete_markets`` on an active subscription (the reply updates its markets)."""
        if action not in ("add_markets", "delete_markets"):
            raise ValueError(f"unsupported update_subscription action {action!r}")
        sub = self.table.for_sid(sid)
        if sub is None:
            raise KeyError(f"no active subscription with sid {sid}")
        cmd = self.commands.new(action, "update_subscription",
                                {"sids": [sid], "market_tickers": list(markets), "action": action},
                                now, sub=sub, sids=(sid,), markets=tuple(markets))
        return [Send(cmd.text)]

    def list_subscriptions(self, now: float) -> list[Action]:
        cmd = self.commands.new("list", "list_subscriptions", None, now)
        return [Send(cmd.text)]

    # ------------------------------------------------------------------ timer

    def on_tick(self, now: float, last_life: float) -> list[Action]:
        """Periodic check: stale feed, ping due, commands and resyncs unanswered, retries due."""
        if not self.connected:
            return []
        actions: list[Action] = []
        if self.watchdog.is_stale(now, last_life):
            self.stale_count += 1
            silence = self.watchdog.silence(now, last_life)
            detail = f"no frame or pong for {silence:.1f}s (stale_after {self.watchdog.stale_after:g}s)"
            return [Emit("stale", detail=detail), Log(logging.WARNING, f"feed stale: {detail}"),
                    Reconnect(f"stale: {detail}")]
        if self.watchdog.ping_due(now):
            actions.append(Ping())
        for cmd in self.commands.expired(now, self.command_timeout):
            actions.extend(self._on_timeout(cmd, now))
        for r in list(self.resyncs.values()):
            if now - r.started_at > self.resync_timeout:
                actions.extend(self._renew(r.sub, now, f"no fresh snapshot {now - r.started_at:.1f}s after get_snapshot"))
        if self._retry:
            due = [r for r in self._retry if r[0] <= now]
            self._retry = [r for r in self._retry if r[0] > now]
            for _, sub, retries in due:
                if sub.state == PENDING:
                    actions.append(self._subscribe(sub, now, retries))
        return actions

    def _on_timeout(self, cmd: Command, now: float) -> list[Action]:
        sub = cmd.sub
        if cmd.kind == "subscribe" and sub is not None and sub.state == PENDING:
            if cmd.retries >= MAX_COMMAND_RETRIES:
                return [Reconnect(f"subscribe unanswered {MAX_COMMAND_RETRIES + 1} times: {cmd.text}")]
            return [Log(logging.WARNING, f"no reply to {cmd.text} in {self.command_timeout:g}s; sending again"),
                    self._subscribe(sub, now, cmd.retries + 1)]
        if cmd.kind == "unsubscribe" and sub is not None and sub.renew:
            return [self._subscribe(sub, now)]
        if cmd.kind == "get_snapshot":
            return []   # the resync deadline decides
        return [Log(logging.WARNING, f"no reply to {cmd.text} in {self.command_timeout:g}s")]

    # ------------------------------------------------------------------ shutdown

    def close_commands(self, now: float) -> list[Action]:
        """Unsubscribe from everything (a clean shutdown)."""
        self.closing = True
        sids = self.table.active_sids()
        if not self.connected or not sids:
            return []
        for sub in self.table.subs:
            if sub.state == ACTIVE:
                sub.state = UNSUBSCRIBING
        self._closing_sids = set(sids)
        cmd = self.commands.new("unsubscribe", "unsubscribe", {"sids": sids}, now, sids=sids)
        return [Send(cmd.text)]

    @property
    def unsubscribed_all(self) -> bool:
        """Every sid of a close_commands() unsubscribe has been confirmed."""
        return self.closing and not self._closing_sids

    # ------------------------------------------------------------------ helpers

    def _subscribe(self, sub: Subscription, now: float, retries: int = 0) -> Send:
        self.table.unbind(sub)
        sub.state = PENDING
        sub.renew = False
        params = SubscriptionSpec(sub.channel, sub.markets).params()
        cmd = self.commands.new("subscribe", "subscribe", params, now, sub=sub, retries=retries)
        return Send(cmd.text)

    def _resubscribe_now(self, sub: Subscription, now: float, why: str, sid: int | None) -> list[Action]:
        """The server ended ``sub`` (error 10/25): what it did not send is lost (error 25: its buffer
        overflowed), so every market of the subscription gets the gap events a lost connection gives;
        subscribe again right away (new sid, fresh snapshots: the books are valid again from those)."""
        self.renewals += 1
        self.resyncs.pop(sid or -1, None)
        detail = f"{why}; subscribing again to {sub.spec.describe()}"
        gaps = subscription_gaps(sub, why, sid)
        return [Log(logging.WARNING, detail), Emit("subscription", sid=sid, detail=detail), *gaps,
                self._subscribe(sub, now)]

    def _renew(self, sub: Subscription, now: float, why: str) -> list[Action]:
        """Resync fallback: unsubscribe, then subscribe again once `unsubscribed` (or a timeout) arrives."""
        sid = sub.sid
        if sid is not None:
            self.resyncs.pop(sid, None)
        if sub.state != ACTIVE or sid is None:
            return []
        self.renewals += 1
        sub.renew = True
        sub.state = UNSUBSCRIBING
        cmd = self.commands.new("unsubscribe", "unsubscribe", {"sids": [sid]}, now, sub=sub, sids=(sid,))
        detail = f"{why}; unsubscribing sid {sid} and subscribing again to {sub.spec.describe()}"
        return [Send(cmd.text), Log(logging.WARNING, detail), Emit("subscription", sid=sid, detail=detail)]

    def _split(self, sub: Subscription, now: float, what: str) -> list[Action]:
        if len(sub.markets) < 2:
            self.table.drop(sub)
            market = sub.markets[0] if sub.markets else None
            detail = f"{what}: {sub.spec.describe()} cannot be split further and is not captured"
            return [Log(logging.ERROR, detail), Emit("subscription", market=market, detail=detail)]
        if sub.markets != sub.spec.markets:   # markets changed by add/delete: split what is live now
            live = SubscriptionSpec(sub.channel, sub.markets)
            self.table.specs[self.table.specs.index(sub.spec)] = live
            sub.spec = live
        self.splits += 1
        halves = self.table.split(sub)
        detail = (f"{what}: split {sub.spec.describe()} into {len(halves[0].markets)} + "
                  f"{len(halves[1].markets)} markets")
        return [Log(logging.WARNING, detail), Emit("subscription", detail=detail),
                *(self._subscribe(h, now) for h in halves)]

    def stats(self) -> dict:
        return {
            "connected": self.connected,
            "subscribed": self.subscribed,
            "reconnects": self.reconnects,
            "auth_failures": self.auth_failures,
            "stale": self.stale_count,
            "renewals": self.renewals,
            "splits": self.splits,
            "errors": dict(self.errors),
            "subscriptions": [
                {"channel": s.channel, "markets": len(s.markets), "sid": s.sid, "state": s.state}
                for s in self.table.subs if s.state != FAILED
            ],
        }


def subscription_gaps(sub: Subscription, why: str, sid: int | None = None) -> list[Emit]:
    """The gap events of ``sub`` when its data stopped (a lost connection, a subscription the server
    ended): one per book market (its book is invalid until its fresh snapshot), one per listed market
    of another channel, one with market None for an all-market channel (events.py). ``last_seq`` is
    left to the session, which knows the sid's last seq (the sequencer)."""
    sid = sub.sid if sid is None else sid
    detail = f"{why}: {sub.channel} frames until the resubscribe are missing"
    if sub.is_book:
        detail += "; book invalid until its fresh snapshot"
    return [Emit("gap", market=m, sid=sid, detail=detail) for m in sub.markets or (None,)]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["Action", "Emit", "Failure", "KalshiProtocol", "Log", "Ping", "Reconnect", "Send",
           "auth_rejected_message", "command_text", "subscription_gaps"]
