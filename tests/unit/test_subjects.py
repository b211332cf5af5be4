"""Subjects and Nats-Msg-Ids (docs/design.md "Subjects and message ids")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmd_fast.sinks.subjects import (
    EMPTY_TOKEN,
    MAX_ID_TEXT,
    MAX_TOKEN,
    NORM_WORDS,
    RAW_WORDS,
    SubjectEncoder,
    id_text,
    subject_token,
)

ENC = SubjectEncoder("kalshi_dev.kalshi")


def is_single_token(tok: bytes) -> bool:
    """A NATS subject token that is literal (no wildcard), one token (no dot), no whitespace/controls."""
    return 0 < len(tok) <= MAX_TOKEN and all(0x21 <= b <= 0x7E and b not in b".*>" for b in tok)


def test_dotted_ticker_maps_dots_to_underscores():
    assert subject_token(b"KXBTCD-26MAR1213-T69499.99") == b"KXBTCD-26MAR1213-T69499_99"
    assert ENC.raw_subject(0, b"KXBTCD-26MAR1213-T69499.99") == \
        b"kalshi_dev.kalshi.json.trade.KXBTCD-26MAR1213-T69499_99"


@pytest.mark.parametrize(("key", "token"), [
    (b"", EMPTY_TOKEN),
    (b"*", b"%2A"),
    (b">", b"%3E"),
    (b"A*B", b"A%2AB"),
    (b"A>B", b"A%3EB"),
    (b"A B", b"A%20B"),
    (b"A\r\nPUB x 1", b"A%0D%0APUB%20x%201"),
    (b"\x00\x7f", b"%00%7F"),
    ("Zürich".encode(), b"Z%C3%BCrich"),
    (b"100%", b"100%"),          # a valid ticker passes unchanged (only '.' is mapped)
    (b"a.b.c", b"a_b_c"),
])
def test_odd_keys_give_one_literal_token(key, token):
    assert subject_token(key) == token
    assert is_single_token(token)


def test_long_keys_are_cut_deterministically_without_splitting_an_escape():
    valid = b"T" * 1024  # the longest valid ticker stays whole
    assert subject_token(valid) == valid
    assert subject_token(b"T" * 3000) == b"T" * MAX_TOKEN
    odd = b"T" + b"\xff" * 1000
    tok = subject_token(odd)
    assert tok == b"T" + b"%FF" * 341 and len(tok) == 1024
    assert subject_token(odd) == tok


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1500))
def test_any_key_gives_a_single_literal_token(key):
    assert is_single_token(subject_token(key))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_id_text_is_header_safe_and_injective(a, b):
    ta, tb = id_text(a), id_text(b)
    for t in (ta, tb):
        assert all(0x21 <= c <= 0x7E for c in t)
        assert len(t) <= MAX_ID_TEXT
    if a != b:
        assert ta != tb


def test_id_text_escapes_unsafe_bytes():
    assert id_text(b"5d93-ab") == b"5d93-ab"
    assert id_text(b"a\r\nb c") == b"a%0D%0Ab%20c"
    assert id_text(b"50%") == b"50%25"     # '%' itself is escaped, so the encoding is injective
    assert id_text("é".encode()) == b"%C3%A9"
    long = id_text(b"x" * 1000)
    assert long.startswith(b"x" * 200 + b"~") and len(long) == 233
    assert long != id_text(b"x" * 1001)


def test_subject_layout():
    assert [ENC.raw_subject(k, b"M") for k in range(6)] == [
        b"kalshi_dev.kalshi.json.%s.M" % w for w in RAW_WORDS]
    assert RAW_WORDS == (b"trade", b"ticker", b"orderbook", b"orderbook", b"lifecycle", b"event_lifecycle")
    assert [ENC.norm_subject(k, b"M") for k in range(6)] == [
        b"kalshi_dev.kalshi.norm.%s.M" % w for w in NORM_WORDS]
    assert NORM_WORDS == (b"trade", b"ticker", b"book_snapshot", b"book_delta", b"market_lifecycle",
                          b"event_lifecycle")
    assert ENC.other_subject(b"user_order") == b"kalshi_dev.kalshi.json.other.user_order"
    assert ENC.other_subject(b"ticker ") == b"kalshi_dev.kalshi.json.other.ticker%20"
    assert ENC.other_subject(b"") == b"kalshi_dev.kalshi.json.other._"
    assert ENC.other_subject(None) == b"kalshi_dev.kalshi.json.other._"
    assert ENC.event_subject("gap") == b"kalshi_dev.kalshi.events.gap"


def test_message_ids():
    assert ENC.trade_msg_id(b"5d93", b"raw") == b"kalshi:trade:5d93:raw"
    assert ENC.trade_msg_id(b"a\nb", b"norm") == b"kalshi:trade:a%0Ab:norm"
    assert ENC.seq_msg_id(b"0123456789ab", 3, 17, b"raw") == b"kalshi:0123456789ab:3:17:raw"
    assert ENC.unseq_msg_id(b"0123456789ab", 5, b"norm") == b"kalshi:0123456789ab:n5:norm"
    assert ENC.event_msg_id(b"0123456789ab", 2) == b"kalshi:event:0123456789ab:2"
    # the rule: trade id first, else (sid, seq), else the per-connection counter
    assert ENC.frame_msg_id(b"c", 0, b"t1", 1, 9, 4, b"raw") == b"kalshi:trade:t1:raw"
    assert ENC.frame_msg_id(b"c", 3, None, 1, 9, 4, b"raw") == b"kalshi:c:1:9:raw"
    assert ENC.frame_msg_id(b"c", 1, None, 2, None, 4, b"norm") == b"kalshi:c:n4:norm"
    assert ENC.frame_msg_id(b"c", 0, b"", 2, 8, 4, b"raw") == b"kalshi:c:2:8:raw"  # no usable trade id


@pytest.mark.parametrize("prefix", ["", "a..b", "a.*", "a b", ".a", "a.>"])
def test_bad_prefix_is_refused(prefix):
    with pytest.raises(ValueError):
        SubjectEncoder(prefix)


def test_kind_numbers_match_the_normalizer():
    normalize = pytest.importorskip("ssmd_fast.normalize")
    assert (normalize.K_TRADE, normalize.K_TICKER, normalize.K_BOOK_SNAPSHOT, normalize.K_BOOK_DELTA,
            normalize.K_MARKET_LIFECYCLE, normalize.K_EVENT_LIFECYCLE) == (0, 1, 2, 3, 4, 5)
