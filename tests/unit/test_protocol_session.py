"""The session's wiring of sequencer, protocol core and sinks, fed batches directly (no socket)."""

from __future__ import annotations

import json

from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.session import KalshiSession, classify_failure
from ssmd_fast.kalshi.session import log as session_log
from ssmd_fast.kalshi.shards import plan_connections
from ssmd_fast.kalshi.watchdog import Failure
from ssmd_fast.logs import Throttle
from ssmd_fast.normalize import F_GAP, F_SUPPRESSED, FrameBatch


def snap(sid, seq, market):
    return (f'{{"type":"orderbook_snapshot","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{market}",'
            f'"market_id":"x","yes_dollars_fp":[["0.5000","10.00"]]}}}}').encode()


def delta(sid, seq, market):
    return (f'{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{market}",'
            f'"market_id":"x","price_dollars":"0.5000","delta_fp":"-1.00","side":"yes","ts_ms":1}}}}').encode()


class Sink:
    def __init__(self):
        self.flags, self.events = [], []

    def submit(self, batch, conn):
        self.flags += [batch.flags(i) for i in range(len(batch))]

    def submit_event(self, event):
        self.events.append(event)


def make_session(sink):
    creds = KalshiCredentials("k", generate_key_pair()[0])
    plan = plan_connections([], orderbook_markets=["A", "B"])[0]
    s = KalshiSession(creds, "ws://127.0.0.1:1/trade-api/ws/v2", plan, [sink])
    s.conn = "0123456789ab"
    s.sequencer.reset(s.conn)
    s.core.on_connected(s.conn, 0.0)     # the subscribe command (id 1) is in flight
    return s


def feed(s, *frames):
    batch = FrameBatch()
    for f in frames:
        batch.add(f)
    s.on_batch(batch)


