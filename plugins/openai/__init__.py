"""The bundled ``openai`` plugin: OpenAI's API under /v1, as Ollama serves it.

It only translates: requests become corral.inference records, replies become OpenAI's JSON and
server-sent events. Quart loads only when a server is built.
"""

from __future__ import annotations

from typing import Any

from corral import hookimpl


@hookimpl
def register_blueprints(kernel: Any) -> list[Any]:
    from .api import blueprint

    return [blueprint]
