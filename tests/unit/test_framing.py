"""HPUB framing, the in-flight ring and the ack parser, against both implementations (twin tests)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from twins import pair, twin_fixture

from ssmd_fast import normalize
from ssmd_fast.sinks import framing
from ssmd_fast.sinks.subjects import SubjectEncoder, takes_counter

DATA = Path(__file__).resolve().parents[1] / "data"

pytestmark = [pytest.mark.twin, pytest.mark.timeout(60)]

PREFIX = b"kalshi_dev.kalshi"
INBOX = b"_INBOX.abc123"
CONN = "0123456789ab"
ENC = SubjectEncoder(PREFIX)


# the framing's twin and compiled module: _impl(name) and impl give (normalizer, framing) of one implementation
MODULES = ("ssmd_fast.sinks._framing_py", "ssmd_fast.sinks._framing")


def _impl(name: str):
    return pair(name, *MODULES)


impl = twin_fixture(*MODULES)


def corpus_lines() -> list[bytes]:
    lines = []
    for path in sorted((DATA / "kalshi").glob("*.jsonl")):
        lines += [line for line in path.read_bytes().split(b"\n") if line]
    # odd types and keys on top of the fixtures
    lines += [b'{"type":"","sid":1,"msg":{}}', b'{"type":"ticker ","msg":{}}', b'{"type":"a.b*c>","seq":5}',
              '{"type":"Zürich","sid":2,"seq":6}'.encode(),
              b'{"type":"trade","sid":9,"seq":3,"msg":{"trade_id":"t\\r\\n%1","market_ticker":"A.B",'
              b'"yes_price_dollars":"0.5","count_fp":"1","taker_side":"yes","ts":1}}',
              b"not json", b'{"type":"ok","id":1}']
    return lines


def make_batch(norm_mod, lines, drop=(), suppress=()):
    batch = norm_mod.FrameBatch()
    for line in lines:
        batch.add(line)
    for i in drop:
        batch.set_flag(i, normalize.F_DUPLICATE)
    for i in suppress:
        batch.set_flag(i, normalize.F_SUPPRESSED)
    return batch


HPUB_RE = re.compile(rb"HPUB (\S+) (?:(\S+) )?(\d+) (\d+)\r\n")
PUB_RE = re.compile(rb"PUB (\S+) (?:(\S+) )?(\d+)\r\n")


def parse_hpub(data: bytes) -> list[tuple[bytes, bytes | None, bytes, bytes]]:
    """(subject, reply, msg_id, payload) of every frame (``HPUB`` with the id header; core ``PUB`` without
    one: id ``b""``): an independent reader of the framer's output."""
    out, pos = [], 0
    while pos < len(data):
        m = HPUB_RE.match(data, pos)
        if m is None:
            m = PUB_RE.match(data, pos)
            assert m, data[pos:pos + 80]
            total = int(m.group(3))
            assert data[m.end() + total:m.end() + total + 2] == b"\r\n"
            out.append((m.group(1), m.group(2), b"", data[m.end():m.end() + total]))
            pos = m.end() + total + 2
            continue
        hdr_len, total = int(m.group(3)), int(m.group(4))
        body = data[m.end():m.end() + total]
        headers, payload = body[:hdr_len], body[hdr_len:]
        assert headers.startswith(b"NATS/1.0\r\nNats-Msg-Id: ") and headers.endswith(b"\r\n\r\n")
        msg_id = headers[len(b"NATS/1.0\r\nNats-Msg-Id: "):-4]
        assert b"\r" not in msg_id and b"\n" not in msg_id
        assert data[m.end() + total:m.end() + total + 2] == b"\r\n"
        out.append((m.group(1), m.group(2), msg_id, payload))
        pos = m.end() + total + 2
    return out


