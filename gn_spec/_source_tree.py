"""Running gn-spec from a checkout that is not installed (`PYTHONPATH=. python -m gn_spec.properties`).

``properties/`` and ``derivations/`` sit at the top of the repository and become ``gn_spec.properties`` and
``gn_spec.derivations`` only when installed (pyproject.toml's package-dir).  From a bare checkout, this finder
maps the two names onto those folders; it is appended last to ``sys.meta_path``, so an installed (or
editable) gn-spec always resolves them first, and outside a checkout it is not installed at all.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_ROOT = Path(__file__).resolve().parent.parent
_FOLDERS = {"gn_spec.properties": _ROOT / "properties", "gn_spec.derivations": _ROOT / "derivations"}


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``gn_spec.properties`` and ``gn_spec.derivations`` in the checkout's top-level folders."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        folder = _FOLDERS.get(fullname)
        if folder is None or not (folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install() -> None:
    """Append the finder when gn_spec is imported from a checkout (pyproject.toml beside the package)."""
    if not (_ROOT / "pyproject.toml").is_file():
        return
    if not any(isinstance(f, SourceTreeFinder) for f in sys.meta_path):
        sys.meta_path.append(SourceTreeFinder())
