"""The sans-IO protocol core: commands, replies, subscription state, resyncs, watchdog, backoff."""

from __future__ import annotations

import json
import logging
import random

import pytest

from ssmd_fast.kalshi.protocol import (
    Emit,
    KalshiProtocol,
    Log,
    Ping,
    Reconnect,
    Send,
    auth_rejected_message,
)
from ssmd_fast.kalshi.shards import BOOK_CHANNEL, SubscriptionSpec
from ssmd_fast.kalshi.watchdog import Failure

BOOKS = ("KXA-1", "KXA-2", "KXA-3", "KXA-4")
SPECS = [SubscriptionSpec("ticker"), SubscriptionSpec("trade"), SubscriptionSpec("market_lifecycle_v2"),
         SubscriptionSpec(BOOK_CHANNEL, BOOKS)]


def sends(actions) -> list[dict]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def emits(actions, kind=None) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit) and (kind is None or a.kind == kind)]


def subscribed(cmd_id: int, channel: str, sid: int) -> dict:
    return {"id": cmd_id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}


def connected(specs=SPECS, now=0.0, **kw) -> tuple[KalshiProtocol, list[dict]]:
    p = KalshiProtocol(specs, rng=random.Random(0), **kw)
    cmds = sends(p.on_connected("c0ffee000001", now))
    for i, cmd in enumerate(cmds, start=1):
        p.on_control("subscribed", subscribed(cmd["id"], cmd["params"]["channels"][0], i), now)
    return p, cmds


def test_connect_sends_one_subscribe_per_spec_with_increasing_ids():
    p = KalshiProtocol(SPECS)
    actions = p.on_connected("abc", 10.0)
    cmds = sends(actions)
    assert [c["id"] for c in cmds] == [1, 2, 3, 4]
    assert all(c["cmd"] == "subscribe" for c in cmds)
    assert cmds[0]["params"] == {"channels": ["ticker"]}
    assert cmds[3]["params"] == {"channels": [BOOK_CHANNEL], "market_tickers": list(BOOKS)}
    assert [e.kind for e in emits(actions)] == ["connect"]
    assert not p.subscribed
    assert set(p.commands.pending) == {1, 2, 3, 4}


def test_subscribed_replies_bind_sids():
    p, cmds = connected()
    assert p.subscribed
    assert p.table.for_sid(4).channel == BOOK_CHANNEL
    assert p.table.markets_of(4) == BOOKS
    assert p.commands.pending == {}
    # sid -> channel and channel -> sid both answerable
    assert {s.channel: s.sid for s in p.table.subs} == {"ticker": 1, "trade": 2, "market_lifecycle_v2": 3,
                                                         BOOK_CHANNEL: 4}


def test_subscribed_old_form_without_msg_matches_by_id():
    p = KalshiProtocol([SubscriptionSpec("ticker")])
    p.on_connected("abc", 0.0)
    assert p.on_control("subscribed", {"type": "subscribed", "id": 1}, 0.0) == []
    assert p.subscribed


def test_ids_restart_on_every_connection_and_sids_are_forgotten():
    p, _ = connected()
    p.on_disconnected("closed by peer", 20.0)
    cmds = sends(p.on_connected("another", 21.0))
    assert [c["id"] for c in cmds] == [1, 2, 3, 4]
    assert p.table.for_sid(4) is None and not p.subscribed


@pytest.mark.parametrize("code", [10, 25])
def test_terminal_errors_resubscribe(code):
    p, _ = connected()
    frame = {"type": "error", "sid": 4, "seq": 5812, "msg": {"code": code, "msg": "Channel error"}}
    actions = p.on_control("error", frame, 5.0)
    (cmd,) = sends(actions)
    assert cmd["cmd"] == "subscribe" and cmd["params"]["market_tickers"] == list(BOOKS)
    assert cmd["id"] == 5
    (ev,) = emits(actions, "subscription")
    assert ev.sid == 4 and f"error {code}" in ev.detail
    # what the server did not send is lost: one gap per book of the subscription, as a lost connection
    gaps = emits(actions, "gap")
    assert [(g.market, g.sid) for g in gaps] == [(m, 4) for m in BOOKS]
    assert all(f"Kalshi error {code}" in g.detail and "book invalid until its fresh snapshot" in g.detail
               for g in gaps)
    assert p.table.for_sid(4) is None and not p.subscribed
    p.on_control("subscribed", subscribed(5, BOOK_CHANNEL, 9), 5.1)
    assert p.subscribed and p.table.for_sid(9).markets == BOOKS
    assert p.renewals == 1


