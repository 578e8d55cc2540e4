"""Shared by the pull and push tests: a fake registry publishing the real SmolLM2 model, and the
environment of a corral server that pulls from it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from fake_registry import FakeRegistry
from servers import store_with_smollm2

SMOL_PARTS = ("registry.ollama.ai", "library", "smol", "latest")

FAST_RETRIES = """\
[registry]
stall_timeout = {stall}
backoff = 0.05
retries = 4
min_part_size = 20000000
"""


def publish_smollm2(tmp_path: Path, gguf: Path, *, system: str = "You are a helpful assistant.",
                    tag: str = "latest") -> tuple[FakeRegistry, dict]:
    """A started fake registry serving SmolLM2 as ``library/smol:<tag>``; returns it and the manifest."""
    publisher = tmp_path / f"publisher-{tag}"
    store_with_smollm2(publisher, gguf, system=system)
    registry = FakeRegistry(root=tmp_path / "registry-blobs").start()
    raw = registry.publish_store(publisher, SMOL_PARTS, "library/smol", tag)
    return registry, json.loads(raw)


def republish(registry: FakeRegistry, tmp_path: Path, gguf: Path, *, system: str, tag: str = "latest") -> dict:
    publisher = tmp_path / f"publisher-{tag}-{abs(hash(system))}"
    store_with_smollm2(publisher, gguf, system=system)
    return json.loads(registry.publish_store(publisher, SMOL_PARTS, "library/smol", tag))


def corral_env(clean_env: dict[str, str], models: Path, *, stall: float = 2.0) -> dict[str, str]:
    """A user's environment for a corral server storing into ``models`` with quick retries."""
    config = Path(clean_env["HOME"]) / "corral.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(FAST_RETRIES.format(stall=stall))
    return {**clean_env, "OLLAMA_MODELS": str(models), "CORRAL_CONFIG": str(config)}


def stream(url: str, path: str, body: dict) -> tuple[int, list[dict]]:
    """POST a streaming request; the status and every NDJSON line."""
    with httpx.Client(timeout=300) as client, client.stream("POST", url + path, json=body) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
        return response.status_code, lines


def layers_of(manifest: dict) -> list[dict]:
    return [*manifest["layers"], manifest["config"]]


def model_layer(manifest: dict) -> dict:
    return next(layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))
