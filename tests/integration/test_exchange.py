"""The local exchange over real loopback sockets: auth, commands, seq, snapshots, replay, faults,
the control port and the CLI. Every test runs its own exchange on a free port, bounded in time."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exchange_helpers import (
    StreamChecker,
    connect,
    control,
    handshake,
    make_exchange,
    raw_client,
    read_until_closed,
    signed_headers,
    wait_until,
)

from ssmd_fast.commands.keygen import write_key_pair
from ssmd_fast.kalshi.auth import KalshiCredentials, generate_key_pair
from ssmd_fast.kalshi.exchange import Exchange
from ssmd_fast.kalshi.exchange_faults import FaultSpec
from ssmd_fast.kalshi.exchange_feed import ReplayFeed
from ssmd_fast.kalshi.generator import generate_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
DATA = Path(__file__).parent.parent / "data" / "kalshi"


def aio(fn):
    """Run an async test in a fresh event loop, bounded in time."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 45))
    return wrapper


@pytest.fixture(scope="module")
def creds(key_pair) -> KalshiCredentials:
    return KalshiCredentials("a952bcbe-ec3b-4b5b-b8f9-11dae589608c", key_pair[0])


@pytest.fixture(scope="module")
def pub(key_pair) -> bytes:
    return key_pair[1]


def sub_cmd(cmd_id, channels, markets=None, **extra):
    params = {"channels": channels, **extra}
    if markets is not None:
        params["market_tickers"] = markets
    return {"id": cmd_id, "cmd": "subscribe", "params": params}


async def subscribed_all(ex, creds, book_markets=None, **kw):
    """A client with ticker+trade+lifecycle (sids 1-3) and, if given, an orderbook sid 4."""
    c = await connect(ex, creds, **kw)
    c.send(sub_cmd(1, ["ticker", "trade", "market_lifecycle_v2"]))
    if book_markets:
        c.send(sub_cmd(2, ["orderbook_delta"], book_markets))
    return c


async def drained(ex, c, timeout: float = 20) -> None:
    """The whole session was sent, and the (only) client received every text frame sent."""
    await wait_until(lambda: ex.stats()["position"] >= ex.feed.total, timeout, "the whole session")
    await wait_until(lambda: len(c.texts) == ex.stats()["frames_total"], timeout, "every frame")


# --------------------------------------------------------------------------- handshake


@aio
async def test_auth_good_bad_missing_old_and_wrong_path(creds, pub):
    ex = make_exchange(pub, 2000)
    await ex.start()
    try:
        c = await connect(ex, creds)                       # good key: the upgrade succeeds
        c.transport.disconnect()
        other = KalshiCredentials("k", generate_key_pair()[0])
        status, body = await handshake(ex.port, other.websocket_headers())
        assert (status, body) == (401, b"401 unauthorized: invalid signature\n")
        for missing in ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE"):
            headers = {k: v for k, v in creds.websocket_headers().items() if k != missing}
            status, body = await handshake(ex.port, headers)
            assert status == 401 and missing.encode() in body
        old = signed_headers(creds, int(time.time() * 1000) - 31_000)     # validly signed, 31 s old
        assert (await handshake(ex.port, old))[0] == 401
        future = signed_headers(creds, int(time.time() * 1000) + 31_000)
        assert (await handshake(ex.port, future))[0] == 401
        recent = signed_headers(creds, int(time.time() * 1000) - 20_000)
        assert (await handshake(ex.port, recent))[0] == 101
        assert (await handshake(ex.port, creds.websocket_headers(), path="/trade-api/ws/v1"))[0] == 404
        assert ex.stats()["handshakes"] == {"101": 2, "401": 6, "404": 1}
    finally:
        await ex.close()


