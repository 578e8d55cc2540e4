from __future__ import annotations

from pathlib import Path

import pytest

from repository_guard import GUARD
from support import clean_environ


def pytest_collection_finish(session: pytest.Session) -> None:
    if GUARD.reads:
        raise pytest.UsageError("collecting the tests read paths beside the repository: " + "; ".join(GUARD.reads))


@pytest.fixture(autouse=True)
def _reads_stay_in_the_repository():
    """Fail a test that reads a folder beside the checkout (a fresh clone has none)."""
    before = len(GUARD.reads)
    yield
    if len(GUARD.reads) > before:
        pytest.fail("the test read paths beside the repository: " + "; ".join(GUARD.reads[before:]))


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no OLLAMA_* or CORRAL_* variables and a private HOME."""
    return clean_environ(tmp_path / "home")


@pytest.fixture
def smol_store(tmp_path: Path, smollm2_gguf: Path) -> Path:
    """A model store in Ollama's layout holding the real SmolLM2 model as ``smol:latest``."""
    from servers import store_with_smollm2

    return store_with_smollm2(tmp_path / "models", smollm2_gguf)


@pytest.fixture
def server_env(clean_env: dict[str, str], smol_store: Path) -> dict[str, str]:
    return {**clean_env, "OLLAMA_MODELS": str(smol_store)}


@pytest.fixture
def server(server_env: dict[str, str]):
    """The URL of a real ``corral serve`` over ``smol_store``."""
    from servers import running_server

    with running_server(server_env) as url:
        yield url


FAKE_NAMES = {"metadata.test": "169.254.169.254", "private.test": "10.1.2.3", "v6-metadata.test": "fe80::1"}


@pytest.fixture
def no_outside_traffic(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names under ``.test`` resolve to link-local and private addresses (``FAKE_NAMES``), and any
    connection this process tries beyond loopback is refused and recorded instead of made: a test of
    the outbound policy sends nothing off the machine even when the policy is broken."""
    import ipaddress
    import socket

    attempts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host in FAKE_NAMES:
            address = FAKE_NAMES[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        host = address[0]
        try:
            outside = not ipaddress.ip_address(getaddrinfo(host, 0)[0][4][0]).is_loopback
        except (OSError, ValueError):
            outside = True
        if outside:
            attempts.append(str(host))
            raise ConnectionRefusedError(111, "refused by the test: not a loopback address")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts
