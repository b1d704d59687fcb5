"""The kinds of failure a property can report, declared once.

Every failed property says which kind its failure is: the console table shows it, the JSON report has it as
``"kind"``, JUnit puts it in the failure's message, and a deviations file (``--deviations``) can narrow an
entry to it (``kind = "refused valid input"``).  The kind is set where the :class:`Outcome` is made:
:func:`~gn_spec.checker.property_framework.failure_of` takes it from the call's status
(:data:`BY_CALL_STATUS`), :func:`~gn_spec.checker.property_framework.from_judgements` tells wrong values
from non-finite ones, and each contract and metamorphic property sets its own.
"""

from __future__ import annotations

from collections.abc import Mapping

WRONG_VALUES = "wrong values"
NON_FINITE = "non-finite where finite is exact"
REFUSED = "refused valid input"
ACCEPTED_INVALID = "accepted invalid input"
WRONG_STRUCTURE = "wrong shape or dtype"
MODIFIED_INPUT = "modified its input"
CRASHED = "crashed"
HUNG = "hung"
TAMPERED = "tampered"
NONDETERMINISTIC = "nondeterministic"
UNEXPRESSIBLE = "cannot express valid input"

#: Every kind and what it means, in the order the documentation lists them.
KINDS: Mapping[str, str] = {
    WRONG_VALUES: "returned finite numbers beyond the error model's bound (or breaking an exact identity)",
    NON_FINITE: "returned NaN or +-inf where the exact result is finite",
    REFUSED: "raised an exception on a valid input",
    ACCEPTED_INVALID: "returned values for an invalid input (num_groups not dividing C) instead of raising",
    WRONG_STRUCTURE: "returned something of the wrong type, shape, dtype or device, or no array at all",
    MODIFIED_INPUT: "changed one of the arrays it was given",
    CRASHED: "its process died (a signal, an exit) or answered garbage",
    HUNG: "gave no answer within the per-call timeout",
    TAMPERED: "altered numpy, gn_spec or torch in the process that runs it",
    NONDETERMINISTIC: "gave different results for the same input",
    UNEXPRESSIBLE: "cannot take a valid input at all (a framework target's limitation)",
}

#: The kind of a call that did not return values, by ``CallResult.status``.
BY_CALL_STATUS: Mapping[str, str] = {
    "raised": REFUSED,
    "crashed": CRASHED,
    "timeout": HUNG,
    "protocol_error": CRASHED,
    "bad_return": WRONG_STRUCTURE,
    "unexpressible": UNEXPRESSIBLE,
    "unsupported": REFUSED,
}


def of_judgement(nonfinite: int, worst_kind: str) -> str:
    """A failed judgement's kind: non-finite when its worst element is NaN or +-inf (or any output element
    was non-finite where the exact value is finite), wrong values otherwise."""
    return NON_FINITE if nonfinite or worst_kind else WRONG_VALUES
