"""Generation, chat and embeddings with Ollama's semantics, for every frontend to share.

Requests and replies are records; the HTTP edges turn them into Ollama's or OpenAI's JSON.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from contextlib import aclosing
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import attrs

from . import options as option_rules
from .capabilities import capabilities
from .durations import parse_go_duration
from .errors import InvalidRequest, RuntimeFailure
from .gotemplate.named import named_template
from .gotemplate.ollama import DEFAULT_TEMPLATE, PromptTemplate, PromptValues, message_from
from .jinja_template import ChatTemplate
from .template_limits import Budget, TemplateLimits, run_template
from .thinking import ThinkingSplitter
from .toolcalls import ToolCallParser
from .types import (
    MEDIA_PROJECTOR,
    ChatRequest,
    CompletionRequest,
    EmbedRequest,
    Embeddings,
    GenerateRequest,
    Metrics,
    ModelFacts,
    ModelInfo,
    ModelParts,
    Reply,
)
from .usage import Usage, current_usage

THINK_LEVELS = ("high", "medium", "low", "max")


@attrs.frozen(kw_only=True)
class Prepared:
    """What a request needs to know about a model, computed once per manifest digest."""

    info: ModelInfo
    parts: ModelParts
    facts: ModelFacts
    template: PromptTemplate | ChatTemplate
    params: Mapping[str, Any]
    capabilities: tuple[str, ...]


def parse_keep_alive_value(value: Any) -> float | None:
    """A request's keep_alive: seconds as a number, or a Go duration string. Negative: forever."""
    from .durations import FOREVER, LONGEST

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequest(f"Unsupported type: '{type(value).__name__}'")
    try:
        seconds = parse_go_duration(value.strip()) if isinstance(value, str) else float(value)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    except OverflowError:  # an integer beyond any float: longer than Go's longest duration
        return FOREVER
    return FOREVER if seconds < 0 or seconds > LONGEST else seconds


