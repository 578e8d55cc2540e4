from __future__ import annotations

from pathlib import Path

import pytest

from support import clean_environ


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no OLLAMA_* or CORRAL_* variables and a private HOME."""
    return clean_environ(tmp_path / "home")
