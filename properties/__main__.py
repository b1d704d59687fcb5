"""``python -m gn_spec.properties``: list the property catalogue (name and one-line summary)."""

from gn_spec.properties import catalogue

for spec in catalogue():
    print(f"{spec.name:34} {spec.summary}")
