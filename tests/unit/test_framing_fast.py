"""Fast-ingest batch framing, flow acks and notices, direct socket writes, reframing: both implementations
(twin tests), byte for byte. The server's side of the protocol is exercised against a real nats-server in
tests/integration/test_publisher_fast.py; here the replies are the shapes nats-server 2.15 sends."""

from __future__ import annotations

import json
import re
import socket

import pytest
from test_framing import INBOX, MODULES, PREFIX, _impl, _ring, corpus_lines, make_batch, parse_hpub
from twins import twin_fixture

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

REPLY_RE = re.compile(rb"_INBOX\.abc123b([0-9a-f]{8})\.(?:100|50)\.ok\.(\d{7})\.([0-4])\.\$FI")


impl = twin_fixture(*MODULES)


def _fast(fr, n: int, **kw):
    """A fast-mode ring of ``n`` messages, flow 100, starts gated (each start alone until acked)."""
    ring = _ring(fr, n, fast=True, flow=100, **kw)
    ring.gate_starts = True
    return ring


def start(ring, now: float = 0.0) -> bytes:
    """Open a batch, send its start (alone), and ack the start as the server does (seq 0)."""
    bno = ring.open_batch()
    data = ring.take(1 << 20, now)
    assert ring.fast_ack(bno, 0)
    return data


def replies(data: bytes) -> list[tuple[int, int, int]]:
    """(batch, seq, op) of every frame's reply."""
    out = []
    for _s, r, _i, _p in parse_hpub(data):
        m = REPLY_RE.fullmatch(r)
        assert m, r
        out.append((int(m[1], 16), int(m[2]), int(m[3])))
    return out


def flow_ack(bno: int, seq: int, msgs: int = 100, at: int = 1) -> bytes:
    body = b'{"type":"ack","seq":%d,"msgs":%d}' % (seq, msgs)
    return b"MSG %sb%08x.100.ok.%07d.1.$FI 2 %d\r\n%s\r\n" % (INBOX, bno, at, len(body), body)


def notice(bno: int, at: int, body: bytes, hdr: bytes = b"") -> bytes:
    subj = b"%sb%08x.100.ok.%07d.1.$FI" % (INBOX, bno, at)
    if hdr:
        return b"HMSG %s 2 %d %d\r\n%s%s\r\n" % (subj, len(hdr), len(hdr) + len(body), hdr, body)
    return b"MSG %s 2 %d\r\n%s\r\n" % (subj, len(body), body)


def test_sends_patch_batch_seq_and_op_into_fixed_width_replies(impl):
    _, fr = impl
    ring = _fast(fr, 5)
    assert ring.fast and ring.take(10, 0.0) is None     # no batch open: nothing goes out
    bno = ring.open_batch()
    assert bno == 1 and ring.open_batch() == 1 and ring.cur_batch == 1
    first = ring.take(3, 1.0)
    assert replies(first) == [(1, 1, 0)]                 # op 0 starts the batch, alone ...
    assert ring.take(3, 1.0) is None                     # ... until the server acks it
    assert ring.fast_ack(1, 0)
    first += ring.take(3, 1.0)
    assert replies(first) == [(1, 1, 0), (1, 2, 1), (1, 3, 1)]
    assert [(s, i, p) for s, _r, i, p in parse_hpub(first)] == [(b"s.%d" % k, b"id-%d" % k, b"payload-%d" % k)
                                                                for k in range(3)]
    assert replies(ring.take(10, 2.0)) == [(1, 4, 1), (1, 5, 1)]
    assert ring.batches() == [(1, fr.BATCH_OPEN, 5, 0, 100, True)]
    assert ring.tail_state() == (5, 2.0, 1.0, 100)


def test_seqs_count_on_across_sends_and_digit_carries(impl):
    """Each send writes its first reply's fields once and moves the seq on per message (carries at 9, 99,
    999 ...), within one send and from one send to the next; a resend batch starts again at seq 1."""
    _, fr = impl
    ring = _fast(fr, 1205)
    ring.gate_starts = False
    bno = ring.open_batch()
    sends = []
    while (d := ring.take(1 << 20, 0.0, 4096)) is not None and len(sends) < 1205:   # sends of ~4 KiB
        sends.append(d)
    assert len(sends) > 10
    assert replies(b"".join(sends)) == [(bno, k, 0 if k == 1 else 1) for k in range(1, 1206)]
    ring.commit_batch()
    again = ring.open_batch()
    sent = replies(ring.resend(list(range(ring.head, ring.head + 12)), 1.0))
    assert sent == [(again, k, 0 if k == 1 else 1) for k in range(1, 13)]


