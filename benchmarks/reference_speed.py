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


def naive_numpy(x: np.ndarray, g: int, w: np.ndarray, b: np.ndarray, eps: float, dy: np.ndarray):  # type: ignore[no-untyped-def]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()

    import numba
    import torch

    import gn_spec

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    shape, groups, eps = (16, 64, 56, 56), 8, 1e-5
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    w = rng.standard_normal(shape[1])
    b = rng.standard_normal(shape[1])

    def ours() -> object:
        return gn_spec.group_norm(x, groups, w, b, eps), gn_spec.group_norm_backward(dy, x, groups, w, eps)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    dyt = torch.tensor(dy)

    def pytorch() -> object:
        y = torch.nn.functional.group_norm(xt, groups, wt, bt, eps)
        return torch.autograd.grad(y, (xt, wt, bt), dyt)

    t_ours = median_time(ours, args.repeats)
    t_torch = median_time(pytorch, args.repeats)
    t_naive = median_time(lambda: naive_numpy(x, groups, w, b, eps, dy), args.repeats)

    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    tiny = rng.standard_normal((2, 4, 3, 3))
    tiny_w, tiny_b = rng.standard_normal(4), rng.standard_normal(4)
    t_tiny = median_time(lambda: gn_spec.group_norm(tiny, 2, tiny_w, tiny_b), 2000)
    tiny_dy = rng.standard_normal(tiny.shape)
    t_tiny_b = median_time(lambda: gn_spec.group_norm_backward(tiny_dy, tiny, 2, tiny_w), 2000)

    print(f"threads: {args.threads} (numba, torch); numpy elementwise code is single-threaded")
    print(
        f"input: {shape} float64, G = {groups}, {x.nbytes / 2**20:.1f} MiB; medians of {args.repeats} runs\n"
    )
    print("| what | median | goal |")
    print("|---|---|---|")
    print(f"| gn_spec forward+backward | {t_ours * 1e3:.1f} ms | |")
    print(f"| torch F.group_norm forward+backward (float64, CPU) | {t_torch * 1e3:.1f} ms | |")
    print(f"| naive numpy two-pass forward+backward | {t_naive * 1e3:.1f} ms | |")
    print(f"| gn_spec / torch | {t_ours / t_torch:.2f}x | <= 3x |")
    print(f"| gn_spec / naive numpy | {t_ours / t_naive:.2f}x | <= 1x |")
    print(f"| gn_spec peak extra memory (tracemalloc) / input size | {peak / x.nbytes:.2f}x | <= 4x |")
    print(f"| gn_spec forward on 2x4x3x3 (per call) | {t_tiny * 1e6:.0f} us | <= 100 us |")
    print(f"| gn_spec backward on 2x4x3x3 (per call) | {t_tiny_b * 1e6:.0f} us | |")


if __name__ == "__main__":
    main()
