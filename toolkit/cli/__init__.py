"""The `writeshape` command line: one module per command, `app` ties them together."""

from toolkit.cli.app import app, main

__all__ = ["app", "main"]