@aio
async def test_reject_handshake_answers_403_k_times(creds, pub):
    ex = make_exchange(pub, 2000, faults="reject-handshake=2")
    await ex.start()
    try:
        for _ in range(2):
            status, body = await handshake(ex.port, creds.websocket_headers())
            assert status == 403 and b"reject-handshake" in body
        assert (await handshake(ex.port, creds.websocket_headers()))[0] == 101
        ex.set_faults("reject-handshake=1")                  # in-process, at run time
        assert (await handshake(ex.port, creds.websocket_headers()))[0] == 403
        assert (await handshake(ex.port, creds.websocket_headers()))[0] == 101
    finally:
        await ex.close()


# --------------------------------------------------------------------------- commands


@aio
async def test_command_replies_and_errors(creds, pub):
    ex = make_exchange(pub, 2000, max_markets=3)
    await ex.start()
    try:
        m = ex.feed.markets
        c = await connect(ex, creds)
        c.transport.send(1, b"{not json")
        c.send({"id": 2, "cmd": "fly"})
        c.send({"id": 3, "cmd": "subscribe"})
        c.send({"id": 4, "cmd": "subscribe", "params": {}})
        c.send(sub_cmd(5, ["ticker_v2"]))
        c.send(sub_cmd(6, ["orderbook_delta"]))
        c.send(sub_cmd(7, ["orderbook_delta"], m[:4]))
        c.send({"id": 8, "cmd": "unsubscribe", "params": {"sids": [99]}})
        c.send({"id": 9, "cmd": "unsubscribe", "params": {}})
        c.send({"id": 10, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "get_snapshot"}})
        await wait_until(lambda: len(c.texts) >= 10, what="ten error replies")
        got = [(o.get("id"), o["type"], o["msg"]["code"]) for o in c.parsed()]
        assert got == [(0, "error", 1), (2, "error", 5), (3, "error", 2), (4, "error", 3), (5, "error", 8),
                       (6, "error", 14), (7, "error", 26), (8, "error", 7), (9, "error", 4), (10, "error", 12)]
        assert c.parsed()[1]["msg"]["msg"] == "Unknown command"
        c.texts.clear()
        c.send(sub_cmd(11, ["ticker", "trade"]))
        c.send(sub_cmd(12, ["orderbook_delta"], m[:2]))
        c.send({"id": 13, "cmd": "list_subscriptions"})
        await wait_until(lambda: len(c.of_type("ok")) == 1, what="list_subscriptions reply")
        subs = c.of_type("subscribed")
        assert [(s["id"], s["msg"]) for s in subs] == [
            (11, {"channel": "ticker", "sid": 1}), (11, {"channel": "trade", "sid": 2}),
            (12, {"channel": "orderbook_delta", "sid": 3})]
        assert c.of_type("ok")[0] == {"id": 13, "type": "ok", "msg": [
            {"channel": "ticker", "sid": 1}, {"channel": "trade", "sid": 2}, {"channel": "orderbook_delta", "sid": 3}]}
        c.send({"id": 14, "cmd": "update_subscription", "params": {"sid": 3}})
        c.send({"id": 15, "cmd": "update_subscription", "params": {"sids": [3], "action": "fly"}})
        c.send({"id": 16, "cmd": "update_subscription", "params": {"sids": [1], "action": "get_snapshot"}})
        c.send({"id": 17, "cmd": "update_subscription", "params": {"sids": [3], "action": "add_markets"}})
        c.send({"id": 18, "cmd": "update_subscription",
                "params": {"sids": [3], "action": "add_markets", "market_tickers": m[2:4]}})
        c.send({"id": 19, "cmd": "update_subscription", "params": {"sids": [42], "action": "add_markets"}})
        await wait_until(lambda: len([o for o in c.of_type("error") if o["id"] >= 14]) == 6, what="errors")
        codes = {o["id"]: o["msg"]["code"] for o in c.of_type("error")}
        assert [codes[i] for i in range(14, 20)] == [15, 13, 13, 14, 26, 7]
        c.send({"id": 20, "cmd": "unsubscribe", "params": {"sids": [1, 2]}})
        await wait_until(lambda: len(c.of_type("unsubscribed")) == 2, what="unsubscribed")
        uns = c.of_type("unsubscribed")
        assert [(u["id"], u["sid"]) for u in uns] == [(20, 1), (20, 2)]
        assert "seq" not in uns[0] and uns[1]["seq"] >= 1        # ticker has no seq; trade carries its last
        c.texts.clear()
        c.send({"id": 21, "cmd": "list_subscriptions"})
        await wait_until(lambda: c.of_type("ok"), what="list reply")
        assert c.of_type("ok")[0]["msg"] == [{"channel": "orderbook_delta", "sid": 3}]
    finally:
        await ex.close()


