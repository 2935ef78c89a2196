"""Comparison runs: which servers to start, in which order, and how their rows are made."""

from toolkit.runner.run import CompareConfig, CompareResult, compare, run_compare

__all__ = ["CompareConfig", "CompareResult", "compare", "run_compare"]
