"""Test-session settings shared by every test file.

Under CI (the CI environment variable is set, as .ci/run's environment does) Hypothesis runs derandomized:
each test draws the same examples on every run, so a CI result is reproducible. Locally the draws are random,
which keeps finding new cases; a failure prints the example to reproduce it.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