@aio
async def test_snapshots_then_contiguous_deltas_and_market_filters(creds, pub):
    ex = make_exchange(pub, 30000, markets=8)
    await ex.start()
    try:
        m = ex.feed.markets
        c = await subscribed_all(ex, creds, book_markets=m[:3])
        await drained(ex, c)
        frames = c.parsed()
        book = [o for o in frames if o["type"].startswith("orderbook")]
        assert [o["type"] for o in book[:4]] == ["orderbook_snapshot"] * 3 + ["orderbook_delta"]
        assert [(o["sid"], o["seq"]) for o in book[:3]] == [(4, 1), (4, 2), (4, 3)]
        ack = frames.index({"id": 2, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 4}})
        assert frames[ack + 1] == book[0]          # the snapshots follow the subscribed reply at once
        chk = StreamChecker()
        for o in frames:
            chk.feed(o)
        assert chk.gaps == [] and chk.duplicates == []
        deltas = c.of_type("orderbook_delta")
        assert deltas and {d["msg"]["market_ticker"] for d in deltas} <= set(m[:3])
        tickers = c.of_type("ticker")
        assert {t["msg"]["market_ticker"] for t in tickers} == set(m)        # all markets
        assert all(t["sid"] == 1 and "seq" not in t for t in tickers)
        assert {o["sid"] for o in c.of_type("trade")} == {2}
        assert {o["sid"] for o in c.of_type("market_lifecycle_v2", "event_lifecycle")} == {3}
        # the books the client rebuilt equal the exchange's books at the end of the session
        for mk in m[:3]:
            yes, no = ex.feed.book_at(mk, ex.feed.total)
            assert chk.books[(4, mk)] == (yes, no)
    finally:
        await ex.close()


@aio
async def test_get_snapshot_continues_the_seq_and_add_delete_markets(creds, pub):
    ex = make_exchange(pub, 400000, markets=6, rate=20000)
    await ex.start()
    try:
        m = ex.feed.markets
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["orderbook_delta"], m[:2]))
        await wait_until(lambda: len(c.of_type("orderbook_delta")) >= 50, what="deltas")
        c.send({"id": 7, "cmd": "update_subscription",
                "params": {"sids": [1], "market_tickers": [m[1]], "action": "get_snapshot"}})
        await wait_until(lambda: c.of_type("ok"), what="get_snapshot ok")
        c.send({"id": 8, "cmd": "update_subscription",
                "params": {"sids": [1], "market_tickers": [m[4]], "action": "add_markets"}})
        await wait_until(lambda: len(c.of_type("ok")) == 2, what="add_markets ok")
        c.send({"id": 9, "cmd": "update_subscription",
                "params": {"sids": [1], "market_ticker": m[0], "action": "delete_markets"}})
        await wait_until(lambda: len(c.of_type("ok")) == 3, what="delete_markets ok")
        n_after_delete = len(c.texts)
        await wait_until(lambda: len(c.texts) > n_after_delete + 200, what="more deltas")
        frames = c.parsed()
        chk = StreamChecker()
        for o in frames:
            chk.feed(o)
        assert chk.gaps == [] and chk.duplicates == []
        snaps = [o for o in frames if o["type"] == "orderbook_snapshot"]
        assert [s.get("id") for s in snaps] == [None, None, 7, None]
        reply = snaps[2]
        prev = frames[frames.index(reply) - 1]
        assert reply["sid"] == 1 and reply["seq"] == prev["seq"] + 1       # continues the sid's seq
        oks = c.of_type("ok")
        assert oks[0]["msg"] == {"market_tickers": m[:2]} and oks[0]["id"] == 7
        assert oks[1]["msg"] == {"market_tickers": [m[0], m[1], m[4]]}
        assert oks[2]["msg"] == {"market_tickers": [m[1], m[4]]}
        assert all(ok["sid"] == 1 and isinstance(ok["seq"], int) for ok in oks)
        assert snaps[3]["msg"]["market_ticker"] == m[4]
        later = frames[frames.index(oks[2]):]
        assert not [o for o in later if o["type"] == "orderbook_delta" and o["msg"]["market_ticker"] == m[0]]
        assert [o for o in later if o["type"] == "orderbook_delta" and o["msg"]["market_ticker"] == m[4]]
    finally:
        await ex.close()


