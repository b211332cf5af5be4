"""Per-sid sequence checking of a closed FrameBatch: the pure-Python twin of ``_sequencer.pyx``.

Kalshi numbers the frames of each subscription (sid) 1, 2, 3, ... On an order book sid a missing
frame means the book is wrong: its books are marked invalid, their deltas are flagged
F_SUPPRESSED until a fresh snapshot of that market arrives, and a ``get_snapshot`` request goes
to the protocol core. On trade and lifecycle sids a gap is reported and nothing is suppressed.
A duplicate or old frame (``seq <= last``) is flagged F_DUPLICATE and counted (kalshi-protocol.md:
"Duplicate/old = drop"); the frames after it go on as before. An old frame followed by another frame at or
below ``last`` means the subscription's numbering went back (a lone straggler is followed by ``last + 1``):
a gap event is emitted, that sid's frames are dropped (flagged F_DUPLICATE) for the rest of the connection
and ``tracker.reconnect`` asks the session for a new connection (message ids ``{conn}:{sid}:{seq}`` must
never repeat, and its books need fresh snapshots). One old frame alone is not a regression: that would
drop every later frame of the sid until the reconnect, trades included.

``ResyncTracker`` is the rare path (gaps, snapshots, invalid books); both implementations share it,
so the compiled one only differs on the per-frame walk.
"""

from __future__ import annotations

import time

from ssmd_fast.events import StatusEvent
from ssmd_fast.normalize import (
    F_DUPLICATE,
    F_GAP,
    F_SUPPRESSED,
    K_BOOK_DELTA,
    K_BOOK_SNAPSHOT,
    K_EVENT_LIFECYCLE,
    K_MARKET_LIFECYCLE,
    K_OK,
    K_TRADE,
    K_UNSUBSCRIBED,
    OUT_CONTROL,
    OUT_INVALID,
)

IMPLEMENTATION = "python"

# what a sid carries, learned from its first sequenced frame
C_UNKNOWN, C_BOOK, C_TRADE, C_LIFECYCLE = 0, 1, 2, 3
CLASS_NAMES = ("other", "orderbook", "trade", "lifecycle")
REGRESSED = 1 << 62     # the ``last`` of a sid whose seq went back: every later frame is below it


def class_of(kind: int) -> int:
    if kind in (K_BOOK_DELTA, K_BOOK_SNAPSHOT):
        return C_BOOK
    if kind == K_TRADE:
        return C_TRADE
    if kind in (K_MARKET_LIFECYCLE, K_EVENT_LIFECYCLE):
        return C_LIFECYCLE
    return C_UNKNOWN


