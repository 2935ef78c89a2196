"""What every command shares: the console, and checks of output paths before any work."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Tables are wide: off a terminal (pipes, CI logs) draw them at 200 columns.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(200, shutil.get_terminal_size().columns)
    return Console(stderr=stderr, highlight=False, width=width)


def check_writable(path: Path | None, flag: str = "") -> None:
    """Fail before measuring, not after the first cell, when an output cannot be written:
    a missing or unwritable directory, a directory or a device where a file should be."""
    if path is None:
        return
    what = f"{flag} {path}".strip()
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"cannot write {what}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot write {what}: it is a directory (give a file name)")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot write {what}: not a regular file")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {what}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (st is not None and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {what}: permission denied")


def check_readable(path: Path) -> None:
    """An input file: present, a regular file (not a directory or a FIFO), readable."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot read {path}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot read {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path}: permission denied")