@aio
async def test_two_connections_share_one_timeline(creds, pub):
    ex = make_exchange(pub, 200000, markets=5, rate=5000)
    await ex.start()
    try:
        a = await subscribed_all(ex, creds)
        await wait_until(lambda: len(a.of_type("ticker")) > 200, what="first client data")
        b = await subscribed_all(ex, creds)
        await wait_until(lambda: len(b.of_type("ticker")) > 200, what="second client data")
        ta = [t for t in a.texts if t.startswith(b'{"type":"ticker"')]    # unique bytes (Clock)
        tb = [t for t in b.texts if t.startswith(b'{"type":"ticker"')]
        # b joined the running timeline: its first ticker is one that a received well after a's start
        assert tb[0] in ta and ta.index(tb[0]) > 100
        assert [o["seq"] for o in b.of_type("trade")][:1] == [1]        # its own sids and seqs
        assert ex.stats()["connections"] == 2
    finally:
        await ex.close()


@aio
async def test_rate_limits_the_timeline(creds, pub):
    ex = make_exchange(pub, 100000, markets=4, rate=1000)
    await ex.start()
    try:
        c = await subscribed_all(ex, creds)
        await asyncio.sleep(0.6)
        n = len(c.texts)
        assert 300 < n < 900, n            # ~600 events in 0.6 s, minus the first ack round trip
    finally:
        await ex.close()


@aio
async def test_heartbeat_pings_and_pongs(creds, pub):
    ex = make_exchange(pub, 1000, ping_interval=0.1)
    await ex.start()
    try:
        c = await connect(ex, creds)
        await wait_until(lambda: len(c.pings) >= 2, 3, "two server pings")
        assert set(c.pings) == {b"heartbeat"}
        c.transport.send_ping(b"client-ping")
        await wait_until(lambda: c.pongs, 3, "the pong")
        assert c.pongs == [b"client-ping"]
    finally:
        await ex.close()


@aio
async def test_client_close_is_answered(creds, pub):
    ex = make_exchange(pub, 1000)
    await ex.start()
    try:
        from picows import WSCloseCode

        c = await connect(ex, creds)
        c.transport.send_close(WSCloseCode.OK, b"bye")
        await asyncio.wait_for(c.disconnected.wait(), 5)
        assert c.close_code == 1000
        await wait_until(lambda: ex.stats()["connections"] == 0, what="the server side to close")
    finally:
        await ex.close()


@aio
async def test_flow_control_pauses_for_a_slow_reader(creds, pub):
    ex = make_exchange(pub, 300000, markets=4)
    await ex.start()
    try:
        reader, _ = await raw_client(ex.port, creds.websocket_headers(), sub_cmd(1, ["ticker", "trade"]))
        await wait_until(lambda: 1 in ex.conns and ex.conns[1].paused, 10, "pause_writing")
        conn = ex.conns[1]
        parked = conn.cursor
        await asyncio.sleep(0.3)
        assert conn.cursor == parked < 300000                  # nothing is rendered while paused
        assert conn.raw.get_write_buffer_size() < 8 << 20       # the high-water mark plus one batch
        got = 0
        while ex.stats()["position"] < 300000 or got < ex.bytes_sent:
            got += len(await asyncio.wait_for(reader.read(1 << 20), 10))
        assert got == ex.bytes_sent and not conn.paused
    finally:
        await ex.close()


