"""``python tests/fake_server.py '<json>'``: ``corral serve`` as a user runs it, with corral.testing's
FakeRuntime loading the models of format "fake" that the JSON names (``{"models": ["a", "b"],
"runtime": {"load_delay": 0.5, "hang": ["a:latest"]}}``), stored before the server starts."""

from __future__ import annotations

import json
import sys

import anyio

from corral.plugins.server.serve import serve
from corral.sdk.app import create_kernel
from corral.testing import FakeRuntime, add_model, runtime_plugin


def main() -> None:
    config = json.loads(sys.argv[1])
    options = dict(config.get("runtime") or {})
    if isinstance(options.get("hang"), list):
        options["hang"] = tuple(options["hang"])
    kernel = create_kernel(plugins=(runtime_plugin(FakeRuntime(**options)),), load_entry_points=False)

    async def run() -> None:
        for name in config.get("models") or ():
            await add_model(kernel, name, weights=name.encode())
        await serve(kernel)

    anyio.run(run, backend="asyncio")


if __name__ == "__main__":
    main()
