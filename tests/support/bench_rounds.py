"""Benchmarks whose assertions need every round, with or without pytest-benchmark timing."""

from __future__ import annotations

from collections.abc import Callable

from pytest_benchmark.fixture import BenchmarkFixture


def run_rounds(benchmark: BenchmarkFixture, fn: Callable[[], object], rounds: int,
               warmup_rounds: int = 0) -> None:
    """`benchmark.pedantic(fn, rounds, warmup_rounds)`, and the same calls under
    `--benchmark-disable`, where pedantic would call `fn` once: the tests that use this
    measure their own ratios across rounds (and count what the rounds did), so a
    disabled benchmark must still run all of them."""
    if benchmark.disabled:
        for _ in range(warmup_rounds + rounds - 1):
            fn()
        benchmark.pedantic(fn)  # the last call: marks the fixture used, as pytest-benchmark asks
    else:
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
