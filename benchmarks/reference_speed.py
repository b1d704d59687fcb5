"""Speed and memory of the reference, side by side with PyTorch and the naive numpy formula, in one run.

    python benchmarks/reference_speed.py [--repeats 15] [--threads 2]

Prints a markdown table of median times (forward + backward on a 16x64x56x56 float64 tensor, G = 8), the
ratios the goals are stated in, the reference's peak extra memory (tracemalloc) relative to the input's size,
and the per-call time on a tiny 2x4x3x3 input. Every contestant runs with the same thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

SHAPE, GROUPS = (16, 64, 56, 56), 8  # the large input: forward + backward timed on it


def naive_numpy(
    x: np.ndarray, g: int, w: np.ndarray, b: np.ndarray, eps: float, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CS231n-style two-pass formulas, forward then backward, in plain float64 numpy."""
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.ndim - 2)
    xg = x.reshape(n, g, -1)
    mu = xg.mean(-1, keepdims=True)
    var = xg.var(-1, keepdims=True)
    r = 1.0 / np.sqrt(var + eps)
    xhat = ((xg - mu) * r).reshape(x.shape)
    y = xhat * w.reshape(shape) + b.reshape(shape)
    axes = (0, *range(2, x.ndim))
    db = dy.sum(axes)
    dw = (dy * xhat).sum(axes)
    gy = (dy * w.reshape(shape)).reshape(n, g, -1)
    xh = xhat.reshape(n, g, -1)
    dx = r * (gy - gy.mean(-1, keepdims=True) - xh * (gy * xh).mean(-1, keepdims=True))
    return y, dx.reshape(x.shape), dw, db


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: The goals the reference's speed is measured against (the reference issue): upper limits of the ratios,
#: of the memory ratio and of the tiny forward's seconds per call, and how the table states them.
LIMITS = {"vs_torch": 3.0, "vs_naive": 1.0, "memory": 4.0, "tiny_forward": 100e-6}
GOALS = {"vs_torch": "<= 3x", "vs_naive": "<= 1x", "memory": "<= 4x", "tiny_forward": "<= 100 us"}


def measure(repeats: int = 15, threads: int = 2, tiny_repeats: int = 2000) -> dict[str, float]:
    """Time the reference, PyTorch and the naive numpy formula; return seconds, ratios and memory.

    Keys: ``ours``, ``torch``, ``naive`` (median seconds of forward + backward on the large input),
    ``vs_torch``, ``vs_naive`` (ratios), ``memory`` (peak extra bytes / input bytes), ``tiny_forward``,
    ``tiny_backward`` (median seconds per call on the tiny input), and the input's ``mib``.
    """
    import numba
    import torch

    import gn_spec

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE)
    dy = rng.standard_normal(SHAPE)
    w = rng.standard_normal(SHAPE[1])
    b = rng.standard_normal(SHAPE[1])
    groups, eps = GROUPS, 1e-5

    def ours() -> object:
        return gn_spec.group_norm(x, groups, w, b, eps), gn_spec.group_norm_backward(dy, x, groups, w, eps)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    dyt = torch.tensor(dy)

    def pytorch() -> object:
        y = torch.nn.functional.group_norm(xt, groups, wt, bt, eps)
        return torch.autograd.grad(y, (xt, wt, bt), dyt)

    t_ours = median_time(ours, repeats)
    t_torch = median_time(pytorch, repeats)
    t_naive = median_time(lambda: naive_numpy(x, groups, w, b, eps, dy), repeats)

    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    tiny = rng.standard_normal((2, 4, 3, 3))
    tiny_w, tiny_b = rng.standard_normal(4), rng.standard_normal(4)
    t_tiny = median_time(lambda: gn_spec.group_norm(tiny, 2, tiny_w, tiny_b), tiny_repeats)
    tiny_dy = rng.standard_normal(tiny.shape)
    t_tiny_b = median_time(lambda: gn_spec.group_norm_backward(tiny_dy, tiny, 2, tiny_w), tiny_repeats)
    return {"ours": t_ours, "torch": t_torch, "naive": t_naive, "vs_torch": t_ours / t_torch,
            "vs_naive": t_ours / t_naive, "memory": peak / x.nbytes, "tiny_forward": t_tiny,
            "tiny_backward": t_tiny_b, "mib": x.nbytes / 2**20}


def table(m: dict[str, float]) -> list[str]:
    """The markdown table (what, median, goal) of a ``measure`` result."""
    return [
        "| what | median | goal |",
        "|---|---|---|",
        f"| gn_spec forward+backward | {m['ours'] * 1e3:.1f} ms | |",
        f"| torch F.group_norm forward+backward (float64, CPU) | {m['torch'] * 1e3:.1f} ms | |",
        f"| naive numpy two-pass forward+backward | {m['naive'] * 1e3:.1f} ms | |",
        f"| gn_spec / torch | {m['vs_torch']:.2f}x | {GOALS['vs_torch']} |",
        f"| gn_spec / naive numpy | {m['vs_naive']:.2f}x | {GOALS['vs_naive']} |",
        f"| gn_spec peak extra memory (tracemalloc) / input size | {m['memory']:.2f}x | {GOALS['memory']} |",
        f"| gn_spec forward on 2x4x3x3 (per call) | {m['tiny_forward'] * 1e6:.0f} us "
        f"| {GOALS['tiny_forward']} |",
        f"| gn_spec backward on 2x4x3x3 (per call) | {m['tiny_backward'] * 1e6:.0f} us | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    m = measure(args.repeats, args.threads)
    print(f"threads: {args.threads} (numba, torch); numpy elementwise code is single-threaded")
    print(f"input: {SHAPE} float64, G = {GROUPS}, {m['mib']:.1f} MiB; medians of {args.repeats} runs\n")
    print("\n".join(table(m)))


if __name__ == "__main__":
    main()
