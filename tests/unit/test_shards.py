"""Sharding: every configured market on exactly one connection, all-market channels on the first."""

from __future__ import annotations

from collections import Counter

import pytest

from ssmd_fast.config import ExchangeConfig, OrderbookConfig
from ssmd_fast.kalshi.shards import BOOK_CHANNEL, SubscriptionSpec, plan_connections, plan_from_config


def _book_markets(plans) -> Counter:
    return Counter(m for p in plans for s in p.subscriptions if s.channel == BOOK_CHANNEL for m in s.markets)


@pytest.mark.parametrize("n_markets,per_sub", [(1, 200), (199, 200), (200, 200), (201, 200), (1000, 200),
                                               (1001, 7), (5, 1), (0, 3)])
def test_every_book_market_on_exactly_one_connection(n_markets, per_sub):
    markets = [f"KXTEST-26JAN01-T{i}" for i in range(n_markets)]
    plans = plan_connections(["ticker", "trade", "market_lifecycle_v2"], orderbook_markets=markets,
                             max_markets_per_subscription=per_sub)
    counts = _book_markets(plans)
    assert set(counts) == set(markets)
    assert all(c == 1 for c in counts.values())
    assert len(plans) == max(1, -(-n_markets // per_sub))
    for p in plans:
        assert len(p.book_markets) <= per_sub
    # order preserved: concatenating the connections gives the configured list back
    assert [m for p in plans for m in p.book_markets] == markets


def test_all_market_channels_only_on_first_connection():
    plans = plan_connections(["ticker", "trade", "market_lifecycle_v2"],
                             orderbook_markets=[f"M{i}" for i in range(5)], max_markets_per_subscription=2)
    assert [p.index for p in plans] == [0, 1, 2]
    assert plans[0].channels == ("ticker", "trade", "market_lifecycle_v2", BOOK_CHANNEL)
    assert plans[0].subscriptions[0] == SubscriptionSpec("ticker")
    for p in plans[1:]:
        assert p.channels == (BOOK_CHANNEL,)


def test_duplicates_in_config_are_counted_once():
    plans = plan_connections(["ticker"], orderbook_markets=["A", "B", "A", "C"], max_markets_per_subscription=2)
    assert _book_markets(plans) == Counter({"A": 1, "B": 1, "C": 1})


def test_market_filter_for_ticker_and_trade_is_chunked_on_first_connection():
    plans = plan_connections(["ticker", "trade", "market_lifecycle_v2"], markets=["A", "B", "C"],
                             max_markets_per_subscription=2)
    assert len(plans) == 1
    subs = plans[0].subscriptions
    assert subs == (SubscriptionSpec("ticker", ("A", "B")), SubscriptionSpec("ticker", ("C",)),
                    SubscriptionSpec("trade", ("A", "B")), SubscriptionSpec("trade", ("C",)),
                    SubscriptionSpec("market_lifecycle_v2"))


def test_orderbook_channel_takes_markets_filter_or_fails():
    plans = plan_connections(["orderbook_delta"], markets=["A", "B"])
    assert plans[0].subscriptions == (SubscriptionSpec(BOOK_CHANNEL, ("A", "B")),)
    with pytest.raises(ValueError, match="orderbook_delta needs markets"):
        plan_connections(["ticker", "orderbook_delta"])
    with pytest.raises(ValueError, match="nothing to subscribe"):
        plan_connections([])


def test_params_and_halves():
    spec = SubscriptionSpec(BOOK_CHANNEL, ("A", "B", "C"))
    assert spec.params() == {"channels": [BOOK_CHANNEL], "market_tickers": ["A", "B", "C"]}
    assert SubscriptionSpec("ticker").params() == {"channels": ["ticker"]}
    a, b = spec.halves()
    assert a.markets + b.markets == spec.markets and a.markets == ("A", "B")
    with pytest.raises(ValueError):
        SubscriptionSpec(BOOK_CHANNEL, ("A",)).halves()


def test_plan_from_config():
    ex = ExchangeConfig(orderbook=OrderbookConfig(markets=tuple(f"M{i}" for i in range(450)),
                                                  max_markets_per_subscription=200))
    plans = plan_from_config(ex)
    assert [len(p.book_markets) for p in plans] == [200, 200, 50]
    assert plans[0].channels[:3] == ("ticker", "trade", "market_lifecycle_v2")
