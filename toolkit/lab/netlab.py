"""Two network namespaces joined by a veth pair: a small, throwaway lab for one compare run.

Everything goes through pyroute2 (netns, IPRoute); nothing shells out to `ip` or `tc`.
Names carry the owning pid and a random suffix (``ws-<pid>-<hex>-srv``), so two runs never
collide and a later run can tell a leftover of a killed run (owner pid gone) from a live one.

The veth pair is created from inside the server namespace with its peer placed directly in
the client namespace, so no link of the lab ever exists in the host's namespace. Removing a
namespace only frees it once no process lives in it, so teardown first stops every process
found in the lab's namespaces (children, grandchildren, a crashed child's leftovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from toolkit.errors import PermissionProblem, UsageError, WriteshapeError

PREFIX = "ws-"
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000

# A private /30 that only ever exists inside the lab's namespaces: the host never routes it.
SERVER_ADDR = "10.77.0.1"
CLIENT_ADDR = "10.77.0.2"
PREFIX_LEN = 30

MIN_MTU = 68
MAX_MTU = 65535  # veth's max_mtu
# TCA_TBF_PARMS carries the rate as u32 bytes/s (pyroute2 sends no TCA_TBF_RATE64).
MAX_RATE_BITS_PER_S = (2**32 - 1) * 8

# tc's rate units: "bit" units are bits per second, "bps" units are *bytes* per second.
_RATE_UNITS: dict[str, int] = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_NAME_RE = re.compile(r"^ws-(\d+)-[0-9a-f]+-(srv|cli)$")

Side = Literal["server", "client"]
T = TypeVar("T")


class NetLabError(WriteshapeError):
    """The network lab could not be built or torn down."""


class MissingQdiscError(NetLabError):
    """The kernel lacks a queueing discipline the lab was asked to use."""

    def __init__(self, qdisc: str, module: str) -> None:
        super().__init__(
            f"this kernel has no '{qdisc}' qdisc (kernel module {module} is missing): "
            f"drop the option that needs it, or run on a kernel with {module} "
            f"(modprobe {module}; CONFIG_NET_SCH_{qdisc.upper()})"
        )
        self.qdisc = qdisc
        self.module = module


def require_root() -> None:
    """Stop with a one-line error unless we may create namespaces, veth links and qdiscs."""
    if os.geteuid() != 0:
        raise PermissionProblem(
            "--netns needs root (it creates network namespaces, veth links and qdiscs): "
            "run it as root, e.g. with sudo"
        )


def parse_rate_bits_per_s(rate: str) -> int:
    """Parse a tc-style rate ("1gbit", "100mbit", "12.5mbps") into bits per second."""
    match = _RATE_RE.match(rate)
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in _RATE_UNITS):
        raise UsageError(
            f"bad rate {rate!r}: use a number with a tc unit, e.g. 1gbit, 100mbit, 500kbit"
        )
    bits = int(float(match.group(1)) * _RATE_UNITS[unit or "bit"])
    if not 8 <= bits <= MAX_RATE_BITS_PER_S:
        raise UsageError(f"rate {rate!r} out of range: use 8bit .. 34gbit")
    return bits


# ---------------------------------------------------------------------------- namespaces


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


_libc: ctypes.CDLL | None = None


def _get_libc() -> ctypes.CDLL:
    # Loaded once in the parent: find_library runs a subprocess, which must not happen
    # between fork and exec (preexec_fn) or in a thread that already left its namespace.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def _open_netns(netns_ref: str | int) -> tuple[int, bool]:
    """An fd for a namespace name (or an fd already), and whether we must close it."""
    if isinstance(netns_ref, int):
        return netns_ref, False
    try:
        return os.open(netns_path(netns_ref), os.O_RDONLY | os.O_CLOEXEC), True
    except FileNotFoundError:
        raise NetLabError(f"network namespace {netns_ref!r} does not exist") from None


def call_in_netns(netns_ref: str | int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn(*args, **kwargs) in a network namespace and return its result.

    setns(2) changes only the calling thread's namespace, so fn runs in a fresh thread that
    enters the namespace and then ends: the rest of the process stays where it was. Sockets
    fn creates (a sock_diag socket, a client connection) belong to that namespace for good.
    """
    libc = _get_libc()
    fd, owned = _open_netns(netns_ref)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            netns.setns(fd, flags=0, libc=libc)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    try:
        worker = threading.Thread(target=run, name="writeshape-netns", daemon=True)
        worker.start()
        worker.join()
    finally:
        if owned:
            os.close(fd)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def outside_event_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call fn directly, or on a helper thread when this thread runs an asyncio loop.

    pyroute2's synchronous API drives an event loop of its own, which asyncio refuses to
    run inside a running one ("This event loop is already running"). A new thread starts
    in the caller's network namespace, so the answer is the same.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="writeshape-netlink", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _netns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(netns_path(name))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(name: str) -> list[int]:
    """Processes (other than ourselves) whose network namespace is `name`."""
    ident = _netns_inode(name)
    if ident is None:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if (st.st_dev, st.st_ino) == ident:
            pids.append(int(entry))
    return pids