# --------------------------------------------------------------------------- replay, record, CLI


@aio
async def test_replay_restamps_sids_and_seqs(creds, pub, tmp_path):
    path = tmp_path / "rec.jsonl"
    recorded = list(generate_session(4000, seed=3, markets=4, era="current"))
    path.write_bytes(b"".join(f + b"\n" for f in recorded) + b'{"id":9,"type":"ok","msg":[]}\n')
    feed = ReplayFeed(path)
    assert feed.skipped == {"subscribed": 7, "ok": 1} and feed.total == 4000 - 7
    ex = Exchange(feed, pub, port=0)
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["orderbook_delta"], feed.markets[:2]))      # sid 1
        c.send(sub_cmd(2, ["trade", "ticker"]))                        # sids 2 (trade) and 3 (ticker)
        await drained(ex, c)
        expected_trades = [f for f in recorded if f.startswith(b'{"type":"trade"')]
        got_trades = [t for t in c.texts if t.startswith(b'{"type":"trade"')]
        assert got_trades == expected_trades            # trade is sid 2 in both; seqs restart at 1 alike
        expected_tickers = [f.replace(b'"sid":1,', b'"sid":3,', 1) for f in recorded if f.startswith(b'{"type":"ticker"')]
        assert [t for t in c.texts if t.startswith(b'{"type":"ticker"')] == expected_tickers
        chk = StreamChecker()
        for o in c.parsed():
            chk.feed(o)
        assert chk.gaps == [] and chk.duplicates == []
        books = [o for o in c.parsed() if o["type"].startswith("orderbook")]
        assert {o["sid"] for o in books} == {1} and [o["seq"] for o in books] == list(range(1, len(books) + 1))
        rec_deltas = [json.loads(f)["msg"] for f in recorded if f.startswith(b'{"type":"orderbook_delta"')]
        assert [o["msg"] for o in books if o["type"] == "orderbook_delta"] == \
            [d for d in rec_deltas if d["market_ticker"] in feed.markets[:2]]
        assert not c.of_type("subscribed", "ok")[3:]            # the recording's own controls are not sent
    finally:
        await ex.close()


@aio
async def test_replay_of_every_fixture_file(creds, pub, tmp_path):
    """All of tests/data/kalshi: controls and unknown/private types skipped, the rest re-stamped."""
    data = sorted(DATA.glob("*.jsonl"))
    path = tmp_path / "all.jsonl"
    path.write_bytes(b"".join(p.read_bytes() for p in data))
    lines = [json.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]
    served = [o for o in lines if o["type"] in ("ticker", "trade", "orderbook_snapshot", "orderbook_delta",
                                                "market_lifecycle_v2", "event_lifecycle", "event_fee_update")]
    feed = ReplayFeed(path)
    assert feed.total == len(served) and sum(feed.skipped.values()) == len(lines) - len(served)
    assert feed.skipped["error"] > 20 and "fill" in feed.skipped and "ticker_v2" in feed.skipped
    ex = Exchange(feed, pub, port=0)
    await ex.start()
    try:
        c = await connect(ex, creds)
        books = sorted({o["msg"]["market_ticker"] for o in served if o["type"].startswith("orderbook")})
        c.send(sub_cmd(1, ["orderbook_delta"], books))
        c.send(sub_cmd(2, ["ticker", "trade", "market_lifecycle_v2"]))
        await drained(ex, c)
        got = c.parsed()
        by_type = {t: sum(1 for o in got if o["type"] == t) for t in ("ticker", "trade", "orderbook_delta")}
        assert by_type == {t: sum(1 for o in served if o["type"] == t) for t in by_type}
        for sid in {o.get("sid") for o in got if "seq" in o and o["type"] != "error"}:
            seqs = [o["seq"] for o in got if o.get("sid") == sid and o["type"] not in ("ok", "error")]
            assert seqs == list(range(1, len(seqs) + 1)), sid              # the recording's gaps are gone
    finally:
        await ex.close()


