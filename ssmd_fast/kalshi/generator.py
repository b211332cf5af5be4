"""Deterministic generator of realistic Kalshi WebSocket sessions.

Two APIs over one market model:

- ``generate_session(n, seed=1, markets=20, era="both", ...)`` yields a recorded session, one compact
  JSON frame (bytes, no newline) per item: the ``subscribed`` acks, one ``orderbook_snapshot`` per
  market, then the stream. ``python -m ssmd_fast.kalshi.generator --messages N --out FILE`` writes it
  as JSONL.
- ``SessionGenerator(...).events(k)`` returns the next ``k`` stream events for the local exchange:
  tuples ``(channel, market, type, body, change)`` where ``body`` is the prebuilt ``msg`` object
  bytes, so the exchange only stamps ``{"type":..,"sid":..,"seq":..,"msg":BODY}`` per subscription.
  ``change`` is ``(side, price, delta)`` for ``orderbook_delta`` events (prices in 1/10,000 dollar,
  sizes in 1/100 contract) so a consumer can rebuild books; ``None`` otherwise.
  ``snapshot_body(market)`` renders the *current* book of a market at any time.

Wire eras: ``legacy`` (integer cents + ``*_dollars``), ``both`` (adds ``*_fp``; ticker ``Clock``),
``current`` (strings only, ``ts_ms``/``time``, sub-penny ticks on deci-cent markets, fractional
sizes) and ``mixed`` (frames cycle through the three eras; values stay whole cents and contracts so
every era can express them). Books stay non-negative and uncrossed (best YES bid + best NO bid < 1),
trade ids are unique, timestamps never decrease. The same arguments give byte-identical output.
"""

from __future__ import annotations

import argparse
import calendar
import random
import sys
import time
from collections.abc import Iterator
from math import log

ERAS = ("legacy", "both", "current", "mixed")
LEGACY, BOTH, CURRENT = 0, 1, 2
DEFAULT_START = "2026-02-14T14:30:00Z"
DEFAULT_MIX = (("ticker", 0.55), ("orderbook_delta", 0.30), ("trade", 0.12), ("lifecycle", 0.03))

# Channels (subscription names) and frame types.
CH_TICKER, CH_TRADE, CH_LIFECYCLE, CH_BOOK = "ticker", "trade", "market_lifecycle_v2", "orderbook_delta"
CHANNELS = (CH_TICKER, CH_TRADE, CH_LIFECYCLE, CH_BOOK)
T_TICKER, T_TRADE, T_DELTA, T_SNAPSHOT = "ticker", "trade", "orderbook_delta", "orderbook_snapshot"
T_MARKET_LIFE, T_EVENT_LIFE = "market_lifecycle_v2", "event_lifecycle"
# Event tuple fields.
E_CHANNEL, E_MARKET, E_TYPE, E_BODY, E_CHANGE = range(5)

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Price p in 1/10,000 dollar -> b"0.4500"; 10000 -> b"1.0000".
DOLLARS = tuple(b"0.%04d" % p for p in range(10000)) + (b"1.0000",)
SIDE_BYTES = {"yes": b"yes", "no": b"no"}


def fixed(q: int) -> bytes:
    """Hundredths of a contract -> the 2-decimal ``*_fp`` string."""
    if q < 0:
        return b"-%d.%02d" % divmod(-q, 100)
    return b"%d.%02d" % divmod(q, 100)


class _FixedCache(dict):
    """``FP[q]`` memoizes ``fixed(q)``: a dict hit is several times cheaper than the call."""

    def __missing__(self, q: int) -> bytes:
        v = fixed(q)
        if len(self) < 300000:
            self[q] = v
        return v


FP = _FixedCache()


