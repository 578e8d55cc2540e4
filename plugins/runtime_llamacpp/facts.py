"""What a GGUF model is, read from its metadata once per model (``Runtime.describe``)."""

from __future__ import annotations

from pathlib import Path

import anyio

from corral import ModelFacts, ModelFiles, RuntimeFailure
from corral.sdk.gguf import GGUFFile, read_gguf


def local_path(files: ModelFiles, digest: str) -> Path:
    """The local file of a blob: llama.cpp maps its files, so it needs a store that has them."""
    path = files.path(digest)
    if path is None:
        raise RuntimeFailure(f"{files.name}: the llama.cpp runtime loads models from local files, "
                             f"and the store keeps {digest} elsewhere")
    return path


async def describe(files: ModelFiles) -> ModelFacts:
    path = local_path(files, files.model)
    gguf = await anyio.to_thread.run_sync(read_gguf, path)
    architecture = gguf.architecture
    return ModelFacts(
        architecture=architecture,
        parameter_count=gguf.parameter_count,
        quantization=gguf.file_type,
        context_length=gguf.context_length,
        embedding_length=gguf.embedding_length,
        embedding=gguf.pooling_type is not None,
        vision=bool(architecture) and f"{architecture}.vision.block_count" in gguf.metadata,
        chat_template=gguf.chat_template,
        bos_token=_token_text(gguf, "tokenizer.ggml.bos_token_id"),
        eos_token=_token_text(gguf, "tokenizer.ggml.eos_token_id"),
    )


def _token_text(gguf: GGUFFile, key: str) -> str:
    token_id = gguf.metadata.get(key)
    tokens = gguf.metadata.get("tokenizer.ggml.tokens")
    if isinstance(token_id, int) and isinstance(tokens, list) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""