def test_ungated_starts_send_the_whole_window_at_once(impl):
    _, fr = impl
    ring = _ring(fr, 5, fast=True)
    assert not ring.gate_starts and ring.flow == fr.FLOW
    ring.open_batch()
    assert replies(ring.take(4, 0.0)) == [(1, 1, 0), (1, 2, 1), (1, 3, 1), (1, 4, 1)]


def test_flow_acks_settle_up_to_their_seq_and_notices_hold(impl):
    _, fr = impl
    ring = _fast(fr, 6)
    ring.open_batch()
    ring.take(10, 0.0)
    parser = fr.AckParser(ring, INBOX)
    assert parser.feed(flow_ack(1, 0, 100)) == 0 and ring.acked_count == 0      # the start's ack
    ring.take(10, 0.0)
    assert ring.hold(3) and not ring.hold(99)
    assert parser.feed(flow_ack(1, 4, 50)) == 0
    assert ring.acked_count == 3 and ring.head == 3 and ring.batches()[0][3:] == (4, 50, True)
    assert ring.message(3) is not None                         # held: not settled by the ack covering it
    assert ring.finish_batch(1, 6) == [] and ring.acked_count == 5 and ring.batches() == []
    assert ring.held(1, 0, 10) == [] and ring.finish_batch(1, 6) is None
    assert parser.feed(flow_ack(1, 6)) == 0 and parser.stale == 1   # an ack of a forgotten batch
    assert ring.reject(3) is not None and ring.inflight == 0 and ring.retained_bytes == 0


def test_parser_turns_fast_notices_into_events_at_any_split(impl):
    _, fr = impl
    err = b'{"type":"err","seq":2,"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'
    stream = (flow_ack(1, 0) + notice(1, 2, err)
              + notice(1, 3, b"", b"NATS/1.0 503\r\nNats-Subject: s.2\r\n\r\n")
              + notice(1, 5, b'{"type":"gap","last_seq":4,"seq":5}')
              + flow_ack(1, 5, 100, 5)
              + notice(1, 7, b'{"stream":"S","seq":40,"batch":"x","count":6}')
              + notice(1, 8, b'{"error":{"code":400,"err_code":10208,"description":"batch publish ID unknown"},'
                             b'"stream":"S","seq":0}')
              + b'MSG %sb%08x.100.ok.0000001.0.$FI 2 34\r\n{"type":"ack", "seq":1,"msgs":100}\r\n' % (INBOX, 2))
    for step in (1, 3, 11, len(stream)):
        ring = _fast(fr, 6)
        start(ring)
        ring.take(10, 0.0)
        assert ring.commit_batch() is not None
        ring.add_message(b"t", b"j", b"q")
        ring.open_batch()
        ring.take(10, 0.0)
        parser = fr.AckParser(ring, INBOX)
        for k in range(0, len(stream), step):
            parser.feed(stream[k:k + step])
        assert parser.events == [("fi_err", 2, 503, 10077, "maximum messages exceeded"), ("no_responders", 3),
                                 ("fi_gap", 1, 4, 5), ("fi_done", 1, 6),
                                 ("fi_error", 1, 8, 400, 10208, "batch publish ID unknown")]
        # seq 1 and 5 settled by the flow ack; 2, 3 and 4 held (err, no responders, gap); batch 2's ack
        # in a non-compact form went the slow way
        assert ring.acked_count == 3 and parser.acks == 4 and parser.errors == 2 and parser.gaps == 1
        assert parser.no_responders == 1 and parser.replies == 8 and parser.stale == 0
        assert ring.held(1, 1, 10) == [2, 3, 4] and ring.finish_batch(1, 6) == []


def test_resends_go_first_into_a_new_batch_with_their_original_bytes(impl):
    _, fr = impl
    ring = _fast(fr, 4)
    sent = parse_hpub(start(ring) + ring.take(10, 0.0))
    ring.add_message(b"s.4", b"id-4", b"payload-4")
    with pytest.raises(RuntimeError, match="new batch"):
        ring.resend([2, 3], 1.0)
    assert ring.commit_batch().startswith(b"PUB s.0 _INBOX.abc123b00000001.100.ok.0000005.3.$FI 0\r\n")
    assert ring.open_batch() == 2
    again = ring.resend([2, 4], 1.0)
    assert replies(again) == [(2, 1, 0), (2, 2, 1)]
    assert [x[0::2] for x in parse_hpub(again)] == [sent[1][0::2], sent[3][0::2]]
    assert ring.resends_pending == 2 and ring.attempts(2) == 2
    assert ring.take(10, 2.0) is None and ring.fast_ack(2, 0)
    assert replies(ring.take(10, 2.0)) == [(2, 3, 1)]       # new messages follow the resends
    assert ring.batch_sent(2) == [2, 4, 5] and ring.batch_sent(1) == [1, 3]
    assert ring.fast_ack(1, 4) and ring.acked_count == 2      # batch 1's ack settles only its own
    assert ring.fast_ack(2, 3) and ring.acked_count == 5 and ring.resends_pending == 0 and ring.inflight == 0


