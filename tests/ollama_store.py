"""Build a model store exactly as Ollama writes one, byte for byte, for tests to read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"


def write_blob(root: Path, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    path = blobs / digest.replace(":", "-")
    if not path.exists():  # never write through a hard link to a shared file
        path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def go_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026")


def ollama_model(root: Path, name_parts: tuple[str, str, str, str], model: bytes, *, template: str | None = None,
                 params: dict | None = None, system: str | None = None, family: str = "llama",
                 file_type: str = "Q4_1", model_type: str = "134.52M") -> bytes:
    """Write the blobs and the manifest of one model the way `ollama create`/`pull` leave them."""
    layers = [{"mediaType": "application/vnd.ollama.image.model", **write_blob(root, model)}]
    if template is not None:
        layers.append({"mediaType": "application/vnd.ollama.image.template", **write_blob(root, template.encode())})
    if system is not None:
        layers.append({"mediaType": "application/vnd.ollama.image.system", **write_blob(root, system.encode())})
    if params is not None:
        layers.append({"mediaType": "application/vnd.ollama.image.params", **write_blob(root, go_json(params).encode())})
    config = {"model_format": "gguf", "model_family": family, "model_families": [family],
              "model_type": model_type, "file_type": file_type,
              "architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}
    config_layer = {"mediaType": CONFIG_TYPE, **write_blob(root, go_json(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_layer, "layers": layers}
    raw = (go_json(manifest) + "\n").encode()
    path = root.joinpath("manifests", *name_parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return raw
