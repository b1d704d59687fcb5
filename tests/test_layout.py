"""gn_spec.layout: the one definition of GN's (sample, group) blocks, and the views of x every layer uses."""

from __future__ import annotations

import numpy as np
import pytest

from gn_spec import error_model, layout
from gn_spec.properties import metamorphic
from gn_spec.reference import validate


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(float(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize(
    ("shape", "groups", "expected"),
    [((2, 6, 3, 4), 3, (2, 3, 2, 12)), ((2, 6), 2, (2, 2, 3, 1)), ((1, 4, 2, 3, 5), 4, (1, 4, 1, 30))],
)
def test_blocks_are_contiguous_channel_runs(shape, groups, expected) -> None:
    x = _x(shape)
    b = layout.blocks(x, groups)
    assert b.shape == expected
    assert np.shares_memory(b, x) and b.flags.c_contiguous  # a view, as the compiled kernels take it
    n, g, k, s = expected
    rows = layout.block_rows(x, groups)
    assert rows.shape == (n, g, k * s) and np.shares_memory(rows, x)
    for i, j in np.ndindex(n, g):  # block (n, g) is sample n, channels g*k .. (g+1)*k - 1
        np.testing.assert_array_equal(rows[i, j], x[i, j * k : (j + 1) * k].reshape(-1))
        np.testing.assert_array_equal(b[i, j], x[i, j * k : (j + 1) * k].reshape(k, s))


def test_an_empty_batch_has_empty_blocks() -> None:
    """N = 0 has (0, G, m) rows (a reshape with -1 could not size them)."""
    assert layout.block_rows(np.zeros((0, 4, 3)), 2).shape == (0, 2, 6)
    assert layout.blocks(np.zeros((0, 4, 3)), 2).shape == (0, 2, 2, 3)


@pytest.mark.parametrize(("shape", "groups"), [((2, 6, 3), 4), ((2, 6), 0), ((6,), 1)])
def test_a_bad_grouping_names_the_values(shape, groups) -> None:
    with pytest.raises(ValueError, match=rf"num_groups={groups} does not divide C of the input shape"):
        layout.blocks(np.zeros(shape), groups)


def test_every_layer_views_x_through_the_layout() -> None:
    """The reference's x4, the error model's blocks and the properties' rows are the layout's views."""
    x = _x((2, 6, 3, 2)) / 7.0
    p = validate.problem(x, 3, None, None, 1e-5)
    np.testing.assert_array_equal(p.x4, layout.blocks(x, 3))
    assert p.x4.flags.c_contiguous and p.x4.dtype == np.float64
    np.testing.assert_array_equal(validate.same_shape(x, "grad_output", p), layout.blocks(x, 3))
    lay = error_model.group_layout(x, 3, 1e-5)
    np.testing.assert_array_equal(lay.x, layout.blocks(x, 3))
    assert metamorphic.blocks_of is layout.block_rows  # the name old reproducer scripts import
