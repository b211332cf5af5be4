"""The local exchange's timeline: generated or replayed market-data events, in chunks.

A feed is one global sequence of events (position 0, 1, 2, ...). Each chunk holds, per event, a
route key id (``(type, market)``; lifecycle types share one key, their channel is global) and the
``msg`` body bytes, plus a copy of every order book at the chunk's start, so the book of a market
at any position is a checkpoint plus at most one chunk of changes. Connections read the feed at
their own cursor; chunks every cursor has passed are dropped.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from decimal import Decimal, InvalidOperation
from itertools import islice
from operator import itemgetter
from pathlib import Path

from ssmd_fast.kalshi.generator import (
    BOTH,
    CH_BOOK,
    CH_LIFECYCLE,
    CH_TICKER,
    CH_TRADE,
    CURRENT,
    DEFAULT_START,
    LEGACY,
    SessionGenerator,
    render_snapshot,
)

log = logging.getLogger("ssmd_fast.exchange")

CHUNK = 4096
# frame type -> subscription channel (the types the exchange serves)
CHANNEL_OF = {
    "ticker": CH_TICKER,
    "trade": CH_TRADE,
    "orderbook_delta": CH_BOOK,
    "orderbook_snapshot": CH_BOOK,
    "market_lifecycle_v2": CH_LIFECYCLE,
    "event_lifecycle": CH_LIFECYCLE,
    "event_fee_update": CH_LIFECYCLE,
}
CONTROL_TYPES = frozenset(("subscribed", "ok", "unsubscribed", "error"))
Book = tuple[dict[int, int], dict[int, int]]


class RouteKeys(dict):
    """``keys[(type, market)] -> id``; ids are dense, ``info[id] = (type, channel, market)``.

    Lifecycle types are global (no market filter), so every market of one type shares a key."""

    def __init__(self):
        super().__init__()
        self.info: list[tuple[str, str, str | None]] = []
        self._global: dict[str, int] = {}

    def __missing__(self, key: tuple[str, str | None]) -> int:
        typ, market = key
        channel = CHANNEL_OF[typ]
        if channel == CH_LIFECYCLE:
            kid = self._global.get(typ)
            if kid is None:
                kid = self._global[typ] = len(self.info)
                self.info.append((typ, channel, None))
        else:
            kid = len(self.info)
            self.info.append((typ, channel, market))
        self[key] = kid
        return kid


class Chunk:
    __slots__ = ("start", "ids", "bodies", "blens", "changes", "books")

    def __init__(self, start: int, ids: list[int], bodies: list[bytes],
                 changes: list[tuple[int, str, tuple]], books: dict[str, Book]):
        self.start = start
        self.ids = ids
        self.bodies = bodies
        self.blens = list(map(len, bodies))
        self.changes = changes      # (offset, market, change) for book events, in order
        self.books = books          # market -> (yes, no) at the chunk's start (copies)

    def __len__(self) -> int:
        return len(self.ids)


def _apply(book: Book | None, change: tuple) -> Book | None:
    """One book change: ``(side, price, delta)`` or ``("snapshot", yes, no)``."""
    if change[0] == "snapshot":
        return dict(change[1]), dict(change[2])
    if book is None:
        return None
    side, price, delta = change
    lv = book[0] if side == "yes" else book[1]
    q = lv.get(price, 0) + delta
    if q > 0:
        lv[price] = q
    else:
        lv.pop(price, None)
    return book


class Feed(ABC):
    """The common part: chunks, checkpoints, snapshots at a position, trimming."""

    kind = "feed"

    def __init__(self):
        self.keys = RouteKeys()
        self.chunks: list[Chunk | None] = []
        self.total = 0              # events in the session
        self.markets: list[str] = []

    def __len__(self) -> int:
        return self.total

    # -- subclasses
    @abstractmethod
    def _make_chunk(self, k: int) -> Chunk:
        """Chunk ``k``, made after chunks 0 .. k-1."""

    @abstractmethod
    def _current_books(self) -> dict[str, Book]:
        """The books after the last chunk made so far."""

    @abstractmethod
    def render(self, market: str, book: Book) -> bytes:
        """A snapshot frame of ``book`` in the feed's era."""

    # -- common
    def chunk(self, k: int) -> Chunk:
        """Chunk ``k`` (events ``k*CHUNK ..``), made on demand and in order."""
        while len(self.chunks) <= k:
            self.chunks.append(self._make_chunk(len(self.chunks)))
        c = self.chunks[k]
        if c is None:
            raise IndexError(f"chunk {k} was already dropped")
        return c

    def book_at(self, market: str, pos: int) -> Book | None:
        """The book of ``market`` just before event ``pos`` (None if the feed has not shown it yet)."""
        k = pos // CHUNK
        if k >= len(self.chunks) and pos >= self.total:
            b = self._current_books().get(market)        # the end of the session
            return (dict(b[0]), dict(b[1])) if b is not None else None
        c = self.chunk(k)
        b = c.books.get(market)
        book = (dict(b[0]), dict(b[1])) if b is not None else None
        stop = pos - c.start
        for off, m, change in c.changes:
            if off >= stop:
                break
            if m == market:
                book = _apply(book, change)
        return book

    def snapshot_body(self, market: str, pos: int) -> bytes | None:
        book = self.book_at(market, pos)
        return None if book is None else self.render(market, book)

    def trim(self, below: int) -> None:
        """Drop the chunks that end at or before position ``below``."""
        for k in range(min(below // CHUNK, len(self.chunks))):
            if self.chunks[k] is not None and k < len(self.chunks) - 1:
                self.chunks[k] = None


class GeneratedFeed(Feed):
    """``n`` events of a ``SessionGenerator``; the first ``pregenerate`` are made up front."""

    kind = "generated"

    def __init__(self, n: int, *, seed: int = 1, markets: int = 20, era: str = "both",
                 start: str | int = DEFAULT_START, rate: float = 2000.0, mix: str | None = None,
                 pregenerate: int = 0):
        super().__init__()
        self.gen = SessionGenerator(seed=seed, markets=markets, era=era, start=start, rate=rate, mix=mix)
        self.total = max(0, n)
        self.markets = list(self.gen.tickers)
        for t in self.markets:      # every key known up front: route tables never grow
            for typ in ("ticker", "trade", "orderbook_delta", "orderbook_snapshot"):
                _ = self.keys[(typ, t)]
        for typ in ("market_lifecycle_v2", "event_lifecycle"):
            _ = self.keys[(typ, None)]
        for k in range((min(pregenerate, self.total) + CHUNK - 1) // CHUNK):
            self.chunk(k)

    def _make_chunk(self, k: int) -> Chunk:
        start = k * CHUNK
        n = min(CHUNK, self.total - start)
        if n <= 0:
            raise IndexError(f"position {start} is past the end of the session ({self.total})")
        books = self.gen.books()
        evs = self.gen.events(n)
        keys = self.keys
        ids = list(map(keys.__getitem__, zip(map(itemgetter(2), evs), map(itemgetter(1), evs), strict=True)))
        bodies = list(map(itemgetter(3), evs))
        changes = [(i, e[1], e[4]) for i, e in enumerate(evs) if e[4] is not None]
        return Chunk(start, ids, bodies, changes, books)

    def _current_books(self) -> dict[str, Book]:
        return self.gen.books()

    def render(self, market: str, book: Book) -> bytes:
        return self.gen.snapshot_body(market, book)

    def unknown_market_body(self, market: str) -> bytes:
        return json.dumps({"market_ticker": market}, separators=(",", ":")).encode()


def _ten_thousandths(s) -> int:
    d = Decimal(s) * 10000
    if d != d.to_integral_value():
        raise ValueError(f"price {s!r} finer than 1/10,000")
    return int(d)


def _hundredths(s) -> int:
    d = Decimal(s) * 100
    if d != d.to_integral_value():
        raise ValueError(f"size {s!r} finer than 1/100")
    return int(d)


def _snapshot_side(msg: dict, side: str) -> dict[int, int]:
    if f"{side}_dollars_fp" in msg:
        return {_ten_thousandths(p): _hundredths(q) for p, q in msg[f"{side}_dollars_fp"]}
    if f"{side}_dollars" in msg:
        return {_ten_thousandths(p): int(q) * 100 for p, q in msg[f"{side}_dollars"]}
    if side in msg:
        return {int(p) * 100: int(q) * 100 for p, q in msg[side]}
    return {}


def _era_of_snapshot(msg: dict) -> int:
    ints = "yes" in msg or "no" in msg
    fps = "yes_dollars_fp" in msg or "no_dollars_fp" in msg
    return BOTH if ints and fps else LEGACY if ints else CURRENT


def _body_of(raw: bytes, obj: dict) -> bytes:
    """The ``msg`` value bytes exactly as recorded (re-serialized only if they cannot be cut out)."""
    i = raw.find(b',"msg":')
    if i >= 0 and raw.endswith(b"}"):
        cand = raw[i + 7:-1]
        try:
            if json.loads(cand) == obj["msg"]:
                return cand
        except ValueError:
            pass
    return json.dumps(obj["msg"], separators=(",", ":"), ensure_ascii=False).encode()


def _not_json(raw: bytes, exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        try:                # json.loads guessed the encoding (a BOM says UTF-16): say where UTF-8 breaks
            raw.decode()
        except UnicodeDecodeError as u:
            exc = u
        return f"not UTF-8 (byte {exc.start + 1})"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at column {exc.colno})"
    return f"not JSON ({exc})"


class ReplayFeed(Feed):
    """The data frames of a recorded JSONL session (control frames and unknown types skipped).

    ``skipped`` counts the lines left out by frame type (``"unparseable"`` for lines that are not a JSON
    object with a string type); ``malformed`` counts those that are not a recorded frame at all, or a data
    frame without its ``msg`` or market; ``first_skipped`` and ``first_malformed`` are ``(line, reason)``
    of the first of each (None when there is none): a replay of a wrong file must not start silently."""

    kind = "replay"

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.skipped: dict[str, int] = {}
        self.lines = 0                  # non-blank lines read
        self.malformed = 0
        self.first_skipped: tuple[int, str] | None = None
        self.first_malformed: tuple[int, str] | None = None
        self.market_ids: dict[str, str] = {}
        self.eras: dict[str, int] = {}
        books: dict[str, Book] = {}
        ids: list[int] = []
        bodies: list[bytes] = []
        changes: list[tuple[int, str, tuple]] = []
        chunk_books = {}
        keys = self.keys
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                raw = line.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                self.lines += 1
                try:
                    obj = json.loads(raw)
                except ValueError as e:
                    self._skip(lineno, "unparseable", _not_json(raw, e), True)
                    continue
                typ = obj.get("type") if isinstance(obj, dict) else None
                if not isinstance(typ, str):
                    why = "no string \"type\"" if isinstance(obj, dict) else "not a JSON object"
                    self._skip(lineno, "unparseable", why, True)
                    continue
                if typ not in CHANNEL_OF:
                    why = "a control frame" if typ in CONTROL_TYPES else "a type the exchange does not serve"
                    self._skip(lineno, typ, f"{typ!r} is {why}", False)
                    continue
                msg = obj.get("msg")
                if not isinstance(msg, dict):
                    self._skip(lineno, typ, f"{typ} frame without a \"msg\" object", True)
                    continue
                if CHANNEL_OF[typ] == CH_LIFECYCLE:
                    market = None
                else:
                    market = msg.get("market_ticker")
                    if not isinstance(market, str):
                        self._skip(lineno, typ, f"{typ} frame without a string \"market_ticker\"", True)
                        continue
                    if market not in self.eras:
                        self.markets.append(market)
                        self.eras[market] = CURRENT
                change = None
                try:
                    if typ == "orderbook_snapshot":
                        change = ("snapshot", _snapshot_side(msg, "yes"), _snapshot_side(msg, "no"))
                        self.eras[market] = _era_of_snapshot(msg)
                        if isinstance(msg.get("market_id"), str):
                            self.market_ids[market] = msg["market_id"]
                    elif typ == "orderbook_delta":
                        p = _ten_thousandths(msg["price_dollars"]) if "price_dollars" in msg else int(msg["price"]) * 100
                        d = _hundredths(msg["delta_fp"]) if "delta_fp" in msg else int(msg["delta"]) * 100
                        change = (msg["side"], p, d)
                except (KeyError, ValueError, TypeError, InvalidOperation) as e:
                    log.warning("%s:%d: book frame not understood (%s); replayed without book tracking",
                                self.path, lineno, e)
                off = len(ids)
                if off == 0:
                    chunk_books = {m: (dict(b[0]), dict(b[1])) for m, b in books.items()}
                ids.append(keys[(typ, market)])
                bodies.append(_body_of(raw, obj))
                if change is not None:
                    changes.append((off, market, change))
                    book = _apply(books.get(market), change)
                    if book is not None:
                        books[market] = book
                if len(ids) == CHUNK:
                    self.chunks.append(Chunk(self.total, ids, bodies, changes, chunk_books))
                    self.total += len(ids)
                    ids, bodies, changes = [], [], []
        if ids:
            self.chunks.append(Chunk(self.total, ids, bodies, changes, chunk_books))
            self.total += len(ids)
        self._books = books
        for t in self.markets:       # snapshots rendered on subscribe use the snapshot key
            _ = keys[("orderbook_snapshot", t)]

    def _skip(self, lineno: int, name: str, why: str, malformed: bool) -> None:
        self.skipped[name] = self.skipped.get(name, 0) + 1
        if self.first_skipped is None:
            self.first_skipped = (lineno, why)
        if malformed:
            self.malformed += 1
            if self.first_malformed is None:
                self.first_malformed = (lineno, why)

    def _make_chunk(self, k: int) -> Chunk:
        raise IndexError(f"position {k * CHUNK} is past the end of the recording ({self.total})")

    def _current_books(self) -> dict[str, Book]:
        return self._books

    def render(self, market: str, book: Book) -> bytes:
        return render_snapshot(market, self.market_ids.get(market, ""), book[0], book[1],
                               self.eras.get(market, CURRENT)).replace(b',"market_id":""', b"")

    def unknown_market_body(self, market: str) -> bytes | None:
        return None


def first_events(feed: Feed, n: int) -> list[tuple[str, str, str | None, bytes]]:
    """``(type, channel, market, body)`` of the first ``n`` events (for tests and tools)."""
    out = []
    for k in range((min(n, feed.total) + CHUNK - 1) // CHUNK):
        c = feed.chunk(k)
        for kid, body in islice(zip(c.ids, c.bodies, strict=True), n - len(out)):
            out.append((*feed.keys.info[kid], body))
    return out