class ResyncTracker:
    """Invalid books, resync requests and status events (rare: only gaps and snapshots come here)."""

    def __init__(self, conn: str = ""):
        self.reset(conn)

    def reset(self, conn: str) -> None:
        self.conn = conn
        self.known: dict[int, dict[str, None]] = {}     # book sid -> markets seen in snapshots (ordered)
        self.resynced: dict[int, set[str]] = {}         # invalid book sid -> markets with a fresh snapshot
        self.pending: dict[str, int] = {}               # market awaiting a fresh snapshot -> sid of its gap
        self.events: list[StatusEvent] = []
        self.snapshot_requests: list[tuple[int, tuple[str, ...]]] = []
        self.resynced_sids: list[int] = []
        self.resyncs = 0
        self.reconnect: str | None = None               # why the session must reconnect (seq regression)

    def snapshot(self, sid: int, market: str, seq: int, time_ns: int) -> bool:
        """A snapshot arrived; True when it made every book of an invalid ``sid`` valid again."""
        self.known.setdefault(sid, {})[market] = None
        gap_sid = self.pending.pop(market, None)
        if gap_sid is not None:
            self.resyncs += 1
            self.events.append(StatusEvent("resync", self.conn, time_ns, market=market, sid=sid,
                                           received_seq=seq,
                                           detail=f"book rebuilt from a fresh snapshot (gap on sid {gap_sid})"))
        done = self.resynced.get(sid)
        if done is None:
            return False
        done.add(market)
        if all(m in done for m in self.known[sid]):
            del self.resynced[sid]
            self.resynced_sids.append(sid)
            return True
        return False

    def suppress(self, sid: int, market: str) -> bool:
        """Whether a delta of ``market`` on ``sid`` must be held back (its book is invalid)."""
        done = self.resynced.get(sid)
        return done is not None and market not in done

    def book_gap(self, sid: int, market: str | None, last: int, seq: int, time_ns: int, why: str) -> None:
        books = self.known.setdefault(sid, {})
        if market is not None:
            books.setdefault(market, None)
        self.resynced[sid] = set()
        for m in books:
            self.pending[m] = sid
        names = list(books)
        self.snapshot_requests.append((sid, tuple(names)))
        # one event per book made invalid (events.py: a gap event names one affected market)
        detail = f"orderbook {why}: book invalid until a fresh snapshot ({len(names)} book(s) of sid {sid})"
        self.events += [StatusEvent("gap", self.conn, time_ns, market=m, sid=sid, last_seq=last or None,
                                    received_seq=seq, detail=detail) for m in names or [None]]

    def other_gap(self, sid: int, cls: int, market: str | None, last: int, seq: int, time_ns: int) -> None:
        # market null: the frames lost may be of any market of the sid (``market`` only revealed the gap)
        missing = seq - last - 1
        self.events.append(StatusEvent(
            "gap", self.conn, time_ns, market=None, sid=sid, last_seq=last or None, received_seq=seq,
            detail=f"{CLASS_NAMES[cls]}: {missing} frame(s) missing"))

    def regression(self, sid: int, cls: int, market: str | None, last: int, seq: int, time_ns: int) -> None:
        """``seq`` < ``last`` on ``sid``: report it; the session reconnects (see the module docstring)."""
        self.reconnect = f"seq regression on sid {sid}: {last} -> {seq}"
        detail = (f"{CLASS_NAMES[cls]} seq regression {last} -> {seq}: the sid's frames are dropped "
                  f"until the session reconnects")
        # every book of a book sid is affected; on other sids, any market may be
        markets = []
        if cls == C_BOOK:
            markets = list(self.known.get(sid, ()))
            if market is not None and market not in markets:
                markets.append(market)
        self.events += [StatusEvent("gap", self.conn, time_ns, market=m, sid=sid, last_seq=last,
                                    received_seq=seq, detail=detail) for m in markets or [None]]

    def take(self) -> tuple[list[StatusEvent], list[tuple[int, tuple[str, ...]]], list[int]]:
        """The events, snapshot requests and resynced sids since the last call."""
        out = (self.events, self.snapshot_requests, self.resynced_sids)
        self.events, self.snapshot_requests, self.resynced_sids = [], [], []
        return out


def _market(batch, i: int) -> str | None:
    key = batch.key(i)
    return key.decode("utf-8", "replace") if key is not None else None


class _Sid:
    __slots__ = ("last", "behind", "cls", "invalid")

    def __init__(self, cls: int):
        self.last = 0
        self.behind = 0     # the seq of an old frame (< last) just dropped; 0: the last frame was accepted
        self.cls = cls
        self.invalid = False


