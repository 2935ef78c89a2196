"""Throwaway certificates and contexts, checked with the real openssl tool."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tls_probe.certs import make_cert_bundle, make_client_context, make_server_context
from tls_probe.errors import TlsConfigError


def openssl(*args: str) -> str:
    proc = subprocess.run(
        [shutil.which("openssl") or "openssl", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bundle_files_form_a_valid_chain_for_localhost() -> None:
    bundle = make_cert_bundle()
    assert "OK" in openssl("verify", "-CAfile", bundle.ca_pem_path, bundle.cert_pem_path)
    text = openssl("x509", "-in", bundle.cert_pem_path, "-noout", "-ext", "subjectAltName")
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    openssl("pkey", "-in", bundle.key_pem_path, "-noout")
    paths = [bundle.ca_pem_path, bundle.cert_pem_path, bundle.key_pem_path]
    bundle.cleanup()
    assert not any(Path(p).exists() for p in paths)


def test_each_bundle_is_a_fresh_ca() -> None:
    a, b = make_cert_bundle(), make_cert_bundle()
    assert Path(a.ca_pem_path).read_bytes() != Path(b.ca_pem_path).read_bytes()


@pytest.mark.parametrize(
    ("tls_version", "expected"), [("1.3", ssl.TLSVersion.TLSv1_3), ("1.2", ssl.TLSVersion.TLSv1_2)]
)
def test_server_context_is_pinned_to_one_version(
    tls_version: str, expected: ssl.TLSVersion
) -> None:
    ctx, bundle = make_server_context(tls_version=tls_version)
    assert ctx.minimum_version == ctx.maximum_version == expected
    assert Path(bundle.ca_pem_path).exists()


def test_bad_tls_version_is_a_usage_error() -> None:
    with pytest.raises(TlsConfigError, match=r"unsupported TLS version '1\.1'"):
        make_server_context(tls_version="1.1")


def test_client_context_modes() -> None:
    strict = make_client_context(None)
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = make_client_context(None, insecure=True)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    pinned = make_client_context(None, tls_version="1.2")
    assert pinned.maximum_version == ssl.TLSVersion.TLSv1_2


def test_unreadable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="--insecure"):
        make_client_context(str(tmp_path / "missing.pem"))
