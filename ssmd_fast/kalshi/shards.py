"""Which subscriptions go on which WebSocket connection.

The all-market channels (ticker, trade, market_lifecycle_v2, ...) go on the first connection; the order
books are split across connections at ``max_markets_per_subscription`` markets each. Every configured
market lands on exactly one connection: a market left out would be a silent hole in the capture.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BOOK_CHANNEL = "orderbook_delta"
# channels that take an optional market filter (no filter = every market)
MARKET_FILTER_CHANNELS = ("ticker", "trade")
# channels Kalshi only offers for every market ("market_ticker filters are not supported")
GLOBAL_CHANNELS = ("market_lifecycle_v2", "multivariate_market_lifecycle")


@dataclass(frozen=True)
class SubscriptionSpec:
    """One subscribe command: one channel, and its markets (empty = all markets / a global channel)."""

    channel: str
    markets: tuple[str, ...] = ()

    def params(self) -> dict:
        params: dict = {"channels": [self.channel]}
        if self.markets:
            params["market_tickers"] = list(self.markets)
        return params

    def halves(self) -> tuple[SubscriptionSpec, SubscriptionSpec]:
        """The spec split in two (Kalshi error 26: subscription market limit exceeded)."""
        if len(self.markets) < 2:
            raise ValueError(f"cannot split a {self.channel} subscription of {len(self.markets)} market(s)")
        mid = (len(self.markets) + 1) // 2
        return (SubscriptionSpec(self.channel, self.markets[:mid]),
                SubscriptionSpec(self.channel, self.markets[mid:]))

    def describe(self) -> str:
        if not self.markets:
            return f"{self.channel} (all markets)"
        return f"{self.channel} ({len(self.markets)} market{'s' if len(self.markets) != 1 else ''})"


@dataclass(frozen=True)
class ConnectionPlan:
    """The subscriptions of one connection (shard ``index``)."""

    index: int
    subscriptions: tuple[SubscriptionSpec, ...]

    @property
    def book_markets(self) -> tuple[str, ...]:
        return tuple(m for s in self.subscriptions if s.channel == BOOK_CHANNEL for m in s.markets)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.channel for s in self.subscriptions))


def _chunks(items: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def plan_connections(channels: Iterable[str], markets: Iterable[str] = (), orderbook_markets: Iterable[str] = (),
                     max_markets_per_subscription: int = 200) -> list[ConnectionPlan]:
    """Split the subscriptions across connections.

    ``channels``: the channels to capture; ``markets``: a ticker/trade market filter (empty = all);
    ``orderbook_markets``: the books to capture (non-empty implies ``orderbook_delta``).
    """
    if max_markets_per_subscription < 1:
        raise ValueError("max_markets_per_subscription must be at least 1")
    channels = _unique(channels)
    markets = _unique(markets)
    books = _unique(orderbook_markets)
    if BOOK_CHANNEL in channels and not books:
        books = list(markets)
        if not books:
            raise ValueError("orderbook_delta needs markets: set exchange.orderbook.markets")
    for ch in channels:
        if ch != BOOK_CHANNEL and ch not in MARKET_FILTER_CHANNELS and ch not in GLOBAL_CHANNELS:
            raise ValueError(f"unsupported channel {ch!r}")

    first: list[SubscriptionSpec] = []
    for ch in channels:
        if ch == BOOK_CHANNEL:
            continue
        if ch in MARKET_FILTER_CHANNELS and markets:
            first.extend(SubscriptionSpec(ch, chunk) for chunk in _chunks(markets, max_markets_per_subscription))
        else:
            first.append(SubscriptionSpec(ch))

    book_chunks = _chunks(books, max_markets_per_subscription)
    plans: list[list[SubscriptionSpec]] = [first]
    for i, chunk in enumerate(book_chunks):
        if i == 0:
            first.append(SubscriptionSpec(BOOK_CHANNEL, chunk))
        else:
            plans.append([SubscriptionSpec(BOOK_CHANNEL, chunk)])
    if not first:
        raise ValueError("nothing to subscribe: no channels and no order book markets")
    return [ConnectionPlan(i, tuple(specs)) for i, specs in enumerate(plans)]


def plan_from_config(exchange) -> list[ConnectionPlan]:
    """The connection plans of an ``ExchangeConfig``."""
    return plan_connections(exchange.channels, exchange.markets, exchange.orderbook.markets,
                            exchange.orderbook.max_markets_per_subscription)
