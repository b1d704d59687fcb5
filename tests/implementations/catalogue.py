"""The machine-readable catalogue of the implementations in this folder: what each is, and how to check it.

Every faulty implementation carries one bug of a class seen in public code (its docstring names the class
and a source); every correct one computes Group Normalization in its own way. An entry says which API the
checker should use, at which dtype the implementation must be checked (some bugs exist only in one
precision), the bug class and its public source, which gn_spec.variants variant should explain its output
when the diagnosis applies, and which kind of check is expected to catch it (the kill matrix runs those
properties first, which only saves time; the meta-tests assert only the verdict).

Paths are relative to the repository root; ``target`` is what ``gn-spec check`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Entry:
    """One implementation checked at one dtype."""

    path: str  # relative to the repository root
    api: str  # "numpy", "torch" or "cs231n"
    dtype: str  # the dtype to check it at
    correct: bool
    bug_class: str = ""
    source: str = ""
    #: the gn_spec.variants name expected to explain the failure (forward or backward), None when none fits
    variant: str | None = None
    #: the kind of property expected to catch it: forward, backward, double_backward, contract, non_finite,
    #: exception (the implementation raises on valid input)
    caught_by: str = ""

    @property
    def name(self) -> str:
        return f"{Path(self.path).stem}@{self.dtype}"

    @property
    def target(self) -> str:
        """The TARGET argument of ``gn-spec check``: ``file.py:group_norm``, or the file for cs231n."""
        return self.path if self.api == "cs231n" else f"{self.path}:group_norm"

    @property
    def file(self) -> Path:
        return ROOT / self.path

    @property
    def absolute_target(self) -> str:
        """``target`` with the file's absolute path, usable from any working directory."""
        return str(self.file) if self.api == "cs231n" else f"{self.file}:group_norm"


def _faulty(stem: str, api: str, bug_class: str, source: str, caught_by: str, variant: str | None = None,
            dtype: str = "float32") -> Entry:
    return Entry(f"tests/implementations/faulty/{stem}.py", api, dtype, False, bug_class, source, variant,
                 caught_by)


def _correct(stem: str, api: str, dtype: str) -> Entry:
    return Entry(f"tests/implementations/correct/{stem}.py", api, dtype, True)


