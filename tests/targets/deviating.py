"""Numpy-API targets that deviate from Group Normalization in one known region only, for the tests of
``--deviations`` (tests/test_deviations.py)."""

from hostile import good  # the correct float64 two-pass GN (a sibling file)


def no_bias_alone(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Correct, except that it refuses a bias without a weight (as PyTorch's autograd does for F.group_norm's
    backward): a valid input it raises on."""
    if weight is None and bias is not None:
        raise ValueError("a bias needs a weight here")
    return good(x, num_groups, weight, bias, eps)
