"""Verdicts from real runs: the machine's own noise (A/A) is no difference, split's cost at
1 MiB is, and memory that grows with traffic is told apart from a plateau."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from toolkit.strategies import PLUGIN_MODULES_ENV


def _compare(out: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "toolkit", "compare", *args, "--json",
                           str(out)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def _rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in doc["results"]}


def test_a_strategy_against_itself_claims_no_difference_and_split_is_worse(tmp_path: Path) -> None:
    doc = _compare(tmp_path / "aa.json", "--strategies", "single,single,split",
                   "--transports", "h2c", "--body-sizes", "1MiB", "--no-strace", "--no-alloc",
                   "--max-seconds", "75")
    rows = _rows(doc)
    assert set(rows) == {"single", "single#2", "split"}
    aa, split = rows["single#2"], rows["split"]
    assert len(aa["rounds"]) >= 6, "the budget must give the 6 rounds a 95% interval needs"
    # The machine's own noise is never a difference: on no figure does a strategy beat or
    # lose to itself. "same" needs the whole interval within 10% of 1; with this machine's
    # round-to-round noise (req/s CV 9-27%) the A/A verdict is "same" or, while the
    # interval still straddles the threshold, "inconclusive" (README, "Noise").
    for name, v in aa["verdicts"].items():
        r = aa["ratios"][name]
        assert v in ("same", "inconclusive"), (name, r)
        inside = r["ci_low"] >= 1 / 1.10 and r["ci_high"] <= 1.10
        assert (v == "same") == inside, (name, v, r)
    rps = aa["ratios"]["req_per_s"]
    assert rps["ci_high"] - rps["ci_low"] < 0.25, "the rounds must narrow the interval"
    # 128 writes per response against one: split is slower, whatever the noise.
    assert split["verdicts"]["req_per_s"] == "worse", split["ratios"]
    assert split["verdicts"]["cpu_s_per_request"] == "worse", split["ratios"]
    assert doc["meta"]["noise_threshold"] == 0.10


def test_a_strategy_against_itself_is_the_same_given_the_rounds(tmp_path: Path) -> None:
    """The A/A check as the README tells a user to run it, focused on one cell pair: two
    cells get the rounds (143 in 66 s in a run here, when every interval was within +-5%
    and decided: req/s 1.01x [1.00-1.03], CPU 0.99x [0.98-1.00]) and the verdict is `same`
    (one round length for both cells, and four server processes each, keep the pair
    unbiased). p99 is twice as noisy: it is only checked for making no claim."""
    doc = _compare(tmp_path / "aa.json", "--strategies", "single,single", "--transports",
                   "h2c", "--body-sizes", "16KiB", "--no-strace", "--no-alloc",
                   "--max-seconds", "90")
    aa = _rows(doc)["single#2"]
    assert aa["verdicts"]["req_per_s"] == "same", aa["ratios"]
    assert aa["verdicts"]["cpu_s_per_request"] == "same", aa["ratios"]
    assert aa["verdicts"]["latency_ms_p99"] in ("same", "inconclusive"), aa["ratios"]
    assert len(aa["rounds"]) >= 60 and doc["meta"]["workers"] == 4


LEAKY = '''
from toolkit.strategies import Shape, SocketCall, Strategy, register

KEPT = []


@register
class Leaky(Strategy):
    """writev that keeps a 2 KiB copy of every flush it writes: memory that grows with
    traffic, as the review's server's did."""

    name = "leaky"
    description = "writev with a leak, for tests"
    shape = Shape()

    def plan(self, segments):
        KEPT.append(bytes(2048))
        yield SocketCall("sendmsg", tuple(segments))

    def plan_tls(self, segments):
        raise NotImplementedError
'''


def test_memory_that_grows_with_traffic_is_told_from_a_plateau(tmp_path: Path) -> None:
    """A server that keeps 2 KiB per flush grows (a flush carries several 16 KiB
    responses: about 0.5 MiB per 1,000 requests, measured); writev, the same writes
    without the leak, stays flat."""
    (tmp_path / "leaky_strategy.py").write_text(LEAKY)
    env = dict(os.environ, **{PLUGIN_MODULES_ENV: "leaky_strategy"},
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    doc = _compare(tmp_path / "leak.json", "--strategies", "writev,leaky", "--transports",
                   "h2c", "--body-sizes", "16KiB", "--repeat", "8", "--requests", "2000",
                   "--workers", "2", "--no-strace", "--no-alloc", env=env)
    rows = _rows(doc)
    leaky, writev = rows["leaky"]["memory"], rows["writev"]["memory"]
    assert leaky["verdict"] == "grows", leaky["rss_slope_bytes_per_krequest"]
    assert writev["verdict"] == "flat", writev["rss_slope_bytes_per_krequest"]
    assert writev["rss_slope_bytes_per_krequest"]["ci_high"] < \
        leaky["rss_slope_bytes_per_krequest"]["ci_low"]
    # The heap tells the same: the leaked copies are live objects.
    assert leaky["heap_slope_bytes_per_krequest"]["ci_low"] > 256 << 10
    # Two server processes per cell, four rounds each, one slope over both.
    assert leaky["workers"] == 2 and len(leaky["worker_series"]) == 2
    assert [r["worker"] for r in rows["leaky"]["rounds"]] == [0, 1] * 4


def test_rounds_rotate_through_worker_processes_of_each_cell() -> None:
    """Each cell runs on --workers server processes (pyperf's workers): round i on worker
    i mod N, each a process of its own, all stopped at the end."""
    import psutil

    from toolkit.runner.config import CompareConfig
    from toolkit.runner.run import run_compare

    def serving() -> set[int]:
        return {p.pid for p in psutil.Process().children(recursive=True)
                if "serve" in p.cmdline()}

    seen: list[set[int]] = []
    cfg = CompareConfig(strategies=["single", "writev"], transports=["h2c"],
                        body_sizes=[16 << 10], repeat=6, workers=3, strace=False,
                        alloc_probe=False, requests=300)
    rows = run_compare(cfg, on_update=lambda rows: seen.append(serving()))
    assert len(seen[0]) == 6, seen[0]  # 2 cells x 3 workers, all up before round 1
    assert not serving()
    for row in rows:
        assert [r["worker"] for r in row.rounds] == [0, 1, 2, 0, 1, 2]
        assert row.memory is not None and row.memory["workers"] == 3
        assert row.requests == 6 * 300
    assert rows[1].ratios is not None and rows[1].ratios["req_per_s"]["n"] == 6


def test_cells_of_one_transport_and_body_share_one_round_length() -> None:
    """Paired rounds compare the same work: one request count for every cell of a
    transport and body size, lasting round_s on average at their calibrated rates."""
    from toolkit.runner.config import CompareConfig
    from toolkit.runner.run import run_compare

    cfg = CompareConfig(round_s=0.2)
    # 10,000 and 5,000 req/s: 0.2 s on average is 1333 requests (0.13 s and 0.27 s).
    assert cfg.round_requests(16 << 10, [10_000.0, 5_000.0]) == 1333
    assert cfg.round_requests(16 << 10, [10_000.0]) == 2000
    assert cfg.round_requests(16 << 10, [None]) == cfg.timing_requests(16 << 10)
    assert cfg.round_requests(1 << 20, [50.0, 60.0]) == 100  # never under 100
    # A real run: split (0.3-0.8x the rate of single) runs as many requests a round.
    rows = run_compare(CompareConfig(
        strategies=["single", "split", "single"], transports=["h2c"], body_sizes=[1 << 20],
        repeat=2, workers=2, strace=False, alloc_probe=False, round_s=0.1))
    counts = {row.label: {r["requests"] for r in row.rounds} for row in rows}
    assert len({n for c in counts.values() for n in c}) == 1, counts
