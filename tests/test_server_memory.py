"""Allocation per response: body-sized for `single` only; bounded for the zero-copy shapes."""

from __future__ import annotations

import pytest

from toolkit.probes.alloc import measure_alloc_per_response

SIZES = (1 << 10, 1 << 14, 1 << 20, 16 << 20)
BOUND_BYTES = 64 << 10


@pytest.fixture(scope="module")
def allocations():
    from toolkit.server.process import ServerOptions, ServerProcess

    table: dict[str, dict[int, int]] = {}
    for strategy in ("single", "split", "writev", "cork", "chain"):
        with ServerProcess(ServerOptions(strategy=strategy, body_bytes=1024)) as srv:
            table[strategy] = {n: measure_alloc_per_response(srv.url, f"/bytes/{n}", samples=3)
                               for n in SIZES}
    return table


@pytest.mark.parametrize("strategy", ["split", "writev", "cork", "chain"])
def test_zero_copy_strategies_stay_under_64KiB_per_response(allocations, strategy):
    for n, alloc in allocations[strategy].items():
        assert alloc < BOUND_BYTES, f"{strategy} allocated {alloc} B for a {n} B body"
    # And it does not grow with the body: 16 MiB costs about what 1 KiB costs.
    assert allocations[strategy][16 << 20] < allocations[strategy][1 << 10] + BOUND_BYTES // 2


def test_single_allocates_the_flush_it_copies(allocations):
    flush_bytes = 1 << 20  # the server's default --flush-bytes
    single = allocations["single"]
    for n, alloc in single.items():
        assert alloc >= min(n, flush_bytes), f"single allocated {alloc} B for {n} B"
    assert single[1 << 20] > 10 * max(allocations[s][1 << 20]
                                      for s in ("split", "writev", "cork", "chain"))
    assert single[1 << 10] < single[1 << 14] < single[1 << 20]