def test_commit_ping_and_rolls(impl):
    _, fr = impl
    ring = _fast(fr, 5, batch_max=2)
    assert ring.commit_batch() is None
    ring.open_batch()
    assert ring.commit_batch() is None and ring.batches() == []   # an empty batch is just forgotten
    ring.open_batch()
    assert ring.ping_frame(2) is None
    assert replies(ring.take(10, 0.0)) == [(2, 1, 0)] and ring.fast_ack(2, 0)
    assert replies(ring.take(10, 0.0)) == [(2, 2, 1)] and ring.batch_full
    assert ring.take(10, 0.0) is None
    assert ring.ping_frame(2) == b"PUB s.0 _INBOX.abc123b00000002.100.ok.0000002.4.$FI 0\r\n\r\n"
    ring.fast_ack(2, 1)
    assert ring.good_subject == b"s.0"
    assert ring.commit_batch() == b"PUB s.0 _INBOX.abc123b00000002.100.ok.0000003.3.$FI 0\r\n\r\n"
    assert ring.ping_frame(2).endswith(b".0000003.4.$FI 0\r\n\r\n")   # a committed batch: ping its commit
    assert ring.recommit(2).endswith(b".0000003.3.$FI 0\r\n\r\n") and ring.recommit(9) is None
    assert replies(start(ring) + ring.take(10, 0.0)) == [(3, 1, 0), (3, 2, 1)]
    assert [b[:3] for b in ring.batches()] == [(2, fr.BATCH_CLOSING, 2), (3, fr.BATCH_OPEN, 2)]
    ring.kill_batch(3)
    assert ring.cur_batch == 0 and [b[0] for b in ring.batches()] == [2]
    ring.drop_batches()
    assert ring.batches() == [] and ring.live_batches == 0


def test_gap_notices_hold_a_range_and_expired_messages_are_listed(impl):
    _, fr = impl
    ring = _fast(fr, 6)
    start(ring, 1.0)
    ring.take(3, 1.0)
    ring.take(10, 5.0)
    assert ring.hold_range(1, 2, 5) == [2, 3, 4] and ring.held(1, 0, 9) == [2, 3, 4]
    assert ring.batch_pseq(1, 5) == 5 and ring.batch_pseq(1, 9) == 0
    assert ring.expired(6.0, 2.0) == [1, 2, 3] and ring.expired(6.0, 2.0, limit=1) == [1]
    ring.fast_ack(1, 6)
    assert ring.acked_count == 3 and ring.head == 2 and ring.oldest_unacked_sent() == 1.0


def test_park_takes_a_message_out_of_the_window(impl):
    _, fr = impl
    ring = _fast(fr, 3)
    start(ring)
    ring.take(10, 0.0)
    assert ring.park(1) == (b"s.0", b"id-0", b"payload-0", 0) and ring.park(1) is None
    assert ring.parked == 1 and ring.rejected == 0 and ring.head == 2


def test_compiled_and_python_fast_frames_and_reframes_are_byte_identical():
    (nc, fc), (np_, fp) = _impl("cython"), _impl("python")
    lines = corpus_lines()
    outs = []
    for norm_mod, fr in ((nc, fc), (np_, fp)):
        ring = fr.PublishRing(PREFIX, INBOX, fast=True, flow=37)
        ring.gate_starts = True
        for k in range(0, len(lines), 7):
            ring.add_batch(make_batch(norm_mod, lines[k:k + 7]), "0123456789ab")
        out = [start(ring, 0.4), ring.take(40, 0.5), ring.take(1000, 0.6)]
        out.append(ring.commit_batch())
        ring.open_batch()
        out.append(ring.resend([3, 9, 27], 0.7))
        ring.set_mode(fr.MODE_ACK)                 # the server cannot batch: per-message replies
        out.append(ring.resend_all(0.8))
        ring.add_message(b"x.events.gap", b"kalshi:event:c:1", b'{"type":"status"}')
        out.append(ring.take(10**6, 0.9))
        ring.set_mode(fr.MODE_FAST)
        ring.open_batch()
        out.append(ring.resend_all(1.0))
        outs.append(out)
    assert outs[0] == outs[1]
    assert b".37.ok." in outs[0][0] and b"$FI" not in outs[0][5] and len(outs[0][2]) > 10_000


