"""Run a process with ptrace(2) refused by a seccomp filter, as in a container whose
seccomp profile blocks it (Docker's default did on kernels before 4.8). Test-only.

`deny_ptrace` is a `preexec_fn`: it sets no_new_privs and installs a classic-BPF filter
that returns EPERM for ptrace and allows every other syscall. The filter is inherited
by every descendant (strace included) and cannot be removed, so it stays in the child.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
# seccomp_data: int nr at offset 0, __u32 arch at offset 4.
_ARCH = {"x86_64": (0xC000003E, 101), "aarch64": (0xC00000B7, 117)}


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def supported() -> bool:
    return platform.machine() in _ARCH


def deny_ptrace() -> None:
    audit_arch, nr_ptrace = _ARCH[platform.machine()]
    insns = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # A = arch
        (_BPF_JEQ_K, 0, 3, audit_arch),  # another ABI: allow
        (_BPF_LD_W_ABS, 0, 0, 0),  # A = syscall number
        (_BPF_JEQ_K, 0, 1, nr_ptrace),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EPERM),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    code = b"".join(struct.pack("=HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Filter(len(insns), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
