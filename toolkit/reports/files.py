"""The comparison as files: JSON (written atomically), CSV, Markdown; and reading JSON back."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.measure.fields import Figure
from toolkit.measure.rows import ResultRow
from toolkit.reports.table import (
    MEMORY_FIGURES,
    SHAPE_FIGURES,
    SPEED_FIGURES,
    cv_text,
    effective_baseline,
    formatted_rows,
    memory_text,
    row_name,
)
from toolkit.sizes import format_size

if TYPE_CHECKING:
    from toolkit.runner.result import CompareResult


def write_atomically(path: str, text: str) -> None:
    """Write to a temp file beside ``path``, then rename: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".writeshape-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def results_json(result: CompareResult) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n"


def results_csv(rows: Sequence[ResultRow]) -> str:
    """One line per row; nested figures flattened as ``name.key``; column names are the
    field names (units in the names, as in the JSON)."""
    if not rows:
        return ""
    flat = [_flatten(r.to_dict()) for r in rows]
    names: list[str] = []
    for d in flat:
        names += [k for k in d if k not in names]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[f"{prefix}{k}"] = json.dumps(v)
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out


def _markdown_table(result: CompareResult, baseline: str, figures: Sequence[Figure],
                    extra: Sequence[tuple[str, Callable[[ResultRow], str]]]) -> list[str]:
    heads = ["transport", "body", "label"] + [f.heading for f in figures] + [h for h, _ in extra]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row, formatted in formatted_rows(result.rows, baseline, figures):
        cells = [row.transport, format_size(row.body_bytes), row_name(row)]
        cells += [text if r is None else f"{text} ({r})" for text, r in formatted]
        cells += [text_of(row) for _, text_of in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def results_markdown(result: CompareResult, *, baseline: str = "single") -> str:
    """Three tables, as on the terminal: speed (untraced rounds), memory, write shape."""
    baseline = effective_baseline(result.rows, baseline)
    meta = result.meta

    def failures(row: ResultRow) -> str:
        return ("—" if row.failures is None else str(row.failures)) + (
            " +error" if row.error else "")

    lines = ["Speed (untraced timing rounds):", ""]
    lines += _markdown_table(result, baseline, SPEED_FIGURES, [
        ("rounds", lambda r: str(len(r.rounds))), ("CV", cv_text), ("failures", failures)])
    lines += ["", "Memory (RSS slope: per 1,000 requests over the rounds):", ""]
    lines += _markdown_table(result, baseline, MEMORY_FIGURES, [("RSS slope", memory_text)])
    lines += ["", "Write shape (writes: a separate run under strace):", ""]
    lines += _markdown_table(result, baseline, SHAPE_FIGURES, [])
    threshold = meta.get("noise_threshold")
    lines.append("")
    lines.append(f"Command: `{meta.get('command')}` — driver {meta.get('driver')}, "
                 f"{meta.get('rounds', '?')} rounds, Python {meta.get('python')}, kernel "
                 f"{meta.get('kernel')}, {meta.get('started')}, {meta.get('duration_s')} s. "
                 f"Ratios (×) against `{baseline}`" + (
                     f"; for req/s, p99 and CPU the median of the per-round paired ratios "
                     f"with its 95% interval and verdict (same: within ±{threshold:.0%}); "
                     "beside the baseline, the 95% interval of its own median."
                     if isinstance(threshold, float) else "."))
    return "\n".join(lines) + "\n"


def load_results(path: str) -> CompareResult:
    """A compare/profile --json file; anything else is one UsageError naming the problem."""
    from toolkit.runner.result import CompareResult

    try:
        with open(path) as fh:
            data = json.load(fh)
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path} is not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict) or "results" not in data or "meta" not in data:
        raise UsageError(f"{path} is not a writeshape compare --json file")
    if not isinstance(data["meta"], dict) or not isinstance(data["results"], list):
        raise UsageError(f"{path}: meta must be an object and results a list")
    rows = []
    for i, raw in enumerate(data["results"]):
        if not isinstance(raw, dict):
            raise UsageError(f"{path}: result {i} is not an object")
        try:
            rows.append(ResultRow.from_dict(raw))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{path}: result {i} does not fit: {exc}") from None
    return CompareResult(meta=data["meta"], rows=rows)


class ResultFiles:
    """The output files of a comparison, rewritten (atomically) after every finished row,
    so an interrupted run keeps what it measured."""

    def __init__(self, result: CompareResult, *, json_path: str | None = None,
                 csv_path: str | None = None, markdown_path: str | None = None,
                 baseline: str = "single") -> None:
        self.result = result
        self.json_path, self.csv_path, self.markdown_path = json_path, csv_path, markdown_path
        self.baseline = baseline

    def save(self) -> None:
        if self.json_path:
            write_atomically(self.json_path, results_json(self.result))
        if self.csv_path:
            write_atomically(self.csv_path, results_csv(self.result.rows))
        if self.markdown_path:
            write_atomically(self.markdown_path,
                             results_markdown(self.result, baseline=self.baseline))