FAULTY: tuple[Entry, ...] = (
    # numpy functional API (forward and contracts only)
    _faulty("np_bessel_variance", "numpy", "Bessel-corrected variance",
            "https://github.com/pytorch/pytorch/issues/22617", "forward", "bessel_variance"),
    _faulty("np_eps_outside_sqrt", "numpy", "eps added to the standard deviation",
            "https://github.com/taokong/group_normalization/issues/1", "forward", "eps_outside_sqrt"),
    _faulty("np_eps_clamp", "numpy", "eps used as a clamp instead of added",
            "https://github.com/pytorch/pytorch/issues/50473", "forward", "eps_as_clamp"),
    _faulty("np_eps_ignored", "numpy", "eps argument ignored",
            "https://github.com/chainer/chainer/pull/2214", "forward", "eps_ignored"),
    _faulty("np_interleaved_groups", "numpy", "interleaved groups (channel c in group c % G)",
            "https://github.com/ZiyueHuang/MXShuffleNet/issues/4", "forward", "interleaved_groups"),
    _faulty("np_per_group_affine", "numpy", "per-group affine (ONNX GroupNormalization-18 reading)",
            "https://github.com/onnx/onnx/issues/5466", "forward", "per_group_affine"),
    _faulty("np_one_pass_variance", "numpy", "one-pass variance E[x^2] - E[x]^2 in working precision",
            "https://github.com/PaddlePaddle/Paddle/issues/16654", "forward"),
    _faulty("np_one_pass_clamped_float16", "numpy",
            "one-pass variance clamped at 0, float32 statistics of float16 data",
            "https://github.com/patrick-kidger/equinox/pull/314", "forward", "one_pass_clamped",
            dtype="float16"),
    _faulty("np_batch_pooled", "numpy", "statistics pooled across the batch",
            "https://github.com/sonos/tract/pull/2863", "forward", "batch_pooled"),
    _faulty("np_layer_norm_always", "numpy", "LayerNorm regardless of G",
            "https://github.com/pytorch/pytorch/pull/159736", "forward", "layer_norm"),
    _faulty("np_instance_norm_always", "numpy", "InstanceNorm regardless of G",
            "https://github.com/NVIDIA/TensorRT-Incubator/pull/637", "forward", "instance_norm"),
    _faulty("np_affine_before_normalize", "numpy", "affine applied before normalizing",
            "https://github.com/octo-models/octo/issues/14", "forward", "affine_before_normalizing"),
    _faulty("np_weight_bias_swapped", "numpy", "weight and bias swapped",
            "https://github.com/Vladkryvoruchko/PSPNet-Keras-tensorflow/issues/31", "forward",
            "weight_bias_swapped"),
    _faulty("np_float64_in_float32", "numpy", "float64 input computed in float32",
            "https://github.com/google/flax/issues/612", "forward", "computed_in_float32", dtype="float64"),
    _faulty("np_fp16_accumulation", "numpy", "float16 accumulation",
            "https://github.com/pytorch/executorch/pull/16727", "forward", dtype="float16"),
    _faulty("np_fp16_square_overflow", "numpy", "squares overflowing at large magnitude",
            "https://github.com/neuroneural/brainchop-cli/pull/56", "forward", dtype="float16"),
    _faulty("np_inplace_input", "numpy", "input modified in place",
            "https://github.com/pytorch/vision/issues/517", "contract"),
    _faulty("np_only_4d", "numpy", "only 4-D input handled",
            "https://github.com/PaddlePaddle/Paddle/pull/34773", "forward"),
    _faulty("np_channels_last_no_permute", "numpy", "channels-last reshape without the permute",
            "https://github.com/tensorflow/addons/issues/751", "forward", "channels_last_without_permute"),
    _faulty("np_nan_replaced", "numpy", "NaN replaced instead of propagated",
            "https://github.com/DASDAE/dascore/pull/793", "non_finite", "nan_replaced_by_zero"),
    _faulty("np_non_pow2_group_size", "numpy", "non-power-of-two group sizes mishandled",
            "https://github.com/flagos-ai/FlagGems/issues/4984", "forward"),
    # torch functional API (forward, backward and double backward through autograd)
    _faulty("torch_bessel_variance", "torch", "Bessel-corrected variance (torch.var default)",
            "https://github.com/pytorch/pytorch/issues/22617", "forward", "bessel_variance"),
    _faulty("torch_detached_stats", "torch", "gradient through the statistics severed (detach)",
            "https://github.com/abhiskk/ladder/issues/2", "backward", "backward_statistics_detached"),
    _faulty("torch_custom_fn_first_order_backward", "torch",
            "first-order custom backward that is not differentiable (wrong double backward)",
            "https://github.com/pytorch/pytorch/issues/58509", "double_backward"),
    _faulty("torch_custom_fn_missing_mean_term", "torch", "backward missing the mean term",
            "https://github.com/mlpack/mlpack/pull/2474", "backward", "backward_missing_mean_term"),
    _faulty("torch_custom_fn_missing_variance_term", "torch", "backward missing the variance term",
            "https://github.com/abhiskk/ladder/issues/2", "backward", "backward_missing_variance_term"),
    _faulty("torch_bf16_accumulation", "torch", "bfloat16 accumulation",
            "https://github.com/pytorch/executorch/pull/16727", "forward", dtype="bfloat16"),
    _faulty("torch_float64_in_float32", "torch", "float64 input computed in float32",
            "https://github.com/google/flax/issues/612", "forward", "computed_in_float32", dtype="float64"),
    _faulty("torch_one_pass_variance", "torch", "one-pass variance E[x^2] - E[x]^2 in working precision",
            "https://github.com/openvinotoolkit/openvino/pull/36587", "forward"),
    _faulty("torch_channels_last_no_permute", "torch", "channels-last reshape without the permute",
            "https://github.com/tensorflow/addons/issues/751", "forward", "channels_last_without_permute"),
    _faulty("torch_nn_module_unpatched", "torch",
            "exception on valid input inherited from torch (a batch of one, one value per group)",
            "https://github.com/pytorch/pytorch/issues/19250", "exception"),
    # CS231n pair (forward and backward)
    _faulty("cs231n_dgamma_keepdims", "cs231n", "grad of weight/bias returned as (1, C, 1, 1)",
            "https://cs231n.github.io/assignments2019/assignment2/", "contract"),
    _faulty("cs231n_dgamma_batch_mean", "cs231n", "grad of weight/bias not summed over the batch",
            "https://github.com/pytorch/pytorch/issues/140913", "backward",
            "backward_params_averaged_over_batch"),
    _faulty("cs231n_missing_mean_term", "cs231n", "backward missing the mean term",
            "https://github.com/AlexeyAB/darknet/issues/4605", "backward", "backward_missing_mean_term"),
    _faulty("cs231n_missing_variance_term", "cs231n", "backward missing the variance term",
            "https://github.com/BVLC/caffe/issues/3878", "backward", "backward_missing_variance_term"),
    _faulty("cs231n_eps_outside_sqrt", "cs231n", "eps added to the standard deviation",
            "https://github.com/keras-team/keras/pull/8726", "forward", "eps_outside_sqrt"),
    _faulty("cs231n_batch_pooled", "cs231n", "statistics pooled across the batch",
            "https://github.com/Nico-Curti/NumPyNet/issues/7", "forward", "batch_pooled"),
)

CORRECT: tuple[Entry, ...] = (
    _correct("np_float64_two_pass", "numpy", "float32"),
    _correct("np_float64_two_pass", "numpy", "float16"),
    _correct("np_chan_merge", "numpy", "float32"),
    _correct("np_chan_merge", "numpy", "float64"),
    _correct("np_chunked_accumulation", "numpy", "float32"),
    _correct("np_channels_last_done_right", "numpy", "float64"),
    _correct("np_loop_per_group", "numpy", "float32"),
    _correct("torch_nn_module", "torch", "float32"),
    # Not at float64: PyTorch's CPU GroupNorm backward sums grad_bias over N * prod(spatial) with an error
    # that grows faster than the log-depth bound (ratio 2.1 on x of shape (1, 1, 1000, 1000) with
    # grad_output = -10 + N(0, 1)), so the wrapper inherits a real non-conformance there.
    _correct("torch_autograd_ops", "torch", "float64"),
    _correct("torch_custom_fn_differentiable", "torch", "float64"),
    _correct("cs231n_groupnorm", "cs231n", "float32"),
    _correct("cs231n_via_layernorm", "cs231n", "float64"),
)

ALL: tuple[Entry, ...] = FAULTY + CORRECT