class Sequencer:
    """Per-connection sequence state (call ``reset(conn)`` on every new connection)."""

    def __init__(self, conn: str = "", *, strict_start: bool = True):
        self.strict_start = strict_start   # a sid's first seq must be 1 (live); False for mid-stream files
        self.tracker = ResyncTracker(conn)
        self.reset(conn)

    def reset(self, conn: str) -> None:
        self.conn = conn
        self.tracker.reset(conn)
        self._sids: dict[int, _Sid] = {}
        self.controls: list[int] = []
        self.duplicates = 0
        self.gaps = 0
        self.suppressed = 0

    @property
    def resyncs(self) -> int:
        return self.tracker.resyncs

    def process(self, batch) -> int:
        """Check every sequenced frame of ``batch`` and flag it.

        Returns how many events, snapshot requests and resynced sids it added for ``take()`` (0 on the
        common path). The indices of control frames are left in ``self.controls`` for the protocol core.
        """
        tracker = self.tracker
        self.controls = []
        n_before = len(tracker.events) + len(tracker.snapshot_requests) + len(tracker.resynced_sids)
        time_ns = 0
        for i in range(len(batch)):
            outcome = batch.outcome(i)
            kind = batch.kind(i)
            if outcome == OUT_CONTROL:
                self.controls.append(i)
                if kind in (K_OK, K_UNSUBSCRIBED):
                    sid, seq = batch.sid(i), batch.seq(i)
                    st = self._sids.get(sid) if sid is not None else None
                    if st is not None and seq is not None and seq == st.last + 1:
                        st.last = seq   # only when contiguous: whether acks take a number is undocumented
                continue
            sid, seq = batch.sid(i), batch.seq(i)
            if sid is None or seq is None:
                continue
            st = self._sids.get(sid)
            if st is None:
                st = self._sids[sid] = _Sid(class_of(kind))
            elif st.cls == C_UNKNOWN:
                st.cls = class_of(kind)
            last = st.last
            if last and seq <= last:
                if st.behind and last != REGRESSED:
                    self.gaps += 1
                    tracker.regression(sid, st.cls, _market(batch, i), last, st.behind,
                                       time_ns or batch.recv_ts or time.time_ns())
                    st.last = REGRESSED
                elif seq < last:
                    st.behind = seq
                batch.set_flag(i, F_DUPLICATE)
                self.duplicates += 1
                continue
            st.behind = 0
            st.last = seq
            if not time_ns:
                time_ns = batch.recv_ts or time.time_ns()
            gap = seq != last + 1 and (last or self.strict_start)
            # an unusable book frame leaves the book as wrong as a lost one
            if gap or (outcome == OUT_INVALID and st.cls == C_BOOK):
                self.gaps += 1
                batch.set_flag(i, F_GAP)
                market = _market(batch, i)
                if st.cls == C_BOOK:
                    why = f"seq gap {last} -> {seq}" if gap else f"frame {seq} unusable ({batch.reason(i)})"
                    tracker.book_gap(sid, market, last, seq, time_ns, why)
                    st.invalid = True
                else:
                    tracker.other_gap(sid, st.cls, market, last, seq, time_ns)
            if st.cls != C_BOOK or outcome == OUT_INVALID:
                continue
            if kind == K_BOOK_SNAPSHOT:
                if tracker.snapshot(sid, _market(batch, i), seq, time_ns):
                    st.invalid = False
            elif st.invalid and kind == K_BOOK_DELTA and tracker.suppress(sid, _market(batch, i)):
                batch.set_flag(i, F_SUPPRESSED)
                self.suppressed += 1
        return len(tracker.events) + len(tracker.snapshot_requests) + len(tracker.resynced_sids) - n_before

    def take(self) -> tuple[list[StatusEvent], list[tuple[int, tuple[str, ...]]], list[int]]:
        """``(events, snapshot_requests, resynced_sids)`` produced since the last call."""
        return self.tracker.take()

    def last_seq(self, sid: int) -> int | None:
        """The last seq received on ``sid``; None before any, and for a regressed sid (its marker is no seq)."""
        st = self._sids.get(sid)
        return st.last if st is not None and st.last and st.last != REGRESSED else None

    def invalid_sids(self) -> list[int]:
        return [sid for sid, st in self._sids.items() if st.invalid]

    def stats(self) -> dict:
        return {"duplicates": self.duplicates, "gaps": self.gaps, "suppressed": self.suppressed,
                "resyncs": self.resyncs}
