"""Allocation per response: body-sized for the strategies that copy their flush (`single`);
bounded for every zero-copy shape. Every registered h2c strategy, by its declared shape."""

from __future__ import annotations

import pytest

from toolkit.probes.alloc import measure_alloc_per_response
from toolkit.strategies import STRATEGIES, strategy_names

SIZES = (1 << 10, 1 << 14, 1 << 20, 16 << 20)
BOUND_BYTES = 64 << 10
COPYING = [s for s in strategy_names("h2c") if STRATEGIES[s].shape.copies_flush]
ZERO_COPY = [s for s in strategy_names("h2c") if not STRATEGIES[s].shape.copies_flush]


@pytest.fixture(scope="module")
def allocations():
    from toolkit.server.process import ServerOptions, ServerProcess

    table: dict[str, dict[int, int]] = {}
    for strategy in strategy_names("h2c"):
        with ServerProcess(ServerOptions(strategy=strategy, body_bytes=1024)) as srv:
            table[strategy] = {n: measure_alloc_per_response(srv.url, f"/bytes/{n}", samples=3)
                               for n in SIZES}
    return table


@pytest.mark.parametrize("strategy", ZERO_COPY)
def test_zero_copy_strategies_stay_under_64KiB_per_response(allocations, strategy):
    for n, alloc in allocations[strategy].items():
        assert alloc < BOUND_BYTES, f"{strategy} allocated {alloc} B for a {n} B body"
    # And it does not grow with the body: 16 MiB costs about what 1 KiB costs.
    assert allocations[strategy][16 << 20] < allocations[strategy][1 << 10] + BOUND_BYTES // 2


@pytest.mark.parametrize("strategy", COPYING)
def test_a_copying_strategy_allocates_the_flush_it_copies(allocations, strategy):
    flush_bytes = 1 << 20  # the server's default --flush-bytes
    copying = allocations[strategy]
    for n, alloc in copying.items():
        assert alloc >= min(n, flush_bytes), f"{strategy} allocated {alloc} B for {n} B"
    assert copying[1 << 20] > 10 * max(allocations[s][1 << 20] for s in ZERO_COPY)
    assert copying[1 << 10] < copying[1 << 14] < copying[1 << 20]