def expected_messages(batch, conn: str, raw=True, norm=True):
    """What docs/design.md says the batch publishes, computed from the Python API and subjects.py."""
    out, counter, c = [], 0, conn.encode()
    for i in range(len(batch)):
        if batch.flags(i) & normalize.F_DUPLICATE:      # not published at all
            continue
        o = batch.outcome(i)
        if o == normalize.OUT_RECORD:
            kind, tid = batch.kind(i), batch.trade_id(i)
            if takes_counter(kind, tid, batch.sid(i), batch.seq(i)):
                counter += 1
            withheld = batch.flags(i) & normalize.F_SUPPRESSED    # a resyncing book's delta: raw only
            for want, form, subj, payload in ((raw, b"raw", ENC.raw_subject, batch.raw(i)),
                                              (norm and not withheld, b"norm", ENC.norm_subject, batch.record(i))):
                if want:
                    out.append((subj(kind, batch.key(i)),
                                ENC.frame_msg_id(c, kind, tid, batch.sid(i), batch.seq(i), counter, form), payload))
        elif o == normalize.OUT_OTHER and raw:
            if takes_counter(-1, None, batch.sid(i), batch.seq(i)):
                counter += 1
            out.append((ENC.other_subject(batch.key(i)),
                        ENC.frame_msg_id(c, -1, None, batch.sid(i), batch.seq(i), counter, b"raw"), batch.raw(i)))
    return out


@pytest.mark.parametrize(("raw", "norm"), [(True, True), (True, False), (False, True)])
def test_batch_framing_follows_the_subject_and_id_rules(impl, raw, norm):
    norm_mod, fr = impl
    lines = corpus_lines()
    batch = make_batch(norm_mod, lines, drop=(3, 40), suppress=(5, 41))
    ring = fr.PublishRing(PREFIX, INBOX, raw=raw, normalized=norm)
    n = ring.add_batch(batch, CONN)
    want = expected_messages(batch, CONN, raw, norm)
    withheld = [batch.raw(i) for i in (5, 41) if batch.outcome(i) == normalize.OUT_RECORD]
    assert withheld and all((p in {w[2] for w in want}) == raw for p in withheld)   # raw form only
    assert n == len(want) == ring.queued
    data = ring.take(10**6, 1.0)
    got = parse_hpub(data)
    assert [(s, i, p) for s, _r, i, p in got] == want
    assert [r for _s, r, _i, _p in got] == [INBOX + b".%d" % k for k in range(1, n + 1)]
    assert ring.inflight == n and ring.queued == 0 and ring.queued_bytes == 0
    # every subject is well formed: prefix, 2 more tokens, no wildcard or empty token
    for s, *_ in got:
        toks = s.split(b".")
        assert len(toks) == 5 and all(toks) and not any(t in (b"*", b">") for t in toks)


def test_controls_invalid_and_dropped_frames_are_never_framed(impl):
    norm_mod, fr = impl
    batch = make_batch(norm_mod, [b'{"type":"ok","id":1}', b"{bad", (DATA / "kalshi/trade.jsonl").read_bytes()
                                  .split(b"\n")[0]], drop=(2,))
    ring = fr.PublishRing(PREFIX, INBOX)
    assert ring.add_batch(batch, CONN) == 0 and ring.take(100, 0.0) is None


def test_unsequenced_counter_is_per_connection_and_kept_across_batches(impl):
    norm_mod, fr = impl
    tick = [line for line in (DATA / "kalshi/ticker.jsonl").read_bytes().split(b"\n") if line]
    ring = fr.PublishRing(PREFIX, INBOX, raw=False)
    ring.add_batch(make_batch(norm_mod, tick[:2]), "aaaaaaaaaaaa")
    ring.add_batch(make_batch(norm_mod, tick[2:3]), "bbbbbbbbbbbb")
    ring.add_batch(make_batch(norm_mod, tick[3:4]), "aaaaaaaaaaaa")
    ids = [i for _s, _r, i, _p in parse_hpub(ring.take(100, 0.0))]
    assert ids == [b"kalshi:aaaaaaaaaaaa:n1:norm", b"kalshi:aaaaaaaaaaaa:n2:norm",
                   b"kalshi:bbbbbbbbbbbb:n1:norm", b"kalshi:aaaaaaaaaaaa:n3:norm"]


