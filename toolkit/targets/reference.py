"""Reference servers configured by writeshape: nginx, h2o, nghttpd.

    with ReferenceServer("nginx", transport="h2", body_bytes=1 << 20) as srv:
        srv.url, srv.target.pids()  # a ProcessTreeTarget, stopped on exit

writeshape writes the server's files into a temporary folder (the body, a throwaway
certificate for TLS, the config), starts it on a free port, waits until its URL answers
HTTP/2 and stops it afterwards. What each server is set to, and why, is in its module
(nginx.py, h2o.py, nghttpd.py).

A user's own config file (``config_path``) replaces the generated one. Placeholders are
filled in where they appear: ``{{host}}``, ``{{port}}``, ``{{root}}`` (the folder with
the body), ``{{tmp}}`` (writeshape's folder for pid and temp files), ``{{cert}}`` and
``{{key}}`` (TLS). A config without ``{{port}}`` is used as written: then ``port`` must
say where it listens. nghttpd has no config file (use a command target for its options).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolkit.errors import MissingToolError, UsageError
from toolkit.targets import h2o, nghttpd, nginx
from toolkit.targets.docroot import write_docroot
from toolkit.targets.errors import TargetConfigError, TargetStartError
from toolkit.targets.layout import ReferenceLayout
from toolkit.targets.process_tree import ProcessTreeTarget

# Debian keeps servers in sbin, which a non-root PATH often lacks.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z]+)\s*\}\}")


@dataclass(frozen=True)
class ReferenceSpec:
    name: str
    program: str
    package: str  # the Debian package that installs ``program``
    render_config: Callable[[ReferenceLayout], str | None]  # None: no config file
    argv: Callable[[str, ReferenceLayout, str], list[str]]
    settings: dict[str, str]  # what writeshape sets (the module docstring says why)


REFERENCE_SERVERS: dict[str, ReferenceSpec] = {
    "nginx": ReferenceSpec("nginx", "nginx", "nginx", nginx.render_config, nginx.argv,
                           nginx.SETTINGS),
    "h2o": ReferenceSpec("h2o", "h2o", "h2o", h2o.render_config, h2o.argv, h2o.SETTINGS),
    "nghttpd": ReferenceSpec("nghttpd", "nghttpd", "nghttp2-server", nghttpd.render_config,
                             nghttpd.argv, nghttpd.SETTINGS),
}
TRANSPORTS = ("h2c", "h2")


def reference_spec(name: str) -> ReferenceSpec:
    try:
        return REFERENCE_SERVERS[name]
    except KeyError:
        raise UsageError(f"unknown reference server {name!r}: use one of "
                         f"{', '.join(REFERENCE_SERVERS)}") from None


def find_program(spec: ReferenceSpec) -> str:
    """The server's executable, or MissingToolError naming its Debian package."""
    path = shutil.which(spec.program) or shutil.which(
        spec.program, path=os.pathsep.join(_EXTRA_DIRS))
    if path is None:
        raise MissingToolError(spec.program, spec.package)
    return path


def fill_placeholders(text: str, layout: ReferenceLayout) -> str:
    """A user's config with ``{{name}}`` placeholders filled in (see the module doc)."""
    values = {"host": layout.host, "port": str(layout.port), "root": layout.root,
              "tmp": layout.tmp, "cert": layout.cert_path, "key": layout.key_path}

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise TargetConfigError(f"unknown placeholder {{{{{name}}}}} in the config: use "
                                    f"{', '.join('{{' + k + '}}' for k in values)}")
        value = values[name]
        if value is None:
            raise TargetConfigError(f"the config uses {{{{{name}}}}}, which only TLS has")
        return value

    return _PLACEHOLDER.sub(one, text)


