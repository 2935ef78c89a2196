"""The `writeshape` command line: one module per command, `app` ties them together."""

from toolkit.cli import compare, load, profile, report, serve, syscalls  # noqa: F401
from toolkit.cli.app import app, main

__all__ = ["app", "main"]