@aio
async def test_record_file_holds_every_data_frame_sent(creds, pub, tmp_path):
    rec = tmp_path / "sent.jsonl"
    ex = make_exchange(pub, 5000, markets=4, record=rec)
    await ex.start()
    try:
        c = await subscribed_all(ex, creds, book_markets=ex.feed.markets[:2])
        await drained(ex, c)
    finally:
        await ex.close()
    data = [t for t in c.texts if not t.startswith(b'{"id"')]
    assert rec.read_bytes() == b"".join(t + b"\n" for t in data)


def test_cli_serves_and_reports_on_sigterm(tmp_path):
    private_path, public_path = write_key_pair(tmp_path / "keys")         # the keygen command's writer
    creds = KalshiCredentials("local", private_path.read_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssmd_fast", "exchange", "--listen", "127.0.0.1:0", "--public-key",
         str(public_path), "--generate", "3000", "--markets", "3", "--control", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on ws://127.0.0.1:") and line.rstrip().endswith("/trade-api/ws/v2")
        port = int(line.split(":")[2].split("/")[0])
        control_port = None
        deadline = time.monotonic() + 10
        while control_port is None and time.monotonic() < deadline:
            err = proc.stderr.readline()
            if "control on" in err:
                control_port = int(err.rsplit(":", 1)[1])

        async def client():
            ex_stub = type("E", (), {"url": line.split(" ", 2)[2].strip()})
            c = await connect(ex_stub, creds)
            c.send(sub_cmd(1, ["ticker"]))
            await wait_until(lambda: len(c.texts) > 100, 10, "ticker frames")
            stats = json.loads((await control(control_port, "stats"))[0])
            assert stats["connections"] == 1 and stats["url"] == f"ws://127.0.0.1:{port}/trade-api/ws/v2"
            c.transport.disconnect()

        asyncio.run(asyncio.wait_for(client(), 30))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "frames sent:" in out and "ticker" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------- faults


def test_fault_spec_parsing():
    spec = FaultSpec.parse("gap-every=50, drop-after=1000,close-code=4001")
    assert (spec.gap_every, spec.drop_after, spec.close_code) == (50, 1000, 4001)
    assert str(spec) == "drop-after=1000,gap-every=50,close-code=4001" and spec.stream
    assert not FaultSpec.parse("reject-handshake=3").stream
    assert FaultSpec.parse("") == FaultSpec.parse("none") == FaultSpec()
    for bad in ("gap-every", "gap-every=0", "gap-every=x", "teleport=1", "close-code=4001", "drop-after=1,close-code=1005"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)


@aio
async def test_drop_after_closes_without_a_close_frame(creds, pub):
    ex = make_exchange(pub, 20000, faults="drop-after=500")
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["ticker"]))
        await asyncio.wait_for(c.disconnected.wait(), 10)
        assert c.close_code is None
        assert len(c.of_type("ticker")) == 500 and len(c.texts) == 501
        reader, _ = await raw_client(ex.port, creds.websocket_headers(), sub_cmd(1, ["ticker"]))
        assert (await read_until_closed(reader))[0] == "eof"          # a FIN, not a reset
        assert ex.stats()["injected"]["drop"] == 2
    finally:
        await ex.close()


@aio
async def test_drop_after_with_an_odd_close_code(creds, pub):
    ex = make_exchange(pub, 20000, faults="drop-after=300,close-code=4001")
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["ticker"]))
        await asyncio.wait_for(c.disconnected.wait(), 10)
        assert c.close_code == 4001 and len(c.of_type("ticker")) == 300
    finally:
        await ex.close()


