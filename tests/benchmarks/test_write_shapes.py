"""Example write-shape benchmarks: copy this file into your own suite.

Each benchmark starts one untraced server (strategy x transport x body size), times a few
rounds of real requests against it, then records the measured figures of that
configuration in ``extra_info`` (write syscalls and bytes per syscall from a counting run
under strace, TLS records from the server's counters, allocation per response from
tracemalloc). Run::

    pytest tests/benchmarks --benchmark-only --benchmark-json=out.json
    pytest tests/benchmarks --benchmark-only --benchmark-group-by=param:body_bytes

Sizes are small so that the examples also run in the normal test run.
"""

from __future__ import annotations

import pytest

STRATEGIES = ("single", "split", "writev")
TRANSPORTS = ("h2c", "h2")
BODY_SIZES = (16 << 10, 256 << 10)


@pytest.mark.parametrize("body_bytes", BODY_SIZES, ids=("16KiB", "256KiB"))
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_write_shape(benchmark, writeshape_server, writeshape_batch, writeshape_figures,
                     strategy: str, transport: str, body_bytes: int) -> None:
    server = writeshape_server(strategy, transport, body_bytes=body_bytes)
    batch = writeshape_batch(server, requests=16, connections=2, streams=4)
    benchmark.group = f"{transport} {body_bytes >> 10} KiB"
    benchmark.pedantic(batch, rounds=3)
    figures = writeshape_figures(benchmark, batch)
    # Each round is one batch of 16 requests; --benchmark-disable runs a single round.
    assert len(batch.results) == (1 if benchmark.disabled else 3)
    assert figures["requests"] == 16 * len(batch.results)