def check_think(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise InvalidRequest(f'invalid think value: "{value}" (must be "high", "medium", "low", "max", true, or false)')
        return value
    raise InvalidRequest('think must be a boolean or string ("high", "medium", "low", "max", true, or false)')


@attrs.define(eq=False)
class Inference:
    kernel: Any
    _prepared: OrderedDict[str, Prepared] = attrs.field(factory=OrderedDict)

    # -- models -----------------------------------------------------------------------------

    async def prepare(self, name: str) -> Prepared:
        info = await self.kernel.store.get(name)
        cached = self._prepared.get(info.digest)
        if cached is not None:
            self._prepared.move_to_end(info.digest)
            return cached
        parts = await self.kernel.store.parts(info)
        facts = await self.kernel.describe(info)
        budget = Budget(self.template_limits)
        template, defaults = await run_template(budget, _model_template, parts.template, facts.chat_template, budget)
        params: dict[str, Any] = {**defaults, **parts.params}
        prepared = Prepared(
            info=info, parts=parts, facts=facts, template=template, params=params,
            capabilities=tuple(capabilities(
                facts=facts, template=template if parts.template is not None else None,
                has_projector=info.manifest.layer_of(MEDIA_PROJECTOR) is not None, config=info.config)),
        )
        self._prepared[info.digest] = prepared
        while len(self._prepared) > 16:
            self._prepared.popitem(last=False)
        return prepared

    @property
    def template_limits(self) -> TemplateLimits:
        return TemplateLimits.from_settings(self.kernel.settings)

    def _options(self, prepared: Prepared, request_options: Mapping[str, Any]) -> dict[str, Any]:
        return option_rules.merge(prepared.params, request_options,
                                  context_length=self.kernel.settings.context_length)

    def _require(self, prepared: Prepared, capability: str, message: str) -> None:
        if capability not in prepared.capabilities:
            raise InvalidRequest(message)

    def _thinking(self, prepared: Prepared, think: bool | str | None, label: str) -> tuple[bool, str, bool]:
        """(think on, level, was set) after Ollama's rules; 400 for think on a model without it."""
        supported = "thinking" in prepared.capabilities
        if think not in (None, False) and not supported:
            raise InvalidRequest(f'"{label}" does not support thinking')
        if think is None:
            return supported, "medium" if supported else "", False
        if isinstance(think, str):
            return True, think, True
        return think, "medium" if think else "", True

    async def capabilities(self, name: str) -> tuple[str, ...]:
        return (await self.prepare(name)).capabilities

    async def unload(self, name: str) -> ModelInfo:
        info = await self.kernel.store.get(name)
        await self.kernel.scheduler.unload(info)
        return info

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Reply]:
        started = time.perf_counter_ns()
        prepared = await self.prepare(request.model)
        usage = current_usage()
        usage.model = prepared.info.name
        if not request.prompt and request.keep_alive == 0:
            await self.kernel.scheduler.unload(prepared.info)
            yield Reply(done=True, done_reason="unload")
            return
        if request.raw and (request.template or request.system or request.context):
            raise InvalidRequest("raw mode does not support template, system, or context")
        think, level, think_set = self._thinking(prepared, request.think, request.model)
        self._require(prepared, "completion", f'"{request.model}" does not support generate')
        if request.suffix:
            self._require(prepared, "insert", f"{prepared.info.ref} does not support insert")
        if request.images:
            self._require(prepared, "vision", f"{prepared.info.ref} does not support vision")
        options = self._options(prepared, request.options)
        async with self.kernel.scheduler.lease(prepared.info, options, keep_alive=request.keep_alive) as lease:
            usage.leased(lease)
            if not request.prompt:
                yield Reply(done=True, done_reason="load",
                            metrics=Metrics(total_ns=time.perf_counter_ns() - started, load_ns=lease.load_duration_ns))
                return
            if request.raw:
                prompt = request.prompt
            else:
                budget = Budget(self.template_limits)
                template = prepared.template
                if request.template:
                    template = await run_template(budget, PromptTemplate.parse, request.template, budget)
                messages: list[Any] = []
                system = request.system if request.system is not None else prepared.parts.system
                if system:
                    messages.append({"role": "system", "content": system})
                if not request.context:
                    messages.extend(prepared.parts.messages)
                messages.append({"role": "user", "content": request.prompt, "images": list(request.images)})
                prompt = await self._render(prepared, template, messages, (), think, level, think_set, budget,
                                            prompt=request.prompt, suffix=request.suffix)
            completion = CompletionRequest(prompt=prompt, options=options, images=request.images,
                                           context=request.context, format=request.format)
            stream = self._stream(prepared, lease, completion, started, usage, think=think, tools=())
            async with aclosing(stream) as replies:
                async for reply in replies:
                    yield attrs.evolve(reply, context=None) if request.raw and reply.done else reply

    # -- chat -------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> AsyncIterator[Reply]:
        started = time.perf_counter_ns()
        prepared = await self.prepare(request.model)
        usage = current_usage()
        usage.model = prepared.info.name
        if not request.messages and request.keep_alive == 0:
            await self.kernel.scheduler.unload(prepared.info)
            yield Reply(done=True, done_reason="unload")
            return
        self._require(prepared, "completion", f'"{request.model}" does not support chat')
        if request.tools:
            self._require(prepared, "tools", f"{prepared.info.ref} does not support tools")
        if any(message.get("images") for message in request.messages):
            self._require(prepared, "vision", f"{prepared.info.ref} does not support vision")
        think, level, think_set = self._thinking(prepared, request.think, request.model)
        options = self._options(prepared, request.options)
        async with self.kernel.scheduler.lease(prepared.info, options, keep_alive=request.keep_alive) as lease:
            usage.leased(lease)
            if not request.messages:
                yield Reply(done=True, done_reason="load",
                            metrics=Metrics(total_ns=time.perf_counter_ns() - started, load_ns=lease.load_duration_ns))
                return
            messages = list(prepared.parts.messages) + list(request.messages)
            if prepared.parts.system and (not request.messages or request.messages[0].get("role") != "system"):
                messages.insert(0, {"role": "system", "content": prepared.parts.system})
            prompt = await self._fit(prepared, lease, messages, request.tools, think, level, think_set,
                                     limit=lease.entry.context_length, truncate=request.truncate)
            completion = CompletionRequest(prompt=prompt, options=options, format=request.format)
            stream = self._stream(prepared, lease, completion, started, usage, think=think, tools=request.tools)
            async with aclosing(stream) as replies:
                async for reply in replies:
                    yield attrs.evolve(reply, context=None)

    async def _fit(self, prepared: Prepared, lease: Any, messages: list[Any], tools: Sequence[Any],
                   think: bool, level: str, think_set: bool, *, limit: int, truncate: bool) -> str:
        """Render, dropping the oldest turns (never system messages, never the last) until the
        prompt fits the context, as Ollama's chatPrompt does.

        Ollama tries each cut point in turn, rendering and tokenizing the whole chat each time;
        here the first cut point that fits is found by binary search (a later cut never makes the
        prompt longer), so a long chat costs O(n log n) instead of O(n^2)."""
        budget = Budget(self.template_limits)
        tokenize = getattr(lease.model, "tokenize", None)

        async def render(cut: int) -> str:
            return await self._render(prepared, prepared.template, messages, tools, think, level, think_set, budget,
                                      cut=cut)

        async def fits(prompt: str) -> bool:
            if len(prompt) <= limit or tokenize is None:  # a token is at least one character
                return True
            return len(await tokenize(prompt)) <= limit

        prompt = await render(0)
        last = len(messages) - 1
        if not truncate or last < 1 or await fits(prompt):
            return prompt
        low, high, fitting = 1, last, None
        while low < high:
            middle = (low + high) // 2
            candidate = await render(middle)
            if await fits(candidate):
                high, fitting = middle, candidate
            else:
                low = middle + 1
        return fitting if fitting is not None else await render(low)

    async def _render(self, prepared: Prepared, template: PromptTemplate | ChatTemplate, messages: Sequence[Any],
                      tools: Sequence[Any], think: bool, level: str, think_set: bool, budget: Budget, *,
                      cut: int = 0, prompt: str = "", suffix: str = "") -> str:
        """The prompt of ``messages`` without the turns before ``cut`` (system messages stay),
        rendered in a thread within ``budget`` (TemplateLimitExceeded otherwise). Every step that
        walks the messages is in that thread: a chat may have hundreds of thousands."""

        def render() -> str:
            kept = [m for m in messages[:cut] if m.get("role") == "system"] + list(messages[cut:])
            if isinstance(template, ChatTemplate):
                return template.render(kept, tools=list(tools) or None, add_generation_prompt=True,
                                       bos_token=prepared.facts.bos_token, eos_token=prepared.facts.eos_token,
                                       enable_thinking=think, budget=budget)
            values = PromptValues(messages=[message_from(m) for m in kept], tools=list(tools) or None,
                                  prompt=prompt, suffix=suffix, think=think, think_level=level, is_think_set=think_set)
            return template.render(values, budget=budget)

        return await run_template(budget, render)

    async def _stream(self, prepared: Prepared, lease: Any, completion: CompletionRequest, started: int,
                      usage: Usage, *, think: bool, tools: Sequence[Mapping[str, Any]]) -> AsyncIterator[Reply]:
        splitter = None
        if think and isinstance(prepared.template, PromptTemplate):
            opening, closing = prepared.template.thinking_tags()
            if opening and closing:
                splitter = ThinkingSplitter(opening, closing,
                                            starts_thinking=completion.prompt.rstrip().endswith(opening))
        parser = ToolCallParser(_tool_names(tools)) if tools else None
        async with aclosing(lease.model.complete(completion)) as chunks:
            async for chunk in chunks:
                if chunk.done:
                    usage.prompt_tokens += chunk.prompt_tokens
                    usage.completion_tokens += chunk.completion_tokens
                    thinking = content = ""
                    if splitter is not None:
                        thinking, content = splitter.flush()
                    if parser is not None:
                        content = parser.feed(content) + parser.finish()
                    if thinking or content:
                        yield Reply(text=content, thinking=thinking)
                    if parser is not None and parser.calls:
                        yield Reply(tool_calls=tuple(parser.calls))
                    yield Reply(done=True, done_reason="length" if chunk.done_reason == "length" else "stop",
                                context=chunk.context, metrics=Metrics(
                                    total_ns=time.perf_counter_ns() - started, load_ns=lease.load_duration_ns,
                                    prompt_tokens=chunk.prompt_tokens, prompt_ns=chunk.prompt_duration_ns,
                                    eval_tokens=chunk.completion_tokens, eval_ns=chunk.eval_duration_ns))
                    return
                if usage.first_token_at is None:
                    usage.first_token_at = time.perf_counter()
                thinking, content = splitter.feed(chunk.text) if splitter is not None else ("", chunk.text)
                if parser is not None and content:
                    content = parser.feed(content)
                if thinking or content:
                    yield Reply(text=content, thinking=thinking)
        raise RuntimeFailure("the runner ended the answer without finishing it")

    # -- embeddings -------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> Embeddings:
        started = time.perf_counter_ns()
        prepared = await self.prepare(request.model)
        usage = current_usage()
        usage.model = prepared.info.name
        _check_embed_size(len(request.inputs), prepared.facts.embedding_length, self.kernel.settings.max_embed_values)
        options = self._options(prepared, request.options)
        # A model that generates answers embeddings from the runner it generates with (no reload
        # between the two); only an embedding model is loaded for embeddings alone.
        async with self.kernel.scheduler.lease(prepared.info, options, keep_alive=request.keep_alive,
                                               embedding="completion" not in prepared.capabilities) as lease:
            usage.leased(lease)
            if not request.inputs:
                return Embeddings(vectors=[], prompt_tokens=0, metrics=Metrics(load_ns=lease.load_duration_ns))
            vectors, tokens = await lease.model.embed(list(request.inputs), truncate=request.truncate)
            usage.prompt_tokens += tokens
        result = await anyio.to_thread.run_sync(_finished, vectors, request)  # a million numbers, maybe
        return Embeddings(vectors=result, prompt_tokens=tokens, metrics=Metrics(
            total_ns=time.perf_counter_ns() - started, load_ns=lease.load_duration_ns, prompt_tokens=tokens))