@aio
async def test_rst_after_resets_the_connection(creds, pub):
    ex = make_exchange(pub, 50000, faults="rst-after=200")
    await ex.start()
    try:
        reader, _ = await raw_client(ex.port, creds.websocket_headers(), sub_cmd(1, ["ticker"]))
        await asyncio.sleep(0.3)          # leave the frames unread: the RST discards them
        how, _ = await read_until_closed(reader)
        assert how == "reset"
        assert ex.stats()["injected"]["rst"] == 1
    finally:
        await ex.close()


@aio
async def test_freeze_stops_everything_until_resume(creds, pub):
    ex = make_exchange(pub, 50000, faults="freeze-after=400", ping_interval=0.05, rate=20000)
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["trade", "ticker"]))
        await wait_until(lambda: ex.stats()["frozen"] == 1, 10, "the freeze")
        await asyncio.sleep(0.1)
        n, pings = len(c.texts), len(c.pings)
        c.transport.send_ping(b"anyone?")
        c.send({"id": 2, "cmd": "list_subscriptions"})
        await asyncio.sleep(0.4)
        assert (len(c.texts), len(c.pings), c.pongs) == (n, pings, [])    # nothing at all, pings too
        assert n == 402 and not c.disconnected.is_set()
        assert ex.resume() == 1
        await wait_until(lambda: c.of_type("ok") and len(c.texts) > n + 200 and len(c.pings) > pings, 10,
                         "frames, the held reply and pings after resume")
        chk = StreamChecker()
        for o in c.parsed():
            chk.feed(o)
        assert chk.gaps == [] and chk.duplicates == []             # nothing lost across the freeze
    finally:
        await ex.close()


@aio
async def test_gap_every_skips_book_seqs(creds, pub):
    ex = make_exchange(pub, 20000, markets=4, faults="gap-every=10")
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["orderbook_delta"], ex.feed.markets))
        await drained(ex, c)
        chk = StreamChecker()
        for o in c.parsed():
            chk.feed(o)
        deltas = c.of_type("orderbook_delta")
        assert chk.gaps and all(seq == last + 2 for _, last, seq in chk.gaps)    # exactly one seq lost each
        sent_and_lost = len(deltas) + len(chk.gaps)
        assert len(chk.gaps) == sent_and_lost // 10 == ex.stats()["injected"]["gap"]
        assert chk.duplicates == []
    finally:
        await ex.close()


@aio
async def test_duplicate_every_resends_with_the_same_seq(creds, pub):
    ex = make_exchange(pub, 10000, markets=4, faults="duplicate-every=7")
    await ex.start()
    try:
        c = await subscribed_all(ex, creds, book_markets=ex.feed.markets[:2])
        await drained(ex, c)
        chk = StreamChecker()
        dup_frames = []
        for i, o in enumerate(c.parsed()):
            before = len(chk.duplicates)
            chk.feed(o)
            if len(chk.duplicates) > before:
                dup_frames.append(i)
        assert chk.gaps == [] and len(chk.duplicates) == ex.stats()["injected"]["duplicate"] > 0
        assert all(c.texts[i] == c.texts[i - 1] for i in dup_frames)       # the very same frame again
        assert not [o for o in c.parsed() if o["type"] == "ticker" and c.texts.count(json.dumps(o).encode()) > 1]
    finally:
        await ex.close()