def test_a_seq_without_a_sid_takes_the_unsequenced_counter(impl):
    # "sid, seq" names a frame within its connection; a seq alone does not: two such frames with one seq
    # got the same id (kalshi:{conn}:0:{seq}), and JetStream would have dropped the second as a duplicate
    norm_mod, fr = impl
    frames = [b'{"type":"fill","seq":5,"msg":{"a":1}}', b'{"type":"user_order","seq":5,"msg":{"b":2}}',
              b'{"type":"fill","sid":2,"seq":5,"msg":{"a":1}}',
              b'{"type":"orderbook_delta","seq":5,"msg":{"market_ticker":"A","price_dollars":"0.5",'
              b'"delta_fp":"1","side":"yes"}}']
    ring = fr.PublishRing(PREFIX, INBOX)
    ring.add_batch(make_batch(norm_mod, frames), CONN)
    ids = [i for _s, _r, i, _p in parse_hpub(ring.take(10**6, 0.0))]
    c = CONN.encode()
    assert ids == [b"kalshi:%s:n1:raw" % c, b"kalshi:%s:n2:raw" % c, b"kalshi:%s:2:5:raw" % c,
                   b"kalshi:%s:n3:raw" % c, b"kalshi:%s:n3:norm" % c]


def test_compiled_and_python_frames_are_byte_identical():
    (nc, fc), (np_, fp) = _impl("cython"), _impl("python")
    lines = corpus_lines()
    outs = []
    for norm_mod, fr in ((nc, fc), (np_, fp)):
        ring = fr.PublishRing(PREFIX, INBOX)
        for k in range(0, len(lines), 7):  # several batches: the counters carry over
            chunk = lines[k:k + 7]
            ring.add_batch(make_batch(norm_mod, chunk, drop=(1,) if k % 14 == 0 and len(chunk) > 1 else ()), CONN)
        ring.add_message(b"x.events.gap", b"kalshi:event:c:1", b'{"type":"status"}')
        outs.append(ring.take(10**6, 0.5))
        core = fr.PublishRing(PREFIX, INBOX, acked=False)
        core.add_batch(make_batch(norm_mod, lines[:20]), CONN)
        outs.append(core.take(10**6, 0.5))
    assert outs[0] == outs[2] and outs[1] == outs[3]
    assert len(outs[0]) > 100_000


# ---------------------------------------------------------------------- the ring


def _ring(fr, n: int, **kw):
    ring = fr.PublishRing(PREFIX, INBOX, **kw)
    for k in range(n):
        assert ring.add_message(b"s.%d" % k, b"id-%d" % k, b"payload-%d" % k) == k + 1
    return ring


def test_window_bounds_the_unacked_messages(impl):
    _, fr = impl
    ring = _ring(fr, 10)
    assert len(parse_hpub(ring.take(4, 1.0))) == 4
    assert ring.take(4, 1.0) is None              # window full
    assert ring.ack(2) and ring.take(4, 1.0) is None  # out-of-order ack: the head has not moved
    assert ring.ack(1) and ring.head == 3
    got = parse_hpub(ring.take(4, 2.0))
    assert [s for s, *_ in got] == [b"s.4", b"s.5"]
    assert not ring.ack(1) and not ring.ack(9)      # already acked / never sent
    assert ring.acked_count == 2 and ring.inflight == 4


def test_take_bounds_the_bytes_of_one_write_but_always_moves(impl):
    _, fr = impl
    ring = _ring(fr, 10)
    one = len(parse_hpub(ring.take(1, 0.0)) and ring.resend_all(0.0))  # the size of one frame
    got = parse_hpub(ring.take(100, 0.0, max_bytes=3 * one))
    assert [s for s, *_ in got] == [b"s.1", b"s.2", b"s.3"]
    assert len(parse_hpub(ring.take(100, 0.0, max_bytes=1))) == 1  # a frame larger than the bound still goes
    assert len(parse_hpub(ring.take(100, 0.0))) == 5


def test_acks_retire_in_order_and_free_the_buffer(impl):
    _, fr = impl
    ring = _ring(fr, 5)
    ring.take(100, 0.0)
    for p in (5, 3, 4, 2):
        ring.ack(p, duplicate=p == 3)
    assert ring.head == 1 and ring.retained_bytes > 0
    ring.ack(1)
    assert ring.head == 6 and ring.inflight == 0 and ring.retained_bytes == 0
    assert ring.duplicates == 1 and ring.acked_count == 5


