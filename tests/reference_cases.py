"""Hypothesis strategies for the reference's own tests: hard float64 cases, drawn as structure plus a seed.

Hypothesis draws the shape, the group count, eps, the conditioning recipe and a seed; numpy fills the values
from the seed, so shrinking acts on the structure and the tensors stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

RECIPES = (
    "normal",  # N(0, 1)
    "offset",  # 10^k + N(0, 1) per group: |mean| / std up to 1e15
    "magnitude",  # N(0, 1) * 10^k with k in [-300, 300]
    "near_eps",  # std comparable to sqrt(eps)
    "constant",  # every group constant (exact output: the bias)
    "mixed",  # per-group offsets and scales over many orders of magnitude
    "integers",  # small integers: many exact ties and exact zeros
)


EPS_VALUES = (1e-5, 0.0, 1e-12, 0.1, 3.0, 1e-300, 1e20)
# Where float64 frameworks are expected to work: no intermediate (r^3, x^2) can overflow or underflow.
MODERATE_EPS = (1e-5, 1e-12, 0.1, 3.0)


@dataclass(frozen=True)
class RefCase:
    """One reference test case; ``arrays()`` rebuilds its float64 arrays deterministically."""

    shape: tuple[int, ...]
    num_groups: int
    eps: float
    recipe: str
    power: int
    affine: bool
    seed: int

    def arrays(self) -> dict[str, np.ndarray | None]:
        rng = np.random.default_rng(self.seed)
        n, c = self.shape[:2]
        x = rng.standard_normal(self.shape)
        blocks = x.reshape(n, self.num_groups, -1)
        if self.recipe == "offset":
            blocks += rng.choice([-1.0, 1.0]) * 10.0**self.power
        elif self.recipe == "magnitude":
            blocks *= 10.0**self.power
        elif self.recipe == "near_eps":
            blocks *= np.sqrt(self.eps) if self.eps > 0 else 1e-3
        elif self.recipe == "constant":
            blocks[:] = rng.standard_normal((n, self.num_groups, 1)) * 10.0 ** (self.power % 20)
        elif self.recipe == "mixed":
            scales = 10.0 ** rng.integers(-30, 30, size=(n, self.num_groups, 1))
            offsets = 10.0 ** rng.integers(-30, 30, size=(n, self.num_groups, 1))
            blocks[:] = blocks * scales + offsets * rng.choice([-1.0, 1.0])
        elif self.recipe == "integers":
            blocks[:] = rng.integers(-3, 4, size=blocks.shape)
        weight = rng.standard_normal(c) if self.affine else None
        bias = rng.standard_normal(c) if self.affine else None
        return {
            "x": blocks.reshape(self.shape),
            "weight": weight,
            "bias": bias,
            "dy": rng.standard_normal(self.shape),
            "ggx": rng.standard_normal(self.shape),
            "ggw": rng.standard_normal(c),
            "ggb": rng.standard_normal(c),
        }


@st.composite
def ref_cases(
    draw: st.DrawFn,
    max_block: int = 120,
    recipes: tuple[str, ...] = RECIPES,
    eps_values: tuple[float, ...] = EPS_VALUES,
    max_power: int = 300,
    max_offset: int = 15,
) -> RefCase:
    """Shapes (N, C, *spatial) with 0..3 spatial dims, group sizes incl. 1 and non-powers of two.

    ``max_power`` bounds the decimal exponent of the "magnitude" recipe (10^-max_power .. 10^max_power),
    ``max_offset`` that of the "offset" recipe (|mean| / std up to 10^max_offset).
    """
    groups = draw(st.integers(1, 4))
    per_group = draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    while per_group * int(np.prod(spatial, dtype=np.int64)) > max_block and spatial:
        spatial = spatial[:-1]
    n = draw(st.integers(1, 3))
    recipe = draw(st.sampled_from(recipes))
    power = {
        "offset": draw(st.integers(0, max_offset)),
        "magnitude": draw(st.integers(-max_power, max_power)),
    }.get(recipe, draw(st.integers(0, 8)))
    eps = draw(st.sampled_from(eps_values))
    if eps == 0.0 and (recipe in ("constant", "integers") or per_group * int(np.prod(spatial)) == 1):
        eps = 1e-5  # eps = 0 with a constant group is undefined (tested on its own)
    return RefCase(
        shape=(n, groups * per_group, *spatial),
        num_groups=groups,
        eps=eps,
        recipe=recipe,
        power=power,
        affine=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
