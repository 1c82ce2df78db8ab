"""TLS to the three servers: which PEM files a client uses, and the options each driver takes.

One record, :class:`TLSFiles` (a CA bundle that verifies the server, and optionally a client
certificate and key for mutual TLS), per server, built from the settings
(``ORCHESTRATOR_REDIS_CA_FILE`` …, see :mod:`orchestrator.settings`) and turned here — and only
here — into the keyword arguments of redis-py (``rediss://``), PyMongo and botocore. The client
builders (``connect_redis``, ``connect_mongo``, the S3 store) take the record, so every process
that connects (daemon, workers, CLI, watcher, demo) gets the same TLS from the same variables.

Certificates and keys are files, never values in the environment; nothing here logs.
Verification is never switched off here: a CA file replaces the system's trust store for that one
client, and the server's name (or IP address) must still match its certificate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for one server's TLS. All optional: without ``ca_file`` the system's trust
    store verifies the server; ``cert_file`` (+ ``key_file``) is the client's own certificate
    for mutual TLS. For MongoDB, ``cert_file`` holds certificate and key together (PyMongo's
    ``tlsCertificateKeyFile``) and ``key_file`` stays empty."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __bool__(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


NO_TLS_FILES = TLSFiles()


def check_tls_files(files: TLSFiles, prefix: str) -> None:
    """Raise ``ConfigError`` naming the variable (``ORCHESTRATOR_<PREFIX>_CA_FILE`` …) when a
    file is unreadable or a key is given without its certificate — at startup, instead of a
    handshake error later."""
    for suffix, path in (("CA_FILE", files.ca_file), ("CERT_FILE", files.cert_file),
                         ("KEY_FILE", files.key_file)):
        if path is not None and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable"
            raise ConfigError(f"ORCHESTRATOR_{prefix}_{suffix} {path}: {why}")
    if files.key_file is not None and files.cert_file is None:
        raise ConfigError(f"ORCHESTRATOR_{prefix}_KEY_FILE needs ORCHESTRATOR_{prefix}_CERT_FILE")


def redis_tls_options(url: str, files: TLSFiles = NO_TLS_FILES) -> dict[str, Any]:
    """redis-py's ``ssl_*`` arguments for ``Redis.from_url(url, …)``.

    TLS itself is chosen by the URL (``rediss://``); plain ``redis://`` takes no options, and
    TLS files with a plain URL are a configuration error rather than silently ignored.
    """
    if not url.startswith("rediss://"):
        if files:
            raise ConfigError("ORCHESTRATOR_REDIS_CA_FILE/CERT_FILE/KEY_FILE need a rediss:// "
                              "ORCHESTRATOR_REDIS_URL (TLS); the URL is not rediss://")
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if files.ca_file is not None:
        options["ssl_ca_certs"] = files.ca_file
    if files.cert_file is not None:
        options["ssl_certfile"] = files.cert_file
        options["ssl_keyfile"] = files.key_file
    return options


def mongo_tls_options(files: TLSFiles = NO_TLS_FILES) -> dict[str, Any]:
    """PyMongo's TLS arguments: none without files (the URL's own ``tls=true&tlsCAFile=…``
    then decide), else ``tls=True`` with the CA file and the client's certificate+key file."""
    if not files:
        return {}
    if files.key_file is not None:
        raise ConfigError("MongoDB takes the client certificate and key in one PEM file: set "
                          "ORCHESTRATOR_MONGO_CERT_FILE only (PyMongo's tlsCertificateKeyFile)")
    options: dict[str, Any] = {"tls": True}
    if files.ca_file is not None:
        options["tlsCAFile"] = files.ca_file
    if files.cert_file is not None:
        options["tlsCertificateKeyFile"] = files.cert_file
    return options


def s3_tls_options(files: TLSFiles = NO_TLS_FILES) -> dict[str, Any]:
    """botocore's ``verify=`` (the CA bundle; default: the system's, or ``AWS_CA_BUNDLE``) and
    ``client_cert=`` (a (cert, key) pair for mutual TLS)."""
    options: dict[str, Any] = {}
    if files.ca_file is not None:
        options["verify"] = files.ca_file
    if files.cert_file is not None:
        options["client_cert"] = (
            files.cert_file if files.key_file is None else (files.cert_file, files.key_file))
    return options


__all__ = [
    "NO_TLS_FILES",
    "TLSFiles",
    "check_tls_files",
    "mongo_tls_options",
    "redis_tls_options",
    "s3_tls_options",
]