def test_resend_expired_and_resend_all_keep_the_same_bytes(impl):
    _, fr = impl
    ring = _ring(fr, 4)
    first = parse_hpub(ring.take(100, 10.0))
    ring.ack(2)
    assert ring.resend_expired(11.0, 2.0) is None
    again = parse_hpub(ring.resend_expired(12.0, 2.0))
    assert again == [first[0], first[2], first[3]]
    assert ring.resends_pending == 3 and ring.attempts(1) == 2
    assert ring.resend_expired(13.0, 2.0) is None  # the deadline restarts at the resend
    assert parse_hpub(ring.resend_all(13.5)) == [first[0], first[2], first[3]]
    assert ring.resends_pending == 3 and ring.resent == 6 and ring.attempts(3) == 3
    assert ring.oldest_unacked_sent() == 10.0
    for p in (1, 3, 4):
        ring.ack(p)
    assert ring.resends_pending == 0 and ring.inflight == 0


def test_expired_finds_every_overdue_message_whatever_was_resent(impl):
    """Sent once each, messages are due in pseq order and the scan stops at the first not yet due; a
    resend in flight (sent later than messages behind it) makes it look at all of them."""
    _, fr = impl
    ring = _ring(fr, 6)
    for p, t in ((1, 0.0), (2, 0.0), (3, 1.0), (4, 3.0)):
        ring.take(p, t)                  # the window lets one more message go each time
    assert ring.send_next == 5
    assert ring.expired(3.5, 2.0) == [1, 2, 3]
    ring.ack(2)
    assert ring.expired(3.5, 2.0) == [1, 3] and ring.expired(3.5, 2.0, limit=1) == [1]
    assert ring.resend([1], 3.5) is not None and ring.resends_pending == 1
    assert ring.expired(4.0, 2.0) == [3]                     # 1 (resent at 3.5) is not due, 3 behind it is
    assert ring.expired(5.6, 2.0) == [1, 3, 4]
    ring.ack(1)
    assert ring.resends_pending == 0 and ring.expired(4.0, 2.0) == [3]


def test_reject_returns_the_message_and_retires_it(impl):
    _, fr = impl
    ring = _ring(fr, 3)
    ring.take(100, 0.0)
    assert ring.find_sent(b"s.1") == 2 and ring.find_sent(b"nope") == 0
    assert ring.message(2) == (b"s.1", b"id-1", b"payload-1", 0)
    assert ring.reject(2) == (b"s.1", b"id-1", b"payload-1", 0)
    assert ring.reject(2) is None and ring.rejected == 1
    ring.ack(1)
    assert ring.head == 3


def test_extract_moves_unacked_messages_out_in_order(impl):
    _, fr = impl
    ring = _ring(fr, 3)
    for k in range(3, 5):
        ring.add_message(b"s.%d" % k, b"id-%d" % k, b"p%d" % k, fr.ORIGIN_SPILL)
    ring.add_message(b"s.5", b"id-5", b"p5")
    ring.take(3, 0.0)
    ring.ack(2)
    assert ring.extract(from_pseq=5) == [(b"s.5", b"id-5", b"p5")]  # the queued tail only
    assert ring.tail == 5 and ring.queued == 1
    out = ring.extract()
    assert out == [(b"s.0", b"id-0", b"payload-0"), (b"s.2", b"id-2", b"payload-2")]  # spill-origin left out
    assert ring.tail == ring.head and ring.inflight == 0 and ring.queued_bytes == 0
    ring.add_message(b"t", b"i", b"p")  # usable afterwards
    assert parse_hpub(ring.take(10, 1.0)) == [(b"t", INBOX + b".%d" % ring.head, b"i", b"p")]


def test_spill_origin_messages_are_counted_when_retired_at_the_head(impl):
    _, fr = impl
    ring = fr.PublishRing(PREFIX, INBOX)
    for k in range(3):
        ring.add_message(b"s", b"id%d" % k, b"p", fr.ORIGIN_SPILL)
    ring.add_message(b"s", b"live", b"p")
    ring.take(10, 0.0)
    ring.ack(2)
    assert ring.pop_spill_retired() == 0
    ring.ack(1)
    assert ring.pop_spill_retired() == 2 and ring.pop_spill_retired() == 0
    ring.reject(3)
    ring.ack(4)
    assert ring.pop_spill_retired() == 1


