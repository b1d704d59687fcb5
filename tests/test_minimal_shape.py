"""The final minimal-shape pass: a failing property's counterexample is the smallest shape of its kind that
still fails the same way (issue 10 point 7, issue 13 point 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from checker_helpers import gn_spec, target

from gn_spec.checker.runner import MINIMAL_SHAPE_CANDIDATES, smaller_shapes
from gn_spec.strategies import Case


def test_smaller_shapes_keep_the_kind_and_come_smallest_first() -> None:
    case = Case(shape=(2, 6, 5, 7), num_groups=3, data="offset", log10_offset=2, eps=1e-3, seed=9)
    found = smaller_shapes(case)
    assert 0 < len(found) <= MINIMAL_SHAPE_CANDIDATES
    sizes = [math.prod(c.shape) for c in found]
    assert sizes == sorted(sizes) and sizes[-1] < math.prod(case.shape)
    for c in found:
        assert len(c.shape) == 4 and c.valid and c.num_groups <= 3
        assert (c.data, c.log10_offset, c.eps, c.seed, c.affine) == ("offset", 2, 1e-3, 9, case.affine)
    assert found[0].shape == (1, 1, 1, 1)
    assert smaller_shapes(Case(shape=(1, 1), num_groups=1)) == []
    assert smaller_shapes(Case(shape=(1, 3), num_groups=2)) == []  # an invalid grouping is left alone


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_defect_of_large_groups_is_reported_on_a_group_just_large_enough(seed: int, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = gn_spec(
        "check",
        target("shape_dependent.py", "wrong_from_m_64"),
        "--property",
        "forward_agreement",
        "--seed",
        str(seed),
        "--json",
        str(report),
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (prop,) = json.loads(report.read_text())["properties"]
    fields = prop["counterexample_fields"]
    assert fields["group_size"] >= 64  # the defect is there
    assert math.prod(fields["shape"]) <= 128, prop["counterexample"]  # and the shape is (about) minimal
