"""Build the Cython extensions of ssmd-fast.

Every ``.pyx`` under ``ssmd_fast/`` is an extension with one directive set, declared here only.
Build flags come from environment variables because they survive ``pip install``:

- ``SSMD_FAST_NO_EXTENSIONS=1``: build nothing; the pure-Python twins are used at run time.
- ``SSMD_FAST_ANNOTATE=1``: write Cython's annotated HTML next to each ``.pyx``.
- ``SSMD_FAST_DEBUG=1``: bounds/wraparound checks on, ``-O0 -g``, no NDEBUG (the CI debug build).
- ``SSMD_FAST_ONLY=name[,name]``: build only the modules whose dotted name contains one of the names
  (a quick rebuild of one module while another is being edited).
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


HERE = Path(__file__).parent
NO_EXTENSIONS = _flag("SSMD_FAST_NO_EXTENSIONS")
ANNOTATE = _flag("SSMD_FAST_ANNOTATE")
DEBUG = _flag("SSMD_FAST_DEBUG")
ONLY = [n for n in os.environ.get("SSMD_FAST_ONLY", "").split(",") if n.strip()]

# One directive set for every module. Release builds drop the per-access checks; the debug build
# turns them back on so the test suite catches out-of-bounds access in the compiled code.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "freethreading_compatible": False,
}


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    cflags = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-DNDEBUG"]
    cflags += ["-Wno-unused-function", "-Wno-unreachable-code"]
    exts = []
    for pyx in sorted((HERE / "ssmd_fast").rglob("*.pyx")):
        rel = pyx.relative_to(HERE).with_suffix("")
        if ONLY and not any(n.strip() in ".".join(rel.parts) for n in ONLY):
            continue
        exts.append(
            Extension(
                ".".join(rel.parts),
                [str(pyx.relative_to(HERE))],
                extra_compile_args=cflags,
                define_macros=[("CYTHON_TRACE", "0")],
            )
        )
    return cythonize(
        exts,
        compiler_directives=DIRECTIVES,
        annotate=ANNOTATE,
        nthreads=0 if sys.platform == "win32" else min(2, os.cpu_count() or 1),
    )


setup(ext_modules=extensions())
