"""The variants frameworks show (issue 12, section 2), on the counterexamples of SPEC.md section 3.12.

Each framework's behaviour is reproduced here in plain numpy (no framework and no gn-spec code in the
implementation): a one-pass variance E[x^2] - E[x]^2 in float32, clamped or not; Apex's 1/std = 1 where that
variance is <= 0; float16 squares (tinygrad); channel c in group c mod G (MLX's default); a per-group affine
(ONNX GroupNormalization-18); the fused uncentred output x * (r w) + (b - mu r w) (Keras). The diagnosis must
name the variant that explains each one, and nothing when the evidence does not single one out.
"""

from __future__ import annotations

import numpy as np
import pytest

import gn_spec
from gn_spec import variants as V


def _one_pass(x, g, w=None, b=None, eps=1e-5, *, rule="unclamped", acc=np.float32):
    """var = E[x^2] - E[x]^2 in ``acc`` (numpy's pairwise sums), then ``rule``: unclamped, clamped or
    inv_std_one (r = 1 where var <= 0, as Apex's kernels do)."""
    xs = np.asarray(x, dtype=acc)
    blocks = xs.reshape(xs.shape[0], g, -1)
    mean = blocks.mean(axis=-1, keepdims=True, dtype=acc)
    var = (blocks * blocks).mean(axis=-1, keepdims=True, dtype=acc) - mean * mean
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "clamped":
            var = np.maximum(var, acc(0))
        r = acc(1) / np.sqrt(var + acc(eps))
        if rule == "inv_std_one":
            r = np.where(var <= 0, acc(1), r)
    y = ((blocks - mean) * r).reshape(xs.shape)
    shape = (1, xs.shape[1]) + (1,) * (xs.ndim - 2)
    if w is not None:
        y = y * np.asarray(w, dtype=acc).reshape(shape)
    if b is not None:
        y = y + np.asarray(b, dtype=acc).reshape(shape)
    return y.astype(np.float64)


def _names(observed, x, g, w=None, b=None, eps=1e-5, dtype="float32"):
    return [d.variant for d in V.diagnose(observed, x, g, w, b, eps, dtype=dtype)]


# --------------------------------------------------------------------------------------------------------
# the counterexamples of SPEC.md section 3.12, as the frameworks' outputs there


def test_flax_linen_fast_variance_is_one_pass_clamped():
    """flax linen, x = [[10000, 10001, 10002, 10003]] float32, G = 1, eps = 1e-6: [-1500, -500, 500, 1500]
    (the variance cancelled to 0; exact [-1.34164, -0.447213, ...])."""
    x = np.array([[10000.0, 10001.0, 10002.0, 10003.0]])
    observed = np.array([[-1500.0, -500.0, 500.0, 1500.0]])
    assert _names(observed, x, 1, eps=1e-6) == ["one_pass_clamped"]
    assert _names(_one_pass(x, 1, eps=1e-6, rule="clamped"), x, 1, eps=1e-6) == ["one_pass_clamped"]


def test_flax_nnx_float16_is_one_pass_clamped():
    """flax nnx, x = [[1025, 1025, 1024, 1024, 1026, 1023]] float16, G = 2, eps = 1e-6: the first group's
    variance 2/9 cancels to 0, so its values are (x - mu) * 1000 in float16 (-666.5 for 1024)."""
    x = np.array([[1025.0, 1025.0, 1024.0, 1024.0, 1026.0, 1023.0]])
    observed = gn_spec.group_norm(x, 2, eps=1e-6)
    observed[0, :3] = np.float16((x[0, :3] - x[0, :3].mean()) * 1000.0)
    assert observed[0, 2] == -666.5
    assert _names(observed, x, 2, eps=1e-6, dtype="float16") == ["one_pass_clamped"]


def test_onnx21_two_values_nan_is_one_pass_unclamped():
    """ONNX GroupNormalization-21, x = [[744.33251953125, 744.7369995117188]] float32: [nan, nan]."""
    x = np.array([[744.33251953125, 744.7369995117188]])
    observed = _one_pass(x, 1)
    assert np.isnan(observed).all()  # numpy's float32 one-pass gives the framework's NaN
    assert _names(observed, x, 1) == ["one_pass_unclamped"]
    assert _names(np.full((1, 2), np.nan), x, 1) == ["one_pass_unclamped"]
    # clamped, the same arithmetic gives finite values that the diagnosis names clamped
    assert _names(_one_pass(x, 1, rule="clamped"), x, 1) == ["one_pass_clamped"]


def test_onnx21_float16_third_group_nan_is_one_pass_unclamped():
    """ONNX GroupNormalization-21 at float16: (1, 15), G = 3, third group 15240 and 15248: NaN there."""
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((1, 15)) * 4.0) / 4.0
    x[0, 10:] = [15240.0, 15248.0, 15248.0, 15248.0, 15248.0]
    observed = gn_spec.group_norm(x, 3)
    observed[0, 10:] = np.nan
    assert _names(observed, x, 3, dtype="float16") == ["one_pass_unclamped"]


