"""Stamping and framing a batch of the exchange's timeline for one connection: the pure-Python twin
of ``_exchange_render.pyx``.

``render(ids, bodies, blens, a, b, pre_tab, slot_tab, seqs, counts, record)`` takes events
``a..b`` of a chunk (route key ids, ``msg`` bodies and their lengths) and, for every event whose
key is routed (``pre_tab[kid]`` is the envelope prefix ``{"type":"trade","sid":2``, else None),
writes one unmasked WebSocket text frame ``PREFIX[,"seq":N],"msg":BODY}``. ``slot_tab[kid]`` is
the index in ``seqs`` of the key's sid counter (``-1``: no seq, ticker); ``seqs`` holds each
counter's last seq and is advanced in place; ``counts[kid]`` counts the frames per key.
Returns ``(frames, payloads, n)``: the framed bytes, the payloads each followed by ``\\n`` when
``record`` (else None), and the number of frames.

The twin works with C-level passes (``map``/``compress``) instead of a per-frame Python loop.
"""

from __future__ import annotations

import struct
from collections import Counter
from itertools import compress, repeat
from operator import getitem

IMPLEMENTATION = "python"

MSG_PART = b',"msg":'
SEQ_MSG = b',"seq":%d,"msg":'
_SEQ_TABLE: list[bytes] = [b""]        # ',"seq":N,"msg":' for every N below its length, shared
_SEQ_TABLE_CAP = 1 << 20


def ws_header(n: int, opcode: int = 0x1) -> bytes:
    """The header of an unmasked final frame with an ``n``-byte payload."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127, n)


def _seq_pieces(lo: int, hi: int) -> list[bytes]:
    if hi <= _SEQ_TABLE_CAP:
        if hi > len(_SEQ_TABLE):
            top = min(_SEQ_TABLE_CAP, max(hi, len(_SEQ_TABLE) + 65536))
            _SEQ_TABLE.extend(map(SEQ_MSG.__mod__, range(len(_SEQ_TABLE), top)))
        return _SEQ_TABLE[lo:hi]
    return list(map(SEQ_MSG.__mod__, range(lo, hi)))


class _HeadPre(dict):
    """blen -> ``}`` + header + prefix for a frame of a key whose seq has a given digit count
    (the ``}`` closes the previous frame)."""

    __slots__ = ("pre", "extra")

    def __init__(self, pre: bytes, seq_len: int):
        super().__init__()
        self.pre = pre
        self.extra = len(pre) + seq_len + 1

    def __missing__(self, blen: int) -> bytes:
        v = self[blen] = b"}" + ws_header(self.extra + blen) + self.pre
        return v


_HEADPRE: dict[tuple[bytes, int], _HeadPre] = {}


def _headpre(pre: bytes, seq_len: int) -> _HeadPre:
    hp = _HEADPRE.get((pre, seq_len))
    if hp is None:
        if len(_HEADPRE) > 4096:
            _HEADPRE.clear()
        hp = _HEADPRE[(pre, seq_len)] = _HeadPre(pre, seq_len)
    return hp


def render(ids: list, bodies: list, blens: list, a: int, b: int, pre_tab: list, slot_tab: list,
           seqs: list, counts: list, record: bool) -> tuple[bytes, bytes | None, int]:
    ids = ids[a:b]
    sel = list(map(pre_tab.__getitem__, ids))
    kids = list(compress(ids, sel))
    n = len(kids)
    if not n:
        return b"", (b"" if record else None), 0
    per_key = Counter(kids)
    per_slot: dict[int, int] = {}
    for kid, k in per_key.items():
        counts[kid] += k
        slot = slot_tab[kid]
        if slot >= 0:
            per_slot[slot] = per_slot.get(slot, 0) + k
    its, width, same_width = {}, {}, True
    for slot, k in per_slot.items():
        lo = seqs[slot] + 1
        its[slot] = iter(_seq_pieces(lo, lo + k))
        width[slot] = len(str(lo))
        same_width = same_width and len(str(lo + k - 1)) == width[slot]
        seqs[slot] = lo + k - 1
    ticker = repeat(MSG_PART)
    it_tab = [its.get(slot) if slot >= 0 else ticker for slot in slot_tab]
    pieces = list(map(next, map(it_tab.__getitem__, kids)))
    kept_bodies = list(compress(bodies[a:b], sel))
    if same_width:
        hp_tab = [None if pre is None or (slot >= 0 and slot not in width) else      # unused in this batch
                  _headpre(pre, len(SEQ_MSG % (10 ** (width[slot] - 1))) if slot >= 0 else len(MSG_PART))
                  for pre, slot in zip(pre_tab, slot_tab, strict=True)]
        parts = [None] * (3 * n + 1)
        parts[0:3 * n:3] = map(getitem, map(hp_tab.__getitem__, kids), compress(blens[a:b], sel))
        parts[0] = parts[0][1:]
        parts[1::3] = pieces
        parts[2:3 * n:3] = kept_bodies
        parts[-1] = b"}"
        frames = b"".join(parts)
        payloads = None
    else:           # a seq crosses a power of ten in this batch: plain formatting (rare)
        payloads = list(map(b"%s%s%s}".__mod__, zip(map(pre_tab.__getitem__, kids), pieces, kept_bodies,
                                                     strict=True)))
        frames = b"".join(ws_header(len(p)) + p for p in payloads)
    if not record:
        return frames, None, n
    if payloads is None:
        payloads = map(b"%s%s%s}\n".__mod__, zip(map(pre_tab.__getitem__, kids), pieces, kept_bodies, strict=True))
        return frames, b"".join(payloads), n
    return frames, b"".join(p + b"\n" for p in payloads), n
