"""The check profiles (``--profile``): each declared once, with every knob it sets.

A profile sets how big the generated cases get (:class:`Limits`, read by :mod:`gn_spec.strategies`) and how
hard the checker tries (:class:`Budget`, read by :mod:`gn_spec.checker.runner`).  Every knob is a count,
never a time, so that ``--seed`` reproduces a run exactly on any machine.

This module imports nothing but the standard library: the pytest plugin and the CLI's option table read it
before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Size limits of the generated cases."""

    max_batch: int
    max_groups: int
    max_channels_per_group: int
    max_extent: int
    large_every: int  # one draw in `large_every` is a large-group case (0: never)
    large_min: int  # smallest group size of a large case
    large_max: int  # largest group size of a large case
    # ``--shapes pooled`` (targets that compile one program per shape): every property draws its shapes from
    # one pool per run, ``pool_small`` shapes per spatial rank and ``pool_large`` large-group shapes per rank
    pool_small: int = 8
    pool_large: int = 1


@dataclass(frozen=True)
class Budget:
    """How hard a profile tries, in counts.

    ``examples``: Hypothesis examples for a property of weight 1; a property's weight scales it (metamorphic
    properties, two calls a case, have weight 1/2).  ``weights``: properties that weigh more in this profile
    than their registered weight, as (name, weight) pairs; see :data:`BACKWARD_EMPHASIS`.
    ``work``: elements of x a property may process, summed over its examples (times its weight where that is
    above 1); the target phase likes the largest groups, and this keeps it from spending a run on them.
    Once a property has failed: ``shrink_failures`` failing calls, ``process_failures`` of them crashes or
    hangs (each restarts the worker), and ``shrink_work`` elements may go into shrinking; then the smallest
    failure so far stands.
    """

    examples: int
    work: float
    shrink_failures: int
    process_failures: int
    shrink_work: float
    weights: tuple[tuple[str, float], ...] = ()

    def weight_of(self, name: str, registered: float) -> float:
        """The weight property ``name`` (registered with weight ``registered``) has in this profile."""
        return dict(self.weights).get(name, registered)


@dataclass(frozen=True)
class Profile:
    """One ``--profile``: its name, the cases it generates and the budget it spends on them."""

    name: str
    limits: Limits
    budget: Budget

    def describe(self) -> str:
        """What the profile does, in counts (for ``--help``): never a promise of how long it takes."""
        lim = self.limits
        text = f"{self.name}: up to {self.budget.examples} cases a property"
        text += "".join(
            f" ({w:g} times that for {name}, its large groups {w:g} times rarer)" if lim.large_every
            else f" ({w:g} times that for {name})"
            for name, w in self.budget.weights
        )
        if lim.large_every:
            groups = f"{lim.large_min:.0e} to {lim.large_max:.1e}"
            text += f", one in {lim.large_every} with groups of {groups} elements"
        return text.replace("e+0", "e")


#: backward_agreement weighs 8 in the default and thorough profiles (the quick profile is a smoke run: every
#: property the same few cases).  Its gradients are three quantities of four inputs (x, weight, grad_output
#: and the group layout), and a target that declares a deviation (a bias without a weight, say) should still
#: have thousands of its backward cases judged.  Its large-group cases stay as many as at weight 1
#: (gn_spec.properties.agreement.backward_cases): those cost most, in the exact reference on long groups.
BACKWARD_EMPHASIS = (("backward_agreement", 8.0),)

#: Every profile, in the order ``--profile`` lists them.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "quick",
            Limits(2, 4, 4, 6, 0, 0, 0, pool_small=4, pool_large=0),
            Budget(examples=12, work=1e6, shrink_failures=40, process_failures=1, shrink_work=1e6),
        ),
        Profile(
            "default",
            Limits(3, 8, 6, 8, 12, 100_000, 250_000, pool_small=8, pool_large=1),
            Budget(
                examples=260,
                work=2e7,
                shrink_failures=300,
                process_failures=4,
                shrink_work=1e7,
                weights=BACKWARD_EMPHASIS,
            ),
        ),
        Profile(
            "thorough",
            Limits(4, 16, 8, 12, 6, 100_000, 1_200_000, pool_small=24, pool_large=3),
            Budget(
                examples=600,
                work=1e8,
                shrink_failures=1000,
                process_failures=10,
                shrink_work=3e7,
                weights=BACKWARD_EMPHASIS,
            ),
        ),
    )
}

#: The names accepted by ``--profile``.
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)