def test_keras_torch_backend_nan_is_one_pass_unclamped():
    """Keras on torch/numpy (ops.moments), x near 100 float32, groups = 1, eps = 1e-3: all NaN."""
    x = np.array([[99.9999771118164, 99.99998474121094, 100.00001525878906, 100.0000228881836]])
    observed = _one_pass(x, 1, eps=1e-3)
    assert np.isnan(observed).all()
    assert _names(observed, x, 1, eps=1e-3) == ["one_pass_unclamped"]


def test_onnx18_float64_one_pass():
    """ONNX GroupNormalization-18 in float64: [1e9, 1e9, 1e9 + 1] gives NaN (unclamped, negative) and
    [1e8, 1e8 + 1] gives +-158.1 (a positive but cancelled variance: the clamp is not visible)."""
    x = np.array([[1e9, 1e9, 1e9 + 1]])
    observed = _one_pass(x, 1, acc=np.float64)
    assert np.isnan(observed).all()
    assert _names(observed, x, 1, dtype="float64") == ["one_pass_unclamped"]
    x = np.array([[1e8, 1e8 + 1]])
    observed = _one_pass(x, 1, acc=np.float64)
    assert np.allclose(np.abs(observed), 158.1, rtol=1e-3)
    assert _names(observed, x, 1, dtype="float64") == ["one_pass_clamped"]


# --------------------------------------------------------------------------------------------------------
# the other framework variants


def _offset(seed, shape=(2, 8), g=2, scale=1e4, sd=1.0):
    rng = np.random.default_rng(seed)
    x = (scale + sd * rng.standard_normal(shape)).astype(np.float32).astype(np.float64)
    return x, g


@pytest.mark.parametrize("seed", range(6))
def test_apex_inv_std_one_is_named(seed):
    """r = 1 where the float32 one-pass variance is <= 0: on x ~ 30 +- 1e-3 the variance 1e-6 of some blocks
    cancels to <= 0, and those blocks are x - mu, unscaled. The one-pass envelope there (|var' - var| <~
    2e-3) keeps every clamped or unclamped factor 1/sqrt(v + eps) above 20, so r = 1 tells Apex's rule.
    (On data where a v near 1 is possible, the clamped variant explains r = 1 as well, and is named.)"""
    x, g = _offset(seed, shape=(2, 2, 4), scale=30.0, sd=1e-3)
    observed = _one_pass(x, g, rule="inv_std_one")
    var = (lambda b: (b * b).mean(-1, dtype=np.float32) - b.mean(-1, dtype=np.float32) ** 2)(
        x.astype(np.float32).reshape(2, g, -1))
    found = _names(observed, x, g)
    if not (var <= 0).any():
        assert "one_pass_inv_std_one" not in found  # no block shows the rule
        return
    assert found == ["one_pass_inv_std_one"], found


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", ["clamped", "unclamped"])
def test_float32_one_pass_on_offset_data_is_named_and_only_it(seed, rule):
    x, g = _offset(seed, scale=2e3, sd=0.02)
    w = np.linspace(-2.0, 2.0, 8).astype(np.float32).astype(np.float64)
    b = np.linspace(1.0, -1.0, 8).astype(np.float32).astype(np.float64)
    observed = _one_pass(x, g, w, b, rule=rule)
    found = _names(observed, x, g, w, b)
    negative = np.isnan(observed).any()
    if V.ErrorModelScorer()(observed, gn_spec.group_norm(x, g, w, b, 1e-5),
                            V.Counterexample(x, g, w, b, 1e-5, "float32"), "output") <= 1.0:
        assert found == []
    else:
        assert found == ["one_pass_unclamped" if negative else "one_pass_clamped"], found


def test_conforming_float32_is_not_named_on_offset_data():
    x, g = _offset(1, scale=2e3, sd=0.02)
    xs = x.astype(np.float32).reshape(2, g, -1)
    mean = xs.mean(-1, keepdims=True)
    observed = ((xs - mean) / np.sqrt(((xs - mean) ** 2).mean(-1, keepdims=True) + np.float32(1e-5)))
    assert _names(observed.reshape(x.shape).astype(np.float64), x, g) == []


def test_a_per_block_scaling_outside_the_one_pass_envelope_is_not_named():
    """A mistake not in the library: every block's output 1.5 times GN's on well-conditioned data; no one-pass
    rounding comes near that, and no library variant gives it."""
    x, g = _offset(2, scale=0.5, sd=1.0)
    observed = gn_spec.group_norm(x, g) * 1.5
    assert _names(observed, x, g) == []


