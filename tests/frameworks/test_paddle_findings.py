"""paddle.nn.functional.group_norm (PaddlePaddle, eager mode, CPU) against exact arithmetic, no gn_spec code.

Paddle's CPU kernels (paddle/phi/kernels/cpu/group_norm_kernel.cc and group_norm_grad_kernel.cc) compute the
forward's variance in one pass, E[x^2] - E[x]^2, clamped at 0: where that cancels, the output becomes
(x - mean) / sqrt(eps) (the NaN of PaddlePaddle/Paddle#16654 is gone, the wrong values are not).  The backward
does not read x: it recovers x-hat from the output as (y - bias) / weight, and adds the mean term of
grad_input, -mean(weight * dy) / sigma, only when there is a weight.  So it is wrong on every input without a
weight, on a channel whose weight is 0, and where the bias is large against weight * x-hat.  The gradients'
exact values here are mpmath derivatives (mpmath.diff at 60 digits) of sum(dy * GN(x)), GN evaluated in
mpmath: no gradient formula is assumed.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_gn import exact_gn_rows, worst_relative_error
from exact_grads import exact_grads

paddle = pytest.importorskip("paddle")
F = pytest.importorskip("paddle.nn.functional")
mpmath = pytest.importorskip("mpmath")

EPS = 1e-5


def _forward(x: list[list[float]], dtype: str, eps: float = EPS) -> list[list[float]]:
    y = F.group_norm(paddle.to_tensor(np.array(x, dtype)), num_groups=1, epsilon=eps)
    return np.asarray(y.numpy(), np.float64).tolist()


def _paddle_grads(
    x: np.ndarray, dy: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None
) -> list[np.ndarray]:
    """paddle.grad of group_norm(x, 1 group) with cotangent dy: [grad_x, grad_weight?, grad_bias?]."""
    leaves = [paddle.to_tensor(x, stop_gradient=False)]
    w = None if weight is None else paddle.to_tensor(weight, stop_gradient=False)
    b = None if bias is None else paddle.to_tensor(bias, stop_gradient=False)
    leaves += [t for t in (w, b) if t is not None]
    y = F.group_norm(leaves[0], num_groups=1, epsilon=EPS, weight=w, bias=b)
    grads = paddle.grad([y], leaves, grad_outputs=[paddle.to_tensor(dy)])
    return [np.asarray(g.numpy(), np.float64) for g in grads]


def _exact_grads(x: np.ndarray, dy: np.ndarray, weight: np.ndarray | None) -> tuple[list[float], list[float]]:
    """d/dx (flattened) and d/dweight of sum(dy * GN(x)) in one group: exact_grads.py's mpmath derivatives."""
    gx, gw, _ = exact_grads(x, dy, 1, weight, EPS)
    return [float(v) for v in gx.reshape(-1)], [float(v) for v in gw]


def test_one_pass_variance_cancels_to_zero() -> None:
    """x = [[10000, 10001, 10002, 10003]] float32, and [[1e8, 1e8 + 1]] float64; G = 1, epsilon = 1e-5.

    Measured (paddlepaddle 3.3.1): [-474.34, -158.11, 158.11, 474.34] where the exact value is [-1.34164,
    -0.447213, 0.447213, 1.34164] (variance 1.25); float64: [-158.114, 158.114] where it is [-0.99998,
    0.99998] (variance 0.25). E[x^2] - E[x]^2 cancels every digit, the clamp at 0 leaves var = 0, and the
    output is (x - mean) / sqrt(1e-5). (The checker: forward_agreement, wrong values, outside both accuracy
    classes, first at shape (1, 2), |mean|/std ~ 1e2.)
    """
    for x, dtype in (([[10000.0, 10001.0, 10002.0, 10003.0]], "float32"), ([[1e8, 1e8 + 1]], "float64")):
        exact = exact_gn_rows(x, 1, EPS)
        got = _forward(x, dtype)
        assert worst_relative_error(got, exact) > 100, (dtype, got)
        assert all(np.isfinite(got[0]))  # clamped: not the NaN of Paddle#16654


