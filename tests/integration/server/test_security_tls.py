"""TLS on both listeners (``server.tls_certfile``/``tls_keyfile``) with a certificate
authority and a server certificate the test makes itself (``cryptography``): ``wss://``
with the Trio and asyncio clients and the command line, ``https://`` with httpx and the
``openai`` SDK through a custom ``http_client``, all with an API key."""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streamer import cli
from streamer.client import AudioEnd, TTSConnectionError, TTSStreamingClient
from streamer.server.app import RunningServer
from streamer.server.security import key_digest
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import WAIT, running_server
from tests.support.services import make_config, make_services

T = TypeVar("T")

KEY = "tts_test-key-over-tls"
#: Validity of the test certificates: the test's lifetime, with room for clock skew.
CERT_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> Certificates:
    """A CA and a certificate it signs for 127.0.0.1 and localhost, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
async def server(certificates: Certificates) -> AsyncIterator[RunningServer]:
    config = make_config(
        server={"tls_certfile": str(certificates.cert), "tls_keyfile": str(certificates.key)},
        tts={"default_language": "en"},
        security={"api_keys": [{"id": "tls", "sha256": key_digest(KEY).hex()}]},
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(WAIT):
        return await trio.to_thread.run_sync(fn)


async def test_the_trio_client_over_wss(server: RunningServer, certificates: Certificates) -> None:
    url = f"wss://127.0.0.1:{server.websocket_port}"
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(
            url, api_key=KEY, ssl_context=certificates.client_context()
        ) as client:
            result = await client.synthesize("Over TLS.", format="pcm").collect()
        assert result.completed and result.audio
        # Without the key the TLS handshake succeeds and the WebSocket one is refused.
        with pytest.raises(TTSConnectionError) as refused:
            async with TTSStreamingClient(url, ssl_context=certificates.client_context()):
                pass
        assert refused.value.status == 401


async def test_the_asyncio_client_over_wss(
    server: RunningServer, certificates: Certificates
) -> None:
    from streamer.client.asyncio_client import AsyncioTTSStreamingClient

    url = f"wss://127.0.0.1:{server.websocket_port}"

    async def speak() -> AudioEnd | None:
        async with AsyncioTTSStreamingClient(
            url, api_key=KEY, ssl_context=certificates.client_context()
        ) as client:
            result = await client.synthesize("Asyncio over TLS.", format="pcm").collect()
            return result.end

    end = await in_thread(lambda: asyncio.run(speak()))
    assert end is not None and end.bytes > 0


async def test_https_with_httpx_and_the_openai_sdk(
    server: RunningServer, certificates: Certificates
) -> None:
    base = f"https://127.0.0.1:{server.http_port}"
    async with httpx.AsyncClient(
        base_url=base, verify=certificates.client_context(), timeout=WAIT
    ) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/api/v1/status")).status_code == 401
        reply = await http.get("/api/v1/status", headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 200 and reply.json()["ready"]
    # A client that does not trust the certificate gets no further than TLS.
    async with httpx.AsyncClient(base_url=base, timeout=WAIT) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get("/health")

    def speech() -> bytes:
        with httpx.Client(verify=certificates.client_context(), timeout=WAIT) as http_client:
            sdk = openai.OpenAI(
                base_url=f"{base}/v1", api_key=KEY, http_client=http_client, max_retries=0
            )
            return sdk.audio.speech.create(
                model="tts-1", voice="alloy", input="Hello over TLS.", response_format="wav"
            ).content

    assert (await in_thread(speech))[:4] == b"RIFF"


async def test_the_command_line_over_tls(
    server: RunningServer, certificates: Certificates, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OpenSSL's default trust store honours $SSL_CERT_FILE: the CLI needs no option.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    monkeypatch.setenv("TTS_STREAMER_API_KEY", KEY)
    output = tmp_path / "out.wav"
    out, err = io.StringIO(), io.StringIO()
    say = ["say", "Hello from the command line.", "-o", str(output),
           "--url", f"wss://127.0.0.1:{server.websocket_port}"]
    code = await in_thread(partial(cli.main, say, stdout=out, stderr=err))
    assert code == 0, err.getvalue()
    assert output.read_bytes()[:4] == b"RIFF"
    status = ["status", "--http", f"https://127.0.0.1:{server.http_port}"]
    code = await in_thread(partial(cli.main, status, stdout=out, stderr=err))
    assert code == 0, err.getvalue()
    assert f"wss://127.0.0.1:{server.websocket_port}" in out.getvalue()
    monkeypatch.delenv("TTS_STREAMER_API_KEY")
    err = io.StringIO()
    code = await in_thread(partial(cli.main, status, stdout=out, stderr=err))
    assert code == 1 and "401 unauthorized" in err.getvalue()
