"""Comparison runs: which servers to start, in which order, and how their rows are made.

- `config`: what a comparison measures (cells, request counts), checked up front;
- `cells`: the runs of one cell (timing, allocation probe, counting under strace);
- `run`: the rounds over all cells, rows as each cell finishes;
- `result`: the rows and the meta that says how they were made.
"""

from toolkit.runner.config import CompareConfig
from toolkit.runner.result import CompareResult
from toolkit.runner.run import compare, run_compare

__all__ = ["CompareConfig", "CompareResult", "compare", "run_compare"]
