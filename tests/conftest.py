"""Shared fixtures: real server processes, started through the same code as the runner."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import hypothesis.core
import pytest

from toolkit.server.process import ServerOptions, ServerProcess


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start `writeshape serve` processes; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def _start(wrapper: tuple[str, ...] = (), **options: object) -> ServerProcess:
        proc = ServerProcess(ServerOptions(**options), wrapper=wrapper)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield _start
    for proc in started:
        proc.stop()
        proc.cleanup()


# One seed for every hypothesis test of a session, printed at the top and again under any
# failure, so a fuzz failure replays with `--hypothesis-seed=N` (hypothesis itself prints
# a seed only for a flaky failure; its @reproduce_failure blob ties the replay to its
# version).
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_seed", None) is None:
        hypothesis.core.global_force_seed = random.SystemRandom().randrange(1 << 32)


def _seed_line() -> str:
    return (f"hypothesis seed: {hypothesis.core.global_force_seed} (replay a failure: "
            f"pytest --hypothesis-seed={hypothesis.core.global_force_seed} ...)")


def pytest_report_header() -> str:
    return _seed_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if terminalreporter.stats.get("failed"):
        terminalreporter.write_line(_seed_line())