def uses_port_placeholder(text: str) -> bool:
    return any(m.group(1) == "port" for m in _PLACEHOLDER.finditer(text))


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ReferenceServer:
    """One reference server, configured, started and stopped by writeshape."""

    def __init__(self, name: str, *, transport: str = "h2c", body_bytes: int = 16384,
                 host: str = "127.0.0.1", port: int | None = None,
                 config_path: str | None = None, start_timeout_s: float = 30.0) -> None:
        self.spec = reference_spec(name)
        if transport not in TRANSPORTS:
            raise UsageError(f"transport must be h2c or h2, not {transport!r}")
        if body_bytes < 0:
            raise UsageError("body size must be >= 0")
        self.transport = transport
        self.body_bytes = body_bytes
        self.host = host
        self.start_timeout_s = start_timeout_s
        self._user_config = self._read_user_config(config_path)
        if self._user_config is not None and not uses_port_placeholder(self._user_config) \
                and port is None:
            raise TargetConfigError(f"{config_path} has no {{{{port}}}} placeholder: give the "
                                    "port it listens on (the --url)")
        self._port = port
        self.target: ProcessTreeTarget | None = None
        self.config_text: str | None = None
        self.layout: ReferenceLayout | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._certs: Any = None

    def _read_user_config(self, path: str | None) -> str | None:
        if path is None:
            return None
        if self.spec.render_config is nghttpd.render_config:
            raise TargetConfigError("nghttpd has no configuration file: start it with --cmd "
                                    "to choose its options")
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise TargetConfigError(f"cannot read config {path}: {exc.strerror}") from None

    @property
    def url(self) -> str:
        if self.layout is None:
            raise TargetStartError(f"{self.spec.name} is not started")
        scheme = "https" if self.layout.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.layout.port}/"

    def start(self) -> ReferenceServer:
        if self.target is not None:
            raise TargetStartError(f"{self.spec.name} is already running at {self.url}")
        exe = find_program(self.spec)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"writeshape-{self.spec.name}-")
        base = Path(self._tmp.name)
        # Started as root, nginx's workers and h2o switch to nobody (unless a config says
        # otherwise): the body and config must be readable to them. Only public test data
        # lives here; the TLS key is in tls_probe's private folder, read before the switch.
        base.chmod(0o755)
        root = base / "root"
        write_docroot(root, self.body_bytes)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (base / kind).mkdir()
        cert = key = None
        if self.transport == "h2":
            from tls_probe.certs import make_cert_bundle

            self._certs = make_cert_bundle()
            cert, key = self._certs.cert_pem_path, self._certs.key_pem_path
        layout = ReferenceLayout(host=self.host, port=0, tls=self.transport == "h2",
                                 root=str(root), tmp=str(base), cert_path=cert, key_path=key)
        try:
            self._launch(exe, layout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, exe: str, layout: ReferenceLayout) -> None:
        """Start on a free port; another free port if the first was taken meanwhile."""
        for attempt in range(3):
            port = self._port or free_port(self.host)
            self.layout = replace(layout, port=port)
            config_path = self._write_config(self.layout)
            try:
                self.target = ProcessTreeTarget.launch(
                    self.spec.argv(exe, self.layout, config_path), self.url,
                    start_timeout_s=self.start_timeout_s, cwd=self.layout.tmp,
                    label=self.spec.name)
                return
            except TargetStartError as exc:
                if self._port or attempt == 2 or "in use" not in str(exc):
                    raise TargetStartError(f"{self.spec.name} ({self.transport}): {exc}") \
                        from None

    def _write_config(self, layout: ReferenceLayout) -> str:
        if self._user_config is not None:
            text: str | None = fill_placeholders(self._user_config, layout)
        else:
            text = self.spec.render_config(layout)
        self.config_text = text
        path = str(Path(layout.tmp) / f"{self.spec.name}.conf")
        if text is not None:
            Path(path).write_text(text)
        return path

    def stop(self) -> None:
        if self.target is not None:
            self.target.stop()
            self.target.cleanup()
            self.target = None
        if self._certs is not None:
            self._certs.cleanup()
            self._certs = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ReferenceServer:
        return self if self.target is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
