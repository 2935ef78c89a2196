"""The comparison runner: cells measured in interleaved rounds, rows as each cell finishes.

For every cell (strategy, transport, body size): timing runs, untraced, one fresh server
process each, interleaved across cells and repeated (``repeat``) so that machine drift
does not decide a ranking; an allocation probe; a counting run under real strace (its TLS
servers count the records, which the timing servers then need not). See cells.py.

Rows go to ``on_row`` as each cell finishes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from toolkit.errors import WriteshapeError
from toolkit.measure.rows import ResultRow, TimingSample, build_row
from toolkit.runner.cells import CellRunner
from toolkit.runner.config import Cell, CompareConfig
from toolkit.runner.result import CompareResult, collect_meta
from toolkit.sizes import format_size

ProgressFn = Callable[[str], None]


def run_compare(cfg: CompareConfig, *, on_row: Callable[[ResultRow], None] | None = None,
                progress: ProgressFn | None = None) -> list[ResultRow]:
    """Run the whole matrix; returns one row per cell (also passed to ``on_row``)."""
    cfg.validate()
    with _lab(cfg) as lab:
        return _run(cfg, CellRunner(cfg, lab), on_row, progress)


@contextlib.contextmanager
def _lab(cfg: CompareConfig) -> Iterator[Any]:
    if not cfg.netns:
        yield None
        return
    from toolkit.lab.netlab import NetLab

    with NetLab(mtu=cfg.mtu or 1500, rate=cfg.rate, delay_ms=cfg.delay_ms) as lab:
        yield lab


def _describe(cell: Cell) -> str:
    return f"{cell.label} {cell.transport} {format_size(cell.body_bytes)}"


def _run(cfg: CompareConfig, runner: CellRunner, on_row: Callable[[ResultRow], None] | None,
         progress: ProgressFn | None) -> list[ResultRow]:
    cells = cfg.cells()
    timing: dict[Cell, list[TimingSample]] = {c: [] for c in cells}
    alloc: dict[Cell, int | None] = {}
    errors: dict[Cell, str] = {}
    rows: list[ResultRow] = []
    say = progress or (lambda _msg: None)

    def finish(cell: Cell) -> None:
        counting = None
        if cfg.strace and cell not in errors:
            say(f"counting {_describe(cell)} under strace")
            try:
                counting = runner.counting_pass(cell)
            except WriteshapeError as exc:
                errors[cell] = f"counting pass: {exc}"
        row = build_row(strategy=cell.strategy, transport=cell.transport,
                        body_bytes=cell.body_bytes, label=cell.label, driver=cfg.driver,
                        timing=timing[cell], counting=counting,
                        alloc_bytes_per_response=alloc.get(cell), threads=cfg.threads,
                        tls_mode=cfg.tls_mode if cell.transport == "h2" else None,
                        error=errors.get(cell))
        rows.append(row)
        if on_row:
            on_row(row)

    for r in range(cfg.repeat):
        # Rotate the order each repeat so no cell always runs first (or last).
        order = cells[r % len(cells):] + cells[:r % len(cells)]
        for cell in order:
            if cell in errors:
                continue
            say(f"timing {_describe(cell)} (run {r + 1}/{cfg.repeat})")
            try:
                sample, a = runner.timing_pass(cell, with_alloc_probe=cfg.alloc_probe
                                               and cell not in alloc)
            except WriteshapeError as exc:
                errors[cell] = str(exc)
                continue
            timing[cell].append(sample)
            if a is not None:
                alloc[cell] = a
            if r == cfg.repeat - 1:
                finish(cell)
    for cell in cells:  # cells that failed early still get a row that says why
        if cell in errors and not any(row.key == cell.key for row in rows):
            finish(cell)
    keys = [c.key for c in cells]
    rows.sort(key=lambda row: keys.index(row.key))  # matrix order, not finishing order
    return rows


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