def test_oversized_messages_are_set_aside(impl):
    _, fr = impl
    ring = fr.PublishRing(PREFIX, INBOX, max_payload=100)
    assert ring.add_message(b"s", b"id", b"x" * 200) == 0
    assert ring.add_message(b"s", b"id2", b"x") == 1
    assert ring.pop_oversized() == [(b"s", b"id", b"x" * 200)] and ring.oversized == 1
    assert ring.pop_oversized() == []


def test_add_messages_frames_a_chunk_as_add_message_does_and_stops_at_an_oversized_one(impl):
    _, fr = impl
    items = [(b"s.%d" % k, b"id-%d" % k, b"payload-%d" % k) for k in range(5)]
    one, many = fr.PublishRing(PREFIX, INBOX, max_payload=100), fr.PublishRing(PREFIX, INBOX, max_payload=100)
    for it in items:
        one.add_message(*it, fr.ORIGIN_SPILL)
    assert many.add_messages([items[0], list(items[1]), (bytearray(items[2][0]), *items[2][1:]), *items[3:]],
                             fr.ORIGIN_SPILL) == 5
    assert one.take(100, 1.0) == many.take(100, 1.0) and many.tail == 6
    for p in range(1, 6):
        assert many.ack(p)
    assert many.pop_spill_retired() == 5                  # the origin went with each message
    big = (b"s.big", b"id-big", b"x" * 200)
    assert many.add_messages([items[0], big, items[1]]) == 1     # framed up to the oversized one ...
    assert many.pop_oversized() == [big] and many.tail == 7      # ... which is set aside, the rest not taken
    assert many.add_messages([]) == 0


def test_core_mode_frames_plain_pub_and_retires_on_send(impl):
    """Core mode (benchmarks only): ``PUB subject size`` with no reply and no header (a msg id only means
    something to JetStream), retired as soon as it is written."""
    _, fr = impl
    ring = _ring(fr, 3, acked=False)
    data = ring.take(2, 0.0)
    assert data.startswith(b"PUB s.0 9\r\npayload-0\r\nPUB s.1 9\r\n")
    assert parse_hpub(data) == [(b"s.0", None, b"", b"payload-0"), (b"s.1", None, b"", b"payload-1")]
    assert ring.head == 3 and ring.inflight == 0
    assert len(parse_hpub(ring.take(2, 0.0))) == 1
    assert fr.PublishRing(PREFIX, INBOX, acked=False, max_payload=9).add_message(b"s", b"i", b"x" * 10) == 0


def _log_schedule(fr, seed: int) -> tuple[list, int]:
    """A seeded mix of framing, sends capped in bytes, in-order and out-of-order acks, resends and tail
    extracts: what goes out (each take's messages), and the ring's retained bytes at the end. The compiled
    ring's log is circular (frames wrap to its front, the buffer is laid out again when full); the twin's
    is a bytearray: the same schedule must give the same messages in the same sends."""
    import random

    rnd = random.Random(seed)
    ring = fr.PublishRing(PREFIX, INBOX, acked=True)
    out, k = [], 0
    for _ in range(400):                       # bounded: 400 steps
        for _ in range(rnd.randrange(0, 60)):
            ring.add_message(b"s.%d" % k, b"id-%d" % k, bytes([65 + k % 26]) * rnd.choice((1, 90, 700, 3000)))
            k += 1
        window, most = rnd.choice((50, 400, 5000)), rnd.choice((600, 20_000, 1 << 20))
        msgs = []
        while (data := ring.take(window, 1.0, most)) is not None:   # a send never spans the compiled log's wrap
            msgs += parse_hpub(data)
        out.append(("take", msgs))
        sent = list(range(ring.head, ring.send_next))
        for p in sent[:rnd.randrange(0, len(sent) + 1)]:
            if rnd.random() < 0.9:             # some stay unacked: the head stops at them
                ring.ack(p)
        if sent and rnd.random() < 0.1:
            out.append(("resend", parse_hpub(ring.resend([p for p in sent if rnd.random() < 0.3], 2.0) or b"")))
        if rnd.random() < 0.05:
            out.append(("extract", ring.extract(ring.send_next)))
    return out, ring.retained_bytes


