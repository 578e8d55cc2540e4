"""A Hugging Face checkpoint folder: config.json, the safetensors shards (with or without
model.safetensors.index.json) and helpers to read its JSON files with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from corral.errors import ConversionError

from .safetensors import StoredTensor, read_header

INDEX_FILE = "model.safetensors.index.json"


def read_json(path: Path, *, required: bool = True) -> Any:
    """A JSON file of the checkpoint, or None when it is absent and not required."""
    if not path.is_file():
        if required:
            raise ConversionError(f"{path.name}: file not found in {path.parent}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path.name}: cannot be read as JSON ({e})") from e


@attrs.frozen(kw_only=True)
class Checkpoint:
    folder: Path
    config: dict[str, Any]
    tensors: dict[str, StoredTensor]
    """Every stored tensor by name, in llama.cpp's order: shards sorted by file name, names sorted."""

    @property
    def architecture(self) -> str:
        architectures = self.config.get("architectures")
        if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
            raise ConversionError("config.json: no \"architectures\" entry naming the model class")
        return architectures[0]

    def hparam(self, *keys: str, default: Any = ...) -> Any:
        """The first of ``keys`` present in config.json; a ConversionError if none is and there is no default."""
        for key in keys:
            if key in self.config:
                return self.config[key]
        if default is ...:
            raise ConversionError(f"config.json: missing {' or '.join(repr(k) for k in keys)}")
        return default


def open_checkpoint(folder: Path) -> Checkpoint:
    if not folder.is_dir():
        raise ConversionError(f"{folder}: not a folder")
    config = read_json(folder / "config.json")
    if not isinstance(config, dict):
        raise ConversionError("config.json: not a JSON object")
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}
    return Checkpoint(folder=folder, config=config, tensors=_stored_tensors(folder))


def _stored_tensors(folder: Path) -> dict[str, StoredTensor]:
    index = read_json(folder / INDEX_FILE, required=False)
    if index is not None:
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{INDEX_FILE}: no \"weight_map\" object")
        for shard in weight_map.values():
            if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise ConversionError(f"{INDEX_FILE}: bad shard file name {shard!r}")
        shards = sorted(set(weight_map.values()))
    else:
        weight_map = None
        shards = sorted(p.name for p in folder.glob("model*.safetensors") if p.is_file())
        if not shards:
            found = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf")]
            hint = f" (found {', '.join(sorted(found))}: only safetensors checkpoints can be converted)" if found else ""
            raise ConversionError(f"model.safetensors: file not found in {folder}{hint}")
    tensors: dict[str, StoredTensor] = {}
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise ConversionError(f"{shard}: file not found in {folder} (listed in {INDEX_FILE})")
        for name, tensor in sorted(read_header(path).items()):
            if name in tensors:
                raise ConversionError(f"{shard}: tensor {name!r} is also stored in {tensors[name].file.name}")
            tensors[name] = tensor
    if weight_map is not None:
        for name, shard in weight_map.items():
            if name not in tensors:
                raise ConversionError(f"{shard}: tensor {name!r} listed in {INDEX_FILE} is missing")
    return tensors
