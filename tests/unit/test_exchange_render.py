"""The exchange's batch renderer: compiled and pure-Python twins give the same bytes, seqs and counts,
and the frames parse back to the envelopes a per-frame reference builds."""

from __future__ import annotations

import json
import os
import random

import pytest

from ssmd_fast.kalshi import _exchange_render_py as twin
from ssmd_fast.kalshi import exchange_render

pytestmark = pytest.mark.twin

try:
    from ssmd_fast.kalshi import _exchange_render as compiled
except ImportError:
    compiled = None

IMPLS = [twin] + ([compiled] if compiled is not None else [])


def test_the_facade_loads_the_compiled_module():
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on"):
        assert exchange_render.IMPLEMENTATION == "python"
    else:
        assert exchange_render.IMPLEMENTATION == "cython", "build it: make build"


def reference(ids, bodies, a, b, pre_tab, slot_tab, seqs):
    """One frame at a time, the obvious way."""
    seqs = list(seqs)
    frames, payloads = [], []
    for kid, body in zip(ids[a:b], bodies[a:b], strict=True):
        pre = pre_tab[kid]
        if pre is None:
            continue
        slot = slot_tab[kid]
        if slot >= 0:
            seqs[slot] += 1
            payload = pre + b',"seq":%d,"msg":' % seqs[slot] + body + b"}"
        else:
            payload = pre + b',"msg":' + body + b"}"
        frames.append(twin.ws_header(len(payload)) + payload)
        payloads.append(payload + b"\n")
    return b"".join(frames), b"".join(payloads), seqs, len(payloads)


def random_batch(rng, n, nk=9, ns=3):
    pre_tab = [None if rng.random() < 0.2 else b'{"type":"t%d","sid":%d' % (k, rng.randrange(1, 300))
               for k in range(nk)]
    slot_tab = [rng.randrange(-1, ns) for _ in range(nk)]
    sizes = (1, 50, 113, 120, 300, 70000)      # headers of 2, 4 and 10 bytes, around the 126 boundary
    bodies = [b'{"v":"' + b"x" * rng.choice(sizes) + b'"}' for _ in range(n)]
    ids = [rng.randrange(nk) for _ in range(n)]
    seqs = [rng.choice((0, 5, 95, 998, 99_990, 10**12 - 3)) for _ in range(ns)]   # digit counts cross
    return ids, bodies, pre_tab, slot_tab, seqs


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.IMPLEMENTATION)
@pytest.mark.parametrize("seed", range(12))
def test_render_matches_the_reference(impl, seed):
    rng = random.Random(seed)
    ids, bodies, pre_tab, slot_tab, seqs = random_batch(rng, 400)
    a, b = rng.randrange(0, 50), rng.randrange(300, 401)
    want_frames, want_payloads, want_seqs, want_n = reference(ids, bodies, a, b, pre_tab, slot_tab, seqs)
    for record in (False, True):
        s, counts = list(seqs), [0] * len(pre_tab)
        frames, payloads, n = impl.render(ids, bodies, [len(x) for x in bodies], a, b, pre_tab, slot_tab, s,
                                          counts, record)
        assert frames == want_frames and n == want_n and s == want_seqs
        assert payloads == (want_payloads if record else None)
        assert counts == [sum(1 for k in ids[a:b] if k == kid) if pre_tab[kid] is not None else 0
                          for kid in range(len(pre_tab))]


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.IMPLEMENTATION)
def test_render_frames_are_valid_envelopes(impl):
    pre_tab = [b'{"type":"ticker","sid":1', b'{"type":"trade","sid":2', None]
    bodies = [b'{"market_ticker":"KXBTCD-26FEB1417-T69999.99","n":%d}' % i for i in range(30)]
    ids = [i % 3 for i in range(30)]
    seqs = [8]
    frames, _, n = impl.render(ids, bodies, [len(x) for x in bodies], 0, 30, pre_tab, [-1, 0, -1], seqs,
                               [0, 0, 0], False)
    assert n == 20 and seqs == [18]
    out, i = [], 0
    while i < len(frames):
        assert frames[i] == 0x81
        size = frames[i + 1]
        out.append(json.loads(frames[i + 2:i + 2 + size]))
        i += 2 + size
    assert out[0] == {"type": "ticker", "sid": 1, "msg": {"market_ticker": "KXBTCD-26FEB1417-T69999.99", "n": 0}}
    assert out[1]["seq"] == 9 and out[-1] == {"type": "trade", "sid": 2, "seq": 18, "msg": json.loads(bodies[28])}


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.IMPLEMENTATION)
def test_render_empty_and_bad_input(impl):
    assert impl.render([0, 0], [b"{}", b"{}"], [2, 2], 0, 2, [None], [-1], [], [0], True)[2] == 0
    if impl is compiled:
        with pytest.raises(IndexError):
            impl.render([5], [b"{}"], [2], 0, 1, [b"x"], [-1], [], [0], False)
        for wrong in (1, 3):      # lengths that disagree with the bodies never over- or under-run the buffer
            with pytest.raises(ValueError):
                impl.render([0], [b"{}"], [wrong], 0, 1, [b"x"], [-1], [], [0], False)
