"""The verdicts as a picture: each judged ratio with its 95% interval, and memory over time.

One panel per judged figure (req/s, p99 latency, CPU per request): a point per row (the
median of its paired ratios to the baseline) with its interval as an error bar, the
noise threshold as a band around 1; and a panel of each server's RSS against the
requests it served. Nothing is measured here; matplotlib draws off-screen (Agg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from toolkit.measure.rows import FIGURES, ResultRow
from toolkit.measure.verdicts import JUDGED
from toolkit.reports.table import row_name
from toolkit.sizes import format_size

if TYPE_CHECKING:
    from toolkit.runner.result import CompareResult

_COLORS = {"better": "tab:green", "worse": "tab:red", "same": "tab:blue",
           "inconclusive": "tab:gray"}


def _ratio_panel(ax: Any, rows: Sequence[ResultRow], name: str, threshold: float | None
                 ) -> None:
    judged = [r for r in rows if r.ratios and name in r.ratios]
    labels = [f"{row_name(r)}\n{r.transport} {format_size(r.body_bytes)}" for r in judged]
    for i, row in enumerate(judged):
        ratio = (row.ratios or {})[name]
        verdict = (row.verdicts or {}).get(name, "inconclusive")
        m = ratio["median"]
        ax.errorbar([i], [m], yerr=[[m - ratio["ci_low"]], [ratio["ci_high"] - m]],
                    fmt="o", capsize=4, color=_COLORS.get(verdict, "black"))
        ax.annotate(verdict, (i, ratio["ci_high"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize="x-small")
    ax.axhline(1.0, color="black", linewidth=0.8)
    if threshold:
        ax.axhspan(1 / (1 + threshold), 1 + threshold, color="tab:blue", alpha=0.1,
                   label=f"noise threshold ±{threshold:.0%}")
        ax.legend(loc="upper right", fontsize="x-small")
    ax.set_xticks(range(len(judged)), labels, fontsize="x-small")
    fig = FIGURES[name]
    ax.set_title(f"{fig.description or fig.heading}: ratio to the baseline")
    ax.set_ylabel("ratio (95% interval)")
    ax.grid(True, axis="y", alpha=0.3)


def _memory_panel(ax: Any, rows: Sequence[ResultRow]) -> None:
    drawn = 0
    for row in rows:
        mem = row.memory or {}
        series, responses = mem.get("series"), mem.get("responses")
        if not series or not responses:
            continue
        verdict = mem.get("verdict") or "—"
        ax.plot([n / 1000 for n in responses], [s[1] / (1 << 20) for s in series],
                label=f"{row_name(row)} {row.transport} {format_size(row.body_bytes)} "
                      f"({verdict})", linewidth=1)
        drawn += 1
    ax.set_title("server RSS over the requests it served")
    ax.set_xlabel("requests served (thousands)")
    ax.set_ylabel("RSS (MiB)")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="x-small", ncol=2)
    else:
        ax.text(0.5, 0.5, "no memory series in this result", ha="center",
                transform=ax.transAxes)


def plot_result(result: CompareResult, path: str) -> None:
    """Write the PNG (four panels) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threshold = result.meta.get("noise_threshold")
    fig, axes = plt.subplots(len(JUDGED) + 1, 1, figsize=(12, 4 * (len(JUDGED) + 1)))
    for ax, name in zip(axes, JUDGED, strict=False):
        _ratio_panel(ax, result.rows, name,
                     threshold if isinstance(threshold, float) else None)
    _memory_panel(axes[-1], result.rows)
    fig.suptitle(f"writeshape compare, {result.meta.get('started', '')}: "
                 f"{result.meta.get('rounds', '?')} rounds, driver {result.meta.get('driver')}")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
