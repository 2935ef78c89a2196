"""How a figure is shown: its heading, unit, format and direction, declared with the field.

A row field declared with :func:`figure` carries a :class:`Figure` in its dataclass
metadata; the terminal table, the Markdown and CSV reports, the pytest plugin's summary
and the notebooks all read it from there (:func:`figures_of`), so a new figure is one
declaration. Nothing is measured here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Group = Literal["speed", "memory", "shape", "detail"]
Better = Literal["higher", "lower"] | None


def human_bytes(n: float) -> str:
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{sign}{n / factor:.1f} {unit}"
    return f"{sign}{n:.0f} B"


@dataclass(frozen=True)
class Figure:
    """One figure of a row.

    ``scale`` converts the stored value into the shown unit (seconds -> µs: 1e6);
    ``fmt`` is a format string, or "size" (binary units) or "bool" (yes/NO);
    ``better`` is the direction that wins a comparison (None: not compared);
    ``ratio`` shows the ratio to the baseline's cell beside the value; ``group`` is the
    table it belongs in (speed and memory: untraced; write shape: traced; detail: JSON only).
    """

    name: str
    heading: str
    unit: str
    fmt: str = "{:.2f}"
    scale: float = 1.0
    better: Better = None
    ratio: bool = False
    group: Group = "detail"
    description: str = ""

    def format(self, value: Any) -> str:
        if value is None:
            return "—"
        if self.fmt == "bool":
            return "yes" if value else "NO"
        if self.fmt == "size":
            return human_bytes(value * self.scale)
        return self.fmt.format(value * self.scale)

    @property
    def label(self) -> str:
        """For axes and legends: 'p99 ms' -> 'p99 latency (ms)' style, from the description."""
        text = self.description or self.heading
        return f"{text} ({self.unit})" if self.unit else text


def figure(heading: str, unit: str = "", *, fmt: str = "{:.2f}", scale: float = 1.0,
           better: Better = None, ratio: bool = False, group: Group = "detail",
           description: str = "", default: Any = None) -> Any:
    """A dataclass field (default None: not measured) that carries its :class:`Figure`;
    the name is filled in by :func:`figures_of`."""
    meta = Figure("", heading, unit, fmt, scale, better, ratio, group, description)
    return dataclasses.field(default=default, metadata={"figure": meta})


def figures_of(cls: type) -> dict[str, Figure]:
    """The figures a row class declares, in field order."""
    out: dict[str, Figure] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("figure")
        if meta is not None:
            out[f.name] = dataclasses.replace(meta, name=f.name)
    return out