def test_set_mode_reframes_every_held_message(impl):
    _, fr = impl
    ring = _fast(fr, 4)
    start(ring)
    ring.take(2, 0.0)
    before = ring.message(1)
    ring.set_mode(fr.MODE_ACK)
    assert ring.mode == fr.MODE_ACK and not ring.fast and ring.batches() == [] and ring.queued == 2
    assert parse_hpub(ring.resend_all(1.0)) == [(b"s.0", INBOX + b".1", b"id-0", b"payload-0"),
                                              (b"s.1", INBOX + b".2", b"id-1", b"payload-1")]
    assert ring.message(1) == before
    assert parse_hpub(ring.take(10, 1.0))[-1][1] == INBOX + b".4"
    with pytest.raises(ValueError):
        fr.PublishRing(PREFIX, INBOX, acked=False).set_mode(fr.MODE_FAST)


@pytest.mark.parametrize("mode", ["fast", "core"])
def test_take_writes_straight_to_a_socket_and_keeps_what_it_did_not_take(impl, mode):
    """A socket that takes part of a send: the message it stopped in is returned (its rest, for the
    transport), the later ones stay queued (fast: their seqs given back to the batch; core: not retired);
    sending on until all is out gives the bytes of one unhindered send, seqs and all."""
    _, fr = impl
    fast = mode == "fast"
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ring, copy = (_fast(fr, 0), _fast(fr, 0)) if fast else (_ring(fr, 0, acked=False), _ring(fr, 0, acked=False))
        for r in (ring, copy):
            for k in range(2000):
                r.add_message(b"s.%d" % k, b"id-%d" % k, b"p" * 500)
            if fast:
                start(r)
        want = copy.take(5000, 0.0, 1 << 30)
        got = bytearray()

        def drain():
            while True:
                try:
                    got.extend(b.recv(1 << 20))
                except BlockingIOError:
                    return

        rest = ring.take(5000, 0.0, 1 << 30, a.fileno())
        assert 0 < len(rest) <= 600 and ring.direct_bytes < len(want) // 10     # one message's rest
        assert 0 < ring.sent < 2000 and ring.queued == 2000 - ring.sent
        assert ring.inflight == (ring.sent if fast else 0) and ring.head == (1 if fast else ring.sent + 1)
        for _ in range(20_000):                      # bounded: ~300 sends of ~8 KB
            drain()
            if rest:                                 # what the transport would write next
                a.sendall(rest)
            rest = ring.take(5000, 0.0, 1 << 30, a.fileno())
            if rest is None:
                break
        drain()
        assert bytes(got) == want and len(want) > 1_000_000
        assert ring.inflight == (2000 if fast else 0) and ring.queued == 0 and ring.sent == 2000
        ring.add_message(b"t", b"i", b"q")
        assert ring.take(5000, 0.0, 1 << 30, a.fileno()) == b""      # all of it went out
    finally:
        a.close()
        b.close()


def test_emptying_the_ring_never_reuses_the_numbers_of_sent_messages(impl):
    _, fr = impl
    ring = _ring(fr, 4)
    ring.take(2, 0.0)
    assert len(ring.extract()) == 4 and ring.head == ring.tail == 3
    assert ring.add_message(b"s", b"i", b"p") == 3
    parser = fr.AckParser(ring, INBOX)
    parser.feed(b'MSG %s.1 1 21\r\n{"stream":"S","seq":1}\r\n' % INBOX)
    assert ring.acked_count == 0 and parser.stale == 1
    ring = _ring(fr, 4)                            # nothing sent: the numbers are free again
    ring.extract()
    assert ring.add_message(b"s", b"i", b"p") == 1


def test_fast_reply_shapes():
    from ssmd_fast.sinks._framing_acks_py import fast_reply, fast_subject_seq

    assert fast_reply(b'{"type":"ack","seq":3,"msgs":7}') == ("ack", 3, 7)
    assert fast_reply(json.dumps({"type": "err", "seq": 4, "error": {"code": 400, "err_code": 10054,
                                                                     "description": "too big"}}).encode()) == \
        ("err", 4, 400, 10054, "too big")
    assert fast_reply(b'{"type":"gap","last_seq":4,"seq":7}') == ("gap", 4, 7)
    assert fast_reply(b'{"stream":"S","seq":9,"batch":"b","count":12}') == ("done", 12)
    assert fast_reply(b'{"error":{"code":400,"err_code":10205,"description":"batch publish is disabled"},'
                      b'"stream":"S","seq":0}') == ("error", 400, 10205, "batch publish is disabled")
    assert fast_reply(b"{") == ("other",) and fast_reply(b'{"type":"ack"}') == ("other",)
    assert fast_subject_seq(b"_INBOX.xb00000001.100.ok.0000012.1.$FI") == 12
    assert fast_subject_seq(b"_INBOX.x.12") == 0