def test_circular_log_sends_what_the_twin_sends():
    (_, fc), (_, fp) = _impl("cython"), _impl("python")
    for seed in range(6):
        compiled, held_c = _log_schedule(fc, seed)
        twin, held_t = _log_schedule(fp, seed)
        assert compiled == twin and held_c == held_t, f"seed {seed}"
        assert sum(len(m) for what, m in compiled if what == "take") > 1000


def test_circular_log_keeps_order_over_many_wraps(impl):
    """A steady flow with ~2 MB held: the compiled log wraps to its front over and over; every message goes
    out once, in order, and only what is unacked is held."""
    _, fr = impl
    ring = fr.PublishRing(PREFIX, INBOX)
    payload = b"q" * 700
    got = []
    for round_ in range(200):                  # bounded: 200 rounds x 300 messages, ~2,800 held
        for k in range(300):
            ring.add_message(b"s", b"%d" % (round_ * 300 + k), payload)
        while (data := ring.take(10_000, 0.0, 64_000)) is not None:
            got += [int(i) for _, _, i, _ in parse_hpub(data)]
        for p in range(ring.head, ring.send_next - 2800):
            ring.ack(p)
        assert ring.retained_bytes <= 3100 * 760
    assert got == list(range(200 * 300))


def test_circular_log_grows_with_frames_wrapped_to_its_front(impl):
    """Frames that wrapped to the front of the compiled log, then a burst that needs a larger buffer: every
    held message is still sent, resent and extracted whole and in order."""
    _, fr = impl
    ring = fr.PublishRing(PREFIX, INBOX)
    for k in range(40):                         # ~40 KB in the first 64 KiB buffer
        ring.add_message(b"s", b"a%d" % k, b"x" * 1000)
    assert len(parse_hpub(ring.take(100, 0.0))) == 40
    for p in range(1, 31):                      # the oldest 30 acked: the front is free again
        ring.ack(p)
    for k in range(25):                         # these wrap to the front
        ring.add_message(b"s", b"b%d" % k, b"y" * 1000)
    for k in range(200):                        # no room left: a larger buffer
        ring.add_message(b"s", b"c%d" % k, b"z" * 1000)
    ids = []
    while (data := ring.take(1000, 1.0, 30_000)) is not None:
        ids += [i for _, _, i, _ in parse_hpub(data)]
    want = [b"b%d" % k for k in range(25)] + [b"c%d" % k for k in range(200)]
    assert ids == want
    assert [i for _, _, i, _ in parse_hpub(ring.resend(list(range(31, 41)), 2.0))] == [b"a%d" % k for k in range(30, 40)]
    held = ring.extract(31)
    assert [m[1] for m in held] == [b"a%d" % k for k in range(30, 40)] + want
    assert all(len(m[2]) == 1000 for m in held)


def test_ring_grows_and_compacts_under_sustained_traffic(impl):
    _, fr = impl
    ring = fr.PublishRing(PREFIX, INBOX)
    payload = b"p" * 300
    sent = 0
    for round_ in range(60):  # bounded: 60 rounds x 3000 messages
        for k in range(3000):
            ring.add_message(b"subj", b"id-%d-%d" % (round_, k), payload)
        data = ring.take(5000, float(round_))
        sent += len(parse_hpub(data))
        for p in range(ring.head, ring.send_next - 500):  # keep ~500 unacked across rounds
            ring.ack(p)
        assert ring.retained_bytes < 8 * 2**20
    assert sent == ring.send_next - 1 and ring.inflight <= 3500


# ---------------------------------------------------------------------- the ack parser


def _acks(pseqs, dup=False):
    out = b""
    for p in pseqs:
        body = b'{"stream":"S","seq":%d%s}' % (p, b',"duplicate": true' if dup else b"")
        out += b"MSG %s.%d 1 %d\r\n%s\r\n" % (INBOX, p, len(body), body)
    return out


