"""strace_parsers' own errors: it imports nothing from the toolkit that uses it.

Every message is one line that says what to do; a CLI can catch `StraceError` and print it.
"""

from __future__ import annotations


class StraceError(Exception):
    """Base of every error strace_parsers raises on purpose (bad input, bad arguments)."""


class StraceUsageError(StraceError):
    """An argument that cannot be used (an unknown fd kind, an implementation not built)."""


class StraceInputError(StraceError):
    """A path that is not a readable strace log or -ff directory, or (strict) input that
    cannot be trusted: empty, not strace output, cut short, or a pid it does not hold."""


class StraceParseError(StraceError):
    """Strict mode met a line the grammar does not know."""

    def __init__(self, file: str, line: int, text: str) -> None:
        shown = text if len(text) <= 120 else text[:117] + "..."
        super().__init__(
            f"{file}:{line}: not a strace line: {shown!r} "
            "(drop --strict to count such lines as unparsed instead)"
        )
        self.file, self.line, self.text = file, line, text


__all__ = ["StraceError", "StraceInputError", "StraceParseError", "StraceUsageError"]
