"""numpy-API targets that each fail one property the catalogue's faulty implementations do not (or not
cheaply) fail, for tests/test_reproducers.py; ``conforming`` is the one that fails none."""

import numpy as np

import gn_spec


def conforming(x, num_groups, weight=None, bias=None, eps=1e-5):
    """gn_spec's float64 reference, rounded to the input's dtype."""
    y = gn_spec.group_norm(np.asarray(x, dtype=np.float64), num_groups,
                           None if weight is None else np.asarray(weight, dtype=np.float64),
                           None if bias is None else np.asarray(bias, dtype=np.float64), eps)
    return y.astype(x.dtype)


def returns_float64(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Right values in the wrong dtype (output_shape_and_dtype)."""
    return conforming(x, num_groups, weight, bias, eps).astype(np.float64)


def flips_space(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Reverses the flattened spatial positions of the output (spatial_permutation_equivariance)."""
    y = conforming(x, num_groups, weight, bias, eps)
    return y.reshape(y.shape[0], y.shape[1], -1)[:, :, ::-1].reshape(y.shape)


def one_group_when_invalid(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Falls back to one group when num_groups does not divide C (rejects_invalid_groups)."""
    return conforming(x, num_groups if x.shape[1] % num_groups == 0 else 1, weight, bias, eps)


_calls = [0]


def drifts(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Every other call adds 1/8 to the output (repeated_calls_identical)."""
    _calls[0] += 1
    y = conforming(x, num_groups, weight, bias, eps)
    return (y + 0.125 * (_calls[0] % 2)).astype(x.dtype)
