"""The whole path a user takes: convert all-MiniLM-L6-v2, create models from the GGUF (as is and
quantized to Q8_0 by create's quantizer; or with `corral quantize` and `FROM m-q4.gguf`), then
/api/embed on a real server gives the vectors of an independent numpy BERT forward pass."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import ollama
import pytest
from convert_reference import bert_sentence_embedding, read_safetensors, wordpiece
from servers import running_server
from support import run_corral

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


def test_the_three_step_path_convert_quantize_from(minilm_folder: Path, tmp_path: Path, server: str,
                                                    server_env: dict[str, str]) -> None:
    """The tutorials' path: `corral convert`, `corral quantize ... q4_0`, `FROM m-q4.gguf`."""
    cli_env = {**server_env, "OLLAMA_HOST": server.removeprefix("http://")}
    converted = run_corral("convert", str(minilm_folder), "--outtype", "f16", "--outfile", "m.gguf",
                           env=cli_env, cwd=tmp_path, timeout=300)
    assert converted.returncode == 0, converted.stderr
    quantized = run_corral("quantize", "m.gguf", "m-q4.gguf", "q4_0", env=cli_env, cwd=tmp_path, timeout=300)
    assert quantized.returncode == 0, quantized.stderr
    (tmp_path / "Modelfile").write_text("FROM m-q4.gguf\n")
    created = run_corral("create", "minilm-q4", env=cli_env, cwd=tmp_path, timeout=600)
    assert created.returncode == 0, created.stderr

    client = ollama.Client(host=server, timeout=300)
    assert client.show("minilm-q4").details.quantization_level == "Q4_0"
    vocab = {line: i for i, line in enumerate((minilm_folder / "vocab.txt").read_text("utf-8").splitlines())}
    weights = read_safetensors(minilm_folder / "model.safetensors")
    config = json.loads((minilm_folder / "config.json").read_text())
    references = np.array([bert_sentence_embedding(weights, config, wordpiece(s, vocab)) for s in SENTENCES])
    embeddings = np.asarray(client.embed("minilm-q4", SENTENCES).embeddings)
    similarity = embeddings @ references.T  # rows are unit vectors already (/api/embed normalises)
    assert (similarity.diagonal() >= 0.93).all(), similarity  # 4-bit weights: about 0.95-0.975
    assert (similarity.argmax(1) == np.arange(len(SENTENCES))).all()