def test_terminal_error_on_an_all_market_channel_is_one_gap_without_market():
    p, _ = connected()
    actions = p.on_control("error", {"type": "error", "sid": 2, "msg": {"code": 25, "msg": "overflow"}}, 5.0)
    (gap,) = emits(actions, "gap")
    assert (gap.market, gap.sid, gap.last_seq) == (None, 2, None)    # the session adds last_seq
    assert gap.detail.startswith("Kalshi error 25 (overflow) ended the subscription: trade frames")
    assert sends(actions)[0]["params"] == {"channels": ["trade"]}


def test_terminal_error_gaps_are_the_lost_connection_gaps():
    """One mechanism: the markets and sids a lost connection marks are those error 25 marks for a sid."""
    p, _ = connected(specs=[*SPECS, SubscriptionSpec("trade", ("M1", "M2"))])
    lost = p.connection_gaps("reset by peer")
    assert [(g.market, g.sid) for g in lost] == \
        [(None, 1), (None, 2), (None, 3), *((m, 4) for m in BOOKS), ("M1", 5), ("M2", 5)]
    assert all(g.detail.startswith("connection lost (reset by peer): ") for g in lost)
    for sid in (1, 2, 3, 4, 5):
        actions = p.on_control("error", {"type": "error", "sid": sid, "msg": {"code": 10}}, 5.0)
        ended = emits(actions, "gap")
        assert [(g.market, g.sid) for g in ended] == [(g.market, g.sid) for g in lost if g.sid == sid]


def test_error_26_splits_markets_and_resubscribes_halves():
    p = KalshiProtocol([SubscriptionSpec(BOOK_CHANNEL, BOOKS)])
    p.on_connected("abc", 0.0)
    actions = p.on_control("error", {"id": 1, "type": "error",
                                     "msg": {"code": 26, "msg": "Subscription market limit exceeded"}}, 0.1)
    cmds = sends(actions)
    assert [c["params"]["market_tickers"] for c in cmds] == [["KXA-1", "KXA-2"], ["KXA-3", "KXA-4"]]
    assert [c["id"] for c in cmds] == [2, 3]
    assert emits(actions, "subscription")
    # one half is still too big: it splits again; the plan keeps the split for the next connection
    cmds = sends(p.on_control("error", {"id": 2, "type": "error", "msg": {"code": 26, "msg": "limit"}}, 0.2))
    assert [c["params"]["market_tickers"] for c in cmds] == [["KXA-1"], ["KXA-2"]]
    for cmd_id, sid in ((3, 11), (4, 12), (5, 13)):
        p.on_control("subscribed", subscribed(cmd_id, BOOK_CHANNEL, sid), 0.3)
    assert p.subscribed
    assert sorted(m for s in p.table.specs for m in s.markets) == sorted(BOOKS)
    again = sends(p.on_connected("next", 1.0))
    assert [c["params"]["market_tickers"] for c in again] == [["KXA-1"], ["KXA-2"], ["KXA-3", "KXA-4"]]


def test_error_26_on_single_market_is_reported_not_silent():
    p = KalshiProtocol([SubscriptionSpec(BOOK_CHANNEL, ("ONLY",)), SubscriptionSpec("ticker")])
    p.on_connected("abc", 0.0)
    actions = p.on_control("error", {"id": 1, "type": "error", "msg": {"code": 26, "msg": "limit"}}, 0.1)
    assert sends(actions) == []
    (ev,) = emits(actions, "subscription")
    assert ev.market == "ONLY" and "not captured" in ev.detail
    assert any(isinstance(a, Log) and a.level == logging.ERROR for a in actions)
    p.on_control("subscribed", subscribed(2, "ticker", 1), 0.2)
    assert p.subscribed  # the refused one no longer blocks readiness, but it was reported


