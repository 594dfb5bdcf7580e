"""TLS on the public listener of a real `gateway serve`: TLS 1.2+, the cookie form marked
Secure, and a renewed certificate picked up without a restart while a client keeps connecting."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.app import PublicListener, create_app
from gateway.settings import SettingsError
from tests.integration.harness import Keys, gateway_settings, make_keys
from tests.polling import eventually
from tests.servers import GatewayProcess, gateway_serve, write_certificate

pytestmark = pytest.mark.integration


def served_name(port: int) -> str:
    """The common name of the certificate the gateway presents now."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    certificate = x509.load_der_x509_certificate(der)
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def client(cert: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def get(port: int, context: ssl.SSLContext, target: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    connection.request("GET", target)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def served(tmp_path: Path, keys: Keys) -> Iterator[tuple[GatewayProcess, Path]]:
    objects = tmp_path / "objects"
    (objects / "hls").mkdir(parents=True)
    (objects / "hello.txt").write_bytes(b"hello over tls\n")
    (objects / "hls" / "index.m3u8").write_bytes(b"#EXTM3U\n")
    cert, key = write_certificate(tmp_path, "first")
    settings = {
        "origin": f"file://{objects}",
        "keyring": str(keys.gateway_file),
        "tls_certificate": str(cert),
        "tls_key": str(key),
        "keyring_watch_interval": "0.2",
        "token_cookie": "true",
    }
    with gateway_serve(tmp_path, settings) as gateway:
        yield gateway, cert


def test_objects_are_served_over_tls_1_2_and_up(
    served: tuple[GatewayProcess, Path], keys: Keys
) -> None:
    gateway, cert = served

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        response = get(gateway.port, client(cert, version), keys.sign("/hello.txt"))
        assert response.status == 200


def test_plain_http_is_not_served_on_the_tls_port(served: tuple[GatewayProcess, Path]) -> None:
    gateway, _ = served

    def plain_get() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        connection.request("GET", "/hello.txt")
        connection.getresponse().read()

    with pytest.raises((ConnectionError, http.client.HTTPException)):
        plain_get()


def test_the_cookie_form_is_marked_secure_over_tls(
    served: tuple[GatewayProcess, Path], keys: Keys
) -> None:
    gateway, cert = served

    response = get(gateway.port, client(cert), keys.sign("/hls/index.m3u8", prefix="/hls/"))

    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in [attribute.strip() for attribute in cookie.split(";")]


async def test_a_renewed_certificate_is_served_without_a_restart(
    served: tuple[GatewayProcess, Path], keys: Keys, tmp_path: Path
) -> None:
    gateway, _ = served
    assert served_name(gateway.port) == "first"
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_connecting() -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        while not stop.is_set():
            try:
                assert get(gateway.port, context, keys.sign("/hello.txt")).status == 200
            except BaseException as exc:  # every failure is a finding
                failures.append(exc)

    worker = threading.Thread(target=keep_connecting)
    worker.start()
    try:
        write_certificate(tmp_path, "renewed")
        await eventually(lambda: served_name(gateway.port) == "renewed", within=20)
    finally:
        stop.set()
        worker.join()

    assert failures == []
    assert gateway.exit_status() is None


@pytest.mark.parametrize("given", ["tls_certificate", "tls_key"])
async def test_a_certificate_without_its_key_fails_the_start_naming_the_setting(
    tmp_path: Path, keys: Keys, given: str
) -> None:
    cert, key = write_certificate(tmp_path, "half")
    settings = gateway_settings(
        f"file://{tmp_path}",
        keys.gateway_file,
        **{given: str(cert if given == "tls_certificate" else key)},
    )
    runner = PublicListener(create_app(settings))
    missing = "GATEWAY_TLS_KEY" if given == "tls_certificate" else "GATEWAY_TLS_CERTIFICATE"
    try:
        with pytest.raises(SettingsError, match=rf"^{missing}: "):
            await runner.start()
    finally:
        await runner.cleanup()


async def test_a_key_that_does_not_match_fails_the_start_naming_the_setting(
    tmp_path: Path, keys: Keys
) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, _ = write_certificate(first, "one")
    _, other_key = write_certificate(second, "two")
    settings = gateway_settings(
        f"file://{tmp_path}", keys.gateway_file, tls_certificate=str(cert), tls_key=str(other_key)
    )
    runner = PublicListener(create_app(settings))
    try:
        with pytest.raises(SettingsError, match=r"^GATEWAY_TLS_CERTIFICATE: "):
            await runner.start()
    finally:
        await runner.cleanup()