def test_gap_in_the_read_that_brings_subscribed_still_requests_a_snapshot():
    sink = Sink()
    s = make_session(sink)
    subscribed = json.dumps({"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 5}})
    feed(s, subscribed.encode(), snap(5, 1, "A"), snap(5, 2, "B"), delta(5, 4, "A"))
    assert sink.flags == [0, 0, 0, F_GAP | F_SUPPRESSED]
    assert [(e.kind, e.market) for e in sink.events] == [("gap", "A"), ("gap", "B")]    # both books invalid
    (cmd,) = [c for c in s.core.commands.pending.values() if c.kind == "get_snapshot"]
    assert json.loads(cmd.text)["params"] == {"sids": [5], "market_tickers": ["A", "B"], "action": "get_snapshot"}
    assert 5 in s.core.resyncs
    # the reply's snapshots make the books valid; the core forgets the resync
    feed(s, snap(5, 5, "A"), snap(5, 6, "B"), delta(5, 7, "A"))
    assert sink.flags[-3:] == [0, 0, 0]
    assert s.core.resyncs == {} and [e.kind for e in sink.events] == ["gap", "gap", "resync", "resync"]
    assert s.stats()["gaps"] == 2 and s.stats()["seq_gaps"] == 1       # gap events; seq gaps detected
    assert s.stats()["resyncs"] == 2 and s.stats()["suppressed"] == 1


def test_failures_are_classified():
    from picows import WSHandshakeError, WSUpgradeResponse

    assert classify_failure(ConnectionRefusedError(111, "refused"))[0] is Failure.REFUSED
    assert classify_failure(TimeoutError())[0] is Failure.OTHER
    for status in (401, 403):
        resp = WSUpgradeResponse.create_error_response(status, b"no")
        assert classify_failure(WSHandshakeError("rejected", response=resp))[:2] == (Failure.AUTH, status)
    resp = WSUpgradeResponse.create_error_response(503, b"busy")
    assert classify_failure(WSHandshakeError("rejected", response=resp))[:2] == (Failure.OTHER, 503)
    assert classify_failure(WSHandshakeError("closed during the handshake"))[0] is Failure.REFUSED


def test_error_25_marks_every_book_of_the_subscription_and_counts_the_gaps():
    """A subscription the server ends (its buffer overflowed: frames dropped) gives the gap events a lost
    connection gives, with the sid's last seq received, and they are counted as gaps."""
    sink = Sink()
    s = make_session(sink)
    subscribed = json.dumps({"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 5}})
    feed(s, subscribed.encode(), snap(5, 1, "A"), snap(5, 2, "B"), delta(5, 3, "A"))
    error = {"type": "error", "sid": 5, "seq": 3, "msg": {"code": 25, "msg": "Subscription buffer overflow"}}
    feed(s, json.dumps(error).encode())
    assert [e.kind for e in sink.events] == ["subscription", "gap", "gap"]
    gaps = sink.events[1:]
    assert [(g.market, g.sid, g.last_seq, g.conn) for g in gaps] == [("A", 5, 3, s.conn), ("B", 5, 3, s.conn)]
    assert all(g.detail.startswith("Kalshi error 25 (Subscription buffer overflow) ended the subscription")
               and "book invalid until its fresh snapshot" in g.detail for g in gaps)
    assert s.stats()["gaps"] == 2 and s.stats()["seq_gaps"] == 0
    (cmd,) = [c for c in s.core.commands.pending.values() if c.kind == "subscribe"]
    assert json.loads(cmd.text)["params"] == {"channels": ["orderbook_delta"], "market_tickers": ["A", "B"]}
    # the new subscription starts with fresh snapshots: nothing flagged, nothing more to mark
    resubscribed = json.dumps({"id": cmd.id, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 6}})
    feed(s, resubscribed.encode(), snap(6, 1, "A"), snap(6, 2, "B"), delta(6, 3, "A"))
    assert sink.flags[-4:] == [0, 0, 0, 0] and s.core.subscribed
    assert s.stats()["gaps"] == 2


def test_connection_gaps_are_counted_once_each_like_seq_gaps():
    sink = Sink()
    s = make_session(sink)
    subscribed = json.dumps({"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 5}})
    feed(s, subscribed.encode(), snap(5, 1, "A"), snap(5, 2, "B"), delta(5, 4, "A"))    # a seq gap: 2 books
    s._apply(s.core.connection_gaps("connection closed by peer"))                         # what _serve applies
    gaps = [e for e in sink.events if e.kind == "gap"]
    assert [(g.market, g.last_seq) for g in gaps] == [("A", 2), ("B", 2), ("A", 4), ("B", 4)]
    assert s.stats()["gaps"] == len(gaps) == 4 and s.stats()["seq_gaps"] == 1
    assert [x.value for x in s.metric_samples() if x.name == "gaps"] == [4.0]
    assert [x.value for x in s.metric_samples() if x.name == "seq_gaps"] == [1.0]


def test_connect_failures_are_summarized_and_name_no_dead_connection(caplog):
    s = make_session(Sink())
    s.transport = None          # between connections: s.conn is the last, dead one
    clock = [0.0]
    s._throttles["connect failed"] = Throttle(session_log, clock=lambda: clock[0])
    with caplog.at_level("WARNING", logger="ssmd_fast.kalshi.session"):
        for _ in range(30):     # 30 refused attempts: the fast ones, then the backoff curve
            delay, actions = s.core.on_connect_failed(Failure.REFUSED, "ConnectionRefusedError: refused", 0.0)
            s._apply(actions)
            clock[0] += delay
    lines = [r.getMessage() for r in caplog.records]
    assert clock[0] > 60 and 2 <= len(lines) <= clock[0] / 10 + 1, lines    # one line per 10 s at most
    assert all(line.startswith("[shard 0] connect failed: ConnectionRefusedError") for line in lines)
    assert s.conn not in "".join(lines)
    assert "more in the last" in lines[1]
