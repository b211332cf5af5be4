"""The lifecycle flow of the session generator (``generator.py``): the ``market_lifecycle_v2`` and
``event_lifecycle`` events of a session, drawn from the generator's random stream.

It uses the generator's channel, frame-type and era names, so ``SessionGenerator`` imports it when it
is built, once ``generator.py`` is complete: a module-level import would be circular.
"""

from __future__ import annotations

import time

from ssmd_fast.kalshi.generator import (
    CH_LIFECYCLE,
    CURRENT,
    MONTHS,
    T_EVENT_LIFE,
    T_MARKET_LIFE,
    SessionGenerator,
)

Q15 = ("KXBTC15M", "KXETH15M", "KXSOL15M", "KXXRP15M")
COIN = {"KXBTC15M": "BTC", "KXETH15M": "ETH", "KXSOL15M": "SOL", "KXXRP15M": "XRP"}
CITY = (("NY", "NYC"), ("CHI", "Chicago"), ("MIA", "Miami"), ("LAX", "Los Angeles"), ("AUS", "Austin"),
        ("DEN", "Denver"))


class _Lifecycle:
    """market_lifecycle_v2 / event_lifecycle flow on the global lifecycle channel.

    Markets that closed before the session are determined, then settled; new markets (hourly crypto
    strikes, 15-minute windows, daily temperature brackets) are announced by event_lifecycle, created,
    activated, sometimes paused or given a later close; a market whose close passes is determined.
    """

    def __init__(self, gen: SessionGenerator):
        self.gen = gen
        rng = gen.rng
        start_s = gen.start_s
        self.hour0 = start_s - start_s % 3600
        self.quarter0 = start_s - start_s % 900
        closed = []
        for j in range(40 * 6):
            closed.append(self.spec(0, self.hour0 - 3600 * (j // 40), j % 40)[1])
        for j in range(30 * 6):
            closed.append(self.spec(1, self.hour0 - 3600 * (j // 30), j % 30)[1])
        for j in range(4 * 24):
            closed.append(self.spec(2, self.quarter0 - 900 * (j // 4), j)[1])
        rng.shuffle(closed)
        self.closed = closed
        self.determined: list[list] = []
        self.created: list[list] = []
        self.active: dict[str, list] = {}
        self.active_keys: list[str] = []
        self.made = [0, 0, 0, 0]
        self.announced: set[str] = set()

    @staticmethod
    def et_parts(t: int):
        e = time.gmtime(t - 5 * 3600)
        return f"{e.tm_year % 100:02d}{MONTHS[e.tm_mon - 1]}{e.tm_mday:02d}", e.tm_hour, e.tm_min, e

    def spec(self, kind: int, tc: int, j: int):
        """-> event_ticker, market_ticker, event title, market name, strike JSON fragment"""
        rr = self.gen.rng.randrange
        d, h, mi, e = self.et_parts(tc)
        if kind in (0, 1):
            ser, lo, step, n, coin = (("KXBTCD", 65999, 250, 40, "Bitcoin") if kind == 0
                                      else ("KXETHD", 1799, 20, 30, "Ethereum"))
            ev = f"{ser}-{d}{h:02d}"
            k = lo + step * (j % n)
            label = f"{h % 12 or 12}{'am' if h < 12 else 'pm'}"
            return (ev, f"{ev}-T{k}.99", f"{coin} price today at {label} EST?", f"${k + 1:,} or above",
                    f',"strike_type":"greater","floor_strike":{k}.99')
        if kind == 2:
            ser = Q15[j % 4]
            ev = f"{ser}-{d}{h:02d}{mi:02d}"
            tp = f"{(69000, 1950, 85, 2)[j % 4] + rr(40)}.{rr(100):02d}"
            return (ev, f"{ev}-{mi:02d}", f"{COIN[ser]} price up in next 15 mins?", f"Target Price: ${tp}",
                    f',"strike_type":"greater","floor_strike":{tp}')
        code, city = CITY[(j // 10) % 6]
        ev = f"KXHIGH{code}-{d}"
        lo = 30 + 2 * (j % 10)
        return (ev, f"{ev}-B{lo}.5", f"Highest temperature in {city} on {MONTHS[e.tm_mon - 1].title()} "
                f"{e.tm_mday}, {e.tm_year}?", f"{lo}\u00b0 to {lo + 1}\u00b0",
                f',"strike_type":"between","floor_strike":{lo},"cap_strike":{lo + 1}')

    def close_of(self, kind: int, j: int) -> int:
        if kind == 0:
            return self.hour0 + 3600 * (1 + j // 40)
        if kind == 1:
            return self.hour0 + 3600 * (1 + j // 30)
        if kind == 2:
            return self.quarter0 + 900 * (1 + j // 4)
        return self.hour0 - self.hour0 % 86400 + 86400 * (1 + j // 60) + 4 * 3600

    def next(self, tm: float, era: int) -> tuple:
        rng = self.gen.rng
        rnd, rr = rng.random, rng.randrange
        ts = int(tm // 1000)
        active, keys = self.active, self.active_keys
        if keys and rnd() < 0.2:
            tk = keys[rr(len(keys))]
            if active[tk][0] <= ts:
                del active[tk]
                keys.remove(tk)
                self.closed.append(tk)
        acts = []
        if self.closed:
            acts.append((0.20, "determine"))
        if self.determined and ts >= self.determined[0][1] + 2:
            acts.append((0.20, "settle"))
        if self.created and ts >= self.created[0][1]:
            acts.append((0.25, "activate"))
        if keys:
            acts.append((0.03, "pause"))
            acts.append((0.04, "close"))
        acts.append((0.28, "create"))
        r = rnd() * sum(w for w, _ in acts)
        act = acts[-1][1]
        for w, a in acts:
            r -= w
            if r < 0:
                act = a
                break
        if act == "determine":
            tk = self.closed.pop()
            res = "yes" if rnd() < 0.5 else "no"
            self.determined.append([tk, ts])
            sv = f',"settlement_value":"{"1.0000" if res == "yes" else "0.0000"}"' if era == CURRENT else ""
            body = f'{{"market_ticker":"{tk}","determination_ts":{ts},"result":"{res}"{sv},"event_type":"determined"}}'
        elif act == "settle":
            tk = self.determined.pop(0)[0]
            body = f'{{"market_ticker":"{tk}","settled_ts":{ts},"event_type":"settled"}}'
        elif act == "activate":
            tk, _, tc = self.created.pop(0)
            active[tk] = [tc, False]
            keys.append(tk)
            body = f'{{"market_ticker":"{tk}","event_type":"activated"}}'
        elif act == "pause":
            tk = keys[rr(len(keys))]
            a = active[tk]
            a[1] = not a[1]
            body = (f'{{"market_ticker":"{tk}","is_deactivated":{"true" if a[1] else "false"},'
                    f'"event_type":"deactivated"}}')
        elif act == "close":
            tk = keys[rr(len(keys))]
            active[tk][0] += 300
            body = f'{{"market_ticker":"{tk}","close_ts":{active[tk][0]},"event_type":"close_date_updated"}}'
        else:
            kind = (0, 0, 1, 1, 2, 3)[rr(6)]
            j = self.made[kind]
            tc = self.close_of(kind, j)
            ev, tk, title, name, strike = self.spec(kind, tc, j)
            if ev not in self.announced:
                self.announced.add(ev)
                body = (f'{{"event_ticker":"{ev}","title":"{title}","subtitle":"","collateral_return_type":'
                        f'"{"MECNET" if kind == 3 else ""}","series_ticker":"{ev.split("-")[0]}","strike_date":{tc}}}')
                return (CH_LIFECYCLE, ev, T_EVENT_LIFE, body.encode(), None)
            self.made[kind] += 1
            o_ts = ts + rr(5)
            self.created.append([tk, o_ts, tc])
            pls = ',"price_level_structure":"linear_cent"' if era == CURRENT else ""
            body = (f'{{"market_ticker":"{tk}","open_ts":{o_ts},"close_ts":{tc},"additional_metadata":{{'
                    f'"name":"{name}","title":"{title}","yes_sub_title":"{name}","no_sub_title":"{name}",'
                    f'"rules_primary":"If the outcome of {ev} is {name} at close, then the market resolves to Yes.",'
                    f'"rules_secondary":"","can_close_early":false,"event_ticker":"{ev}",'
                    f'"expected_expiration_ts":{tc + 300}{strike}}},"event_type":"created"{pls}}}')
        return (CH_LIFECYCLE, tk, T_MARKET_LIFE, body.encode(), None)