def test_parser_resolves_acks_at_any_split(impl):
    _, fr = impl
    err = b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}'
    stream = (b"INFO {\"server_id\":\"x\"}\r\nPING\r\n" + _acks([1, 2]) + b"+OK\r\n" + _acks([3], dup=True)
              + b"HMSG %s.4 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n" % INBOX
              + b"MSG %s.5 1 %d\r\n%s\r\n" % (INBOX, len(err), err)
              + b"PONG\r\n-ERR 'Permissions Violation for Publish to \"a.b\"'\r\n"
              + b"MSG other.subject 2 2\r\nhi\r\n")
    for step in (1, 2, 3, 7, len(stream)):
        ring = _ring(fr, 5)
        ring.take(10, 0.0)
        parser = fr.AckParser(ring, INBOX)
        for k in range(0, len(stream), step):
            parser.feed(stream[k:k + step])
        assert parser.acks == 3 and parser.duplicates == 1 and ring.acked_count == 3
        assert parser.no_responders == 1 and parser.errors == 1 and parser.protocol_errors == 0
        assert ring.head == 4
        assert parser.events == [
            ("info", b'{"server_id":"x"}'), ("ping",), ("no_responders", 4),
            ("ack_error", 5, 503, 10077, "maximum messages exceeded"), ("pong",),
            ("err", 'Permissions Violation for Publish to "a.b"'), ("msg", b"other.subject", b"hi")]


def test_parser_counts_stale_acks_and_reports_malformed_lines(impl):
    _, fr = impl
    ring = _ring(fr, 2)
    ring.take(10, 0.0)
    parser = fr.AckParser(ring, INBOX)
    assert parser.feed(_acks([1, 1, 2, 77])) == 0
    assert parser.acks == 4 and parser.stale == 2 and ring.acked_count == 2
    n = parser.feed(b"MSG a b\r\nWHAT\r\nMSG %s.x 1 2\r\n{}\r\n" % INBOX)
    assert n == 3 and parser.protocol_errors == 2
    assert parser.events[-1] == ("msg", INBOX + b".x", b"{}")
    parser.events.clear()
    parser.feed(b"MSG %s.1 1 10\r\n{\"stre" % INBOX)  # a partial message waits for the rest
    parser.reset()                                     # ... unless the connection is gone
    parser.feed(b"PING\r\n")
    assert parser.events == [("ping",)]


def test_parser_throughput_shape(impl):
    """Many acks in one read: all resolved, no events (the hot path makes no Python objects)."""
    _, fr = impl
    ring = _ring(fr, 2000)
    ring.take(5000, 0.0)
    parser = fr.AckParser(ring, INBOX)
    assert parser.feed(_acks(range(1, 2001))) == 0
    assert ring.acked_count == 2000 and ring.inflight == 0 and ring.retained_bytes == 0


def test_facade_uses_the_compiled_framer_when_the_normalizer_is_compiled():
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS"):
        assert framing.IMPLEMENTATION == "python"
    elif normalize.IMPLEMENTATION == "cython":
        assert framing.IMPLEMENTATION == "cython"


def test_ack_json_shapes_from_the_server_are_understood():
    body = json.dumps({"error": {"code": 400, "err_code": 10060, "description": 'bad "x"'}, "stream": "S",
                       "seq": 0}, separators=(",", ":")).encode()
    from ssmd_fast.sinks._framing_py import parse_ack_error
    assert parse_ack_error(body) == (400, 10060, 'bad "x"')
    assert parse_ack_error(b'{"error":') == (0, 0, '{"error":')


