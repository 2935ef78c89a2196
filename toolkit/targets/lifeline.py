"""A pipe whose write end every process started from a command inherits.

Process groups and parent links are not enough to find everything a command started: a
daemonizing server (nginx with ``daemon on``) forks, calls setsid() and lets its first
process exit, so the survivor is in another session and a child of init. Inherited file
descriptors survive all of that: as long as any process of the command holds the write
end, the read end kept here does not report EOF, and /proc tells which processes hold it.

A program that closes every inherited descriptor (some daemons do) escapes the lifeline;
it is still found while it stays a descendant of the command's first process.
"""

from __future__ import annotations

import contextlib
import os
import select


class Lifeline:
    """Create before starting the command; pass ``child_fd`` to it (``pass_fds``), then
    call ``started()`` in the parent to drop the parent's own copy of the write end."""

    def __init__(self) -> None:
        self._read_fd, self.child_fd = os.pipe2(os.O_CLOEXEC)
        self._inode = os.fstat(self._read_fd).st_ino
        self._closed = False

    def started(self) -> None:
        """The command has its copy: close ours, or the pipe would never report EOF."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def all_exited(self, timeout_s: float = 0.0) -> bool:
        """True once no process holds the write end (EOF on the read end)."""
        if self._closed:
            return True
        ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout_s))
        if not ready:
            return False
        try:
            return os.read(self._read_fd, 1) == b""
        except OSError:
            return True

    def holders(self, proc: str = "/proc") -> list[int]:
        """PIDs of the processes that hold the write end now (this process excluded)."""
        link = f"pipe:[{self._inode}]"
        me = os.getpid()
        found = []
        for name in os.listdir(proc):
            if not name.isdigit() or int(name) == me:
                continue
            fd_dir = f"{proc}/{name}/fd"
            with contextlib.suppress(OSError):
                for fd in os.listdir(fd_dir):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"{fd_dir}/{fd}") == link:
                            found.append(int(name))
                            break
        return found

    def close(self) -> None:
        self.started()
        if not self._closed:
            os.close(self._read_fd)
            self._closed = True
