"""Reference servers' configurations: generated as pure text, then checked by the servers'
own config tests (nginx -t, h2o -t); a user's config with placeholders; clear errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tls_probe.certs import make_cert_bundle
from toolkit.errors import MissingToolError, UsageError
from toolkit.protocol.body import BodyStore
from toolkit.targets import h2o, nghttpd, nginx
from toolkit.targets.docroot import write_docroot
from toolkit.targets.errors import TargetConfigError
from toolkit.targets.layout import ReferenceLayout
from toolkit.targets.reference import (
    REFERENCE_SERVERS,
    ReferenceServer,
    ReferenceSpec,
    fill_placeholders,
    find_program,
)


def _layout(tmp: Path, tls: bool, cert: tuple[str, str] | None = None) -> ReferenceLayout:
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / kind).mkdir(exist_ok=True)
    return ReferenceLayout(host="127.0.0.1", port=18443, tls=tls, root=str(tmp / "root"),
                           tmp=str(tmp), cert_path=cert[0] if cert else None,
                           key_path=cert[1] if cert else None)


def test_nginx_config_h2c_keeps_the_body_in_userspace(tmp_path: Path) -> None:
    text = nginx.render_config(_layout(tmp_path, tls=False))
    assert "listen 127.0.0.1:18443 http2;" in text  # h2c with prior knowledge (1.22)
    for line in ("sendfile off;", "worker_processes 1;", "access_log off;", "daemon off;",
                 "http2_chunk_size 8k;", "output_buffers 2 32k;",
                 "keepalive_requests 1000000;", f"root {tmp_path}/root;"):
        assert line in text, line
    assert "ssl" not in text


def test_nginx_listens_on_ipv6_in_brackets(tmp_path: Path) -> None:
    from dataclasses import replace

    text = nginx.render_config(replace(_layout(tmp_path, tls=False), host="::1"))
    assert "listen [::1]:18443 http2;" in text


def test_nginx_config_tls(tmp_path: Path) -> None:
    text = nginx.render_config(_layout(tmp_path, tls=True, cert=("/c.pem", "/k.pem")))
    assert "listen 127.0.0.1:18443 ssl http2;" in text
    assert "ssl_certificate /c.pem;" in text and "ssl_certificate_key /k.pem;" in text
    assert "ssl_buffer_size 16k;" in text


def test_h2o_config_is_yaml_with_quoted_paths(tmp_path: Path) -> None:
    layout = _layout(tmp_path, tls=True, cert=('/a "b"/c.pem', "/k.pem"))
    text = h2o.render_config(layout)
    assert "num-threads: 1" in text and "port: 18443" in text
    assert 'certificate-file: "/a \\"b\\"/c.pem"' in text
    assert "ocsp-update-interval: 0" in text
    assert "ssl" not in h2o.render_config(_layout(tmp_path, tls=False))


def test_nghttpd_command_line(tmp_path: Path) -> None:
    plain = nghttpd.argv("nghttpd", _layout(tmp_path, tls=False), None)
    assert plain[-2:] == ["--no-tls", "18443"] and plain[5:7] == ["-n", "1"]
    tls = nghttpd.argv("nghttpd", _layout(tmp_path, tls=True, cert=("/c", "/k")), None)
    assert tls[-3:] == ["18443", "/k", "/c"]


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
@pytest.mark.parametrize("name", ["nginx", "h2o"])
def test_the_server_accepts_its_generated_config(tmp_path: Path, name: str, tls: bool) -> None:
    spec = REFERENCE_SERVERS[name]
    exe = find_program(spec)
    bundle = make_cert_bundle() if tls else None
    cert = (bundle.cert_pem_path, bundle.key_pem_path) if bundle else None
    layout = _layout(tmp_path, tls=tls, cert=cert)
    write_docroot(layout.root, 1000)
    conf = tmp_path / "server.conf"
    conf.write_text(spec.render_config(layout) or "")
    argv = spec.argv(exe, layout, str(conf))
    test = [*argv, "-t"] if name == "nginx" else [exe, "-t", "-c", str(conf)]
    proc = subprocess.run(test, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if bundle:
        bundle.cleanup()


def test_docroot_holds_the_pattern_at_index_and_bytes(tmp_path: Path) -> None:
    body = write_docroot(tmp_path, 70000)
    assert body.read_bytes() == bytes(BodyStore(70000).view(70000))
    assert (tmp_path / "bytes" / "70000").stat().st_ino == body.stat().st_ino


def test_placeholders_are_filled_and_unknown_ones_refused(tmp_path: Path) -> None:
    layout = _layout(tmp_path, tls=False)
    text = "listen {{host}}:{{ port }}; root {{root}}; pid {{tmp}}/x.pid;"
    assert fill_placeholders(text, layout) == (
        f"listen 127.0.0.1:18443; root {tmp_path}/root; pid {tmp_path}/x.pid;")
    with pytest.raises(TargetConfigError, match=r"unknown placeholder \{\{prot\}\}"):
        fill_placeholders("{{prot}}", layout)
    with pytest.raises(TargetConfigError, match="only TLS has"):
        fill_placeholders("ssl_certificate {{cert}};", layout)


def test_a_user_config_without_port_placeholder_needs_the_port(tmp_path: Path) -> None:
    conf = tmp_path / "mine.conf"
    conf.write_text("daemon off; events {} http { server { listen 8080 http2; } }\n")
    with pytest.raises(TargetConfigError, match="no \\{\\{port\\}\\} placeholder"):
        ReferenceServer("nginx", config_path=str(conf))
    ReferenceServer("nginx", config_path=str(conf), port=8080)  # accepted as written


def test_bad_names_and_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown reference server 'apache'"):
        ReferenceServer("apache")
    with pytest.raises(UsageError, match="transport must be h2c or h2"):
        ReferenceServer("nginx", transport="h3")
    with pytest.raises(TargetConfigError, match="nghttpd has no configuration file"):
        ReferenceServer("nghttpd", config_path=str(tmp_path / "x"))
    with pytest.raises(TargetConfigError, match="cannot read config"):
        ReferenceServer("nginx", config_path=str(tmp_path / "missing.conf"))


def test_a_server_that_is_not_installed_names_its_package() -> None:
    spec = ReferenceSpec("caddy", "writeshape-no-such-caddy", "caddy", nginx.render_config,
                         nginx.argv, {})
    with pytest.raises(MissingToolError) as err:
        find_program(spec)
    assert str(err.value) == ("writeshape-no-such-caddy not found: install it (Debian: "
                              "apt-get install caddy) or put it on PATH")


def test_debian_packages_of_the_servers() -> None:
    assert {n: s.package for n, s in REFERENCE_SERVERS.items()} == {
        "nginx": "nginx", "h2o": "h2o", "nghttpd": "nghttp2-server"}
    for spec in REFERENCE_SERVERS.values():
        assert shutil.which(spec.program) or Path("/usr/sbin", spec.program).exists()
