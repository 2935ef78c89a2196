"""Servers to profile: any process tree (a command or a PID) and the reference servers
writeshape configures itself (nginx, h2o, nghttpd)."""

from toolkit.targets.errors import (
    TargetConfigError,
    TargetError,
    TargetNotFound,
    TargetNotTraceable,
    TargetStartError,
)
from toolkit.targets.process_tree import ProcessTreeTarget
from toolkit.targets.reference import REFERENCE_SERVERS, ReferenceServer
from toolkit.targets.tree import ProcessTree, TreeUsage

__all__ = [
    "REFERENCE_SERVERS", "ProcessTree", "ProcessTreeTarget", "ReferenceServer",
    "TargetConfigError", "TargetError", "TargetNotFound", "TargetNotTraceable",
    "TargetStartError", "TreeUsage",
]