def test_other_errors_are_logged_with_the_command_that_caused_them():
    p, _ = connected()
    actions = p.update_subscription(4, "add_markets", ["KXA-5"], 1.0)
    (cmd,) = sends(actions)
    actions = p.on_control("error", {"id": cmd["id"], "type": "error",
                                     "msg": {"code": 11, "msg": "Invalid parameter"}}, 1.1)
    (log,) = [a for a in actions if isinstance(a, Log)]
    assert "Kalshi error 11 (Invalid parameter)" in log.message
    assert '"action":"add_markets"' in log.message
    assert p.errors == {11: 1}
    # an error for no known command is still logged
    (log,) = p.on_control("error", {"id": 0, "type": "error", "msg": {"code": 1, "msg": "Unable"}}, 1.2)
    assert isinstance(log, Log) and "no known command" in log.message


def test_subscribe_refused_is_dropped_and_reported():
    p = KalshiProtocol([SubscriptionSpec("ticker"), SubscriptionSpec("trade")])
    p.on_connected("abc", 0.0)
    actions = p.on_control("error", {"id": 2, "type": "error", "msg": {"code": 8, "msg": "Unknown channel name"}}, 0.1)
    assert emits(actions, "subscription") and '"channels":["trade"]' in actions[0].message


def test_retryable_subscribe_error_resends_later():
    p = KalshiProtocol([SubscriptionSpec("ticker")], backoff_initial=0.25)
    p.on_connected("abc", 0.0)
    assert sends(p.on_control("error", {"id": 1, "type": "error", "msg": {"code": 27, "msg": "Too many"}}, 0.1)) == []
    assert sends(p.on_tick(0.3, last_life=0.3)) == []
    (cmd,) = sends(p.on_tick(0.7, last_life=0.7))
    assert cmd["cmd"] == "subscribe" and cmd["id"] == 2


def test_ok_updates_markets_in_msg_or_top_level():
    p, _ = connected()
    (cmd,) = sends(p.update_subscription(4, "add_markets", ["KXA-5"], 1.0))
    p.on_control("ok", {"id": cmd["id"], "sid": 4, "seq": 41, "type": "ok",
                        "msg": {"market_tickers": [*BOOKS, "KXA-5"]}}, 1.1)
    assert p.table.markets_of(4) == (*BOOKS, "KXA-5")
    (cmd,) = sends(p.update_subscription(4, "delete_markets", ["KXA-1"], 1.2))
    p.on_control("ok", {"id": cmd["id"], "sid": 4, "seq": 42, "type": "ok",
                        "market_tickers": ["KXA-2", "KXA-3", "KXA-4", "KXA-5"]}, 1.3)
    assert p.table.markets_of(4) == ("KXA-2", "KXA-3", "KXA-4", "KXA-5")
    assert p.commands.pending == {}


def test_list_subscriptions_reply_is_an_array():
    p, _ = connected()
    (cmd,) = sends(p.list_subscriptions(1.0))
    assert cmd == {"id": 5, "cmd": "list_subscriptions"}
    p.on_control("ok", {"id": 5, "type": "ok", "msg": [{"channel": "ticker", "sid": 1}]}, 1.1)
    assert p.server_subscriptions == [{"channel": "ticker", "sid": 1}]


def test_resync_sends_get_snapshot_for_the_sid_markets():
    p, _ = connected()
    (cmd,) = sends(p.request_snapshot(4, ["KXA-2"], 2.0))
    assert cmd == {"id": 5, "cmd": "update_subscription",
                   "params": {"sids": [4], "market_tickers": list(BOOKS), "action": "get_snapshot"}}
    assert 4 in p.resyncs
    p.on_control("ok", {"id": 5, "sid": 4, "seq": 30, "type": "ok", "msg": {}}, 2.1)
    p.resync_done(4)
    assert p.resyncs == {}
    assert sends(p.on_tick(30.0, last_life=30.0)) == []   # no fallback once resynced


