"""HTTPS: ``corral serve`` with a certificate from a test CA (trustme), on OLLAMA_HOST and on every
extra bind, reached by clients that verify it: ollama, openai, httpx, curl and ``corral`` itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from corral.errors import CorralError
from corral.plugins.cli.client import trusted_certificates
from servers import free_port, running_server, store_with_smollm2
from support import clean_environ, run_corral
from test_clients_with_keys import ollama_js  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

KEY = "tls-full-key-0123456789abcdef"
INFERENCE_KEY = "tls-inference-key-0123456789"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> dict[str, Path]:
    """The CA's certificate, and the server's certificate chain and key, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    issued = ca.issue_cert("127.0.0.1", "localhost", "::1")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    paths["cert"].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(paths["key"])
    return paths


@pytest.fixture(scope="module")
def trust(files: dict[str, Path]) -> ssl.SSLContext:
    """What the clients under test verify with: the test CA only (never verification turned off)."""
    return ssl.create_default_context(cafile=str(files["ca"]))


@pytest.fixture(scope="module")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, files: dict[str, Path], ui_port: int) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tls-server")
    store = store_with_smollm2(root / "models", smollm2_gguf)
    return {**clean_environ(root / "home"), "OLLAMA_MODELS": str(store), "OLLAMA_DEBUG": "1",
            "CORRAL_TLS_CERT": str(files["cert"]), "CORRAL_TLS_KEY": str(files["key"]), "CORRAL_API_KEYS": KEY,
            "CORRAL_INFERENCE_KEYS": INFERENCE_KEY, "CORRAL_WEBUI_PORT": str(ui_port)}


@pytest.fixture(scope="module")
def log() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(env: dict[str, str], trust: ssl.SSLContext, log: list[str]) -> Iterator[str]:
    with running_server(env, scheme="https", verify=trust, log=log) as url:
        yield url


def test_the_log_names_https_addresses(server: str, log: list[str], ui_port: int) -> None:
    port = server.rpartition(":")[2]
    assert f"listening on https://127.0.0.1:{port}, https://127.0.0.1:{ui_port} (models in" in "".join(log)


def test_httpx_verifies_the_certificate(server: str, trust: ssl.SSLContext) -> None:
    assert httpx.get(f"{server}/api/tags", headers=BEARER, verify=trust).json()["models"]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server}/api/tags", headers=BEARER)  # certifi's authorities do not know the test CA
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.replace("https://", "http://"))  # no plain HTTP on the TLS port


def test_every_extra_bind_serves_https(server: str, trust: ssl.SSLContext, ui_port: int) -> None:
    page = httpx.get(f"https://127.0.0.1:{ui_port}/ui/", verify=trust)
    assert page.status_code == 200 and "<!doctype html>" in page.text.lower()


def test_the_ollama_python_client(server: str, trust: ssl.SSLContext) -> None:
    client = ollama.Client(host=server, headers=BEARER, verify=trust, timeout=120)
    assert "smol:latest" in [model.model for model in client.list().models]
    reply = client.chat(model="smol", messages=[{"role": "user", "content": "Say hello."}],
                        options={"num_predict": 8, "temperature": 0})
    assert reply.message.content


def test_the_openai_client(server: str, trust: ssl.SSLContext) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, http_client=httpx.Client(verify=trust), timeout=120)
    reply = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Say hello."}],
                                           max_tokens=8, temperature=0)
    assert reply.choices[0].message.content


def test_the_ollama_javascript_client(server: str, files: dict[str, Path], ollama_js: Path) -> None:  # noqa: F811
    result = subprocess.run(["node", "keys.mjs", server, INFERENCE_KEY, "smol"], cwd=ollama_js, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "NODE_EXTRA_CA_CERTS": str(files["ca"])})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "smol:latest" in seen["models"] and seen["chat"]
    assert seen["delete_with_inference_key"]["status"] == 403