def parse_mix(text: str | dict | None) -> tuple[float, float, float]:
    """``"ticker=0.6,trade=0.1"`` (or a dict) -> cumulative thresholds for ticker, delta, trade. A bad item
    is named in the ValueError (``--mix`` shows it as is)."""
    mix = dict(DEFAULT_MIX)
    if isinstance(text, dict):
        items = [(f"{k}={v}", k, v) for k, v in text.items()]
    else:
        items = []
        for item in (p.strip() for p in (text or "").split(",")):
            key, sep, share = item.partition("=")
            if item and not sep:
                raise ValueError(f"{item!r}: expected KEY=SHARE")
            if item:
                items.append((item, key.strip(), share.strip()))
    for item, key, share in items:
        if key not in mix:
            raise ValueError(f"{item!r}: unknown key {key!r} (use {', '.join(mix)})")
        try:
            mix[key] = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"{item!r}: the share {share!r} is not a number") from None
        if not 0 <= mix[key] < float("inf"):
            raise ValueError(f"{item!r}: the share must be a finite number >= 0")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix must have a positive total")
    c0 = mix["ticker"] / total
    c1 = c0 + mix["orderbook_delta"] / total
    return c0, c1, c1 + mix["trade"] / total


def parse_start(text: str) -> int:
    return calendar.timegm(time.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S"))


def market_tickers(n: int, start_s: int) -> list[str]:
    """Realistic hourly crypto strike/bracket tickers for the session's next hour (ET = UTC-5)."""
    et = time.gmtime(start_s - 5 * 3600 + 3600)
    day = f"{et.tm_year % 100:02d}{MONTHS[et.tm_mon - 1]}{et.tm_mday:02d}{et.tm_hour:02d}"
    fams = (
        lambda k: f"KXBTCD-{day}-T{69999 + 250 * (k - 6)}.99",
        lambda k: f"KXETHD-{day}-T{1999 + 20 * (k - 6)}.99",
        lambda k: f"KXBTC-{day}-B{70125 + 250 * (k - 6)}",
        lambda k: f"KXSOLD-{day}-T{89 + (k - 6)}.99",
    )
    return [fams[i % 4](i // 4) for i in range(n)]


class Market:
    """One market's book and counters. Prices in 1/10,000 dollar, sizes in 1/100 contract."""

    __slots__ = ("ticker", "tb", "mid", "tick", "p", "yes", "no", "by", "bn", "last", "lastsz", "vol", "oi",
                 "dvol", "head", "thead", "stat")


def render_snapshot(market: str, market_id: str, yes: dict[int, int], no: dict[int, int], era: int) -> bytes:
    """The ``msg`` body of an ``orderbook_snapshot`` for a book, levels ascending, empty sides absent."""
    parts = [b'{"market_ticker":"%s","market_id":"%s"' % (market.encode(), market_id.encode())]
    for name, side in ((b"yes", yes), (b"no", no)):
        if not side:
            continue
        lv = sorted(side.items())
        if era != CURRENT:
            parts.append(b',"%s":[%s]' % (name, b",".join(b"[%d,%d]" % (p // 100, q // 100) for p, q in lv)))
            parts.append(b',"%s_dollars":[%s]' % (
                name, b",".join(b'["%s",%d]' % (DOLLARS[p], q // 100) for p, q in lv)))
        if era != LEGACY:
            parts.append(b',"%s_dollars_fp":[%s]' % (
                name, b",".join(b'["%s","%s"]' % (DOLLARS[p], fixed(q)) for p, q in lv)))
    parts.append(b"}")
    return b"".join(parts)


class SessionGenerator:
    """The market model and its event stream; see the module docstring.

    ``rate`` is the mean frame rate of the session clock (timestamps), not a send rate.
    """

    def __init__(self, seed: int = 1, markets: int = 20, era: str = "both", start: str | int = DEFAULT_START,
                 rate: float = 2000.0, mix: str | dict | None = None):
        if era not in ERAS:
            raise ValueError(f"unknown era {era!r} (use {', '.join(ERAS)})")
        if markets < 1:
            raise ValueError("markets must be >= 1")
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.era = era
        self.rng = rng = random.Random(seed)
        self._mixed = era == "mixed"
        self._era = CURRENT if era == "current" else BOTH if era == "both" else LEGACY
        self._whole = era != "current"      # whole cents and contracts only
        self._cum = parse_mix(mix)
        self.start_s = start if isinstance(start, int) else parse_start(start)
        self.t_ms = float(self.start_s * 1000)
        self._gap = 1000.0 / rate
        self._clock = 15302118840 + rng.randrange(1000000)
        self._frame = 0
        self._sec = (-1, b"")
        self._pending: list[tuple[Market, str, int, int]] = []
        self.markets: list[Market] = []
        self.by_ticker: dict[str, Market] = {}
        for i, tk in enumerate(market_tickers(markets, self.start_s)):
            self._add_market(tk, deci=(not self._whole and i % 4 == 3))
        self.tickers = [m.ticker for m in self.markets]
        # here, not at the top: generator_lifecycle imports this module's names (a cycle at import time)
        from ssmd_fast.kalshi.generator_lifecycle import _Lifecycle

        self._life = _Lifecycle(self)

    # ---- market model

    def _add_market(self, tk: str, deci: bool) -> None:
        rng = self.rng
        rr = rng.randrange
        m = Market()
        m.ticker, m.tb, m.mid = tk, tk.encode(), self.uuid()
        m.tick = 10 if deci else 100
        m.p = (8 + rr(85)) * 100 + (rr(10) * 10 if deci else 0)      # fair value
        m.yes, m.no = {}, {}
        unit = 100 if self._whole else 1
        for k in range(1, 13):
            if m.p - k * m.tick >= m.tick:
                m.yes[m.p - k * m.tick] = (1 + rr(800)) * 100 + (rr(100) if unit == 1 and rr(4) == 0 else 0)
            top_no = 10000 - m.p - k * m.tick
            if top_no >= m.tick:
                m.no[top_no] = (1 + rr(800)) * 100 + (rr(100) if unit == 1 and rr(4) == 0 else 0)
        m.by = max(m.yes) if m.yes else 0
        m.bn = max(m.no) if m.no else 0
        m.last = m.p
        m.vol = (1000 + rr(400000)) * 100
        m.oi = m.vol // 2 + rr(1000) * 100
        m.dvol = m.vol * m.p
        m.lastsz = (1 + rr(50)) * 100
        m.head = b'{"market_ticker":"%s","market_id":"%s",' % (m.tb, m.mid.encode())
        m.thead = b'{"market_id":"%s","market_ticker":"%s",' % (m.mid.encode(), m.tb)
        m.stat = [None, None, None]       # per era: the ticker fields that change only on trades
        self.markets.append(m)
        self.by_ticker[tk] = m

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"

    def books(self) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
        """A copy of every book now: ticker -> (yes {price: size}, no {price: size})."""
        return {m.ticker: (dict(m.yes), dict(m.no)) for m in self.markets}

    def snapshot_era(self) -> int:
        if self._mixed:
            return self._frame % 3
        return self._era

    def snapshot_body(self, market: str, book: tuple[dict, dict] | None = None, era: int | None = None) -> bytes:
        """``msg`` of an orderbook_snapshot of ``market``: its current book, or ``book`` if given."""
        m = self.by_ticker[market]
        yes, no = book if book is not None else (m.yes, m.no)
        return render_snapshot(m.ticker, m.mid, yes, no, self.snapshot_era() if era is None else era)

    def _rfc(self, tm: float) -> bytes:
        s = int(tm // 1000)
        if s != self._sec[0]:
            self._sec = (s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)).encode())
        return b"%s.%06dZ" % (self._sec[1], int((tm - s * 1000) * 1000))

    # ---- the stream

    def events(self, n: int) -> list[tuple]:
        """The next ``n`` stream events (see the module docstring for the tuple)."""
        out = []
        push = out.append
        rng = self.rng
        rnd = rng.random
        markets = self.markets
        nm = len(markets)
        c0, c1, c2 = self._cum
        pending = self._pending
        gap = self._gap
        mixed, era0 = self._mixed, self._era
        frame = self._frame
        tm = self.t_ms
        queue, delta, ticker, trade, life = (self._queue_delta, self._delta, self._ticker, self._trade,
                                             self._life.next)
        for _ in range(n):
            tm -= log(1.0 - rnd()) * gap          # exponential inter-arrival times
            era = frame % 3 if mixed else era0
            frame += 1
            if pending:
                push(delta(pending.pop(), tm, era))
                continue
            r = rnd()
            if r < c0:
                push(ticker(markets[int(rnd() * nm)], tm, era))
            elif r < c1:
                queue(markets[int(rnd() * nm)])
                push(delta(pending.pop(), tm, era))
            elif r < c2:
                push(trade(markets[int(rnd() * nm)], tm, era))
            else:
                push(life(tm, era))
        self.t_ms, self._frame = tm, frame
        return out

    def _queue_delta(self, m: Market) -> None:
        """Queue one book change (or two: a one-tick move of the fair value) for ``m``; pops from the end."""
        rng = self.rng
        rnd = rng.random
        tick = m.tick
        pending = self._pending
        if rnd() < 0.02:
            up = rnd() < 0.5
            if up and m.p < 9200:
                top_no = 10000 - m.p - tick
                q = m.no.get(top_no)
                if q is not None and len(m.no) > 1:
                    m.p += tick
                    pending.append((m, "yes", m.p - tick, (1 + int(rnd() * 300)) * 100))
                    pending.append((m, "no", top_no, -q))
                    return
            elif not up and m.p > 800:
                top_yes = m.p - tick
                q = m.yes.get(top_yes)
                if q is not None and len(m.yes) > 1:
                    m.p -= tick
                    pending.append((m, "no", 10000 - m.p - tick, (1 + int(rnd() * 300)) * 100))
                    pending.append((m, "yes", top_yes, -q))
                    return
        side_yes = rnd() < 0.5
        book = m.yes if side_yes else m.no
        top = m.p - tick if side_yes else 10000 - m.p - tick
        c = top - int(-log(1.0 - rnd()) / 0.35) * tick
        if c < tick:
            c = tick
        q = book.get(c)
        unit = 100 if self._whole or rnd() < 0.85 else 1
        if q is not None and len(book) > 1 and rnd() < 0.45:
            d = -q if rnd() < 0.3 or q <= unit else -min(q, (1 + int(rnd() * 200)) * unit)
        else:
            d = (1 + int(rnd() * 400)) * unit
        pending.append((m, "yes" if side_yes else "no", c, d))

    def _delta(self, item: tuple, tm: float, era: int) -> tuple:
        m, side, c, d = item
        if side == "yes":
            book = m.yes
            nq = book.get(c, 0) + d
            if nq <= 0:
                del book[c]
                if c == m.by:
                    m.by = max(book) if book else 0
            else:
                book[c] = nq
                if c > m.by:
                    m.by = c
        else:
            book = m.no
            nq = book.get(c, 0) + d
            if nq <= 0:
                del book[c]
                if c == m.bn:
                    m.bn = max(book) if book else 0
            else:
                book[c] = nq
                if c > m.bn:
                    m.bn = c
        if era == CURRENT:
            body = b'%s"price_dollars":"%s","delta_fp":"%s","side":"%s","ts":"%s","ts_ms":%d}' % (
                m.head, DOLLARS[c], FP[d], SIDE_BYTES[side], self._rfc(tm), int(tm))
        elif era == BOTH:
            body = b'%s"price":%d,"price_dollars":"%s","delta":%d,"delta_fp":"%s","side":"%s","ts":"%s"}' % (
                m.head, c // 100, DOLLARS[c], d // 100, FP[d], SIDE_BYTES[side], self._rfc(tm))
        else:
            body = b'%s"price":%d,"price_dollars":"%s","delta":%d,"side":"%s","ts":"%s"}' % (
                m.head, c // 100, DOLLARS[c], d // 100, SIDE_BYTES[side], self._rfc(tm))
        return (CH_BOOK, m.ticker, T_DELTA, body, (side, c, d))

    def _ticker_stat(self, m: Market, era: int) -> bytes:
        doi = m.oi * m.last // 1000000
        if era == CURRENT:
            return b'"volume_fp":"%s","open_interest_fp":"%s","dollar_volume":%d,"dollar_open_interest":%d,' % (
                fixed(m.vol), fixed(m.oi), m.dvol // 1000000, doi)
        if era == BOTH:
            return (b'"volume":%d,"volume_fp":"%s","open_interest":%d,"open_interest_fp":"%s","dollar_volume":%d,'
                    b'"dollar_open_interest":%d,') % (m.vol // 100, fixed(m.vol), m.oi // 100, fixed(m.oi),
                                                      m.dvol // 1000000, doi)
        return b'"volume":%d,"open_interest":%d,"dollar_volume":%d,"dollar_open_interest":%d,' % (
            m.vol // 100, m.oi // 100, m.dvol // 1000000, doi)

    def _ticker(self, m: Market, tm: float, era: int) -> tuple:
        stat = m.stat[era]
        if stat is None:
            stat = m.stat[era] = self._ticker_stat(m, era)
        yb, bn = m.by, m.bn
        ya = 10000 - bn if bn else 10000
        if era == CURRENT:
            body = (b'%s"price_dollars":"%s","yes_bid_dollars":"%s","yes_ask_dollars":"%s",%s"yes_bid_size_fp":"%s",'
                    b'"yes_ask_size_fp":"%s","last_trade_size_fp":"%s","ts":%d,"ts_ms":%d,"time":"%s"}') % (
                m.thead, DOLLARS[m.last], DOLLARS[yb], DOLLARS[ya], stat, FP[m.yes.get(yb, 0)], FP[m.no.get(bn, 0)],
                FP[m.lastsz], int(tm // 1000), int(tm), self._rfc(tm))
        else:
            self._clock += 1 + int(self.rng.random() * 60000)
            body = (b'%s"price":%d,"yes_bid":%d,"yes_ask":%d,"price_dollars":"%s","yes_bid_dollars":"%s",'
                    b'"yes_ask_dollars":"%s",%s"ts":%d,"Clock":%d}') % (
                m.thead, m.last // 100, yb // 100, ya // 100, DOLLARS[m.last], DOLLARS[yb], DOLLARS[ya], stat,
                int(tm // 1000), self._clock)
        return (CH_TICKER, m.ticker, T_TICKER, body, None)

    def _trade(self, m: Market, tm: float, era: int) -> tuple:
        rnd = self.rng.random
        tick = m.tick
        taker_yes = rnd() < 0.5
        px = (10000 - m.bn if m.bn else m.p + tick) if taker_yes else (m.by or m.p - tick)
        px = min(max(px, tick), 10000 - tick)
        r = rnd()
        n = 1 + int(rnd() * 10) if r < 0.5 else (1 + int(rnd() * 200) if r < 0.9 else 1 + int(rnd() * 5000))
        nq = n * 100 if self._whole or rnd() < 0.9 else n        # fractional counts in the current era
        m.last, m.lastsz = px, nq
        m.stat = [None, None, None]
        m.vol += nq
        k = int(rnd() * (nq + 1))
        m.oi += k if rnd() < 0.6 else -min(m.oi, k)
        m.dvol += nq * px
        side = b"yes" if taker_yes else b"no"
        ts = int(tm // 1000)
        if era == CURRENT:
            body = (b'{"trade_id":"%s","market_ticker":"%s","yes_price_dollars":"%s","no_price_dollars":"%s",'
                    b'"count_fp":"%s","taker_side":"%s","taker_outcome_side":"%s","taker_book_side":"%s",'
                    b'"is_block_trade":%s,"ts":%d,"ts_ms":%d}') % (
                self.uuid().encode(), m.tb, DOLLARS[px], DOLLARS[10000 - px], fixed(nq), side, side,
                b"bid" if taker_yes else b"ask", b"true" if nq >= 400000 else b"false", ts, int(tm))
        else:
            fpf = b',"count_fp":"%s"' % fixed(nq) if era == BOTH else b""
            body = (b'{"trade_id":"%s","market_ticker":"%s","yes_price":%d,"no_price":%d,"yes_price_dollars":"%s",'
                    b'"no_price_dollars":"%s","count":%d%s,"taker_side":"%s","ts":%d}') % (
                self.uuid().encode(), m.tb, px // 100, 100 - px // 100, DOLLARS[px], DOLLARS[10000 - px],
                nq // 100, fpf, side, ts)
        return (CH_TRADE, m.ticker, T_TRADE, body, None)


# ---- recorded sessions

ENVELOPE_SEQ = {t: b'{"type":"' + t.encode() + b'","sid":%d,"seq":%d,"msg":%s}'
                for t in (T_TRADE, T_DELTA, T_SNAPSHOT, T_MARKET_LIFE, T_EVENT_LIFE)}
ENVELOPE_TICKER = b'{"type":"ticker","sid":%d,"msg":%s}'


def generate_session(n: int, seed: int = 1, markets: int = 20, era: str = "both",
                     start: str | int = DEFAULT_START, rate: float = 2000.0, mix: str | dict | None = None,
                     shared_book: bool = False, chunk: int = 4096) -> Iterator[bytes]:
    """A recorded session of ``n`` frames: acks (ticker sid 1, trade 2, market_lifecycle_v2 3,
    orderbook 4.. one per market, or one sid 4 with ``shared_book``), one snapshot per market, then
    the stream. Every seq is contiguous per sid; each book sid starts with its snapshot."""
    gen = SessionGenerator(seed=seed, markets=markets, era=era, start=start, rate=rate, mix=mix)
    return _session_frames(gen, n, shared_book, chunk)


def _session_frames(gen: SessionGenerator, n: int, shared_book: bool, chunk: int) -> Iterator[bytes]:
    if n <= 0:
        return
    head: list[bytes] = []
    cmd = 0
    for ch, sid in ((CH_TICKER, 1), (CH_TRADE, 2), (CH_LIFECYCLE, 3)):
        cmd += 1
        head.append(b'{"id":%d,"type":"subscribed","msg":{"channel":"%s","sid":%d}}' % (cmd, ch.encode(), sid))
    book_sid = {}
    for i, m in enumerate(gen.markets):
        sid = 4 if shared_book else 4 + i
        book_sid[m.ticker] = sid
        if not shared_book or i == 0:
            cmd += 1
            head.append(b'{"id":%d,"type":"subscribed","msg":{"channel":"orderbook_delta","sid":%d}}' % (cmd, sid))
    seqs = dict.fromkeys(range(1, 5 + len(gen.markets)), 0)
    for m in gen.markets:
        sid = book_sid[m.ticker]
        seqs[sid] += 1
        head.append(ENVELOPE_SEQ[T_SNAPSHOT] % (sid, seqs[sid], gen.snapshot_body(m.ticker)))
    yield from head[:n]
    left = n - len(head)
    env_trade, env_delta = ENVELOPE_SEQ[T_TRADE], ENVELOPE_SEQ[T_DELTA]
    env_ml, env_el = ENVELOPE_SEQ[T_MARKET_LIFE], ENVELOPE_SEQ[T_EVENT_LIFE]
    while left > 0:
        k = min(chunk, left)
        left -= k
        for _ch, market, typ, body, _chg in gen.events(k):
            if typ == T_TICKER:
                yield ENVELOPE_TICKER % (1, body)
            elif typ == T_DELTA:
                sid = book_sid[market]
                s = seqs[sid] = seqs[sid] + 1
                yield env_delta % (sid, s, body)
            elif typ == T_TRADE:
                s = seqs[2] = seqs[2] + 1
                yield env_trade % (2, s, body)
            else:
                s = seqs[3] = seqs[3] + 1
                yield (env_ml if typ == T_MARKET_LIFE else env_el) % (3, s, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssmd_fast.kalshi.generator",
                                 description="Write a deterministic recorded Kalshi session as JSON Lines.")
    ap.add_argument("--messages", type=int, default=10000, help="total frames to write (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--markets", type=int, default=20, help="markets with book/ticker/trade flow (default 20)")
    ap.add_argument("--era", choices=ERAS, default="both", help="wire era (default both)")
    ap.add_argument("--start", default=DEFAULT_START, help=f"UTC start time (default {DEFAULT_START})")
    ap.add_argument("--rate", type=float, default=2000.0, help="mean frames per second of the session clock")
    ap.add_argument("--mix", default="", help="e.g. ticker=0.5,orderbook_delta=0.35,trade=0.1,lifecycle=0.05")
    ap.add_argument("--shared-book", action="store_true", help="one orderbook sid for all markets")
    ap.add_argument("--out", default="-", help="output file, '-' for stdout (default -)")
    a = ap.parse_args(argv)
    if a.messages < 0 or a.markets < 1:
        ap.error("--messages must be >= 0 and --markets >= 1")
    try:
        frames = generate_session(a.messages, seed=a.seed, markets=a.markets, era=a.era, start=a.start,
                                  rate=a.rate, mix=a.mix, shared_book=a.shared_book)
    except ValueError as e:
        ap.error(str(e))
    out = sys.stdout.buffer if a.out == "-" else open(a.out, "wb")  # noqa: SIM115 (stdout or a file)
    try:
        batch: list[bytes] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) >= 8192:
                batch.append(b"")
                out.write(b"\n".join(batch))
                batch.clear()
        if batch:
            batch.append(b"")
            out.write(b"\n".join(batch))
    except BrokenPipeError:      # `... | head`
        sys.stderr.close()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