def test_resync_on_unknown_or_non_book_sid_does_nothing():
    p, _ = connected()
    assert sends(p.request_snapshot(2, ["X"], 1.0)) == []
    assert sends(p.request_snapshot(99, ["X"], 1.0)) == []


def test_get_snapshot_error_falls_back_to_unsubscribe_and_subscribe():
    p, _ = connected()
    (cmd,) = sends(p.request_snapshot(4, [], 2.0))
    actions = p.on_control("error", {"id": cmd["id"], "type": "error", "msg": {"code": 13, "msg": "Unsupported"}}, 2.1)
    (unsub,) = sends(actions)
    assert unsub["cmd"] == "unsubscribe" and unsub["params"] == {"sids": [4]}
    assert emits(actions, "subscription")
    (sub,) = sends(p.on_control("unsubscribed", {"id": unsub["id"], "sid": 4, "seq": 31, "type": "unsubscribed"}, 2.2))
    assert sub["cmd"] == "subscribe" and sub["params"]["market_tickers"] == list(BOOKS)
    p.on_control("subscribed", subscribed(sub["id"], BOOK_CHANNEL, 7), 2.3)
    assert p.subscribed and p.table.for_sid(7) is not None and p.table.for_sid(4) is None


def test_get_snapshot_timeout_falls_back_and_unsubscribe_timeout_still_resubscribes():
    p, _ = connected(resync_timeout=3.0, command_timeout=2.0, ping_interval=100.0)
    sends(p.request_snapshot(4, [], 2.0))
    assert sends(p.on_tick(4.0, last_life=4.0)) == []
    (unsub,) = sends(p.on_tick(5.5, last_life=5.5))
    assert unsub["cmd"] == "unsubscribe"
    # no `unsubscribed` ever comes: after command_timeout the subscription is renewed anyway
    (sub,) = sends(p.on_tick(7.6, last_life=7.6))
    assert sub["cmd"] == "subscribe" and sub["params"]["channels"] == [BOOK_CHANNEL]


def test_unsubscribe_error_code_7_still_resubscribes():
    p, _ = connected()
    (cmd,) = sends(p.request_snapshot(4, [], 2.0))
    (unsub,) = sends(p.on_control("error", {"id": cmd["id"], "type": "error", "msg": {"code": 1, "msg": "x"}}, 2.1))
    (sub,) = sends(p.on_control("error", {"id": unsub["id"], "type": "error",
                                          "msg": {"code": 7, "msg": "Unknown subscription ID"}}, 2.2))
    assert sub["cmd"] == "subscribe"


def test_watchdog_pings_then_declares_stale():
    p, _ = connected(stale_after=3.0, ping_interval=1.0, now=0.0)
    assert p.on_tick(0.5, last_life=0.4) == []
    assert p.on_tick(1.0, last_life=0.9) == [Ping()]
    assert p.on_tick(2.9, last_life=0.0) == [Ping()]       # the connect at 0.0 counts as life
    actions = p.on_tick(3.2, last_life=0.0)
    assert isinstance(actions[-1], Reconnect) and "stale" in actions[-1].reason
    (ev,) = emits(actions, "stale")
    assert "stale_after 3s" in ev.detail
    assert p.stale_count == 1


def test_a_pong_keeps_a_quiet_feed_alive():
    p, _ = connected(stale_after=3.0, ping_interval=1.0, now=0.0)
    for t in range(1, 30):
        # only pongs arrive, 50 ms after each ping
        assert not any(isinstance(a, Reconnect) for a in p.on_tick(float(t), last_life=t - 0.95))


def test_no_tick_decisions_while_disconnected():
    p, _ = connected(stale_after=1.0)
    p.on_disconnected("x", 1.0)
    assert p.on_tick(50.0, last_life=0.0) == []


