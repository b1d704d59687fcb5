"""The checker's view of the formats it tests: names for ``--dtype`` and each format's numpy container.

The facts and the conversions live in :mod:`gn_spec.formats`; this module re-exports them under the names
the checker has always used, because reproducer scripts written by gn-spec 0.1.0 import
``from gn_spec.checker.dtypes import round_to`` and the CLI imports ``DTYPE_NAMES`` from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gn_spec.formats import FORMATS, NAMES, is_representable, round_to

__all__ = ["CONTAINER", "DTYPE_NAMES", "is_representable", "round_to"]

#: Names accepted by ``--dtype``, in the order the CLI lists them.
DTYPE_NAMES = NAMES

#: The numpy dtype that carries values of each format.
CONTAINER: dict[str, np.dtype[Any]] = {name: fmt.container for name, fmt in FORMATS.items()}