def test_float16_squares_overflow_is_named():
    """Deviations of 300 square to inf in float16: numpy's var on float16 (tinygrad forms the squares in
    float16 too) gives the bias on that block."""
    rng = np.random.default_rng(4)
    x = np.float16(rng.uniform(-1.0, 1.0, (1, 8)))
    x[0, :4] = np.float16([-300.0, 300.0, 10.0, -10.0])
    w = np.float16(rng.uniform(0.5, 2.0, 8))
    b = np.float16(rng.uniform(-1.0, 1.0, 8))
    blocks = x.reshape(1, 2, 4)
    with np.errstate(over="ignore"):
        y = (blocks - blocks.mean(-1, keepdims=True)) / np.sqrt(np.var(blocks, axis=-1, keepdims=True)
                                                               + np.float16(1e-5))
    observed = (y.reshape(1, 8) * w + b).astype(np.float64)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    assert np.array_equal(observed[0, :4], b64[:4])  # the overflowing block gives its bias
    assert _names(observed, x64, 2, w64, b64, dtype="float16") == ["squares_in_float16"]


def _discriminating(seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 5)) * 2.0 + 0.5
    w = rng.uniform(0.5, 2.0, 6) * np.array([1, -1, 1, 1, -1, -1])
    b = rng.standard_normal(6)
    return [a.astype(np.float32).astype(np.float64) for a in (x, w, b)]


def test_mlx_default_grouping_is_interleaved():
    """MLX's default (pytorch_compatible=False) groups channel c with c mod G; numpy's reshape (C/G, G)."""
    x, w, b = _discriminating()
    xs = x.astype(np.float32).reshape(2, 2, 3, 5)  # (N, C/G, G, S): group j is channels j, j + 3
    mean = xs.mean(axis=(1, 3), keepdims=True)
    var = xs.var(axis=(1, 3), keepdims=True)
    y = ((xs - mean) / np.sqrt(var + np.float32(1e-5))).reshape(x.shape) * w.astype(np.float32)[:, None]
    observed = (y + b.astype(np.float32)[:, None]).astype(np.float64)
    assert _names(observed, x, 3, w, b) == ["interleaved_groups"]


def test_onnx18_per_group_affine_is_named():
    x, w, b = _discriminating()
    blocks = x.astype(np.float32).reshape(2, 3, -1)
    y = (blocks - blocks.mean(-1, keepdims=True)) / np.sqrt(blocks.var(-1, keepdims=True) + np.float32(1e-5))
    y = y * w.astype(np.float32)[:3, None] + b.astype(np.float32)[:3, None]
    assert _names(y.reshape(x.shape).astype(np.float64), x, 3, w, b) == ["per_group_affine"]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1e3, 3e4])
def test_fused_uncentred_output_conforms(dtype, scale):
    """Keras' x * (r w) + (b - mu r w) (also tf.nn.batch_normalization) is GN rearranged; its rounding at
    large |mu| / sigma stays within the error model (the bound has the mean's u |mu| r |w| term), so it is a
    conforming evaluation, not a variant the diagnosis could name: it is never a failure to explain."""
    acc = np.float64 if dtype == "float64" else np.float32
    rng = np.random.default_rng(5)
    x = (scale + rng.standard_normal((1, 4, 6))).astype(dtype).astype(np.float64)
    w = rng.uniform(-2.0, 2.0, 4).astype(dtype).astype(np.float64)
    b = rng.uniform(-2.0, 2.0, 4).astype(dtype).astype(np.float64)
    xs = x.astype(acc).reshape(1, 2, -1)
    mean = xs.mean(-1, keepdims=True)
    r = acc(1) / np.sqrt(((xs - mean) ** 2).mean(-1, keepdims=True) + acc(1e-5))
    a = (r.repeat(2, axis=1) * w.astype(acc).reshape(1, 4, 1))  # r of channel c's group, times w[c]
    shift = b.astype(acc).reshape(1, 4, 1) - mean.repeat(2, axis=1) * a
    y = (x.astype(acc) * a + shift).astype(dtype).astype(np.float64)
    score = V.ErrorModelScorer()
    example = V.Counterexample(x, 2, w, b, 1e-5, dtype)
    assert score(y, gn_spec.group_norm(x, 2, w, b, 1e-5), example, "output") <= 1.0
    assert _names(y, x, 2, w, b, dtype=dtype) == []


@pytest.mark.parametrize("x,eps,dtype", [
    (np.array([[300.0, 301.0]]), 1e-5, "float16"),  # onnx.reference GN-18: X*X overflows float16
    (np.full((1, 5), -1.9326171875), 1e-10, "float32"),  # GN-21: a constant group's E[x^2] - E[x]^2 < 0
    (np.full((1, 147), 767343.5625), 1e-5, "float32"),  # GN-21 with float64 statistics, the same
])
def test_onnx_nan_counterexamples_are_one_pass_unclamped(x, eps, dtype):
    assert _names(np.full(x.shape, np.nan), x, 1, eps=eps, dtype=dtype) == ["one_pass_unclamped"]


def test_openvino_constant_group_error_is_not_a_one_pass_variance():
    """OpenVINO's constant group of 1.257 giving 0.0197: the error is in the mean (x - mu != 0), which no
    per-block factor of (x - mu) = 0 produces, so nothing is named."""
    x = np.full((1, 1, 1000), 1.257)
    assert _names(np.full(x.shape, 0.0197), x, 1) == []