def _model_template(layer: str | None, jinja: str | None,
                    budget: Budget) -> tuple[PromptTemplate | ChatTemplate, dict[str, Any]]:
    """A model's prompt template (its TEMPLATE layer, Ollama's named template matching its GGUF
    chat template, the Jinja template itself, or the default), and the parameters a named
    template brings."""
    if layer is not None:
        return PromptTemplate.parse(layer, budget), {}
    if jinja and (named := named_template(jinja)) is not None:
        return PromptTemplate.parse(named.template, budget), dict(named.parameters or {})
    if jinja:
        return ChatTemplate(jinja), {}
    return DEFAULT_TEMPLATE, {}


def _check_embed_size(inputs: int, width: int | None, limit: int) -> None:
    """Refuse, before any work, an answer of more numbers than ``server.max_embed_values``: a body
    of a million one-word inputs is only megabytes, its vectors are gigabytes."""
    width = width or 1  # a runtime that does not say: the inputs alone count
    if inputs * width > limit:
        raise InvalidRequest(f"too many inputs: {inputs} inputs of {width} numbers each exceed "
                             f"server.max_embed_values ({limit}); send at most {max(limit // width, 1)} per request")


def _finished(vectors: list[list[float]], request: EmbedRequest) -> list[list[float]]:
    """The vectors checked, cut to ``dimensions`` and normalized as the request asks."""
    result = []
    for vector in vectors:
        if any(not math.isfinite(value) for value in vector):
            raise RuntimeFailure("embedding contains NaN or Inf values")
        if request.normalize:
            if request.dimensions and 0 < request.dimensions < len(vector):
                vector = vector[: request.dimensions]
            vector = _normalized(vector)
        result.append(vector)
    return result


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names

