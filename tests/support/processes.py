"""Finding the processes a test started, by a tag in their environment."""

from __future__ import annotations

import psutil


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes whose environment has WRITESHAPE_TEST_TAG=tag (servers, strace and
    h2load inherit it from the command a test ran)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("WRITESHAPE_TEST_TAG") == tag and \
                    p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found
