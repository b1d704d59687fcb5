"""The first run after an install: compiling the reference's kernels in parallel, and saying so.

numba compiles each kernel on first use and caches the machine code on disk (see
:mod:`gn_spec.reference.jit`).  A cold cache costs 17 s of compiling on an idle 2-core machine, which the
first ``gn-spec check`` would otherwise spend silently in its first properties.  :func:`start` finds the
serial builds with no cache entry (the ones every run needs; parallel builds serve only inputs of 2**16
elements or more and compile when first met) and compiles them in two background processes, one per share
of the work, while the checker starts its worker; :meth:`Background.wait` waits for them, after which every
process loads the kernels from the cache.

    python -m gn_spec.reference.compile_cache KERNEL ...   # compile the named serial builds (what start runs)
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, TextIO

#: The block kernels, split in two shares of about equal compile time (measured 2026-12-03 on an idle 2-core
#: machine: forward_fast 5.1 s, double_backward_kernel 5.7 s, backward_fast 3.4 s, precise forward 1.7 s,
#: precise backward 1.4 s; a quick run of ``gn-spec check torch`` needs all five, benchmarks/first_run.py).
SHARES = (
    ("fast.forward_fast", "precise.forward_kernel", "precise.backward_kernel"),
    ("precise.double_backward_kernel", "fast.backward_fast"),
)


def _kernel(name: str) -> Any:
    from gn_spec.reference import fast, precise

    module, _, attribute = name.partition(".")
    return getattr({"fast": fast, "precise": precise}[module], attribute)


def cold() -> list[str]:
    """The kernels whose serial build has no entry in numba's on-disk cache."""
    out = []
    for share in SHARES:
        for name in share:
            try:
                cached = _kernel(name).serial._cache._cache_file._load_index()
            except Exception:  # noqa: BLE001 - numba's internals moved: assume warm, compile on first use
                cached = True
            if not cached:
                out.append(name)
    return out


class Background:
    """Compile processes started by :func:`start`."""

    def __init__(
        self, procs: list[subprocess.Popen[bytes]], names: list[str], progress: TextIO | None
    ) -> None:
        self.procs, self.names, self.progress = procs, names, progress
        self.started = time.perf_counter()

    def wait(self) -> None:
        for proc in self.procs:
            proc.wait()
        if self.progress is not None:
            self.progress.write(
                f"compiled the reference's kernels in {time.perf_counter() - self.started:.0f} s "
                "(cached: later runs load them in under a second)\n"
            )
            self.progress.flush()


def start(progress: TextIO | None) -> Background | None:
    """Start compiling the cold kernels in the background (None when every kernel is cached)."""
    names = cold()
    if not names:
        return None
    if progress is not None:
        progress.write(
            f"compiling gn-spec's reference kernels ({len(names)} of them; the first run after an install "
            "does this once, in two processes, and caches them on disk)...\n"
        )
        progress.flush()
    procs = []
    for share in SHARES:
        todo = [n for n in share if n in names]
        if todo:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gn_spec.reference.compile_cache", *todo],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return Background(procs, names, progress)


def compile_named(names: list[str]) -> None:
    """Compile the serial build of each named kernel (on a tiny problem), which writes it to the cache."""
    import numpy as np

    from gn_spec.reference import _compile

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 3)), np.ones(2)
    for name in names:
        kernels = _kernel(name)
        _compile(kernels.serial, kernels, x, w)


if __name__ == "__main__":
    compile_named(sys.argv[1:])
