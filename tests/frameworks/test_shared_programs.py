"""A run's worker processes share the programs a JAX-based target compiles (``--jobs`` with a target that
compiles per shape: JAX's persistent compilation cache in a directory of the run).  A worker that loads a
program another compiled must give the same bits as one that compiled it itself, or sharing would change
what is judged; and it must really load them (else the sharing saves nothing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gn_spec.checker.target import make_config
from gn_spec.checker.worker_process import CallRequest, WorkerProcess

pytestmark = pytest.mark.skipif(importlib.util.find_spec("flax") is None, reason="flax is not installed")


def _requests() -> list[CallRequest]:
    rng = np.random.default_rng(3)
    out = []
    for shape in [(2, 4, 3), (1, 6, 5)]:
        c = shape[1]
        x, dy, ggx = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
        w, b, ggw = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
        out += [
            CallRequest("forward", 2, 1e-5, {"x": x + 3.0, "weight": w, "bias": b}),
            CallRequest("backward", 2, 1e-5, {"x": x, "weight": w, "bias": b, "grad_output": dy}),
            CallRequest(
                "double_backward", 2, 1e-5,
                {"x": x, "weight": w, "bias": b, "grad_output": dy, "grad_grad_input": ggx,
                 "grad_grad_weight": ggw},
            ),
        ]  # fmt: skip
    return out


def _run(cache: str | None) -> tuple[list[tuple[str, list[bytes]]], str]:
    with WorkerProcess(make_config("flax.linen.GroupNorm", profile="default"), cache) as worker:
        worker.start()
        results = worker.run(_requests())
        worker.log.flush()
        worker.log.seek(0)
        return [(r.status, [a.tobytes() for a in r.arrays]) for r in results], worker.log.read().decode()


def test_a_loaded_program_gives_the_bits_of_a_compiled_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JAX_LOG_COMPILES", "1")  # the worker's log then names each cache hit
    alone, _ = _run(None)
    assert [status for status, _ in alone] == ["ok"] * 6
    cache = str(tmp_path / "programs")
    first, first_log = _run(cache)
    saved = sorted(p.name for p in Path(cache).iterdir())
    second, second_log = _run(cache)
    assert saved and "Persistent compilation cache hit" not in first_log
    assert second_log.count("Persistent compilation cache hit") >= 6  # each operation's program, at least
    assert first == alone and second == alone
