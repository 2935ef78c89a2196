"""What each syscall counter costs the server it counts: req/s and the tree's CPU per request
without a counter, under perf, under strace; rounds interleaved (the order rotates each
round) and compared side by side within a round, as the machine's speed drifts.

    PATH=.venv/bin:$PATH .venv/bin/python tests/support/counter_cost.py [--rounds 5]

Not a test (it takes a minute); the figures go into commit messages and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any

from nghttpd_fixtures import free_port

from toolkit.clients.h2load import run_h2load
from toolkit.probes.perf_syscalls import PerfWindow
from toolkit.probes.strace_attach import StraceWindow
from toolkit.targets import ProcessTreeTarget, ReferenceServer

MODES = ("none", "perf", "strace")


@contextlib.contextmanager
def _counter(mode: str, pids: tuple[int, ...]) -> Iterator[None]:
    if mode == "none":
        yield
        return
    window: Any = PerfWindow(pids) if mode == "perf" else StraceWindow(pids)
    with window:
        yield


def _round(target: ProcessTreeTarget, mode: str, duration_s: float) -> tuple[float, float]:
    before = target.usage()
    with _counter(mode, target.pids()):
        res = run_h2load(target.url, duration_s=duration_s, connections=2, streams=8,
                         timeout_s=duration_s * 20 + 30)
    cpu = target.usage().cpu_s - before.cpu_s
    assert res.req_per_s and res.requests and res.failures == 0
    return res.req_per_s, cpu / res.requests * 1e6


def measure(name: str, start: Callable[[], Any], rounds: int, duration_s: float) -> None:
    with start() as server:
        target = server.target if isinstance(server, ReferenceServer) else server
        _round(target, "none", 0.5)  # warm-up
        rps: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(rounds):
            for mode in MODES[r % 3:] + MODES[:r % 3]:
                a, b = _round(target, mode, duration_s)
                rps[mode].append(a)
                cpu[mode].append(b)
    base = rps["none"]
    print(f"{name}: untraced {statistics.median(base):.0f} req/s, "
          f"{statistics.median(cpu['none']):.1f} us CPU/request")
    for mode in ("perf", "strace"):
        ratios = [m / b for m, b in zip(rps[mode], base, strict=True)]
        cratios = [m / b for m, b in zip(cpu[mode], cpu["none"], strict=True)]
        print(f"  {mode:6}: req/s x{statistics.median(ratios):.3f} "
              f"(rounds {min(ratios):.3f}..{max(ratios):.3f}), CPU/request "
              f"x{statistics.median(cratios):.2f} ({min(cratios):.2f}..{max(cratios):.2f})")


def _writeshape(strategy: str, body: int) -> Callable[[], ProcessTreeTarget]:
    def start() -> ProcessTreeTarget:
        port = free_port()
        cmd = [sys.executable, "-m", "toolkit", "serve", "--strategy", strategy,
               "--port", str(port), "--body-size", str(body)]
        return ProcessTreeTarget.launch(shlex.join(cmd), f"http://127.0.0.1:{port}/")
    return start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=1.5)
    args = ap.parse_args()
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("writeshape split h2c 16 KiB", _writeshape("split", 16384)),
        ("nginx h2c 16 KiB", lambda: ReferenceServer("nginx", body_bytes=16384)),
        ("nginx h2c 1 MiB", lambda: ReferenceServer("nginx", body_bytes=1 << 20)),
        ("nginx TLS 16 KiB", lambda: ReferenceServer("nginx", transport="h2",
                                                     body_bytes=16384)),
    ]
    for name, start in cases:
        measure(name, start, args.rounds, args.duration)


if __name__ == "__main__":
    main()
