"""The built-in client and h2load must agree on how the strategies rank.

Measured over h2 (TLS) with 1 MiB bodies, where the server's work differs most between
strategies (one SSL_write per flush, or one per segment) and so decides the ranking for
both clients. Over h2c on 2 cores the Python client itself uses about a core per
1 GB/s and can hide the server's differences: that is why `compare` defaults to h2load.
"""

from __future__ import annotations

from itertools import combinations

from toolkit.runner import compare

STRATEGIES = ["single", "split", "writev"]


def _ranges(driver: str) -> dict[str, tuple[float, float, float]]:
    result = compare(strategies=STRATEGIES, transports=["h2"], body_sizes=["1MiB"],
                     requests=240, repeat=3, driver=driver, strace=False, alloc_probe=False)
    assert result.meta["driver"] == driver
    assert all(r.failures == 0 for r in result.rows)
    return {r.strategy: (r.req_per_s_min, r.req_per_s, r.req_per_s_max) for r in result.rows}


def test_builtin_and_h2load_rank_the_strategies_alike():
    builtin, h2load = _ranges("builtin"), _ranges("h2load")
    for ranges in (builtin, h2load):
        # One SSL_write of the whole flush is the cheapest shape over TLS.
        assert max(ranges, key=lambda s: ranges[s][1]) == "single", (builtin, h2load)
    # No pair that one driver separates clearly (no overlap over 3 runs) is separated the
    # other way round by the other driver.
    for a, b in combinations(STRATEGIES, 2):
        for one, other in ((builtin, h2load), (h2load, builtin)):
            if one[a][0] > one[b][2]:
                assert not other[b][0] > other[a][2], (a, b, builtin, h2load)
