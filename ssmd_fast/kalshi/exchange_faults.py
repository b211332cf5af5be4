"""Faults of the local exchange: the spec (``drop-after=N,gap-every=N,...``), per-connection counters
and the corrupted frames it injects. Counters start when a spec is applied, per connection, and
count the stream's data frames (snapshots sent on subscribe or get_snapshot are not counted)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# spec name -> (attribute, meaning)
FAULTS = {
    "drop-after": ("drop_after", "close the TCP connection abruptly after N data frames (no close frame)"),
    "freeze-after": ("freeze_after", "after N data frames stop all output, pings too; socket stays open"),
    "gap-every": ("gap_every", "skip every Nth orderbook_delta (its seq is used, the frame is not sent)"),
    "duplicate-every": ("duplicate_every", "send every Nth sequenced frame twice (same seq)"),
    "reject-handshake": ("reject_handshake", "answer the next K handshakes with HTTP 403"),
    "error25-after": ("error25_after", "after N data frames: error 25 on that frame's subscription, which ends"),
    "malformed-every": ("malformed_every", "after every Nth data frame a corrupted text frame "
                                           "(invalid JSON, bad UTF-8, wrong types; rotating)"),
    "binary-every": ("binary_every", "after every Nth data frame a binary frame"),
    "oversize-after": ("oversize_after", "after N data frames one text frame over 1 MiB"),
    "rst-after": ("rst_after", "after N data frames abort the connection with a TCP RST"),
    "close-code": ("close_code", "with drop-after: send a close frame with this code before dropping"),
}
ONCE = ("oversize", "error25", "freeze", "drop", "rst")     # threshold faults, checked in this order
OVERSIZE_BYTES = (1 << 20) + 1024


@dataclass(frozen=True)
class FaultSpec:
    """Active faults; 0 = off."""

    drop_after: int = 0
    freeze_after: int = 0
    gap_every: int = 0
    duplicate_every: int = 0
    reject_handshake: int = 0
    error25_after: int = 0
    malformed_every: int = 0
    binary_every: int = 0
    oversize_after: int = 0
    rst_after: int = 0
    close_code: int = 0

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """``"gap-every=50,drop-after=1000"``; empty or ``none`` = no faults. Raises ValueError."""
        values: dict[str, int] = {}
        text = (text or "").strip()
        if text.lower() in ("", "none", "off"):
            return cls()
        for part in text.split(","):
            name, eq, value = part.strip().partition("=")
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
            try:
                n = int(value)
            except ValueError:
                n = -1
            if not eq or n < 1:
                raise ValueError(f"fault {name} needs a positive integer: {part.strip()!r}")
            values[FAULTS[name][0]] = n
        code = values.get("close_code", 0)
        if code and not (1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)):
            raise ValueError(f"close-code {code} cannot be sent (use 1000-4999, not 1004-1006/1015)")
        if code and not values.get("drop_after"):
            raise ValueError("close-code needs drop-after")
        return cls(**values)

    def __str__(self) -> str:
        names = {attr: name for name, (attr, _) in FAULTS.items()}
        return ",".join(f"{names[f.name]}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name))

    @property
    def stream(self) -> bool:
        """Whether any fault acts on the data stream (everything but reject-handshake)."""
        return any(getattr(self, f.name) for f in fields(self) if f.name != "reject_handshake")

    def threshold(self, name: str) -> int:
        return getattr(self, f"{name}_after")


@dataclass
class FaultCounters:
    """One connection's progress through the active spec."""

    frames: int = 0          # data frames sent since the spec was applied
    book: int = 0            # orderbook_delta frames rendered (gap-every counts these)
    sequenced: int = 0       # sequenced frames sent (duplicate-every)
    malformed: int = 0       # corrupted frames sent (picks the next kind)
    done: set[str] = field(default_factory=set)

    def due(self, spec: FaultSpec) -> str | None:
        """The first threshold fault whose N has been reached and that has not fired yet."""
        for name in ONCE:
            n = spec.threshold(name)
            if n and self.frames >= n and name not in self.done:
                self.done.add(name)
                return name
        return None


def malformed_payload(k: int, sid: int) -> bytes:
    """The k-th corrupted frame: invalid JSON, invalid UTF-8, wrong value types (rotating). None of
    them carries a seq, so a client's sequence state is not touched."""
    kind = k % 3
    if kind == 0:
        return b'{"type":"ticker","sid":%d,"msg":{"market_ticker":"KXBTCD-26FEB1417-T69999.99","price_dol' % sid
    if kind == 1:
        return b'{"type":"ticker","sid":%d,"msg":{"market_ticker":"KX\xff\xfeBAD","price_dollars":"0.5000"}}' % sid
    return b'{"type":["ticker"],"sid":"%d","msg":"not an object"}' % sid


def oversize_payload() -> bytes:
    """A valid JSON text frame of an unknown type, just over 1 MiB."""
    head, tail = b'{"type":"oversize","msg":{"pad":"', b'"}}'
    return head + b"x" * (OVERSIZE_BYTES - len(head) - len(tail)) + tail


def describe() -> str:
    arg = {"reject-handshake": "K", "close-code": "C"}
    return "\n".join(f"  {name + '=' + arg.get(name, 'N'):<19} {text}" for name, (_, text) in FAULTS.items())