def test_backoff_reset_only_after_a_healthy_connection():
    p, _ = connected(healthy_after=5.0, backoff_initial=0.25, backoff_max=30.0)
    for _ in range(5):
        p.on_connect_failed(Failure.OTHER, "timeout", 0.0)
    assert p.backoff.ceiling() == 8.0
    for i, cmd in enumerate(sends(p.on_connected("x", 10.0)), 1):
        p.on_control("subscribed", subscribed(cmd["id"], cmd["params"]["channels"][0], i), 10.0)
    delay, actions = p.on_disconnected("dropped", 11.0)     # 1 s: not healthy, no reset
    assert delay <= 8.0 and p.backoff.ceiling() == 16.0
    assert [e.kind for e in emits(actions)] == ["disconnect"]
    for i, cmd in enumerate(sends(p.on_connected("y", 20.0)), 1):
        p.on_control("subscribed", subscribed(cmd["id"], cmd["params"]["channels"][0], i), 20.0)
    delay, _ = p.on_disconnected("dropped", 26.0)           # 6 s subscribed: healthy, reset
    assert delay <= 0.25 and p.backoff.ceiling() == 0.5
    assert p.reconnects == 2


def test_auth_failure_message_and_backoff():
    p = KalshiProtocol(SPECS, rng=random.Random(5), backoff_initial=0.25, backoff_max=30.0)
    delays = []
    for status in (401, 403, 401, 401, 401, 401, 401, 401, 401, 401):
        delay, (log,) = p.on_connect_failed(Failure.AUTH, "HTTP", 0.0, status=status)
        delays.append(delay)
        assert log.level == logging.ERROR
        assert log.message.startswith(auth_rejected_message(status))
    assert auth_rejected_message(401) == ("authentication rejected (HTTP 401): check the API key id "
                                          "and private key")
    assert p.auth_failures == 10
    assert all(b >= a / 2 for a, b in zip(delays, delays[1:], strict=False))
    assert delays[-1] >= 15.0 and max(delays) <= 30.0


def test_refused_connects_retry_within_a_second_at_first():
    p = KalshiProtocol(SPECS, rng=random.Random(6))
    delays = [p.on_connect_failed(Failure.REFUSED, "refused", 0.0)[0] for _ in range(40)]
    fast = [d for d in delays if d <= 0.75]
    assert len(fast) >= 8 and max(delays[:8]) <= 0.75      # a brief restart: back within a second
    assert max(delays) > 0.75                                # a long outage: backing off (watchdog tests)


def test_connect_failure_lines_are_throttled_and_keep_the_detail():
    p = KalshiProtocol(SPECS, rng=random.Random(6))
    _, (log,) = p.on_connect_failed(Failure.REFUSED, "ConnectionRefusedError: [Errno 111]", 0.0)
    assert log.level == logging.WARNING and log.throttle == "connect failed"
    assert log.message.startswith("connect failed: ConnectionRefusedError: [Errno 111]; retrying in ")


def test_close_unsubscribes_every_sid():
    p, _ = connected()
    (cmd,) = sends(p.close_commands(5.0))
    assert cmd == {"id": 5, "cmd": "unsubscribe", "params": {"sids": [1, 2, 3, 4]}}
    assert not p.unsubscribed_all
    for sid in (1, 2, 3, 4):
        assert p.on_control("unsubscribed", {"id": 5, "sid": sid, "seq": 9, "type": "unsubscribed"}, 5.1) == []
    assert p.unsubscribed_all and p.commands.pending == {}


def test_close_while_disconnected_sends_nothing():
    p = KalshiProtocol(SPECS)
    assert p.close_commands(0.0) == []


def test_fixture_control_frames_never_raise():
    from pathlib import Path

    p, _ = connected()
    path = Path(__file__).parents[1] / "data" / "kalshi" / "control.jsonl"
    for line in path.read_text().splitlines():
        frame = json.loads(line)
        actions = p.on_control(frame["type"], frame, 3.0)
        assert all(isinstance(a, Send | Ping | Reconnect | Emit | Log) for a in actions)