X = np.array([[[0.3, -1.2], [2.0, 0.5]]])  # (1, C=2, L=2), one group of 4
DY = np.array([[[0.7, 0.4], [-0.3, 1.0]]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [False, True], ids=["no affine", "bias only"])
def test_backward_without_weight_drops_the_mean_term(dtype: str, bias: bool) -> None:
    """x = [[[0.3, -1.2], [2.0, 0.5]]], dy = [[[0.7, 0.4], [-0.3, 1.0]]], G = 1, epsilon = 1e-5, no weight.

    Measured (paddlepaddle 3.3.1, float64): grad_x [0.5988, 0.05355, 0.03467, 0.9009]; exact [0.20183,
    -0.34342, -0.36231, 0.50389]: off by mean(dy) / sigma = 0.3969 in every element, the term the kernel
    adds only when a weight is given (dp_bias). With a weight of ones the same call is right. (The checker:
    backward_agreement and single_value_groups, wrong values, "the mean term of grad_input missing", at
    shape (1, 2) with x ~ N(0, 1).)
    """
    x, dy = X.astype(dtype), DY.astype(dtype)
    b = np.zeros(2, dtype) if bias else None
    got = _paddle_grads(x, dy, None, b)[0].reshape(-1)
    exact, _ = _exact_grads(x, dy, None)
    scale = max(abs(v) for v in exact)
    assert max(abs(g - e) for g, e in zip(got, exact, strict=True)) > 0.5 * scale
    fixed = _paddle_grads(x, dy, np.ones(2, dtype), b)[0].reshape(-1)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    assert max(abs(g - e) for g, e in zip(fixed, exact, strict=True)) < tolerance * scale


def test_zero_weight_channel_loses_its_gradients() -> None:
    """x, dy as above (float64), weight = [0, 2], no bias.

    Measured (paddlepaddle 3.3.1): grad_weight [0, -0.33522] where the exact value is [-0.62633, -0.33522];
    grad_x of the zero-weight channel lacks its x-hat term. The kernel recovers x-hat as (y - bias) / weight
    and skips the division where the weight is 0, so that channel's x-hat reads as 0.
    """
    w = np.array([0.0, 2.0])
    gx, gw = _paddle_grads(X, DY, w, None)
    exact_x, exact_w = _exact_grads(X, DY, w)
    assert gw[0] == 0.0 and abs(exact_w[0]) > 0.6
    assert abs(gw[1] - exact_w[1]) < 1e-12
    assert max(abs(g - e) for g, e in zip(gx.reshape(-1)[:2], exact_x[:2], strict=True)) > 0.1


def test_large_bias_small_weight_gradients_are_lost() -> None:
    """x = [[[0.3], [-1.2], [2.0], [0.5]]] float32 (4 channels, 1 group), weight 1e-4, bias 1e4 per channel,
    dy = [[[0.7], [0.4], [-0.3], [1.0]]], epsilon = 1e-5.

    Measured (paddlepaddle 3.3.1): grad_weight [0, 0, 0, 0] where the exact value is [-0.061751, -0.564582,
    -0.423436, 0.088216] (dy * x-hat, which does not depend on the bias). y = 1e4 + 1e-4 * x-hat rounds to
    1e4 in float32, so (y - bias) / weight, the kernel's x-hat, is 0.
    """
    x = np.array([[[0.3], [-1.2], [2.0], [0.5]]], np.float32)
    dy = np.array([[[0.7], [0.4], [-0.3], [1.0]]], np.float32)
    w, b = np.full(4, 1e-4, np.float32), np.full(4, 1e4, np.float32)
    gw = _paddle_grads(x, dy, w, b)[1]
    _, exact_w = _exact_grads(x, dy, w)
    assert np.all(gw == 0.0)
    assert min(abs(e) for e in exact_w) > 0.05


def test_no_second_order() -> None:
    """paddle.grad(create_graph=True) through group_norm raises: paddle 3.3.1 registers no grad op of
    group_norm_grad in eager mode (why the built-in target is registered without second order).  When this
    test fails, paddle has gained one: give the target its second order in gn_spec/checker/builtins.py."""
    x = paddle.to_tensor(X, stop_gradient=False)
    y = F.group_norm(x, num_groups=1, epsilon=EPS)
    with pytest.raises(RuntimeError, match="group_norm_grad doesn't have any grad op"):
        paddle.grad([y], [x], grad_outputs=[paddle.to_tensor(DY)], create_graph=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cpu_kernel_has_no_half_precision(dtype: str) -> None:
    """The CPU group_norm kernel is registered for float32 and float64 only (why the built-in target's
    dtypes are those two).  When this test fails, the target can offer the dtype."""
    x = paddle.to_tensor(X.astype(np.float32)).astype(dtype)
    with pytest.raises(RuntimeError, match="not registered"):
        F.group_norm(x, num_groups=1, epsilon=EPS)
