"""Self-signed certificates for the TLS tests, made with the ``openssl`` binary.

:func:`make_pki` writes, into one directory: a test CA; a server certificate signed by it for
``127.0.0.1`` and ``localhost``; a client certificate signed by it (for mutual TLS), also as
one PEM with its key (MongoDB's ``tlsCertificateKeyFile``); and a second, unrelated CA — "the
wrong CA", which must not verify the server. EC P-256 keys, valid for two days, with the
extensions a strict verifier wants (key usages, key identifiers). The files are 0600.

The ``openssl`` binary rather than a Python package: it is on every Debian machine and CI image
and adds no dependency; without it the TLS tests skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE\n"
    "keyUsage=critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier=hash\n"
)
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid\n"
)


@dataclass(frozen=True)
class PKI:
    """The files of :func:`make_pki` (all PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    """Client certificate followed by its key, in one file (PyMongo's format)."""
    wrong_ca: Path


def openssl() -> str:
    """The openssl binary, or skip the test (saying why)."""
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("the TLS tests need the openssl binary to make their certificates")
    return found


def _run(*argv: str) -> None:
    done = subprocess.run([openssl(), *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {argv[0]} failed: {done.stderr.strip()}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key, cnf = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.cnf"
    cnf.write_text("[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n" + CA_EXTENSIONS)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-config", str(cnf), "-extensions", "v3_ca")
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extra: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text(LEAF_EXTENSIONS + extra)
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", "-config", os.devnull)
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
         "-extfile", str(ext), "-out", str(cert))
    return cert, key


def make_pki(directory: Path) -> PKI:
    """Write a CA, server and client certificates and a wrong CA into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    wrong_ca, _ = _ca(directory, "wrong-ca")
    server = _leaf(directory, "server", ca,
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client = _leaf(directory, "client", ca, "extendedKeyUsage=clientAuth\n")
    combined = directory / "client-combined.pem"
    combined.write_text(client[0].read_text() + client[1].read_text())
    for path in directory.iterdir():
        path.chmod(0o600)
    return PKI(ca=ca[0], server_cert=server[0], server_key=server[1], client_cert=client[0],
               client_key=client[1], client_combined=combined, wrong_ca=wrong_ca)
