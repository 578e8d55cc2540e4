"""``corral serve``."""

from __future__ import annotations

from typing import Any

import click


@click.command("serve")
@click.pass_obj
def serve_command(state: Any) -> None:
    """Start the server (Ollama's API on OLLAMA_HOST, default 127.0.0.1:11434).

    \b
    Examples:
      corral serve
      OLLAMA_HOST=0.0.0.0:8080 corral serve
    """
    import anyio

    from .serve import serve

    kernel = state.kernel()
    anyio.run(serve, kernel, backend="asyncio")
