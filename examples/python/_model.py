"""Shared by the examples: which model to use and where the server is."""

from __future__ import annotations

import os
import sys


def model() -> str:
    """The model: the first command-line argument, else $CORRAL_MODEL."""
    name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CORRAL_MODEL", "")
    if not name:
        sys.exit(f"usage: python {os.path.basename(sys.argv[0])} MODEL   (or set CORRAL_MODEL)")
    return name


def host() -> str:
    """The server's URL from $OLLAMA_HOST, as the ollama client reads it (default 127.0.0.1:11434)."""
    value = os.environ.get("OLLAMA_HOST", "").strip().rstrip("/") or "127.0.0.1:11434"
    return value if value.startswith(("http://", "https://")) else f"http://{value}"
