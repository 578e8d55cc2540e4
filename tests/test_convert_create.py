"""The whole path a user takes: convert all-MiniLM-L6-v2, create models from the GGUF (as is and
quantized to Q8_0 by create's quantizer), then /api/embed on a real server gives the vectors of an
independent numpy BERT forward pass."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import ollama
import pytest
from convert_reference import bert_sentence_embedding, read_safetensors, wordpiece
from servers import running_server

from corral.convert import convert_checkpoint
from corral.create import CreateRequest, create_model
from corral.kernel import Kernel

pytestmark = pytest.mark.slow

SENTENCES = ["why is the sky blue?", "Llamas are members of the camelid family.", "1, 2, 3: go!"]


async def create_from_gguf(kernel: Kernel, gguf: Path, name: str, quantize: str | None = None) -> list[str]:
    async def chunks():
        with gguf.open("rb") as file:
            while chunk := file.read(1 << 20):
                yield chunk

    digest, _size = await kernel.store.add_blob(chunks())
    request = CreateRequest(model=name, files={gguf.name: digest}, quantize=quantize)
    return [progress.status async for progress in create_model(kernel, request)]


def test_convert_create_and_embed_through_the_server(minilm_folder: Path, tmp_path: Path,
                                                     clean_env: dict[str, str]) -> None:
    converted = tmp_path / "minilm-f16.gguf"
    convert_checkpoint(minilm_folder, converted)
    models = tmp_path / "models"
    kernel = Kernel.create({"OLLAMA_MODELS": str(models), "HOME": clean_env["HOME"]}, load_entry_points=False)
    assert anyio.run(create_from_gguf, kernel, converted, "minilm")[-1] == "success"
    statuses = anyio.run(create_from_gguf, kernel, converted, "minilm-q8", "q8_0")
    assert statuses[-1] == "success" and any("Q8_0" in status for status in statuses), statuses

    vocab = {line: i for i, line in enumerate((minilm_folder / "vocab.txt").read_text("utf-8").splitlines())}
    weights = read_safetensors(minilm_folder / "model.safetensors")
    config = json.loads((minilm_folder / "config.json").read_text())
    references = [bert_sentence_embedding(weights, config, wordpiece(s, vocab)) for s in SENTENCES]
    with running_server({**clean_env, "OLLAMA_MODELS": str(models)}) as url:
        client = ollama.Client(host=url, timeout=300)
        for model, floor in (("minilm", 0.999), ("minilm-q8", 0.995)):
            embeddings = client.embed(model, SENTENCES).embeddings
            for sentence, got, reference in zip(SENTENCES, embeddings, references):
                cosine = float(np.asarray(got) @ reference / np.linalg.norm(got))
                assert cosine >= floor, (model, sentence, cosine)
        assert client.show("minilm").details.family == "bert"
