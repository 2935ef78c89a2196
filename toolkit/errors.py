"""Typed errors whose message tells the user what to do; the CLI prints them as one line."""

import shutil


class WriteshapeError(Exception):
    """Base for user-facing errors (bad input, missing tools, permissions)."""


class UsageError(WriteshapeError):
    """A command-line value that cannot be used."""


class MissingToolError(WriteshapeError):
    """An external program (strace, h2load, tshark, ...) is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} not found: install it (Debian: apt-get install {package}) or put it on PATH"
        )
        self.tool = tool
        self.package = package


def find_tool(tool: str, package: str) -> str:
    """The path of an external program, or MissingToolError naming its Debian package."""
    path = shutil.which(tool)
    if path is None:
        raise MissingToolError(tool, package)
    return path


class PermissionProblem(WriteshapeError):
    """An operation needs privileges this process lacks (root, ptrace)."""
