"""core/create.py: building models from blobs and from other models, and refusing bad requests
without touching the store's models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import gojson
from corral.create import CreateRequest, create_model
from corral import SourceSpec, hookimpl
from corral.errors import CorralError, InvalidRequest, PullError, TemplateError
from corral.kernel import Kernel
from corral.types import (
    Progress,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
)


def make_kernel(root: Path) -> Kernel:
    return Kernel.create({"OLLAMA_MODELS": str(root), "HOME": str(root / "home")}, load_entry_points=False)


async def add_file(kernel: Kernel, path: Path) -> str:
    async def chunks():
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                yield chunk

    digest, _size = await kernel.store.add_blob(chunks())
    return digest


def create(kernel: Kernel, request: CreateRequest) -> list[str]:
    async def scenario() -> list[str]:
        return [progress.status async for progress in create_model(kernel, request)]

    return anyio.run(scenario)


def manifests(root: Path) -> dict[str, bytes]:
    folder = root / "manifests"
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


@pytest.fixture
def kernel_with_blob(tmp_path: Path, smollm2_gguf: Path) -> tuple[Kernel, str]:
    kernel = make_kernel(tmp_path / "models")
    return kernel, anyio.run(add_file, kernel, smollm2_gguf)


def test_from_a_gguf_blob_detects_the_template_and_keeps_the_weights(kernel_with_blob: Any) -> None:
    kernel, digest = kernel_with_blob
    statuses = create(kernel, CreateRequest(model="mine", files={"SmolLM2.gguf": digest}, system="Be brief.",
                                            parameters={"temperature": 0.1, "stop": ["END"]}))
    assert statuses[0] == "parsing GGUF"
    assert f"using existing layer {digest}" in statuses
    assert "using autodetected template chatml" in statuses
    assert sum(status.startswith("creating new layer sha256:") for status in statuses) == 2  # system, params
    assert statuses[-2:] == ["writing manifest", "success"]

    info = anyio.run(kernel.store.get, "mine")
    assert [layer.media_type for layer in info.manifest.layers] == [MEDIA_MODEL, MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_PARAMS]
    assert info.manifest.layers[0].digest == digest
    assert info.details()["family"] == "llama"
    assert info.details()["quantization_level"] == "Q4_1"
    assert info.details()["parameter_size"] == "134.52M"
    # Ollama records the file name as the weights layer's "from" and shows it as the parent model
    # (server/create.go: ggufLayers -> NewLayerFromLayer(digest, mediaType, sourceName)).
    assert info.manifest.layers[0].from_ == "SmolLM2.gguf"
    assert info.details()["parent_model"] == "SmolLM2.gguf"
    parts = anyio.run(kernel.store.parts, info)
    assert parts.system == "Be brief."
    # The request's stop replaces the named template's; its other values are kept.
    assert parts.params == {"stop": ["END"], "temperature": 0.1}
    assert "<|im_start|>" in parts.template


def test_from_a_model_reuses_its_layers_and_replaces_what_is_given(kernel_with_blob: Any) -> None:
    kernel, digest = kernel_with_blob
    create(kernel, CreateRequest(model="base", files={"m.gguf": digest}, system="One.", parameters={"top_k": 7}))
    base = anyio.run(kernel.store.get, "base")
    statuses = create(kernel, CreateRequest(model="child", from_="base", system="Two.", parameters={"top_p": 0.5},
                                            messages=({"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "hello"})))
    assert statuses[:2] == [f"using existing layer {layer.digest}" for layer in base.manifest.layers[:2]]
    child = anyio.run(kernel.store.get, "child")
    assert child.manifest.layers[0].digest == digest
    assert child.manifest.layers[0].from_ == "base:latest"
    assert child.details()["parent_model"] == "base:latest"
    parts = anyio.run(kernel.store.parts, child)
    assert parts.system == "Two."
    assert parts.params == {"stop": ["<|im_start|>", "<|im_end|>"], "top_k": 7, "top_p": 0.5}
    assert parts.messages == ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})
    assert len(child.manifest.layers_of(MEDIA_SYSTEM)) == 1
    assert len(child.manifest.layers_of(MEDIA_MESSAGES)) == 1
    assert child.config["model_family"] == "llama"


def test_a_template_replaces_the_detected_one(kernel_with_blob: Any) -> None:
    kernel, digest = kernel_with_blob
    statuses = create(kernel, CreateRequest(model="t", files={"m.gguf": digest}, template="{{ .Prompt }}"))
    assert not any("autodetected" in status for status in statuses)
    parts = anyio.run(kernel.store.parts, anyio.run(kernel.store.get, "t"))
    assert parts.template == "{{ .Prompt }}"
    assert parts.params == {}


@pytest.mark.parametrize(("request_fields", "error", "message"), [
    ({}, InvalidRequest, "neither 'from' or 'files' was specified"),
    ({"files": {"../m.gguf": "DIGEST"}}, InvalidRequest, "file path must be relative"),
    ({"files": {"m.gguf": "sha256:abc"}}, InvalidRequest, "invalid digest format"),
    ({"files": {"m.gguf": "sha256:" + "0" * 64}}, InvalidRequest, "upload it with POST /api/blobs"),
    ({"files": {"m.gguf": "DIGEST"}, "template": "{{ .Prompt "}, TemplateError, "template:"),
    ({"files": {"m.gguf": "DIGEST"}, "parameters": {"temprature": 1}}, InvalidRequest, "unknown parameter 'temprature'"),
    ({"files": {"m.gguf": "DIGEST"}, "parameters": {"top_k": "many"}}, InvalidRequest, 'option "top_k" must be of type integer'),
    ({"files": {"m.gguf": "DIGEST"}, "messages": ({"role": "robot", "content": "x"},)}, InvalidRequest, "message role"),
    ({"files": {"m.gguf": "DIGEST"}, "quantize": "q3_weird"}, InvalidRequest, "unsupported quantization type q3_weird"),
    ({"files": {"m.gguf": "DIGEST"}, "quantize": "q4_0"}, InvalidRequest,
     "quantization is only supported for F16, BF16 and F32 models"),
    ({"files": {"m.gguf": "DIGEST"}, "adapters": {"a.gguf": "DIGEST"}}, InvalidRequest, "is not a LoRA adapter"),
])
def test_a_bad_request_fails_and_leaves_the_models_as_they_were(
        kernel_with_blob: Any, tmp_path: Path, request_fields: dict[str, Any], error: type, message: str) -> None:
    kernel, digest = kernel_with_blob
    create(kernel, CreateRequest(model="keep", files={"m.gguf": digest}, system="Original."))
    before = manifests(tmp_path / "models")
    fields = {key: ({name: digest if value == "DIGEST" else value for name, value in value.items()}
                    if isinstance(value, dict) and key in ("files", "adapters") else value)
              for key, value in request_fields.items()}
    for target in ("keep", "fresh"):
        with pytest.raises(error) as raised:
            create(kernel, CreateRequest(model=target, **fields))
        assert message in str(raised.value)
        assert isinstance(raised.value, CorralError)
    assert manifests(tmp_path / "models") == before
    parts = anyio.run(kernel.store.parts, anyio.run(kernel.store.get, "keep"))
    assert parts.system == "Original."


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path / "models")
    text = tmp_path / "notes.txt"
    text.write_text("not weights at all")
    digest = anyio.run(add_file, kernel, text)
    with pytest.raises(InvalidRequest, match="not a GGUF file"):
        create(kernel, CreateRequest(model="x", files={"notes.gguf": digest}))
    assert manifests(tmp_path / "models") == {}


def test_config_blob_is_go_json(kernel_with_blob: Any) -> None:
    kernel, digest = kernel_with_blob
    create(kernel, CreateRequest(model="cfg", files={"m.gguf": digest}))
    info = anyio.run(kernel.store.get, "cfg")
    raw = anyio.run(kernel.store.read_blob_bytes, info.manifest.config.digest)
    assert raw.decode() == gojson.dumps(info.config)
    assert info.config["rootfs"]["diff_ids"] == [layer.digest for layer in info.manifest.layers]


class HubPlugin:
    """A model source for names under ``hub.example/``: it "pulls" by storing the SmolLM2 blob
    as that model, or fails for names containing "missing"."""

    def __init__(self, gguf: Path) -> None:
        self.gguf = gguf

    @hookimpl
    def register_sources(self, settings: Any) -> list[SourceSpec]:
        return [SourceSpec(name="hub", factory=lambda kernel: HubSource(kernel, self.gguf))]

    @hookimpl
    def resolve_reference(self, reference: str, settings: Any) -> str | None:
        return "hub" if reference.startswith("hub.example/") else None


class HubSource:
    name = "hub"

    def __init__(self, kernel: Kernel, gguf: Path) -> None:
        self.kernel, self.gguf = kernel, gguf

    async def pull(self, ref: Any, *, insecure: bool = False):
        yield Progress(status="pulling manifest")
        if "missing" in ref.model:
            raise PullError("pull model manifest: file does not exist")
        digest = await add_file(self.kernel, self.gguf)
        async for progress in create_model(self.kernel, CreateRequest(model=str(ref), files={"m.gguf": digest},
                                                                      system="From the hub.")):
            yield progress


def test_a_from_model_not_in_the_store_is_pulled_first(tmp_path: Path, smollm2_gguf: Path) -> None:
    kernel = Kernel.create({"OLLAMA_MODELS": str(tmp_path / "models"), "HOME": str(tmp_path)},
                           load_entry_points=False, plugins=(HubPlugin(smollm2_gguf),))
    statuses = create(kernel, CreateRequest(model="mine", from_="hub.example/library/smol", parameters={"top_k": 2}))
    assert statuses[0] == "pulling manifest"
    assert statuses[-2:] == ["writing manifest", "success"]
    names = {info.name for info in anyio.run(kernel.store.list)}
    assert names == {"mine:latest", "hub.example/library/smol:latest"}
    parts = anyio.run(kernel.store.parts, anyio.run(kernel.store.get, "mine"))
    assert parts.system == "From the hub." and parts.params["top_k"] == 2

    with pytest.raises(PullError, match="pull model manifest: file does not exist"):
        create(kernel, CreateRequest(model="other", from_="hub.example/library/missing"))
    assert {info.name for info in anyio.run(kernel.store.list)} == names