@aio
async def test_malformed_binary_and_oversize_frames(creds, pub):
    ex = make_exchange(pub, 3000, markets=3, faults="malformed-every=50,binary-every=100,oversize-after=1000")
    await ex.start()
    try:
        c = await connect(ex, creds, max_frame_size=2 << 20)
        c.send(sub_cmd(1, ["ticker", "trade"]))
        await wait_until(lambda: ex.stats()["position"] >= 3000, 10, "the session")
        data = ex.stats()["frames"]["ticker"] + ex.stats()["frames"]["trade"]
        await wait_until(lambda: len(c.binary) == data // 100 and len(c.texts) >= data + 2 + data // 50, 10,
                         "every frame")
        bad = []
        for t in c.texts:
            try:
                o = json.loads(t.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append("utf8")
                continue
            except ValueError:
                bad.append("json")
                continue
            if not isinstance(o["type"], str):
                bad.append("type")
        assert len(bad) == data // 50 and bad[:3] == ["json", "utf8", "type"]
        assert all(json.loads(b)["type"] in ("ticker", "trade") for b in c.binary)
        big = [t for t in c.texts if len(t) > 1 << 20]
        assert len(big) == 1 and json.loads(big[0])["type"] == "oversize"
        injected = ex.stats()["injected"]
        assert (injected["malformed"], injected["binary"], injected["oversize"]) == (data // 50, data // 100, 1)
    finally:
        await ex.close()


@aio
async def test_error25_ends_that_subscription(creds, pub):
    ex = make_exchange(pub, 20000, markets=3, faults="error25-after=200")
    await ex.start()
    try:
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["orderbook_delta"], ex.feed.markets))
        await wait_until(lambda: c.of_type("error"), 10, "error 25")
        err = c.of_type("error")[0]
        assert err["msg"]["code"] == 25 and err["sid"] == 1 and err["seq"] == 203 and "id" not in err
        await asyncio.sleep(0.2)
        after = c.parsed()[c.parsed().index(err) + 1:]
        assert after == []                                      # that subscription is over
        c.send({"id": 2, "cmd": "list_subscriptions"})
        await wait_until(lambda: c.of_type("ok"), what="list reply")
        assert c.of_type("ok")[0]["msg"] == []
    finally:
        await ex.close()


@aio
async def test_fast_and_fault_paths_send_the_same_bytes(creds, pub):
    """A fault spec that never fires forces the per-frame path: the stream must not change."""
    streams = []
    for faults in ("", "gap-every=1000000000"):
        ex = make_exchange(pub, 12000, markets=5, era="current", faults=faults)
        await ex.start()
        try:
            c = await connect(ex, creds)
            c.send(sub_cmd(1, ["ticker", "trade", "market_lifecycle_v2", "orderbook_delta"], ex.feed.markets[:3]))
            await drained(ex, c)
            assert ex.conns[1].fast == (faults == "")
            streams.append(c.texts)
        finally:
            await ex.close()
    assert len(streams[0]) > 7000
    assert streams[0] == streams[1]


@aio
async def test_control_port(creds, pub):
    ex = make_exchange(pub, 200000, markets=3, control=("127.0.0.1", 0), rate=2000)
    await ex.start()
    try:
        port = ex.control_port
        c = await connect(ex, creds)
        c.send(sub_cmd(1, ["orderbook_delta"], ex.feed.markets))
        await wait_until(lambda: len(c.texts) > 20, what="data")
        answers = await control(port, "faults gap-every=5", "bogus", "faults nope=1", "help")
        assert answers[0] == "ok faults gap-every=5" and answers[1].startswith("error: unknown command")
        assert answers[2].startswith("error: unknown fault 'nope'") and answers[3].startswith("commands:")
        await wait_until(lambda: ex.stats()["injected"]["gap"] >= 3, what="gaps")
        assert (await control(port, "clear"))[0] == "ok"
        stats = json.loads((await control(port, "stats"))[0])
        assert stats["faults"] == "" and stats["connections"] == 1 and stats["frames"]["orderbook_delta"] > 0
        assert stats["conns"][0]["subscriptions"][0]["channel"] == "orderbook_delta"
        assert (await control(port, "accept off"))[0] == "ok accept off"
        with pytest.raises(OSError):
            await connect(ex, creds)
        assert (await control(port, "accept on"))[0] == "ok accept on"
        c2 = await connect(ex, creds)
        assert (await control(port, "drop"))[0] == "ok dropped 2"
        await asyncio.wait_for(c.disconnected.wait(), 5)
        await asyncio.wait_for(c2.disconnected.wait(), 5)
        await wait_until(lambda: ex.stats()["connections"] == 0, what="no connections")
    finally:
        await ex.close()
