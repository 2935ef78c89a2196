"""The comparison runner: counting runs, then interleaved timing rounds, then the verdicts.

1. Each cell's timing servers are started once and live through all its rounds (untraced,
   probe-free, sampling their memory): ``workers`` processes per cell, as pyperf runs its
   benchmarks in several worker processes, and round *i* of a cell runs on its worker
   *i mod workers*. All cells of a transport and body size run rounds of one request
   count. Each matters (A/A runs here, README "Noise"): with one process per cell and a
   round length per cell, two copies of one strategy differed by up to 14% for all their
   rounds, and 35 of 240 A/A intervals excluded 1; with 4 workers, 26 of 240; with one
   round length too, about the 5% that a 95% interval should.
2. A counting run per cell under real strace (cells.py): writeshape's own server afresh
   under ``strace -f`` (write syscalls, TLS records, the self-count check); another
   server with strace attached to its running tree. A fixed cost, paid first.
3. Timing rounds: a round runs every cell once, in a shuffled order, so round *i* of two
   cells ran side by side and their ratio is paired. Rounds go on until every judged
   ratio's interval is within +-``target_half_width`` (at least ``min_rounds``), or until
   the time budget would be overrun (``repeat`` = None), or for a fixed number of rounds.
4. The allocation probe and the memory series of each server; then the servers stop.

The rows (toolkit/measure/rows.py), judged against the baseline (measure/verdicts.py),
go to ``on_update`` whenever they change, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import WriteshapeError
from toolkit.measure.rows import CountingSample, ResultRow, TimingSample, build_row
from toolkit.measure.snapshot import Snapshot
from toolkit.measure.verdicts import judge, memory_summary, rounds_needed
from toolkit.runner.cells import CellRunner
from toolkit.runner.config import Cell, CompareConfig
from toolkit.runner.result import CompareResult, collect_meta
from toolkit.runner.servers import TimedServer
from toolkit.sizes import format_size

ProgressFn = Callable[[str], None]
UpdateFn = Callable[[list[ResultRow]], None]
# Kept back from the budget, per cell, for the write timing load, the allocation probe
# and stopping its server.
_FINISH_S_PER_CELL = 1.5


@dataclass
class CellState:
    cell: Cell
    timing: list[TimingSample] = field(default_factory=list)
    counting: CountingSample | None = None
    alloc: int | None = None
    write_timing: TimingSample | None = None  # one load with the write timing on
    memory: dict[str, Any] | None = None
    error: str | None = None  # the cell could not be timed: no more rounds for it
    counting_error: str | None = None  # the counting run failed; the timing rounds go on
    servers: list[TimedServer] = field(default_factory=list)  # its worker processes
    # Each worker's state at the end of its last round.
    last_snapshots: dict[int, Snapshot] = field(default_factory=dict)

    @property
    def server(self) -> TimedServer | None:
        """The first worker: the one counted, timed for writes and probed for allocations."""
        return self.servers[0] if self.servers else None


def _can_start_more(cell: Cell) -> bool:
    """A server already running (profile --pid/--cmd) is one process, and so is a reference
    server whose user config names its own port (a second copy could not listen)."""
    other = cell.other
    if other is None:
        return True
    if other.target is not None:
        return False
    if other.config is not None:
        from toolkit.targets.reference import uses_port_placeholder

        try:
            return uses_port_placeholder(Path(other.config).read_text(errors="replace"))
        except OSError:
            return False
    return True


def _describe(cell: Cell) -> str:
    return f"{cell.label} {cell.transport} {format_size(cell.body_bytes)}"


class Comparison:
    """One comparison's state; :meth:`run` measures, :meth:`rows` reads it at any time."""

    def __init__(self, cfg: CompareConfig, runner: CellRunner,
                 on_update: UpdateFn | None = None, progress: ProgressFn | None = None) -> None:
        self.cfg = cfg
        self.runner = runner
        self.cells = {c: CellState(c) for c in cfg.cells()}
        self._on_update = on_update or (lambda rows: None)
        self._say = progress or (lambda msg: None)
        self.started = time.monotonic()
        self.rounds_done = 0

    def rows(self) -> list[ResultRow]:
        cfg = self.cfg
        rows = [build_row(strategy=s.cell.strategy, transport=s.cell.transport,
                          body_bytes=s.cell.body_bytes, label=s.cell.label,
                          server=s.cell.server, driver=cfg.driver,
                          timing=s.timing, counting=s.counting, alloc_bytes_per_response=s.alloc,
                          threads=cfg.threads,
                          tls_mode=cfg.tls_mode if s.cell.transport == "h2" else None,
                          error=s.error or s.counting_error, write_timing=s.write_timing)
                for s in self.cells.values()]
        for row, state in zip(rows, self.cells.values(), strict=True):
            row.memory = state.memory
        judge(rows, cfg.baseline, cfg.noise_threshold)
        return rows

    def _update(self) -> None:
        self._on_update(self.rows())

    def _alive(self) -> list[CellState]:
        return [s for s in self.cells.values() if s.error is None]

    def run(self) -> list[ResultRow]:
        try:
            self._start_servers()
            if self.cfg.strace:
                self._counting_runs()
            self._rounds()
            self._finish()
        finally:
            for state in self.cells.values():
                self._stop(state)
        rows = self.rows()
        self._on_update(rows)
        return rows

    def _fail(self, state: CellState, message: str) -> None:
        state.error = message
        self._stop(state)

    @staticmethod
    def _stop(state: CellState) -> None:
        servers, state.servers = state.servers, []
        # Every worker is stopped even when one stop raises (or a second Ctrl-C lands).
        with contextlib.ExitStack() as stack:
            for srv in servers:
                stack.callback(srv.stop)

    def _counting_runs(self) -> None:
        for state in self._alive():
            self._say(f"counting {_describe(state.cell)} under strace")
            try:
                state.counting = self.runner.counting_pass(state.cell, state.server)
            except WriteshapeError as exc:
                state.counting_error = f"counting run: {exc}"
            self._update()

    def _start_servers(self) -> None:
        """Every cell's first worker (calibrated), one round length per transport and body
        size (CompareConfig.round_requests), then the other workers, warmed up by a round."""
        for state in self._alive():
            self._say(f"starting {_describe(state.cell)}")
            try:
                state.servers.append(self.runner.start_timing_server(state.cell))
            except WriteshapeError as exc:
                self._fail(state, f"timing server: {exc}")
        groups: dict[tuple[str, int], list[CellState]] = {}
        for state in self._alive():
            groups.setdefault((state.cell.transport, state.cell.body_bytes), []).append(state)
        for (_, body), states in groups.items():
            n = self.cfg.round_requests(body, [s.servers[0].calibration_req_per_s
                                               for s in states])
            for state in states:
                state.servers[0].round_requests = n
        for state in self._alive():
            workers = self.cfg.workers if _can_start_more(state.cell) else 1
            if workers > 1:
                self._say(f"starting {workers - 1} more workers of {_describe(state.cell)}")
            try:
                for _ in range(workers - 1):
                    state.servers.append(self.runner.start_timing_server(
                        state.cell, round_requests=state.servers[0].round_requests))
            except WriteshapeError as exc:
                self._fail(state, f"timing server: {exc}")

    def _rounds(self) -> None:
        cfg = self.cfg
        budget_end = self.started + cfg.max_seconds - _FINISH_S_PER_CELL * len(self.cells)
        last_round_s = 0.0
        while True:
            fixed = cfg.repeat is not None
            if fixed and self.rounds_done >= (cfg.repeat or 0):
                return
            if not fixed:
                enough = self.rounds_done >= cfg.min_rounds and not rounds_needed(
                    self.rows(), cfg.target_half_width)
                out_of_time = time.monotonic() + last_round_s > budget_end
                if enough or out_of_time or self.rounds_done >= cfg.max_rounds:
                    return
            alive = self._alive()
            if not alive:
                return
            t0 = time.monotonic()
            self._one_round(alive)
            last_round_s = time.monotonic() - t0
            self.rounds_done += 1
            self._update()

    def _one_round(self, alive: list[CellState]) -> None:
        r = self.rounds_done
        # A fresh order every round (seeded: reproducible). Rotation alone kept neighbours
        # together: an A/A pair ran back to back in 11 of 12 rounds and the second ran
        # ~8% faster (a 1.08x "better" in one A/A run); shuffled, no cell has a fixed
        # place or neighbour.
        order = list(alive)
        random.Random(r).shuffle(order)
        for state in order:
            worker = r % len(state.servers)
            self._say(f"round {r + 1}: {_describe(state.cell)}")
            try:
                sample, state.last_snapshots[worker] = self.runner.timing_round(
                    state.cell, state.servers[worker], r, state.last_snapshots.get(worker))
                sample.worker = worker
                state.timing.append(sample)
            except WriteshapeError as exc:
                self._fail(state, f"timing round {r + 1}: {exc}")

    def _write_timing(self, state: CellState) -> None:
        """An extra figure: a load that fails leaves it null, not the cell failed."""
        assert state.server is not None
        try:
            state.write_timing = self.runner.write_timing_run(state.cell, state.server)
        except WriteshapeError as exc:
            self._say(f"no write timing for {_describe(state.cell)}: {exc}")

    def _finish(self) -> None:
        for state in self._alive():
            assert state.server is not None
            self._say(f"write timing, allocation probe and memory of {_describe(state.cell)}")
            try:
                if self.cfg.memory_sample_ms:
                    state.memory = memory_summary([s.memory_series() for s in state.servers])
                self._write_timing(state)
                if self.cfg.alloc_probe:
                    state.alloc = self.runner.alloc_probe(state.server)  # None: not ours
            except WriteshapeError as exc:
                self._fail(state, f"after the rounds: {exc}")
            self._stop(state)


