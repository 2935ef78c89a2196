"""The call summary table strace prints with `-c` (alone) or `-C` (after the trace).

```
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 72.31    0.097481        1218        80        40 wait4
  0.08    0.000103           1        89           getuid
------ ----------- ----------- --------- --------- ----------------
100.00    0.134814          12     10620      1546 total
```
Columns can be chosen and reordered with `-U`, and an empty errors cell means 0, so rows
are cut at the column spans of the dashed divider rather than split on blanks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from strace_parsers.events import SummaryRowEvent

_COLUMN_NAMES = (
    "% time", "seconds", "usecs/call", "calls", "errors", "syscall", "shortest", "longest",
    "wall-total", "wall-avg", "wall-min", "wall-max",
)
_HEADER_RE = re.compile(
    r"\s*(?:(?:" + "|".join(re.escape(c) for c in _COLUMN_NAMES) + r")\s*)+"
)
_HEADER_TOKEN_RE = re.compile("|".join(re.escape(c) for c in _COLUMN_NAMES))
_DIVIDER_RE = re.compile(r"-+(?: -+)*")
_MODE_RE = re.compile(r"System call usage summary for .*:")


def is_header(text: str) -> bool:
    """True for the column header line of a summary table."""
    return "syscall" in text and _HEADER_RE.fullmatch(text) is not None


@dataclass(slots=True)
class SummaryTableParser:
    """Consumes the lines of one or more summary tables; state survives between lines."""

    columns: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    state: str = "idle"  # idle -> header -> rows -> after_total

    def wants(self, text: str) -> bool:
        """Whether `text` belongs to a table (so the caller passes it to `feed`)."""
        if self.state in ("header", "rows"):
            return True
        return is_header(text) or _MODE_RE.fullmatch(text) is not None

    def feed(self, text: str) -> tuple[bool, SummaryRowEvent | None]:
        """(understood, row event or None). A line not understood ends the table."""
        if _MODE_RE.fullmatch(text):
            self.state = "idle"
            return True, None
        if self.state == "idle" or self.state == "after_total":
            if is_header(text):
                self.columns = _HEADER_TOKEN_RE.findall(text)
                self.state = "header"
                return True, None
            return False, None
        if _DIVIDER_RE.fullmatch(text):
            if self.state == "header":
                self.spans = [m.span() for m in re.finditer(r"-+", text)]
                if len(self.spans) != len(self.columns):
                    self.state = "idle"
                    return False, None
                self.state = "rows"
            return True, None
        if self.state != "rows":
            self.state = "idle"
            return False, None
        row = self._row(text)
        if row is None:
            self.state = "idle"
            return False, None
        if row.is_total:
            self.state = "after_total"
        return True, row

    def _row(self, text: str) -> SummaryRowEvent | None:
        cells: dict[str, str] = {}
        last = len(self.spans) - 1
        for i, (col, (start, end)) in enumerate(zip(self.columns, self.spans, strict=True)):
            # the name column is left-aligned and may run past its dashes; the last column
            # takes the rest of the line
            stop = len(text) if i == last else self.spans[i + 1][0]
            if col != "syscall" and i != last:
                stop = end
            cells[col] = text[start:stop].strip()
        name = cells.get("syscall", "")
        if not re.fullmatch(r"[A-Za-z_]\w*|\?+", name):
            return None
        try:
            calls = int(cells["calls"]) if "calls" in cells else 0
            errors = int(cells["errors"]) if cells.get("errors") else 0
            seconds = float(cells["seconds"]) if cells.get("seconds") else None
        except ValueError:
            return None
        return SummaryRowEvent(name, calls, errors, seconds, is_total=name == "total")
