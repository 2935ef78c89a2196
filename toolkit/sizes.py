"""Binary size strings as users type them: 65536, 64KiB, 1MiB, 16MiB."""

import re

from toolkit.errors import UsageError

_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20,
          "gib": 1 << 30, "g": 1 << 30}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Parse a size in bytes; units are binary (KiB = 1024)."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"size must not be negative: {text}")
        return text
    m = _SIZE_RE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"not a size: {text!r} (use e.g. 65536, 64KiB, 1MiB, 16MiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_size_list(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def format_size(n: int) -> str:
    """Shortest exact binary spelling: 1048576 -> '1MiB', 1000 -> '1000'."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)
