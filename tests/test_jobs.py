"""``--jobs N`` (issue 10, point 4): the properties run in N processes; the report is that of ``--jobs 1``.

Compared field by field after dropping only what measures the run rather than judges the target (listed in
:data:`RUN_MEASUREMENTS`).  The comparison is of whole JSON reports of the CLI, on a failing catalogued
implementation (counterexamples, reproducers, diagnoses and worst cases must match) and on torch.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from checker_helpers import gn_spec, implementation, target

from gn_spec.checker import builtins, run_check
from gn_spec.checker.options import AUTO_JOBS
from gn_spec.checker.report import Report
from gn_spec.checker.target import make_config, processes_for
from gn_spec.checker.worker_process import HANG_BUDGET

#: What differs between --jobs 1 and --jobs 2 and is no verdict: when and how long (the timestamp, the run's
#: and each property's seconds), the command line (it names --jobs) and the environment's counters of worker
#: starts and calls (each job process starts its own worker; the parent's makes no_tampering's call), and
#: the number of processes with why --jobs auto chose it, and whether they shared compiled programs.
RUN_MEASUREMENTS = (
    ("timestamp",),
    ("command",),
    ("summary", "seconds"),
    ("environment", "worker_starts"),
    ("environment", "calls"),
    ("environment", "jobs"),
    ("environment", "jobs_auto"),
    ("environment", "shared_programs"),
    ("properties", "*", "seconds"),
)


def _without_measurements(report: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(report)
    for path in RUN_MEASUREMENTS:
        if path[0] == "properties":
            for p in out["properties"]:
                del p[path[2]]
        elif len(path) == 1:
            del out[path[0]]
        else:
            del out[path[0]][path[1]]
    return out


def _json_report(tmp_path: Path, what: str, jobs: int, *args: str) -> tuple[dict[str, Any], str]:
    path = tmp_path / f"{jobs}.json"
    result = gn_spec("check", what, *args, "--jobs", str(jobs), "--json", str(path), cwd=tmp_path)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return json.loads(path.read_text()), result.stderr


@pytest.mark.parametrize(
    ("what", "args"),
    [
        (implementation("np_eps_ignored@float32"), ("--profile", "quick", "--seed", "5")),
        ("torch", ("--profile", "quick", "--seed", "7")),
    ],
    ids=["np_eps_ignored", "torch"],
)
def test_two_jobs_give_the_report_of_one(tmp_path: Path, what: str, args: tuple[str, ...]) -> None:
    one, _ = _json_report(tmp_path, what, 1, *args)
    two, progress = _json_report(tmp_path, what, 2, *args)
    assert one["verdict"] == "does not conform"  # both targets fail some property: counterexamples compared
    counterexamples = [[p["counterexample"] for p in r["properties"]] for r in (one, two)]
    assert counterexamples[1] == counterexamples[0] and any(counterexamples[0])
    assert _without_measurements(two) == _without_measurements(one)
    # the job processes' workers were started and counted: one each, plus the parent's
    assert two["environment"]["worker_starts"] == one["environment"]["worker_starts"] + 2
    # a progress line per property, as each finishes (in the order they finish), no_tampering last
    lines = [ln for ln in progress.splitlines() if ln.startswith("[")]
    n = len(one["properties"])
    assert sorted(lines) == sorted(set(lines)) and len(lines) == n
    assert lines[-1].startswith(f"[{n}/{n}] no_tampering")


@pytest.mark.parametrize(
    ("file", "change"),
    [
        ("tamper_at_call.py", "numpy.allclose was replaced while TARGET was being called"),
    ],
)
def test_no_tampering_judges_the_calls_of_every_job(file: str, change: str) -> None:
    """The tampering seen by the job processes' workers reaches no_tampering, which runs in the parent."""
    chosen = ["forward_agreement", "output_shape_and_dtype", "input_not_modified", "no_tampering"]
    reports = [
        run_check(target(file, "group_norm"), properties=chosen, profile="quick", seed=0, jobs=jobs)
        for jobs in (1, 2)
    ]
    verdicts = [[(p.name, p.status, p.message) for p in r.properties] for r in reports]
    assert verdicts[1] == verdicts[0]
    assert [p.name for p in reports[1].failed] == ["no_tampering"]
    assert change in reports[1].failed[0].message


