"""The settings → driver options of orchestrator/tls.py, and URLs printed without secrets."""

from __future__ import annotations

import pytest

from orchestrator.cli.connect import redact
from orchestrator.errors import ConfigError
from orchestrator.settings import env_table, load_settings
from orchestrator.tls import TLSFiles, mongo_tls_options, redis_tls_options, s3_tls_options
from tests.tls.certs import PKI


def test_redis_options_follow_the_url_scheme(pki: PKI) -> None:
    files = TLSFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    assert redis_tls_options("redis://h:1/0") == {}
    assert redis_tls_options("rediss://h:1/0") == {"ssl_cert_reqs": "required",
                                                    "ssl_check_hostname": True}
    assert redis_tls_options("rediss://h:1/0", files) == {
        "ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": str(pki.ca),
        "ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)}
    with pytest.raises(ConfigError, match=r"need a rediss://"):
        redis_tls_options("redis://h:1/0", files)


def test_mongo_and_s3_options(pki: PKI) -> None:
    assert mongo_tls_options(TLSFiles()) == {}  # the URL's own tls= options decide
    assert mongo_tls_options(TLSFiles(str(pki.ca), str(pki.client_combined))) == {
        "tls": True, "tlsCAFile": str(pki.ca), "tlsCertificateKeyFile": str(pki.client_combined)}
    assert s3_tls_options(TLSFiles()) == {}
    assert s3_tls_options(TLSFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key))) == {
        "verify": str(pki.ca), "client_cert": (str(pki.client_cert), str(pki.client_key))}


def test_settings_carry_the_files(pki: PKI) -> None:
    settings = load_settings(redis_url="rediss://h:1/0", redis_ca_file=str(pki.ca),
                             mongo_ca_file=str(pki.ca), s3_ca_file=str(pki.ca),
                             s3_cert_file=str(pki.client_cert), s3_key_file=str(pki.client_key))
    assert settings.redis_tls == TLSFiles(ca_file=str(pki.ca))
    assert settings.mongo_tls == TLSFiles(ca_file=str(pki.ca))
    assert settings.s3_tls == TLSFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    assert not load_settings().redis_tls  # nothing set: no TLS files, no change
    for name in ("REDIS_CA_FILE", "MONGO_CA_FILE", "MONGO_CERT_FILE", "S3_CA_FILE"):
        assert f"`ORCHESTRATOR_{name}`" in env_table()


def test_an_unreadable_file_names_its_variable(tmp_path_factory: pytest.TempPathFactory) -> None:
    missing = str(tmp_path_factory.mktemp("none") / "ca.pem")
    with pytest.raises(ConfigError, match=f"ORCHESTRATOR_S3_CA_FILE {missing}: no such file"):
        load_settings(s3_ca_file=missing)
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MONGO_CERT_FILE"):
        load_settings(mongo_cert_file=missing)


@pytest.mark.parametrize(("url", "shown"), [
    ("rediss://daemon:s3cret@redis:6380/0", "rediss://daemon:***@redis:6380/0"),
    ("rediss://redis:6380/0", "rediss://redis:6380/0"),
    ("mongodb://app:s3cret@m1,m2/?tls=true&tlsCAFile=/etc/ca.pem",
     "mongodb://app:***@m1,m2/?tls=true&tlsCAFile=/etc/ca.pem"),
    ("mongodb://m1/?tls=true&tlsCertificateKeyFilePassword=s3cret",
     "mongodb://m1/?tls=true&tlsCertificateKeyFilePassword=***"),
])
def test_printed_urls_hide_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret" not in redact(url)
