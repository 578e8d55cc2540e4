"""llama.cpp through llama-cpp-python's ctypes API: the model file, its contexts and batches.

Everything here runs on the runner's one decode thread (see engine.py).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import Any

import llama_cpp as llama

from .errors import RequestError

_backend_ready = False


class Model:
    """The weights and vocabulary of one GGUF file, loaded once per runner, and its LoRA adapters."""

    def __init__(self, path: str, *, adapters: Sequence[str] = (), use_mmap: bool = True, use_mlock: bool = False,
                 verbose: bool = False) -> None:
        global _backend_ready
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        if not _backend_ready:
            llama.llama_backend_init()
            _backend_ready = True
        params = llama.llama_model_default_params()
        use_mmap = use_mmap and not adapters  # llama-cpp-python does the same: adapters patch the weights
        params.load_mode = ((llama.LLAMA_LOAD_MODE_MMAP_MLOCK if use_mlock else llama.LLAMA_LOAD_MODE_MMAP) if use_mmap
                            else llama.LLAMA_LOAD_MODE_MLOCK if use_mlock else llama.LLAMA_LOAD_MODE_NONE)
        self.pointer = llama.llama_model_load_from_file(path.encode(), params)
        if not self.pointer:
            raise ValueError(f"Failed to load model from file: {path}")
        self.vocab = llama.llama_model_get_vocab(self.pointer)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama.llama_model_n_embd(self.pointer)
        self.bos = llama.llama_vocab_bos(self.vocab)
        self.adapters: list[Any] = []
        try:
            for adapter in adapters:
                handle = llama.llama_adapter_lora_init(self.pointer, adapter.encode())
                if not handle:
                    raise ValueError(f"Failed to load the LoRA adapter {adapter}")
                self.adapters.append(handle)
        except BaseException:
            self.close()
            raise
        self._pieces: dict[int, bytes] = {}

    def context(self, *, n_ctx: int, n_batch: int, n_ubatch: int, n_seq_max: int, threads: int,
                embeddings: bool = False, pooling: int = llama.LLAMA_POOLING_TYPE_UNSPECIFIED,
                kv_unified: bool = False) -> Any:
        """A new context on these weights (free it with ``llama_free``)."""
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, n_batch, n_ubatch, n_seq_max
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = embeddings
        params.pooling_type = pooling
        # Flash attention and a unified KV cache change greedy output (the second also with the
        # other sequences in the batch): both off, so that an answer does not depend on batching.
        params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.kv_unified = kv_unified
        params.no_perf = True
        context = llama.llama_init_from_model(self.pointer, params)
        if not context:
            raise ValueError("Failed to create a llama context (out of memory?)")
        if self.adapters:
            count = len(self.adapters)
            handles = (llama.llama_adapter_lora_p_ctypes * count)(*self.adapters)
            scales = (ctypes.c_float * count)(*([1.0] * count))
            if llama.llama_set_adapters_lora(context, handles, count, scales):
                llama.llama_free(context)
                raise ValueError("Failed to apply the LoRA adapters")
        return context

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        data = text.encode()
        size = len(data) + 8
        while True:
            buffer = (llama.llama_token * size)()
            count = llama.llama_tokenize(self.vocab, data, len(data), buffer, size, add_special, True)
            if count >= 0:
                return buffer[:count]
            size = -count

    def piece(self, token: int) -> bytes:
        """The bytes of one token as it continues a text (control tokens give none)."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(64)
            count = llama.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
            if count < 0:
                buffer = ctypes.create_string_buffer(-count)
                count = llama.llama_token_to_piece(self.vocab, token, buffer, -count, 0, False)
            piece = self._pieces[token] = buffer.raw[:count]
        return piece

    def is_end(self, token: int) -> bool:
        return bool(llama.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        for adapter in self.adapters:
            llama.llama_adapter_lora_free(adapter)
        self.adapters = []
        if self.pointer:
            llama.llama_model_free(self.pointer)
            self.pointer = None


class Batch:
    """A reusable ``llama_batch``: tokens, their positions, one sequence each, and which give output."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama.llama_batch_init(capacity, 0, 1)
        self.raw.n_tokens = 0

    def __len__(self) -> int:
        return self.raw.n_tokens

    def clear(self) -> None:
        self.raw.n_tokens = 0

    def add(self, tokens: Sequence[int], start: int, sequence: int, *, output: str) -> None:
        """Add ``tokens`` at positions ``start...`` of ``sequence``; ``output`` is "all", "last" or "none"."""
        raw, index = self.raw, self.raw.n_tokens
        if index + len(tokens) > self.capacity:
            raise RequestError(f"batch overflow: {index} + {len(tokens)} > {self.capacity}", 500)
        want_all = output == "all"
        for offset, token in enumerate(tokens):
            raw.token[index + offset] = token
            raw.pos[index + offset] = start + offset
            raw.n_seq_id[index + offset] = 1
            raw.seq_id[index + offset][0] = sequence
            raw.logits[index + offset] = want_all
        if output == "last" and tokens:
            raw.logits[index + len(tokens) - 1] = True
        raw.n_tokens = index + len(tokens)

    def close(self) -> None:
        if self.raw is not None:
            llama.llama_batch_free(self.raw)
            self.raw = None
