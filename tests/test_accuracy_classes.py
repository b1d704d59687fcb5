"""Accuracy classes (SPEC.md 3.3): a failing agreement property says whether the target meets the
sequential-summation bound; wrong formulas, one-pass variances and float16 accumulation stay outside both."""

from __future__ import annotations

import pytest
from checker_helpers import implementation, target

from gn_spec import error_model as em
from gn_spec.checker import options
from gn_spec.checker.runner import (
    OUTSIDE_BOTH,
    SEQUENTIAL_ONLY,
    WITHIN_LOG_DEPTH,
    WITHIN_SEQUENTIAL,
    run_check,
)


def test_the_sequential_depth_is_gamma_of_m_minus_1_and_only_inside_its_domain() -> None:
    with em.summation_class("sequential"):
        assert em.summation_depth(1) == 0
        assert em.summation_depth(2) == pytest.approx(1 / (1 - 2.0**-24))
        m = 100_001
        assert em.summation_depth(m) == pytest.approx((m - 1) / (1 - (m - 1) * 2.0**-24))
        with pytest.raises(ValueError, match="2\\*\\*23"):
            em.summation_depth(2**23 + 1)
    assert em.summation_depth(100_001) == 17 + em.SEQUENTIAL_ALLOWANCE  # the default class again
    assert options.SUMMATIONS == em.SUMMATIONS


def _forward(t: str, dtype: str = "float32", **more: object) -> object:
    (p,) = run_check(t, dtype=dtype, seed=0, properties=["forward_agreement"], **more).properties
    return p


def test_a_running_sum_is_within_the_sequential_class_only() -> None:
    p = _forward(target("sequential.py", "group_norm"))
    assert p.failed and p.accuracy_class == SEQUENTIAL_ONLY, p.message
    # and the verdict under --summation sequential accepts it
    q = _forward(target("sequential.py", "group_norm"), summation="sequential")
    assert q.status == "passed" and q.accuracy_class == WITHIN_SEQUENTIAL


@pytest.mark.parametrize(
    "name",  # float16 accumulation shows on long groups, which the quick profile does not make
    [
        "np_one_pass_variance@float32",
        "np_fp16_accumulation@float16",
        "np_eps_outside_sqrt@float32",
        "np_bessel_variance@float32",
    ],
)
def test_wrong_formulas_and_low_precision_sums_are_outside_both(name: str) -> None:
    dtype = name.split("@")[1]
    profile = "default" if "fp16" in name else "quick"
    p = _forward(implementation(name), dtype=dtype, profile=profile)
    assert p.failed and p.accuracy_class == OUTSIDE_BOTH, p.message


def test_a_conforming_target_is_within_the_log_depth_bound() -> None:
    p = _forward("reference", profile="quick")
    assert p.status == "passed" and p.accuracy_class == WITHIN_LOG_DEPTH
