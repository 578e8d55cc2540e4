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
