"""The framework findings the conformance matrix points to: for each way a built-in target fails, the test
that confirms the defect with the framework alone (no gn-spec code in the failing call, the exact value
computed independently), or why it is not confirmed.

``gn-spec matrix`` gives each failed property of a row the first :class:`Finding` that matches it (target,
options, dtype, property, failure kind) and shows the findings in the row's "confirmed by" column; a failure
that matches none says so, and ``tests/test_findings.py`` fails on the committed matrix until it is recorded
here.  SPEC.md §3.11 and §3.12 describe each finding, with its counterexample and likely cause.

One finding often explains several failed properties of a row (a one-pass variance fails forward_agreement
and, through it, shift_invariance and spatial_permutation_equivariance); such an entry matches any property
(``properties`` empty).  Entries are tried in order, so a narrow one goes before a broad one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gn_spec.checker.failure_kinds import NON_FINITE, REFUSED, UNEXPRESSIBLE, WRONG_VALUES

_FW = "tests/frameworks/"


@dataclass(frozen=True)
class Finding:
    """One defect of a built-in target and what confirms it.

    ``test``: the confirming test's node id (``path::function``), or "" when ``unconfirmed`` says why there
    is none.  ``options``, ``dtypes``, ``properties``, ``kinds``: what it covers (empty: any); ``options``
    are KEY=VALUE texts the row must have.
    """

    target: str
    what: str  # the defect in a few words
    test: str = ""
    unconfirmed: str = ""
    options: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.test) == bool(self.unconfirmed):
            raise ValueError(f"{self.target}: {self.what}: give a confirming test or why there is none")

    def matches(self, target: str, options: Sequence[str], dtype: str, prop: str, kind: str) -> bool:
        return (
            target == self.target
            and all(o in options for o in self.options)
            and (not self.dtypes or dtype in self.dtypes)
            and (not self.properties or prop in self.properties)
            and (not self.kinds or kind in self.kinds)
        )

    @property
    def label(self) -> str:
        """What the matrix shows: the test's function name, or "unconfirmed: why"."""
        return self.test.rpartition("::")[2] if self.test else f"unconfirmed: {self.unconfirmed}"


_ONE_PASS = ("forward_agreement", "shift_invariance", "spatial_permutation_equivariance", "scaling_identity",
             "constant_groups_give_bias", "single_value_groups", "batch_independence")
#: The targets that OpenVINO runs (the ONNX ones with runtime=openvino).
_OPENVINO_RUN = ("onnx.GroupNormalization-18", "onnx.GroupNormalization-21", "openvino.GroupNormalization-12")

FINDINGS: tuple[Finding, ...] = (
    # --------------------------------------------------------------------------------------------- PyTorch
    *(
        Finding(
            name,
            "refuses one value per group in a batch of one (N·m = 1)",
            test="tests/test_checker_conformance.py::test_torch_conforms_on_cpu_except_its_two_refusals",
            properties=("single_value_groups",),
            kinds=(REFUSED,),
        )
        for name in ("torch", "torch.nn.GroupNorm")
    ),
    Finding(
        "torch",
        "gradients through a bias without a weight raise",
        test="tests/test_checker_conformance.py::test_torch_gradients_through_a_bias_without_weight_raise",
        properties=("backward_agreement", "second_order_agreement", "input_not_modified",
                    "gradient_shapes_and_dtypes"),
        kinds=(REFUSED,),
    ),
    *(
        Finding(
            name,
            "float16 backward: the saved rstd is float16 and overflows",
            test="tests/test_torch_findings.py::test_torch_float16_backward_is_nan_where_the_saved_rstd_overflows",
            dtypes=("float16",),
            properties=("backward_agreement", "second_order_agreement", "input_not_modified"),
            kinds=(NON_FINITE, WRONG_VALUES),
        )
        for name in ("torch", "torch.nn.GroupNorm")
    ),
    *(
        Finding(
            name,
            "bfloat16 double backward composed of bfloat16 operations (SPEC §3.11)",
            unconfirmed="found by the checker; SPEC §3.11 gives the input, no torch-alone test yet",
            dtypes=("bfloat16",),
            properties=("second_order_agreement",),
        )
        for name in ("torch", "torch.nn.GroupNorm")
    ),
    *(
        Finding(
            name,
            "grad_bias of long channels summed sequentially (SPEC §3.11)",
            test="tests/test_error_model.py::test_pytorch_cpu_grad_bias_of_a_long_channel",
            dtypes=("float32", "float64"),
            properties=("backward_agreement",),
            kinds=(WRONG_VALUES,),
        )
        for name in ("torch", "torch.nn.GroupNorm")
    ),
    # ------------------------------------------------------------------------------------ Flax and Equinox
    *(
        Finding(
            name,
            "fast variance: one-pass E[x²] − E[x]² clamped at 0"
            + ("" if "linen" in name else " (its nnx test shows it at float16; linen's, the same formula, at "
               "float32)"),
            test=f"{_FW}test_flax_findings.py::"
            + ("test_linen_fast_variance_collapses_on_offset_data" if "linen" in name
               else "test_nnx_float16_offset_data"),
            options=("use_fast_variance=true",),
            dtypes=("float32", "float64"),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    *(
        Finding(
            name,
            "bfloat16 backward beyond the bound with the fast variance",
            unconfirmed="the checker's (default profile); not separated from the fast variance, no "
            "Flax-alone test at bfloat16",
            options=("use_fast_variance=true",),
            dtypes=("bfloat16",),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    *(
        Finding(
            name,
            "float16 backward of one-value groups is NaN (each cast's cotangent overflows)",
            test=f"{_FW}test_flax_findings.py::test_float16_backward_nan_for_one_value_groups",
            dtypes=("float16",),
            properties=("backward_agreement", "second_order_agreement", "single_value_groups",
                        "input_not_modified"),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    *(
        Finding(
            name,
            "fast variance at float16: one-pass variance cancels to 0",
            test=f"{_FW}test_flax_findings.py::test_nnx_float16_offset_data",
            options=("use_fast_variance=true",),
            dtypes=("float16",),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    *(
        Finding(
            name,
            "float32 second order wrong on large data (an underflow in the autodiff chain)",
            test=f"{_FW}test_flax_findings.py::test_float32_second_order_underflows_on_large_data",
            dtypes=("float32",),
            properties=("second_order_agreement",),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    *(
        Finding(
            name,
            "forward and constant groups of hundreds to 10⁵ elements just beyond the log-depth bound",
            unconfirmed="consistent with sequential summation (jnp.mean), SPEC §3.12 'Not confirmed'; "
            "no framework-alone test shows it beyond the bound",
            options=("use_fast_variance=false",),
            dtypes=("float32", "float64"),
            kinds=(WRONG_VALUES,),
        )
        for name in ("flax.linen.GroupNorm", "flax.nnx.GroupNorm")
    ),
    Finding(
        "equinox.nn.GroupNorm",
        "float32 second order wrong on large data (the Flax digits)",
        test=f"{_FW}test_equinox_findings.py::test_float32_second_order_underflows_on_large_data",
        dtypes=("float32",),
        properties=("second_order_agreement",),
    ),
    Finding(
        "equinox.nn.GroupNorm",
        "float16 and bfloat16 grad_bias of 60-element channels 1.3 to 12 times the bound",
        unconfirmed="the checker's (default profile, seed 0: shape (1, 4, 6, 2, 5), bias only, float16 "
        "grad_bias 59.8125 where 59.86 is exact); consistent with a sum in the input dtype; no "
        "Equinox-alone test yet",
        dtypes=("float16", "bfloat16"),
        properties=("backward_agreement",),
        kinds=(WRONG_VALUES,),
    ),
    *(
        Finding(
            name,
            "float16 backward +inf where the exact value is finite but exact ± bound reaches the overflow "
            "threshold",
            unconfirmed="possibly no defect: the admissible interval crosses float16's overflow threshold "
            "there (Keras on jax: grad_input 65518 exact, bound ±3.1·10⁴; MLX: grad_weight 638 exact, bound "
            "±1.5·10⁷), and SPEC §3.1 counts any inf where the exact value is finite; an open question",
            options=options,
            dtypes=("float16",),
            properties=("backward_agreement",),
            kinds=(NON_FINITE,),
        )
        for name, options in (("keras.layers.GroupNormalization", ("backend=jax",)),
                              ("mlx.nn.GroupNorm", ("pytorch_compatible=true",)))
    ),
    Finding(
        "equinox.nn.GroupNorm",
        "float16 second order non-finite where finite",
        unconfirmed="the checker's; no Equinox-alone test yet",
        dtypes=("float16",),
        properties=("second_order_agreement",),
    ),
    # ------------------------------------------------------------------------------------------------ Keras
    Finding(
        "keras.layers.GroupNormalization",
        "a float64 layer computes in float32 (backend.result_type maps float64 to float32)",
        test=f"{_FW}test_keras_findings.py::test_float64_policy_computes_in_float32",
        dtypes=("float64",),
    ),
    *(
        Finding(
            "keras.layers.GroupNormalization",
            "ops.moments is the one-pass E[x²] − E[x]², not clamped: NaN where finite",
            test=f"{_FW}test_keras_findings.py::test_one_pass_moments_nan_where_finite",
            options=(f"backend={backend}",),
            dtypes=("float32",),
        )
        for backend in ("torch", "numpy")
    ),
    *(
        Finding(
            "keras.layers.GroupNormalization",
            "float16 gradients non-finite where finite (the one-pass moments at float16, not separated)",
            unconfirmed="the checker's; test_one_pass_moments_nan_where_finite shows the moments at float32 "
            "only",
            options=(f"backend={backend}",),
            dtypes=("float16", "bfloat16"),
        )
        for backend in ("torch", "numpy")
    ),
    Finding(
        "keras.layers.GroupNormalization",
        "float32 second order wrong on large data (the digits of Flax's underflow, through jax.vjp)",
        unconfirmed="the same digits as test_float32_second_order_underflows_on_large_data (Flax alone); no "
        "Keras-alone test",
        options=("backend=jax",),
        dtypes=("float32", "float16", "bfloat16"),
        properties=("second_order_agreement",),
    ),
    Finding(
        "keras.layers.GroupNormalization",
        "float32 forward and constant groups of hundreds to 10⁵ elements beyond the log-depth bound",
        unconfirmed="consistent with sequential summation (jnp.mean), SPEC §3.12 'Not confirmed'; no "
        "framework-alone test shows it beyond the bound",
        options=("backend=jax",),
        dtypes=("float32",),
        kinds=(WRONG_VALUES,),
    ),
    # ------------------------------------------------------------------------------------------------- ONNX
    Finding(
        "onnx.GroupNormalization-18",
        "scale and bias are per group: a per-channel weight cannot be given",
        test=f"{_FW}test_onnx_findings.py::test_opset18_scale_is_per_group",
        kinds=(UNEXPRESSIBLE,),
    ),
    Finding(
        "onnx.GroupNormalization-18",
        "on OpenVINO: the function body's one-pass variance or the plugin's summation, not separated",
        unconfirmed="the checker's; the ONNX tests run onnxruntime and onnx.reference, the OpenVINO test "
        "opset-12 and GroupNormalization-21",
        options=("runtime=openvino",),
    ),
    Finding(
        "onnx.GroupNormalization-18",
        "the function body's unclamped one-pass variance in the input type",
        test=f"{_FW}test_onnx_findings.py::test_opset18_float64_one_pass_variance",
        options=(),
        dtypes=("float64",),
    ),
    Finding(
        "onnx.GroupNormalization-18",
        "the function body's unclamped one-pass variance: two float32 values give NaN",
        test=f"{_FW}test_onnx_findings.py::test_opset18_float32_two_values_nan",
        dtypes=("float32",),
    ),
    Finding(
        "onnx.GroupNormalization-18",
        "onnx.reference forms X·X in float16, which overflows at |x| ≥ 256",
        test=f"{_FW}test_onnx_findings.py::test_opset18_float16_reference_squares_overflow",
        options=("runtime=reference",),
        dtypes=("float16",),
    ),
    Finding(
        "onnx.GroupNormalization-18",
        "onnxruntime float16: NaN on offset data (the one-pass variance)",
        test=f"{_FW}test_onnx_findings.py::test_opset18_float16_onnxruntime_nan_where_finite",
        options=("runtime=onnxruntime",),
        dtypes=("float16",),
    ),
    *(
        Finding(
            name,
            "OpenVINO's CPU plugin refuses float16 inputs of these models",
            unconfirmed="the checker's (refused valid input); no OpenVINO-alone test yet",
            options=("runtime=openvino",) if name.startswith("onnx") else (),
            dtypes=("float16",),
            kinds=(REFUSED,),
        )
        for name in _OPENVINO_RUN
    ),
    *(
        Finding(
            name,
            "OpenVINO's CPU plugin: a constant group does not give 0 (its mean errs beyond a log-depth sum)",
            test=f"{_FW}test_openvino_findings.py::test_constant_group_is_not_zero",
            options=("runtime=openvino",) if name.startswith("onnx") else (),
            dtypes=("float32",),
        )
        for name in ("onnx.GroupNormalization-21", "openvino.GroupNormalization-12")
    ),
    Finding(
        "onnx.GroupNormalization-21",
        "the function body's unclamped one-pass variance: a constant group gives NaN",
        test=f"{_FW}test_onnx_findings.py::test_opset21_constant_group_nan",
        properties=("constant_groups_give_bias",),
        dtypes=("float32", "float16"),
    ),
    Finding(
        "onnx.GroupNormalization-21",
        "the function body's unclamped one-pass variance: two float32 values give NaN",
        test=f"{_FW}test_onnx_findings.py::test_opset21_float32_two_values_nan",
        dtypes=("float32",),
    ),
    Finding(
        "onnx.GroupNormalization-21",
        "the function body's unclamped one-pass variance at float16",
        test=f"{_FW}test_onnx_findings.py::test_opset21_float16_nan_where_finite",
        dtypes=("float16",),
    ),
    Finding(
        "onnx.GroupNormalization-21",
        "stash_type=1 specifies float32 statistics, so float64 results have float32 accuracy",
        unconfirmed="the operator's definition, not a runtime defect (SPEC §3.12); the one-pass variance's "
        "constant-group NaN is test_opset21_stash_float64_constant_group_nan",
        options=("stash_type=1",),
        dtypes=("float64",),
    ),
    # ---------------------------------------------------------------------------------------------- tinygrad
    Finding(
        "tinygrad.nn.GroupNorm",
        "float16 backward NaN where finite (statistics kept in float16)",
        test=f"{_FW}test_tinygrad_findings.py::test_float16_backward_nan_where_finite",
        dtypes=("float16",),
        properties=("backward_agreement", "input_not_modified", "single_value_groups"),
    ),
    Finding(
        "tinygrad.nn.GroupNorm",
        "float16 second order NaN where finite (the reciprocal's gradient overflows)",
        test=f"{_FW}test_tinygrad_findings.py::test_float16_second_order_nan_where_finite",
        dtypes=("float16",),
        properties=("second_order_agreement",),
    ),
    Finding(
        "tinygrad.nn.GroupNorm",
        "float16 forward wrong at a small variance (a subnormal mean flushed to 0)",
        test=f"{_FW}test_tinygrad_findings.py::test_float16_small_variance_forward_wrong",
        dtypes=("float16",),
        kinds=(WRONG_VALUES,),
    ),
    Finding(
        "tinygrad.nn.GroupNorm",
        "float16 variance overflows (its float16 mean of float32 squares)",
        test=f"{_FW}test_tinygrad_findings.py::test_float16_variance_overflows",
        dtypes=("float16",),
    ),
    # ------------------------------------------------------------------------------------------ PaddlePaddle
    Finding(
        "paddle.nn.functional.group_norm",
        "the backward drops grad_input's mean term when no weight is given",
        test=f"{_FW}test_paddle_findings.py::test_backward_without_weight_drops_the_mean_term",
        properties=("backward_agreement", "single_value_groups", "input_not_modified"),
    ),
    Finding(
        "paddle.nn.functional.group_norm",
        "the forward's variance is the one-pass E[x²] − E[x]², clamped at 0",
        test=f"{_FW}test_paddle_findings.py::test_one_pass_variance_cancels_to_zero",
        properties=_ONE_PASS,
    ),
    # -------------------------------------------------------------------------------------------------- MLX
    Finding(
        "mlx.nn.GroupNorm",
        "float32 second order wrong on large data",
        test=f"{_FW}test_mlx_findings.py::test_float32_second_order_wrong_on_large_data",
        dtypes=("float32",),
        properties=("second_order_agreement",),
    ),
    Finding(
        "mlx.nn.GroupNorm",
        "float64 with pytorch_compatible=True computes in float32 (mx.fast.layer_norm)",
        test=f"{_FW}test_mlx_findings.py::test_float64_pytorch_compatible_computes_in_float32",
        options=("pytorch_compatible=true",),
        dtypes=("float64",),
    ),
    Finding(
        "mlx.nn.GroupNorm",
        "float16 vjp NaN for one-value groups (rsqrt's derivative overflows float16)",
        test=f"{_FW}test_mlx_findings.py::test_float16_default_backward_nan_for_one_value_groups",
        options=("pytorch_compatible=false",),
        dtypes=("float16",),
        properties=("backward_agreement", "second_order_agreement", "single_value_groups",
                    "input_not_modified"),
    ),
    Finding(
        "mlx.nn.GroupNorm",
        "float16 statistics and eps kept in float16",
        test=f"{_FW}test_mlx_findings.py::test_float16_default_statistics_in_float16",
        options=("pytorch_compatible=false",),
        dtypes=("float16",),
    ),
    Finding(
        "mlx.nn.GroupNorm",
        "default grouping is interleaved: channel c in group c mod G",
        test=f"{_FW}test_mlx_findings.py::test_default_grouping_is_interleaved",
        options=("pytorch_compatible=false",),
    ),
    Finding(
        "mlx.nn.GroupNorm",
        "float32 failures on groups of 10⁵ elements and more, within the sequential-summation bound only",
        unconfirmed="the checker's (SPEC §3.12 'Not confirmed'); no MLX-alone test shows it beyond the bound",
        options=("pytorch_compatible=true",),
        dtypes=("float32",),
    ),
)


def confirmations(row: Any) -> list[dict[str, str]]:
    """For each failed property of ``row`` (a :class:`gn_spec.matrix.Row`): the finding that matches it
    (its label, test and what), or an entry saying none does."""
    out = []
    for f in row.failed:
        found = next(
            (x for x in FINDINGS if x.matches(row.target, row.options, row.dtype, f["name"], f["kind"])), None
        )
        if found is None:
            out.append({"property": f["name"], "label": "no finding recorded", "test": "", "what": ""})
        else:
            out.append({"property": f["name"], "label": found.label, "test": found.test, "what": found.what})
    return out
