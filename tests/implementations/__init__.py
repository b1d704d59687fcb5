"""Implementations of Group Normalization for the checker's meta-tests (README.md), and their catalogue.

A package so that the tests and the benchmarks import the catalogue the same way, as
``implementations.catalogue``, with tests/ on the import path (pytest puts it there for the test modules;
benchmarks/_catalogue_runs.py puts it there for the benchmarks).
"""
