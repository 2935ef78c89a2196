"""Errors of targets (servers writeshape profiles): each one clear line for the CLI."""

from __future__ import annotations

from toolkit.errors import WriteshapeError


class TargetError(WriteshapeError):
    """A server to profile could not be started, found, reached or stopped."""


class TargetStartError(TargetError):
    """A command exited, or its URL never answered HTTP/2, before the deadline."""


class TargetNotFound(TargetError):
    """No process has the PID given."""


class TargetNotTraceable(TargetError):
    """The process exists but ptrace (strace) cannot attach to it."""


class TargetConfigError(TargetError):
    """A reference server's configuration (generated or the user's) is not usable."""