def test_ack_latency_histogram_from_the_batch_receive_time(impl):
    """recv_ts of the batch -> the ack's read time, bucketed alike in both implementations; messages
    without a receive time (events, spill replays, offline batches) are not counted."""
    from ssmd_fast.sinks._framing_py import LATENCY_BUCKETS, latency_bucket, latency_upper_ns

    norm_mod, fr = impl
    recv = 1_700_000_000_000_000_000
    batch = make_batch(norm_mod, [line for line in corpus_lines() if b'"type":"trade"' in line][:3])
    batch.set_recv_ts(recv)
    ring = fr.PublishRing(PREFIX, INBOX, normalized=False)
    n = ring.add_batch(batch, CONN)
    assert n == 3
    ring.add_message(b"s.event", b"id-e", b"{}")                 # no receive time
    offline = make_batch(norm_mod, [line for line in corpus_lines() if b'"type":"trade"' in line][:1])
    assert ring.add_batch(offline, CONN) == 1                   # recv_ts 0: not counted either
    ring.take(100, 0.0)
    parser = fr.AckParser(ring, INBOX)
    parser.feed(_acks([1]), now_ns=recv + 500)                  # 500 ns: bucket 0
    parser.feed(_acks([2, 4]), now_ns=recv + 3_000_000)        # 3 ms
    parser.feed(_acks([5]), now_ns=recv + 9_000_000)
    parser.feed(_acks([3]), now_ns=recv - 5)                    # a clock step back counts as 0
    counts = ring.latency_counts()
    assert len(counts) == LATENCY_BUCKETS and sum(counts) == 3 and ring.acked_count == 5
    assert counts[0] == 2 and counts[latency_bucket(3_000_000)] == 1
    assert ring.latency_sum_ns == 3_000_500
    assert latency_upper_ns(latency_bucket(3_000_000) - 1) <= 3_000_000 < latency_upper_ns(latency_bucket(3_000_000))


def test_latency_buckets_are_contiguous_and_narrow():
    from ssmd_fast.sinks._framing_py import LATENCY_BUCKETS, latency_bucket, latency_upper_ns

    lower = 0.0
    for i in range(LATENCY_BUCKETS - 1):
        upper = latency_upper_ns(i)
        assert latency_bucket(int(lower)) == i and latency_bucket(int(upper) - 1) == i
        assert i < 2 or upper / lower <= 1.25
        lower = upper
    assert latency_bucket(1 << 62) == LATENCY_BUCKETS - 1 and latency_upper_ns(LATENCY_BUCKETS - 1) == float("inf")


_TICKERISH = "ABCXYZ019-._.*> %é\u2028\x00\x7f"


def test_tokens_match_the_twin_for_any_key():
    """Subject tokens and trade ids of arbitrary keys (the type of an unknown frame is its key): the compiled
    framer's 16-bytes-a-step paths and its byte loops against subjects.subject_token and id_text, through
    whole frames."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    (nc, fc), (np_, fp) = _impl("cython"), _impl("python")

    def one_odd(args):     # a clean key with one byte that may need an escape, anywhere
        clean, odd, at = args
        at %= len(clean) + 1
        return clean[:at] + odd + clean[at:]

    keys = st.one_of(st.text(alphabet=_TICKERISH, max_size=70),                  # escapes, mostly
                     st.tuples(st.text(alphabet=_TICKERISH[:12], min_size=14, max_size=70),
                               st.sampled_from(["", "", "%", "\x7f", " ", "\x1f", "é", "*", ">", ".", "\x00"]),
                               st.integers(0, 80)).map(one_odd))           # 16 bytes a step, mostly

    @settings(max_examples=300, deadline=None)
    @given(st.lists(keys, min_size=1, max_size=6))
    def check(types):
        lines = [json.dumps({"type": t, "sid": 3, "seq": k + 1}).encode() for k, t in enumerate(types)]
        lines += [json.dumps({"type": "ticker", "sid": 1, "msg": {"market_ticker": t, "price_dollars": "0.5"}}).encode()
                  for t in types]          # records: tickers that pass the schema's rule (the others are invalid)
        lines += [json.dumps({"type": "trade", "sid": 2, "seq": k + 1, "msg": {
            "trade_id": f"{t}-{k}", "market_ticker": f"KXT-{k}", "yes_price_dollars": "0.5", "count_fp": "1.00",
            "taker_side": "yes", "ts": 1}}).encode() for k, t in enumerate(types)]
        outs = []
        for norm_mod, fr in ((nc, fc), (np_, fp)):
            ring = fr.PublishRing(PREFIX, INBOX)
            ring.add_batch(make_batch(norm_mod, lines), CONN)
            outs.append(ring.take(10**6, 0.0))
        assert outs[0] == outs[1]

    check()