def test_curl_over_http2_and_the_key_stays_out_of_the_debug_log(server: str, files: dict[str, Path],
                                                                  log: list[str]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(["curl", "-sS", "-i", "--http2", "--cacert", str(files["ca"]), "-H",
                             f"Authorization: Bearer {KEY}", f"{server}/api/tags"],
                            capture_output=True, text=True, timeout=60)
    head, _, body = result.stdout.partition("\n\n")  # text mode: CRLF came in as LF
    assert head.startswith("HTTP/2 200"), result.stdout + result.stderr
    assert "smol:latest" in [model["name"] for model in json.loads(body)["models"]]
    time.sleep(0.5)  # the request log line
    text = "".join(log)
    assert "path=\"/api/tags\" status=200" in text
    assert KEY not in text


def test_corral_list_over_https(server: str, files: dict[str, Path], tmp_path: Path) -> None:
    env = {**clean_environ(tmp_path / "home"), "OLLAMA_HOST": server, "CORRAL_API_KEY": KEY}
    result = run_corral("list", env={**env, "SSL_CERT_FILE": str(files["ca"])})
    assert result.returncode == 0, result.stderr
    assert "smol:latest" in result.stdout
    untrusted = run_corral("list", env=env)
    assert untrusted.returncode == 1
    assert untrusted.stderr.startswith(f"Error: the server at {server} presented a certificate this machine does "
                                       "not trust (")
    assert untrusted.stderr.rstrip().endswith("set SSL_CERT_FILE to the certificate of the authority that signed it")


def test_the_command_line_starts_a_local_https_server(files: dict[str, Path], smol_store: Path,
                                                      clean_env: dict[str, str]) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**clean_env, "OLLAMA_HOST": url, "OLLAMA_MODELS": str(smol_store), "SSL_CERT_FILE": str(files["ca"]),
           "CORRAL_TLS_CERT": str(files["cert"]), "CORRAL_TLS_KEY": str(files["key"])}
    result = run_corral("list", env=env)
    match = re.search(rf"Started corral server at {url} \(pid (\d+), ", result.stderr)
    try:
        assert result.returncode == 0, result.stderr
        assert "smol:latest" in result.stdout and match
    finally:
        if match:
            os.killpg(int(match[1]), signal.SIGTERM)


def test_the_command_line_trusts_the_system_and_ssl_cert_file(files: dict[str, Path], ca: trustme.CA) -> None:
    system = trusted_certificates({}).get_ca_certs()
    both = trusted_certificates({"SSL_CERT_FILE": str(files["ca"])}).get_ca_certs()
    assert len(both) == len(system) + 1
    with pytest.raises(CorralError, match="SSL_CERT_FILE=/nonexistent.pem: cannot load certificates"):
        trusted_certificates({"SSL_CERT_FILE": "/nonexistent.pem"})


def test_bad_tls_settings_stop_the_server_with_a_clear_error(files: dict[str, Path], clean_env: dict[str, str],
                                                             tmp_path: Path, ca: trustme.CA) -> None:
    other_key = tmp_path / "other.pem"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(other_key)
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(files["key"].read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    cases = [
        ({"CORRAL_TLS_CERT": str(files["cert"])}, "server.tls_cert and server.tls_key go together: set both"),
        ({"CORRAL_TLS_CERT": str(files["cert"]), "CORRAL_TLS_KEY": str(other_key)},
         "not a PEM certificate chain and its unencrypted private key"),
        ({"CORRAL_TLS_CERT": str(files["cert"]), "CORRAL_TLS_KEY": str(encrypted)},
         "not a PEM certificate chain and its unencrypted private key"),
        ({"CORRAL_TLS_CERT": str(tmp_path / "missing.pem"), "CORRAL_TLS_KEY": str(files["key"])},
         "cannot read"),
    ]
    for settings, message in cases:
        result = run_corral("serve", env={**clean_env, "OLLAMA_HOST": "127.0.0.1:0", **settings}, input="", timeout=30)
        assert result.returncode == 2, result.stderr
        assert "Error: " in result.stderr and message in result.stderr and "Traceback" not in result.stderr
