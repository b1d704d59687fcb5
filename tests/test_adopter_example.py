"""examples/adopter, the project that README's "In a project's tests" shows, and README's snippet of it.

The fast test (every env) holds README's ``[testenv:gn-conformance]`` snippet to the example's ``tox.ini``:
they differ only in where gn-spec is installed from.  The slow tests really run the example's env with tox,
as an adopter would (``cd examples/adopter && tox -e gn-conformance``), with gn-spec built from this checkout
and torch pinned by constraints.txt: once as it is (it must pass), once with its deviations deleted (it must
fail, naming the failure kind).  They take minutes (a new env, torch installed, gn-spec built), so they run in
tox's ``adopter`` env, which sets GN_SPEC_ADOPTER=1; elsewhere they skip, and there a missing tox fails them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "adopter"
#: How the example installs gn-spec (this checkout, two folders up) and how README's snippet does (PyPI).
CHECKOUT_DEP = "    {toxinidir}/../..[torch]"
PACKAGE_DEP = "    gn-spec[torch]"

REQUIRE = os.environ.get("GN_SPEC_ADOPTER") == "1"
slow = pytest.mark.skipif(
    not REQUIRE, reason="runs tox on examples/adopter (minutes): tox -e adopter, or set GN_SPEC_ADOPTER=1"
)


def readme_snippet() -> str:
    """The ini block of README that holds ``[testenv:gn-conformance]`` (there must be exactly one)."""
    blocks = re.findall(r"^```ini\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)
    found = [b for b in blocks if "[testenv:gn-conformance]" in b]
    assert len(found) == 1, f"README has {len(found)} ini blocks with [testenv:gn-conformance], not 1"
    return found[0]


def test_readme_snippet_is_the_example_env() -> None:
    example = (EXAMPLE / "tox.ini").read_text().splitlines()
    snippet = readme_snippet().splitlines()
    assert len(snippet) == len(example), (
        f"README's snippet has {len(snippet)} lines, examples/adopter/tox.ini {len(example)}:\n"
        + "\n".join(snippet)
    )
    differing = [(e, s) for e, s in zip(example, snippet, strict=True) if e != s]
    assert differing == [(CHECKOUT_DEP, PACKAGE_DEP)], (
        "README's snippet and examples/adopter/tox.ini may differ only in gn-spec's install source; "
        f"(tox.ini, README) lines that differ: {differing}"
    )


def test_readme_snippet_is_a_whole_tox_ini() -> None:
    """The snippet is all of the example's tox.ini, one env: what README shows is what the example runs."""
    sections = re.findall(r"^\[(.*)\]$", readme_snippet(), re.M)
    assert sections == ["testenv:gn-conformance"]


@pytest.fixture(scope="module")
def adopter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the example's folder, a tox work dir) in a tree laid out as the checkout: ``<root>/examples/adopter``
    is a copy of the example (so a test can change its deviations file), and each other top-level entry of
    ``<root>`` links to the checkout's, so the example's ``{toxinidir}/../..`` is gn-spec's source and what
    building it writes (build/, *.egg-info) lands in ``<root>``, not in the checkout."""
    if importlib.util.find_spec("tox") is None:
        pytest.fail("GN_SPEC_ADOPTER=1 but tox is not installed here (tox -e adopter installs it)")
    root = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name in {".git", ".tox", "build", "dist", "examples"} or entry.name.endswith(".egg-info"):
            continue
        (root / entry.name).symlink_to(entry)
    example = root / "examples" / "adopter"
    ignored = shutil.ignore_patterns(".tox", ".hypothesis", ".pytest_cache", "__pycache__", "*.egg-info")
    shutil.copytree(EXAMPLE, example, ignore=ignored)
    return example, tmp_path_factory.mktemp("tox-work")


def run_tox(example: Path, workdir: Path) -> tuple[int, str, float]:
    """``tox -e gn-conformance`` in ``example`` as an adopter's shell would run it: the outer tox's and
    pytest's variables removed (tox reads TOX_* as settings), PIP_CONSTRAINT set to constraints.txt (tox
    passes PIP_* into its installs, so torch is the pinned CPU build)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TOX_") and k not in {"VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"}
    }
    env["PIP_CONSTRAINT"] = str(ROOT / "constraints.txt")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tox", "-e", "gn-conformance", "--workdir", str(workdir)],
        cwd=example, env=env, capture_output=True, text=True, timeout=1800,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@slow
def test_example_conforms_with_its_deviations(adopter: tuple[Path, Path]) -> None:
    example, workdir = adopter
    rc, out, seconds = run_tox(example, workdir)
    assert rc == 0, f"tox -e gn-conformance exited {rc} after {seconds:.0f} s:\n{out[-6000:]}"
    summary = re.findall(r"^=+ (.*) in [\d.]+s.* =+$", out, re.M)
    assert summary and re.fullmatch(r"\d+ passed", summary[-1]), summary
    assert "gn-conformance: OK" in out


@slow
def test_example_fails_without_its_deviations(adopter: tuple[Path, Path]) -> None:
    example, workdir = adopter
    deviations = example / "deviations.toml"
    declared = deviations.read_text()
    assert "[[deviation]]" in declared
    deviations.write_text("# every [[deviation]] entry deleted\n")
    try:
        rc, out, seconds = run_tox(example, workdir)
    finally:
        deviations.write_text(declared)
    assert rc != 0, f"tox -e gn-conformance passed without the deviations:\n{out[-6000:]}"
    assert "gn-conformance: FAIL" in out
    # the declared deviation, now a failure: its kind and the target's own message
    assert "refused valid input" in out, out[-6000:]
    assert "bias without weight is not supported" in out, out[-6000:]
