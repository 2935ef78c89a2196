"""Shared fixtures: real server processes, started through the same code as the runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