def _kill_all_in(names: Sequence[str], grace_s: float) -> None:
    """SIGTERM every process living in the namespaces, SIGKILL what is left after grace_s."""
    deadline = time.monotonic() + grace_s
    termed: set[int] = set()
    while pids := [pid for name in names for pid in pids_in_netns(name)]:
        now = time.monotonic()
        if now > deadline + 5:
            return  # unkillable (D state): the lazy unmount still frees the name
        for pid in pids:
            if now < deadline and pid in termed:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if now < deadline else signal.SIGKILL)
            termed.add(pid)
        time.sleep(0.02)


def _remove_netns(name: str) -> None:
    libc = _get_libc()
    path = netns_path(name).encode()
    # MNT_DETACH: lazy unmount, the namespace dies when its last user goes.
    if libc.umount2(path, 2) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, os.strerror(err), netns_path(name))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(netns_path(name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lab_namespaces() -> list[str]:
    """Names of all writeshape lab namespaces on this host (any run, live or dead)."""
    return sorted(n for n in netns.listnetns() if _NAME_RE.match(n))


def cleanup_leftovers() -> list[str]:
    """Remove lab namespaces whose owning process is gone; return the names removed.

    A run killed with SIGKILL (or a crash of the interpreter) cannot tear down its lab; the
    owner's pid in the name tells the next run that nobody is using it any more. Processes
    still living in such a namespace (a server a killed run started) are stopped first.
    Caveat: if the owner's pid has since been reused, the leftover waits for that process.
    """
    require_root()
    dead = []
    for name in lab_namespaces():
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            dead.append(name)
    if not dead:
        return []
    _kill_all_in(dead, grace_s=1.0)
    removed = []
    for name in dead:
        try:
            _remove_netns(name)
        except OSError as exc:
            raise NetLabError(
                f"could not remove leftover namespace {name}: {exc}; remove it by hand "
                f"(ip netns delete {name})"
            ) from exc
        removed.append(name)
    return removed


# ---------------------------------------------------------------------------- the lab


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel reports for one end of the lab's veth pair."""

    ifname: str
    mtu_bytes: int
    qdiscs: tuple[str, ...]  # root first
    tbf_rate_bytes_per_s: int | None


class NetLab:
    """Context manager: server and client namespaces joined by one veth pair.

    ``NetLab(mtu=1500, rate="100mbit")`` gives ``server_ns``/``client_ns`` (names),
    ``server_addr``/``client_addr`` and ``popen(side, argv)`` to start a process on one
    side. ``rate`` shapes both directions with tbf; ``delay_ms`` adds a one-way netem delay
    in each direction (so the RTT grows by twice that) and needs sch_netem in the kernel.
    """

    def __init__(
        self, mtu: int = 1500, rate: str | None = None, delay_ms: float | None = None
    ) -> None:
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise UsageError(f"bad --mtu {mtu}: use {MIN_MTU} .. {MAX_MTU}")
        if delay_ms is not None and not 0 <= delay_ms <= 60_000:
            raise UsageError(f"bad delay {delay_ms} ms: use 0 .. 60000")
        self.mtu = mtu
        self.rate = rate
        self.rate_bits_per_s = parse_rate_bits_per_s(rate) if rate is not None else None
        self.delay_ms = delay_ms
        self._name_run()
        self.server_addr = SERVER_ADDR
        self.client_addr = CLIENT_ADDR
        self.removed_leftovers: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._active = False
        self._saved_sigterm: Any = None
        self._owner_pid = os.getpid()

    def _name_run(self) -> None:
        # The owner's pid goes into the name: that is how a later run spots a leftover.
        run = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.server_ns = f"{run}-srv"
        self.client_ns = f"{run}-cli"
        # Interface names live only inside the namespaces; IFNAMSIZ allows 15 characters.
        tag = run.rsplit("-", 1)[1]
        self.server_ifname = f"{PREFIX}{tag}-s"
        self.client_ifname = f"{PREFIX}{tag}-c"

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> NetLab:
        require_root()
        if not self.server_ns.startswith(f"{PREFIX}{os.getpid()}-"):
            self._name_run()  # constructed in another process (fork)
        self.removed_leftovers = cleanup_leftovers()
        self._owner_pid = os.getpid()
        self._active = True
        try:
            self._catch_sigterm()
            outside_event_loop(self._build)
        except BaseException as exc:
            problems = self._teardown()
            if problems:
                exc.add_note("lab teardown also failed: " + "; ".join(problems))
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        problems = self._teardown()
        if not problems:
            return
        message = "network lab teardown failed: " + "; ".join(problems)
        if exc is not None:
            exc.add_note(message)  # never hide the error that ended the run
            return
        raise NetLabError(message + " (the next run removes leftovers, or run as root: "
                          "python -c 'from toolkit.lab.netlab import cleanup_leftovers; "
                          "cleanup_leftovers()')")

    def _catch_sigterm(self) -> None:
        """Make SIGTERM (a supervisor, a CI timeout) unwind like Ctrl-C, so the lab is torn
        down instead of left behind. Only where nobody chose a handler (and only the main
        thread may set one)."""
        owner = self._owner_pid

        def exit_on_sigterm(signum: int, frame: Any) -> None:
            if os.getpid() != owner:
                # A fork of ours (pyroute2 forks helpers) must not unwind our stack copy.
                os._exit(128 + signum)
            raise SystemExit(128 + signum)

        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        ):
            self._saved_sigterm = signal.signal(signal.SIGTERM, exit_on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._saved_sigterm is not None:
            with contextlib.suppress(ValueError):  # not the main thread after all
                signal.signal(signal.SIGTERM, self._saved_sigterm)
            self._saved_sigterm = None

    # -- building -------------------------------------------------------------------

    def _build(self) -> None:
        for name in (self.server_ns, self.client_ns):
            self._created.append(name)  # before create: a half-made one is removed too
            netns.create(name)
        with IPRoute(netns=self.server_ns, flags=0) as ipr:
            # Peer goes straight into the client namespace: nothing touches the host's.
            ipr.link(
                "add", ifname=self.server_ifname, kind="veth",
                peer={"ifname": self.client_ifname, "net_ns_fd": self.client_ns},
            )
        for ns, ifname, addr in (
            (self.server_ns, self.server_ifname, self.server_addr),
            (self.client_ns, self.client_ifname, self.client_addr),
        ):
            with IPRoute(netns=ns, flags=0) as ipr:
                self._configure_side(ipr, ifname, addr)

    def _configure_side(self, ipr: IPRoute, ifname: str, addr: str) -> None:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=index, mtu=self.mtu)
        ipr.addr("add", index=index, address=addr, prefixlen=PREFIX_LEN)
        tbf_parent: int | None = None
        if self.delay_ms is not None:
            self._add_qdisc(
                ipr, "netem", "sch_netem", index,
                handle=0x10000, delay=int(self.delay_ms * 1000), limit=100_000,
            )
            tbf_parent = 0x10001  # tbf as netem's child: delay, then shape
        if self.rate_bits_per_s is not None:
            rate_bytes_per_s = self.rate_bits_per_s // 8
            # Bucket of ~5 ms at full rate but at least 64 KiB + one MTU, so a GSO burst
            # from TCP passes whole instead of being cut into MTU packets at every tick.
            burst = max(rate_bytes_per_s // 200, 65536 + self.mtu)
            extra: dict[str, Any] = {} if tbf_parent is None else {"parent": tbf_parent}
            self._add_qdisc(
                ipr, "tbf", "sch_tbf", index,
                rate=f"{self.rate_bits_per_s}bit", burst=burst, latency="100ms", **extra,
            )
        ipr.link("set", index=index, state="up")

    @staticmethod
    def _add_qdisc(
        ipr: IPRoute, kind: str, module: str, index: int, **kwargs: Any
    ) -> None:
        try:
            ipr.tc("add", kind, index, **kwargs)
        except NetlinkError as exc:
            # ENOENT: the kernel knows no qdisc of that kind (and could not load it).
            if exc.code in (errno.ENOENT, errno.EOPNOTSUPP):
                raise MissingQdiscError(kind, module) from exc
            raise NetLabError(f"could not add {kind} qdisc: {exc}") from exc

    # -- using ----------------------------------------------------------------------

    def ns_name(self, side: Side) -> str:
        if side == "server":
            return self.server_ns
        if side == "client":
            return self.client_ns
        raise UsageError(f"bad side {side!r}: use 'server' or 'client'")

    def popen(self, side: Side, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside one side's namespace (no `ip netns exec`: setns before exec).

        The process is stopped at teardown if it is still running; stop it yourself first
        when its exit status matters.
        """
        if not self._active:
            raise NetLabError("NetLab.popen needs an entered lab: use 'with NetLab() as lab'")
        libc = _get_libc()
        fd, _ = _open_netns(self.ns_name(side))
        user_preexec = popen_kwargs.pop("preexec_fn", None)

        def enter_netns() -> None:
            # Runs in the child between fork and exec: only async-signal-safe work here.
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the lab namespace failed")
            if user_preexec is not None:
                user_preexec()

        try:
            proc = subprocess.Popen(argv, preexec_fn=enter_netns, **popen_kwargs)
        finally:
            os.close(fd)
        self._procs.append(proc)
        return proc

    def call(self, side: Side, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn in this process, in one side's namespace (e.g. a sock_diag read)."""
        return call_in_netns(self.ns_name(side), fn, *args, **kwargs)

    def link_info(self, side: Side) -> LinkInfo:
        """The kernel's view of one veth end: MTU and qdiscs (read back through netlink)."""
        return outside_event_loop(self._link_info, side)

    def _link_info(self, side: Side) -> LinkInfo:
        ifname = self.server_ifname if side == "server" else self.client_ifname
        with IPRoute(netns=self.ns_name(side), flags=0) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            link = ipr.get_links(index)[0]
            qdiscs = [q for q in ipr.get_qdiscs(index=index) if q["index"] == index]
        kinds = []
        tbf_rate = None
        for q in sorted(qdiscs, key=lambda q: q["parent"] != 0xFFFFFFFF):
            kind = q.get_attr("TCA_KIND")
            kinds.append(kind)
            if kind == "tbf":
                tbf_rate = q.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")["rate"]
        return LinkInfo(ifname, link.get_attr("IFLA_MTU"), tuple(kinds), tbf_rate)

    # -- teardown -------------------------------------------------------------------

    def _delete_veth(self) -> None:
        with IPRoute(netns=self.server_ns, flags=0) as ipr:
            found = ipr.link_lookup(ifname=self.server_ifname)
            if found:
                ipr.link("del", index=found[0])  # takes the peer and qdiscs along

    def _teardown(self) -> list[str]:
        """Stop processes, delete the veth (and its qdiscs), remove namespaces. Never raises;
        returns what went wrong so the caller can report it."""
        if not self._active or os.getpid() != self._owner_pid:
            # A forked copy of the owner (a helper child unwinding on a signal) must not
            # tear down the lab its parent still uses.
            return []
        self._active = False
        problems: list[str] = []
        try:
            self._stop_and_remove(problems)
        finally:
            self._restore_sigterm()
        return problems

    def _stop_and_remove(self, problems: list[str]) -> None:
        # Our own children first, politely; then anything else left in the namespaces
        # (grandchildren, daemons) and finally reap our children.
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 2.0
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        _kill_all_in([n for n in self._created if _netns_inode(n)], grace_s=1.0)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append(f"process {proc.pid} did not exit")
        if self.server_ns in self._created and _netns_inode(self.server_ns):
            try:
                outside_event_loop(self._delete_veth)
            except Exception as exc:
                problems.append(f"deleting {self.server_ifname}: {exc}")
        for name in reversed(self._created):
            try:
                _remove_netns(name)
            except OSError as exc:
                problems.append(f"removing namespace {name}: {exc}")
        self._created.clear()
