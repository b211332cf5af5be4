"""Value rules of docs/schema-v1.md for the pure-Python normalizer: decimals, integers, cents, times,
tickers and strings. Each converter takes a present JSON value (exact numbers as `int` or
`strict_json.Number`) and returns the JSON text of the output value, or raises `RuleBroken(code)`.

Reason codes live here with the rules that raise them; `_normalize_py` re-exports them.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring as _jstr

from ssmd_fast.strict_json import Number as _Num

# invalid reason codes, in the schema's precedence order (mirrors _normalize.pxd)
R_NONE, R_SIZE, R_UTF8, R_JSON, R_DEPTH, R_DUPLICATE_KEY = 0, 1, 2, 3, 4, 5
R_SHAPE, R_MISSING, R_TYPE, R_RANGE, R_TICKER, R_COUNT = 6, 7, 8, 9, 10, 11

MAX_DIGITS = 40
I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1


class RuleBroken(Exception):
    """A value breaks a rule; ``code`` is its R_* reason code."""

    __slots__ = ("code",)

    def __init__(self, code: int):
        self.code = code



_DEC_STR = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?\Z")
_NUM_TEXT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?\Z")
_TICKER = re.compile(r"[\x21-\x29\x2b-\x3d\x3f-\x7e]{1,1024}\Z")
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z")
_CENTS = ["0"] + [f"0.{c:02d}".rstrip("0") for c in range(1, 100)] + ["1"]
_HUGE_EXP = 10 ** 30  # beyond any exponent that can matter; stands in for exponents of 31+ digits


def _num_parts(s: str) -> tuple[bool, str, int]:
    """(negative, significant digits without leading/trailing zeros, exponent) of a JSON number."""
    neg, ip, fp, esign, edigits = _NUM_TEXT.match(s).groups()
    digits = ip + fp if fp else ip
    exp = -len(fp) if fp else 0
    sig = digits.lstrip("0")
    if not sig:
        return False, "", 0
    trimmed = sig.rstrip("0")
    exp += len(sig) - len(trimmed)
    if edigits:
        edigits = edigits.lstrip("0")
        e = _HUGE_EXP if len(edigits) > 30 else int(edigits) if edigits else 0
        exp += -e if esign == "-" else e
    return neg == "-", trimmed, exp


def _parts_digits(sig: str, exp: int) -> int:
    """How many digits the canonical form of sig * 10**exp has."""
    if not sig:
        return 1
    if exp >= 0:
        return len(sig) + exp
    return len(sig) if len(sig) + exp > 0 else 1 - exp


def _parts_text(neg: bool, sig: str, exp: int) -> str:
    if not sig:
        return "0"
    if exp >= 0:
        s = sig + "0" * exp
    else:
        p = len(sig) + exp
        s = sig[:p] + "." + sig[p:] if p > 0 else "0." + "0" * -p + sig
    return "-" + s if neg else s


def _dec_text(v: str) -> str:
    m = _DEC_STR.match(v)
    if m is None:
        raise RuleBroken(R_RANGE)
    neg, ip, fp = m.groups()
    ip = ip.lstrip("0") or "0"
    if fp:
        fp = fp.rstrip("0")
    if fp:
        if len(ip) + len(fp) > MAX_DIGITS:
            raise RuleBroken(R_RANGE)
        c = ip + "." + fp
    elif len(ip) > MAX_DIGITS:
        raise RuleBroken(R_RANGE)
    else:
        c = ip
    return "-" + c if neg and c != "0" else c


_DEC_CACHE: dict[str, str] = {}  # prices and sizes repeat a lot on the wire


def _dec(v) -> str:
    """Canonical text of a decimal source (a decimal string, or a JSON number taken exactly)."""
    t = type(v)
    if t is str:
        c = _DEC_CACHE.get(v)
        if c is None:
            c = _dec_text(v)
            if len(_DEC_CACHE) >= 4096:
                _DEC_CACHE.clear()
            _DEC_CACHE[v] = c
        return c
    if t is int:
        c = str(v)
        if len(c) - (v < 0) > MAX_DIGITS:
            raise RuleBroken(R_RANGE)
        return c
    if t is _Num:
        neg, sig, exp = _num_parts(v)
        if _parts_digits(sig, exp) > MAX_DIGITS:
            raise RuleBroken(R_RANGE)
        return _parts_text(neg, sig, exp)
    raise RuleBroken(R_TYPE)


def int_value(v) -> int:
    """Integer rule: a JSON number with an exact integer value in int64."""
    t = type(v)
    if t is int:
        i = v
    elif t is _Num:
        neg, sig, exp = _num_parts(v)
        if not sig:
            return 0
        if exp < 0:
            raise RuleBroken(R_TYPE)
        if len(sig) + exp > 19:
            raise RuleBroken(R_RANGE)
        i = int(sig) * 10 ** exp
        if neg:
            i = -i
    else:
        raise RuleBroken(R_TYPE)
    if i < I64_MIN or i > I64_MAX:
        raise RuleBroken(R_RANGE)
    return i


def price(v) -> str:
    c = _dec(v)
    if c[0] == "-" or (c[0] != "0" and c != "1"):
        raise RuleBroken(R_RANGE)
    return c


def cents(v) -> str:
    i = int_value(v)
    if i < 0 or i > 100:
        raise RuleBroken(R_RANGE)
    return _CENTS[i]


def qty(v) -> str:
    return _dec(v)


def qty_pos(v) -> str:
    c = _dec(v)
    if c[0] == "-" or c == "0":
        raise RuleBroken(R_RANGE)
    return c


def qty_nonneg(v) -> str:
    c = _dec(v)
    if c[0] == "-":
        raise RuleBroken(R_RANGE)
    return c


def integer(v) -> str:
    return str(int_value(v))


def count_pos(v) -> str:
    i = int_value(v)
    if i <= 0:
        raise RuleBroken(R_RANGE)
    return str(i)


def count_nonneg(v) -> str:
    i = int_value(v)
    if i < 0:
        raise RuleBroken(R_RANGE)
    return str(i)


def time_s(v) -> str:
    return str(int_value(v) * 1_000_000_000)


def time_ms(v) -> str:
    return str(int_value(v) * 1_000_000)


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def time_rfc(v) -> str:
    if type(v) is not str:
        raise RuleBroken(R_TYPE)
    m = _RFC3339.match(v)
    if m is None:
        raise RuleBroken(R_RANGE)
    y, mo, d, h, mi, s, frac, osign, oh, om = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    if not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59:
        raise RuleBroken(R_RANGE)
    if not 1 <= d <= (29 if mo == 2 and _is_leap(y) else _MONTH_DAYS[mo]):
        raise RuleBroken(R_RANGE)
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    if osign is not None:
        oh, om = int(oh), int(om)
        if oh > 23 or om > 59:
            raise RuleBroken(R_RANGE)
        secs -= (oh * 3600 + om * 60) if osign == "+" else -(oh * 3600 + om * 60)
    ns = secs * 1_000_000_000
    if frac:
        ns += int(frac.ljust(9, "0"))
    return str(ns)


def time_s_or_rfc(v) -> str:
    return time_rfc(v) if type(v) is str else time_s(v)


def ticker(v) -> str:
    if type(v) is not str:
        raise RuleBroken(R_TYPE)
    if _TICKER.match(v) is None:
        raise RuleBroken(R_TICKER)
    return _jstr(v)


def string(v) -> str:
    if type(v) is not str:
        raise RuleBroken(R_TYPE)
    return _jstr(v)


def nonempty_string(v) -> str:
    if type(v) is not str:
        raise RuleBroken(R_TYPE)
    if not v:
        raise RuleBroken(R_RANGE)
    return _jstr(v)


def series_ticker(v) -> str:
    return '""' if v == "" else ticker(v)


def yes_no(v) -> str:
    if type(v) is not str:
        raise RuleBroken(R_TYPE)
    if v == "yes":
        return '"yes"'
    if v == "no":
        return '"no"'
    raise RuleBroken(R_RANGE)


def boolean(v) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    raise RuleBroken(R_TYPE)


def settlement(v) -> str:
    """A string is dollars; an integer-valued JSON number is legacy cents; another number is dollars."""
    t = type(v)
    if t is int or (t is _Num and _num_parts(v)[2] >= 0):
        return cents(v)
    if t is str or t is _Num:
        return price(v)
    raise RuleBroken(R_TYPE)
