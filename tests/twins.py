"""The two implementations of a compiled module, for twin tests.

A test module that compares a Cython module with its pure-Python twin declares its ``impl`` fixture
with ``twin_fixture(python, compiled)``; a test that compares the two directly calls ``pair`` twice.
The compiled pass runs both; the twin pass (``SSMD_FAST_NO_EXTENSIONS=1``) deselects the compiled
instances (``tests/conftest.py``) and skips the direct comparisons, which ran in the compiled pass.
In the compiled pass a compiled module that does not import is a failure (``make build``), never a
skip: a broken build must not pass as "nothing to compare".
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IMPLEMENTATIONS = ("cython", "python")


def twin_pass() -> bool:
    return os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")


def pair(name: str, python: str, compiled: str) -> tuple[ModuleType, ModuleType]:
    """(normalizer module, module) of implementation ``name``: the compiled modules pair up, as do the twins."""
    from ssmd_fast import normalize

    if name == "python":
        return normalize.load_implementation("python"), importlib.import_module(python)
    if twin_pass():
        pytest.skip("SSMD_FAST_NO_EXTENSIONS=1: the compiled instance ran in the compiled pass")
    return normalize.load_implementation("cython"), importlib.import_module(compiled)


def twin_fixture(python: str, compiled: str):
    """An ``impl`` fixture over both implementations of one module (assign it to ``impl``)."""

    @pytest.fixture(params=IMPLEMENTATIONS)
    def impl(request):
        return pair(request.param, python, compiled)

    return impl


def normalizer(name: str) -> ModuleType:
    """The normalizer module of implementation ``name`` (skipped for ``"cython"`` in the twin pass)."""
    from ssmd_fast.normalize import load_implementation

    if name == "cython" and twin_pass():
        pytest.skip("SSMD_FAST_NO_EXTENSIONS=1: the compiled instance ran in the compiled pass")
    return load_implementation(name)


def normalizer_fixture():
    """An ``impl`` fixture over both normalizers (assign it to ``impl``)."""

    @pytest.fixture(params=IMPLEMENTATIONS)
    def impl(request):
        return normalizer(request.param)

    return impl