def run_compare(cfg: CompareConfig, *, on_update: UpdateFn | None = None,
                progress: ProgressFn | None = None) -> list[ResultRow]:
    """Run the whole comparison; returns one row per cell (also passed to ``on_update``,
    whole, each time a row changes)."""
    cfg.validate()
    with _lab(cfg) as lab:
        return Comparison(cfg, CellRunner(cfg, lab), on_update, progress).run()


@contextlib.contextmanager
def _lab(cfg: CompareConfig) -> Iterator[Any]:
    if not cfg.netns:
        yield None
        return
    from toolkit.lab.netlab import NetLab

    with NetLab(mtu=cfg.mtu or 1500, rate=cfg.rate, delay_ms=cfg.delay_ms) as lab:
        yield lab


def compare(strategies: list[str] | None = None, transports: list[str] | None = None,
            body_sizes: list[int | str] | None = None, **kwargs: Any) -> CompareResult:
    """Python API: run a comparison and get its rows (``.to_pandas()`` for notebooks)."""
    from toolkit.sizes import parse_size

    cfg = CompareConfig(**kwargs)
    if strategies is not None:
        cfg.strategies = list(strategies)
    if transports is not None:
        cfg.transports = list(transports)
    if body_sizes is not None:
        cfg.body_sizes = [parse_size(b) for b in body_sizes]
    started = time.time()
    rows = run_compare(cfg)
    meta = collect_meta(cfg, "toolkit.compare(...)")
    meta["duration_s"] = round(time.time() - started, 2)
    return CompareResult(meta=meta, rows=rows)
