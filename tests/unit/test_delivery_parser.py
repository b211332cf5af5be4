"""stream_read.DeliveryParser: a push consumer's deliveries cut out of socket reads, however they are split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ssmd_fast.sinks.reader import StreamMessage
from ssmd_fast.sinks.stream_read import DeliveryParser


def hmsg(subject: bytes, reply: bytes, headers: bytes, payload: bytes, sid: bytes = b"2") -> bytes:
    return b"HMSG %s %s %s %d %d\r\n%s%s\r\n" % (subject, sid, reply, len(headers), len(headers) + len(payload),
                                                headers, payload)


def ack(sseq: int, cseq: int, v2: bool = False) -> bytes:
    if v2:
        return b"$JS.ACK.dom.ACCHASH.S.cons.1.%d.%d.1700000000000000000.0.tok" % (sseq, cseq)
    return b"$JS.ACK.S.cons.1.%d.%d.1700000000000000000.0" % (sseq, cseq)


ID = b"NATS/1.0\r\nNats-Msg-Id: kalshi:trade:t%d:raw\r\n\r\n"

# a session's worth of protocol: deliveries (v1 and v2 replies, with and without an id, other headers,
# an empty payload, a payload holding protocol-looking bytes), a heartbeat, a flow-control request, an
# API reply, PING/PONG and +OK between them; stream seqs skip 4 (a deleted message)
WIRE = b"".join([
    b"+OK\r\n",
    hmsg(b"p.json.trade.A", ack(1, 1), ID % 1, b'{"a":1}'),
    hmsg(b"p.norm.trade.A", ack(2, 2, v2=True), ID % 2, b""),
    b"PING\r\n",
    hmsg(b"p.events.gap", ack(3, 3), b"NATS/1.0\r\nX-Other: 1\r\n\r\n", b"\r\nMSG x 1 3\r\nabc\r\nPING\r\n"),
    hmsg(b"_INBOX.x-deliveries", b"", b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n", b""),
    hmsg(b"_INBOX.x-deliveries", b"$JS.FC.S.abc.1", b"NATS/1.0 100 FlowControl Request\r\n\r\n", b""),
    b"MSG p.json.ticker.B 2 %s 5\r\nhello\r\n" % ack(5, 4),
    b"MSG _INBOX.x.r 1 2\r\n{}\r\n",
    b"PONG\r\n",
    hmsg(b"p.json.trade.C", ack(6, 5), b"NATS/1.0\r\nA: b\r\nNats-Msg-Id:  spaced \r\n\r\n", b"x" * 70_000),
])
EXPECTED = [
    StreamMessage("p.json.trade.A", "kalshi:trade:t1:raw", 1, b'{"a":1}'),
    StreamMessage("p.norm.trade.A", "kalshi:trade:t2:raw", 2, b""),
    StreamMessage("p.events.gap", None, 3, b"\r\nMSG x 1 3\r\nabc\r\nPING\r\n"),
    StreamMessage("p.json.ticker.B", None, 5, b"hello"),
    StreamMessage("p.json.trade.C", "spaced", 6, b"x" * 70_000),
]
EVENTS = [("ping",), ("flow", b"$JS.FC.S.abc.1"), ("msg", b"_INBOX.x.r", b"{}"), ("pong",)]


def feed_in(pieces: list[bytes]) -> DeliveryParser:
    p = DeliveryParser()
    events = []
    for piece in pieces:
        if p.feed(piece):
            events += p.events
            p.events = []
    p.seen = events
    return p


def test_one_read():
    p = feed_in([WIRE])
    assert p.messages == EXPECTED
    assert p.seen == EVENTS
    assert not p.gap and p.next_cseq == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_any_split_of_the_reads_gives_the_same(cuts):
    bounds = [0] + sorted(cuts) + [len(WIRE)]
    p = feed_in([WIRE[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])
    assert p.messages == EXPECTED
    assert p.seen == EVENTS


def test_byte_by_byte():
    p = feed_in([WIRE[i:i + 1] for i in range(len(WIRE) - 70_000)])
    assert p.messages == EXPECTED[:4]


def test_a_missing_delivery_is_a_gap_not_a_shorter_list():
    wire = hmsg(b"a", ack(1, 1), ID % 1, b"1") + hmsg(b"a", ack(3, 3), ID % 3, b"3") + hmsg(b"a", ack(4, 4), ID % 4, b"4")
    p = feed_in([wire])
    assert [m.seq for m in p.messages] == [1]
    assert p.gap == "delivery 3 arrived where 2 was due"


def test_err_is_an_event():
    p = feed_in([b"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n"])
    assert p.seen == [("err", 'Permissions Violation for Subscription to "x"')]
