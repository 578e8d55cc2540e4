"""Helpers shared by the tests (importable because pyproject puts tests/ on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_environ(home: Path) -> dict[str, str]:
    """This process's environment without OLLAMA_* or CORRAL_* variables, with a private HOME (and
    so a private cache of the command line's commands)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OLLAMA_", "CORRAL_")) and key != "XDG_CACHE_HOME"}
    env["HOME"] = str(home)
    return env


def run_corral(*args: str, env: dict[str, str], cwd: Path | None = None, input: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed ``corral`` command the way a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from corral.plugins.cli import main; main()", *args],
        env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout,
    )
