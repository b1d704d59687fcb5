"""Each tier of the reference, forced on its own, is faithful against the exact oracle on the same inputs.

The public functions run the tiers in turn (``gn_spec.reference``: fast, precise, exact), so an ordinary
input never reaches the later ones; here the internal dispatch is told which tier to run alone. A compiled
tier may leave results uncertified (it says which); every result it does certify must be faithful (at most
one ulp from the oracle's correctly rounded value), and the exact tier must reproduce the oracle exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gn_spec import reference
from gn_spec.derivations import oracle
from gn_spec.reference import EXACT, FAST, PRECISE, validate

# name -> (shape, groups, eps, how x is made from standard normal values z)
CASES = {
    "ordinary": ((2, 4, 3, 5), 2, 1e-5, lambda z: z),
    "mean_over_std_1e15": ((2, 4, 3, 5), 2, 1e-5, lambda z: 1e15 + z),
    "magnitude_1e300": ((2, 4, 3, 5), 2, 1e-5, lambda z: 1e300 * z),
    "magnitude_1e-300": ((2, 4, 3, 5), 2, 0.0, lambda z: 1e-300 * z),
    "eps_zero": ((2, 4, 3, 5), 2, 0.0, lambda z: z),
    "one_element_per_group": ((3, 4), 4, 1e-5, lambda z: z),
    "million_elements": ((1, 1, 10**6), 1, 1e-5, lambda z: 1e6 + z),
}
SMALL = [name for name in CASES if name != "million_elements"]


@functools.cache
def _inputs(name: str) -> dict[str, np.ndarray]:
    shape, _, _, make = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    c = shape[1]
    return {
        "x": make(rng.standard_normal(shape)),
        "weight": rng.standard_normal(c),
        "bias": rng.standard_normal(c),
        "dy": rng.standard_normal(shape),
        "hh": rng.standard_normal(shape),
        "ggw": rng.standard_normal(c),
        "ggb": rng.standard_normal(c),
    }


@functools.cache
def _exact(name: str, what: str) -> tuple[np.ndarray, ...]:
    _, groups, eps, _ = CASES[name]
    a = _inputs(name)
    if what == "forward":
        return (oracle.group_norm(a["x"], groups, a["weight"], a["bias"], eps),)
    if what == "backward":
        return tuple(oracle.group_norm_backward(a["dy"], a["x"], groups, a["weight"], eps))
    return tuple(
        oracle.group_norm_double_backward(
            a["hh"], a["ggw"], a["ggb"], a["dy"], a["x"], groups, a["weight"], eps
        )
    )


def _problem(name: str, bias: bool = False) -> validate.Problem:
    _, groups, eps, _ = CASES[name]
    a = _inputs(name)
    return validate.problem(a["x"], groups, a["weight"], a["bias"] if bias else None, eps)


def _assert_faithful(what: str, ours: np.ndarray, exact: np.ndarray, checked: np.ndarray) -> None:
    """Every certified result is faithful. A hard case may leave a compiled tier nothing certified (the fast
    tier cannot certify m = 1's exact zeros, for one); ``test_the_compiled_tiers_certify_an_ordinary_input``
    makes sure the ordinary case is checked whole."""
    err = oracle.ulp_error(ours, exact)[checked]
    assert not err.size or err.max() <= 1.0, f"{what}: {err.max():.3g} ulp"


def _certified_elements(p: validate.Problem, uncertified: np.ndarray) -> np.ndarray:
    """A mask of the input's shape: the elements of the blocks the tier left nothing uncertified in."""
    return np.broadcast_to((uncertified == 0)[:, :, None, None], p.x4.shape).reshape(p.shape)


def _certified_channels(p: validate.Problem, uncertified: np.ndarray, channels: list[int]) -> np.ndarray:
    """Channels whose sum the tier certified and whose blocks it certified in every sample."""
    cpg = p.x4.shape[2]
    ok = np.repeat((uncertified == 0).all(axis=0), cpg)
    ok[channels] = False
    return ok


def _tiers(names: list[str], tiers: list[str]) -> list[tuple[str, str]]:
    return [(n, t) for n in names for t in tiers]


# every tier on every small case; the fast tier on a million elements (the later tiers: their own test)
ALL_TIERS = _tiers(SMALL, [FAST, PRECISE, EXACT]) + [("million_elements", FAST)]


@pytest.mark.parametrize(("name", "tier"), ALL_TIERS)
def test_each_forward_tier_is_faithful(name: str, tier: str) -> None:
    p = _problem(name, bias=True)
    y, uncertified = reference._forward(p, (tier,))
    y = y.reshape(p.shape)
    (exact,) = _exact(name, "forward")
    if tier == EXACT:
        assert not uncertified.any()
        np.testing.assert_array_equal(y, exact)
    _assert_faithful(f"{tier} forward on {name}", y, exact, _certified_elements(p, uncertified))


@pytest.mark.parametrize(("name", "tier"), ALL_TIERS)
def test_each_backward_tier_is_faithful(name: str, tier: str) -> None:
    p = _problem(name)
    dy = validate.same_shape(_inputs(name)["dy"], "dy", p)
    dx, grad_weight, grad_bias, uncertified, channels = reference._backward(p, dy, (tier,))
    exact = _exact(name, "backward")
    ours = (dx.reshape(p.shape), grad_weight, grad_bias)
    if tier == EXACT:
        assert not uncertified.any() and not channels
        for o, e in zip(ours, exact, strict=True):
            np.testing.assert_array_equal(o, e)
    _assert_faithful(f"{tier} grad_input on {name}", ours[0], exact[0], _certified_elements(p, uncertified))
    per_channel = _certified_channels(p, uncertified, channels)
    _assert_faithful(f"{tier} grad_weight on {name}", grad_weight, exact[1], per_channel)
    _assert_faithful(f"{tier} grad_bias on {name}", grad_bias, exact[2], per_channel)


@pytest.mark.parametrize("tier", [PRECISE, EXACT])
def test_forward_and_backward_tiers_on_a_million_elements(tier: str) -> None:
    """The later tiers on 10^6 elements in one badly conditioned block (the fast tier: the tests above)."""
    name = "million_elements"
    p = _problem(name, bias=True)
    y, uncertified = reference._forward(p, (tier,))
    _assert_faithful(f"{tier} forward", y.reshape(p.shape), _exact(name, "forward")[0],
                     _certified_elements(p, uncertified))
    dy = validate.same_shape(_inputs(name)["dy"], "dy", p)
    dx, grad_weight, _, uncertified, channels = reference._backward(p, dy, (tier,))
    exact = _exact(name, "backward")
    _assert_faithful(f"{tier} grad_input", dx.reshape(p.shape), exact[0], _certified_elements(p, uncertified))
    per_channel = _certified_channels(p, uncertified, channels)
    _assert_faithful(f"{tier} grad_weight", grad_weight, exact[1], per_channel)


@pytest.mark.parametrize(("name", "tier"), _tiers(SMALL, [PRECISE, EXACT]))
def test_each_double_backward_tier_is_faithful(name: str, tier: str) -> None:
    p = _problem(name)
    a = _inputs(name)
    cotangents = (
        validate.same_shape(a["hh"], "hh", p),
        validate.per_channel(a["ggw"], "ggw", p),
        validate.per_channel(a["ggb"], "ggb", p),
        validate.same_shape(a["dy"], "dy", p),
    )
    ggo, gx, grad_weight, uncertified, channels = reference._double_backward(p, cotangents, (tier,))
    exact = _exact(name, "double_backward")
    ours = (ggo.reshape(p.shape), gx.reshape(p.shape), grad_weight)
    if tier == EXACT:
        assert not uncertified.any() and not channels
        for o, e in zip(ours, exact, strict=True):
            np.testing.assert_array_equal(o, e)
    elements = _certified_elements(p, uncertified)
    _assert_faithful(f"{tier} grad_grad_output on {name}", ours[0], exact[0], elements)
    _assert_faithful(f"{tier} grad_x on {name}", ours[1], exact[1], elements)
    per_channel = _certified_channels(p, uncertified, channels)
    _assert_faithful(f"{tier} grad_weight on {name}", grad_weight, exact[2], per_channel)


@pytest.mark.parametrize("tier", [FAST, PRECISE])
def test_the_compiled_tiers_certify_an_ordinary_input(tier: str) -> None:
    """So that the forced-tier tests above check every result of the ordinary case, not a remnant."""
    p = _problem("ordinary", bias=True)
    assert not reference._forward(p, (tier,))[1].any()
    dy = validate.same_shape(_inputs("ordinary")["dy"], "dy", p)
    _, _, _, uncertified, channels = reference._backward(p, dy, (tier,))
    assert not uncertified.any() and not channels


@pytest.mark.parametrize("tiers", [(), (PRECISE, FAST), (FAST, FAST), ("slow",)])
def test_tiers_out_of_order_or_unknown_are_refused(tiers: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="must be a non-empty part, in order"):
        reference._forward(_problem("ordinary"), tiers)


def test_the_double_backward_has_no_fast_tier() -> None:
    p = _problem("ordinary")
    zeros = np.zeros(p.x4.shape)
    cotangents = (zeros, np.zeros(p.channels), np.zeros(p.channels), zeros)
    with pytest.raises(ValueError, match="in order, of \\('precise', 'exact'\\)"):
        reference._double_backward(p, cotangents, (FAST,))
