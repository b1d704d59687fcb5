"""The derivations prove what SPEC.md states, the zero test rejects wrong formulas, and SPEC.md is current.

The full command (``python -m gn_spec.derivations``) proves up to m = 6; here every check runs for every m
(the moment model) and for m = 1..3, which keeps this file to seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp

from gn_spec.derivations import __main__ as cli
from gn_spec.derivations import formulas as F
from gn_spec.derivations import proofs, spec
from gn_spec.derivations.symbolic import ExplicitBlock, MomentBlock, derive, is_zero, vectors_equal

SPEC_MD = Path(__file__).resolve().parents[1] / "SPEC.md"
CHECKS = list(proofs.all_checks(max_m=3, consistency_m=2))


@pytest.mark.parametrize("scope, check", CHECKS, ids=[f"{s}: {c.name}" for s, c in CHECKS])
def test_proof(scope: str, check: proofs.Check) -> None:
    assert check.run(), f"not proved for {scope}: {check.name}"


# ----------------------------------------------------------------------------------------------------------
# The zero test can fail: plausible wrong formulas are rejected
# ----------------------------------------------------------------------------------------------------------

WRONG = [  # (what is wrong, derived output it claims to be, expression)
    ("dx without the variance term", "dx", F.mul(F.R, F.add(F.g_j, F.neg(F.G_BAR)))),
    ("dx without the mean term", "dx", F.mul(F.R, F.add(F.g_j, F.neg(F.mul(F.xh_j, F.GX_BAR))))),
    ("grad_x without the r^5 term", "gx", F.add(F.neg(F.frac(F.mul(F.power(F.R, 3), F.d_j, F.A_HG), F.M)),
                F.neg(F.mul(F.frac(F.power(F.R, 3), F.M),
                            F.add(F.mul(F.add(F.h_j, F.neg(F.H_BAR)), F.S_GD),
                                  F.mul(F.add(F.g_j, F.neg(F.G_BAR)), F.S_HD)))),
                F.mul(F.R, F.add(F.v_j, F.neg(F.V_BAR), F.neg(F.mul(F.xh_j, F.VX_BAR)))))),
    ("grad_grad_output without the ggw term", "ggo", F.add(F.mul(F.gam_j, F.R, F.P_j), F.ka_j)),
    ("second-order grad_weight with h for P(h)", "gwt", F.mul(F.del_j, F.R, F.h_j)),
]


@pytest.mark.parametrize("block", [MomentBlock(), ExplicitBlock(3)], ids=["every m", "m = 3"])
@pytest.mark.parametrize("what, key, expr", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_closed_forms_are_rejected(block: object, what: str, key: str, expr: object) -> None:
    derived = derive(block)
    assert not vectors_equal(getattr(derived, key), F.evaluate(block)(expr), block), what


def test_wrong_forward_variants_are_rejected() -> None:
    """Bessel-corrected variance and eps outside the square root are not the definition."""
    block = ExplicitBlock(3)
    x, w, b = block.symbols["x"], block.symbols["w"], block.symbols["b"]
    mu = sum(x) / 3
    ss = sum((xi - mu) ** 2 for xi in x)
    y = derive(block).y.items
    unbiased = [w[i] * (x[i] - mu) / sp.sqrt(ss / 2 + block.eps) + b[i] for i in range(3)]
    eps_outside = [w[i] * (x[i] - mu) / (sp.sqrt(ss / 3) + block.eps) + b[i] for i in range(3)]
    assert not is_zero(y[0] - unbiased[0], block)
    assert not is_zero(y[0] - eps_outside[0], block)


def test_wrong_identity_value_is_rejected() -> None:
    """sum_j dx_j d_j is eps r^3 S_gd, not 0 (it is 0 only when eps = 0)."""
    block = MomentBlock()
    d = derive(block)
    x = block.field("x")
    assert not is_zero((d.dx * x.shift(-x.sum() / block.m)).sum(), block)


def test_moment_sum_rejects_non_polynomial_terms() -> None:
    block = MomentBlock()
    with pytest.raises(ValueError, match="not polynomial in the fields"):
        block.total(sp.sqrt(block.fields["x"]))


def test_layer_norm_check_detects_a_wrong_grouping() -> None:
    """G = 2 is not LayerNorm: the structural comparison can tell."""
    x, w, b, eps = proofs._symbolic_tensor((1, 4, 2))
    assert not proofs._same(proofs.group_norm_tensor(x, 2, w, b, eps), proofs.layer_norm_tensor(x, w, b, eps))


# ----------------------------------------------------------------------------------------------------------
# SPEC.md and the command
# ----------------------------------------------------------------------------------------------------------


def test_spec_md_generated_block_is_current() -> None:
    assert spec.block_is_current(SPEC_MD), (
        f"{SPEC_MD}: the generated gradients block is out of date; run "
        "python -m gn_spec.derivations --write-spec"
    )


def test_generated_block_prints_every_formula() -> None:
    block = spec.generated_block()
    for item in F.DEFINITIONS + F.FORMULAS:
        assert item.latex in block


def test_check_spec_detects_a_stale_block_and_write_spec_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "SPEC.md"
    path.write_text(f"# title\n\n{spec.BEGIN}\nold text\n{spec.END}\n\n## after\n", encoding="utf-8")
    assert cli.main(["--check-spec", str(path)]) == 1
    assert spec.write_spec(path)
    assert cli.main(["--check-spec", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# title\n") and text.endswith("## after\n") and "old text" not in text


def test_missing_markers_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "SPEC.md"
    path.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no <!-- BEGIN GENERATED: gradients -->"):
        spec.write_spec(path)


def test_command_exits_non_zero_when_a_proof_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_checks(max_m: int, consistency_m: int) -> object:
        yield "m = 1", proofs.Check("a true statement", lambda: True)
        yield "m = 2", proofs.Check("a false statement", lambda: False)

    monkeypatch.setattr(proofs, "all_checks", fake_checks)
    assert cli.main(["--max-m", "2"]) == 1
    out = capsys.readouterr().out
    assert "PROVED  a true statement" in out and "FAILED  a false statement" in out and "1/2 checks" in out


def test_write_spec_refuses_fewer_m_than_it_states(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--max-m", "2", "--write-spec", "unused.md"])
    assert "--write-spec states proofs for m = 1..6" in capsys.readouterr().err
