"""A sampler chain per completion, built from its options and its ``format``.

The chain is llama-cpp-python's (penalties, grammar, then greedy, mirostat, or top-k, typical,
top-p, min-p, temperature and a seeded draw), so answers match what the runner gave before it
batched. Each completion owns its chain: its seed, penalties and grammar state are its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import llama_cpp as llama

from .errors import RequestError
from .model import Model

MIROSTAT_M = 100


def grammar_for(format_: Any) -> str | None:
    """The GBNF grammar of a request's ``format``: None, "json" or a JSON schema."""
    if format_ in (None, ""):
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if format_ == "json":
        return JSON_GBNF
    if isinstance(format_, dict):
        try:
            return json_schema_to_gbnf(json.dumps(format_))
        except Exception as error:  # the converter asserts on what it does not know
            raise RequestError(f"invalid JSON schema in format: {error}") from None
    raise RequestError(f'invalid format: {json.dumps(format_)}; expected "json" or a valid JSON Schema object')


class Sampler:
    def __init__(self, model: Model, options: Mapping[str, Any], *, grammar: str | None, num_ctx: int) -> None:
        self.chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        try:
            self._build(model, options, grammar, num_ctx)
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: Any) -> None:
        llama.llama_sampler_chain_add(self.chain, sampler)  # the chain owns it from here

    def _build(self, model: Model, options: Mapping[str, Any], grammar: str | None, num_ctx: int) -> None:
        last_n = options.get("repeat_last_n", 64)
        self._add(llama.llama_sampler_init_penalties(
            model.n_vocab, num_ctx if last_n < 0 else last_n, options.get("repeat_penalty", 1.0),
            options.get("frequency_penalty", 0.0), options.get("presence_penalty", 0.0)))
        if grammar is not None:
            rules = llama.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not rules:
                raise RequestError("invalid format: the grammar could not be built")
            self._add(rules)
        temperature = options.get("temperature", 0.8)
        seed = options.get("seed", -1)
        seed = llama.LLAMA_DEFAULT_SEED if seed < 0 else seed & 0xFFFFFFFF  # the default draws a random seed
        mirostat = options.get("mirostat", 0)
        if temperature <= 0:
            self._add(llama.llama_sampler_init_greedy())
        elif mirostat in (1, 2):
            tau, eta = options.get("mirostat_tau", 5.0), options.get("mirostat_eta", 0.1)
            self._add(llama.llama_sampler_init_temp(temperature))
            self._add(llama.llama_sampler_init_mirostat(model.n_vocab, seed, tau, eta, MIROSTAT_M) if mirostat == 1
                      else llama.llama_sampler_init_mirostat_v2(seed, tau, eta))
        else:
            self._add(llama.llama_sampler_init_top_k(options.get("top_k", 40)))
            self._add(llama.llama_sampler_init_typical(options.get("typical_p", 1.0), 1))
            self._add(llama.llama_sampler_init_top_p(options.get("top_p", 0.9), 1))
            self._add(llama.llama_sampler_init_min_p(options.get("min_p", 0.0), 1))
            self._add(llama.llama_sampler_init_temp(temperature))
            self._add(llama.llama_sampler_init_dist(seed))

    def sample(self, context: Any, index: int) -> int:
        """Draw the next token from the output at ``index`` of the last batch (and accept it)."""
        return llama.llama_sampler_sample(self.chain, context, index)

    def close(self) -> None:
        if self.chain is not None:
            llama.llama_sampler_free(self.chain)
            self.chain = None
