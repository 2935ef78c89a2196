"""The built-in client and h2load must agree on how the strategies rank.

Measured over h2 (TLS) with 1 MiB bodies, where the server's work differs most between
strategies (one SSL_write per flush, or one per segment). Over h2c on 2 cores the Python
client itself uses about a core per 1 GB/s and can hide the server's differences: that
is why `compare` defaults to h2load.
Both drivers run interleaved, round after round, so drift on a shared machine hits
them alike.
"""

from __future__ import annotations

import statistics
from itertools import combinations

from toolkit.runner.cells import CellRunner
from toolkit.runner.config import Cell, CompareConfig

STRATEGIES = ["single", "split", "writev"]
DRIVERS = ("builtin", "h2load")
ROUNDS = 3


def test_builtin_and_h2load_rank_the_strategies_alike():
    runners = {d: CellRunner(CompareConfig(driver=d, requests=200, warmup_requests=16))
               for d in DRIVERS}
    rps: dict[str, dict[str, list[float]]] = {d: {s: [] for s in STRATEGIES} for d in DRIVERS}
    cells = {s: Cell(s, s, "h2", 1 << 20) for s in STRATEGIES}
    servers = {(d, s): runners[d].start_timing_server(cells[s])
               for d in DRIVERS for s in STRATEGIES}
    try:
        for r in range(ROUNDS):
            for strategy in STRATEGIES:
                for driver, runner in runners.items():
                    sample, _ = runner.timing_round(cells[strategy],
                                                    servers[driver, strategy], r)
                    assert sample.failures == 0
                    rps[driver][strategy].append(sample.req_per_s)
    finally:
        for srv in servers.values():
            srv.stop()
    ranges = {d: {s: (min(v), statistics.median(v), max(v)) for s, v in per.items()}
              for d, per in rps.items()}
    # split pays a record and a send per 9-byte header: never the fastest by h2load, the
    # default driver. Not asserted for the built-in client: decrypting 1 MiB responses
    # in Python takes about a core, and on 2 cores that hides the server's differences
    # (it once measured split 564 vs single 537 req/s, medians of 3 rounds); nor which of
    # single and writev leads (within noise of each other without the TLS probe).
    best = max(STRATEGIES, key=lambda s: ranges["h2load"][s][1])
    assert best != "split", ranges
    # No pair that one driver separates clearly (no overlap over the rounds) is separated
    # the other way round by the other driver.
    for a, b in combinations(STRATEGIES, 2):
        for one, other in (DRIVERS, DRIVERS[::-1]):
            if ranges[one][a][0] > ranges[one][b][2]:
                assert not ranges[other][b][0] > ranges[other][a][2], (a, b, ranges)