def test_the_hang_budget_is_each_processes(tmp_path: Path) -> None:
    """With two jobs each process waits the full --timeout for its own first HANG_BUDGET hung calls; the
    parent's worker, for no_tampering, then makes no call (the target answered none and hung too often)."""
    path = tmp_path / "r.json"
    result = gn_spec(
        "check", target("hangs.py", "hangs_always"), "--profile", "quick", "--seed", "0", "--timeout", "2",
        "--jobs", "2", "--json", str(path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(path.read_text())
    # more than one process's budget, at most two: --jobs 1 stops at HANG_BUDGET (tests/test_hang_budget.py)
    assert HANG_BUDGET < data["environment"]["hung_calls"] <= 2 * HANG_BUDGET
    applicable = [p for p in data["properties"] if p["status"] != "not applicable"]
    assert [p["name"] for p in applicable if p["status"] != "failed"] == ["no_tampering"]
    given_up = [p for p in applicable if "not called: the target hung on each of the 2 calls" in p["message"]]
    assert given_up  # once its own budget is spent, a process makes no more calls


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_jobs_value_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = gn_spec("check", "torch", "--jobs", value, cwd=tmp_path)
    assert result.returncode == 2
    assert f"invalid jobs {value!r}: expected a positive integer" in result.stderr


def test_run_check_refuses_a_bad_jobs_value() -> None:
    from gn_spec.checker.target import UsageError

    with pytest.raises(UsageError, match="--jobs 0"):
        run_check("torch", jobs=0)


# ----------------------------------------------------------------------------------------------- --jobs auto


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 2), (16, 4)])
def test_auto_shares_a_compiling_targets_properties_among_the_cpus(
    monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    # as if keras and jax were installed (the py env has neither; only the registry is read here)
    monkeypatch.setattr(builtins, "installed_version", lambda distribution: "1")
    # a target that compiles per shape, by its option (keras on jax does; the registry says why), at the
    # default profile: one process per CPU, at most AUTO_JOBS
    keras = "keras.layers.GroupNormalization"
    compiled = make_config(keras, profile="default", target_options=["backend=jax"])
    n, why = processes_for(compiled, "auto")
    assert n == expected and (why != "") == (expected > 1)
    assert "compiled for every new shape" in why or expected == 1
    assert processes_for(replace(compiled, profile="thorough"), "auto")[0] == expected
    # the quick profile, a target that compiles nothing, and a number given: as asked, or 1
    assert processes_for(replace(compiled, profile="quick"), "auto") == (1, "")
    assert processes_for(make_config("torch", profile="default"), "auto") == (1, "")
    assert processes_for(compiled, 3) == (3, "")
    assert AUTO_JOBS == 4


def test_the_report_says_how_many_processes_shared_the_properties_and_why() -> None:
    def line(**environment: object) -> list[str]:
        return [ln for ln in Report(make_config("torch"), environment=environment).target_lines()
                if ln.startswith("processes:")]

    assert line(jobs=2, jobs_auto="it compiles; one process per CPU", shared_programs=True) == [
        "processes: the properties shared among 2 checker processes, each with its own worker, which load "
        "the programs another has compiled (JAX's compilation cache, in a temporary directory of the run) "
        "(--jobs auto: it compiles; one process per CPU); --jobs 1 runs them in one"
    ]
    assert line(jobs=3, jobs_auto="", shared_programs=False) == [
        "processes: the properties shared among 3 checker processes, each with its own worker; --jobs 1 runs "
        "them in one"
    ]
    assert line(jobs=1, jobs_auto="", shared_programs=False) == []


@pytest.mark.parametrize("text", ["0", "-1", "many", "2.5"])
def test_jobs_takes_a_positive_number_or_auto(text: str) -> None:
    result = gn_spec("check", "torch", "--jobs", text)
    assert result.returncode == 2
    assert f"invalid jobs {text!r}: expected a positive integer or auto" in result.stderr
