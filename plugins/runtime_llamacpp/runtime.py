"""The server side of the llama.cpp runtime: a runner process per loaded model (corral.sdk.runner).

A warm spare process, llama.cpp already imported, waits for the next load, so that a load costs
only the model's file mapping and context creation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from corral import LoadSpec, ModelFacts, ModelFiles, RuntimeFailure
from corral.sdk.runner import RunnerClient, RunnerSpec, SpareRunners, open_pipe

from .cpu_share import runner_env
from .facts import describe, local_path

log = logging.getLogger(__name__)

ENGINE = "corral.plugins.runtime_llamacpp.runner:Runner"
PRELOAD = ("llama_cpp", "corral.plugins.runtime_llamacpp.runner")


def spare_runners(*, enabled: bool = True) -> SpareRunners:
    """Runner processes for this runtime: llama.cpp imported ahead, OpenMP's spinning bounded."""
    return SpareRunners(PRELOAD, runner_env(), enabled=enabled)


class LlamaCppRuntime:
    def __init__(self, *, debug: int = 0, stream_interval_ms: float = 0.0,
                 spares: SpareRunners | None = None) -> None:
        self.debug = debug
        self.stream_interval_ms = stream_interval_ms
        self.spares = spares or spare_runners()

    async def describe(self, files: ModelFiles) -> ModelFacts:
        return await describe(files)

    def runner_spec(self, spec: LoadSpec) -> RunnerSpec:
        """The runner for ``spec``: the llama.cpp engine and its config (see runner.py)."""
        files = spec.files
        model_path = str(local_path(files, files.model))
        adapters = [str(local_path(files, digest)) for digest in files.adapters]
        config = {"model_path": model_path, "adapters": adapters, "verbose": self.debug > 1,
                  "stream_interval_ms": self.stream_interval_ms,
                  "num_parallel": spec.num_parallel, "embedding": spec.embedding, **spec.options}
        if spec.embedding and not spec.facts.embedding:
            config["pooling"] = "mean"  # a generative model asked for embeddings
        return RunnerSpec(engine=ENGINE, config=config, files=(model_path, *adapters), preload=PRELOAD)

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[RunnerClient]:
        """Load ``spec`` in a runner process and yield it once ready; stop the process on exit."""
        async with AsyncExitStack() as stack:
            model = await self._start(spec, stack)
            await self.spares.refill()
            yield model

    async def _start(self, spec: LoadSpec, stack: AsyncExitStack) -> RunnerClient:
        runner = self.runner_spec(spec)
        while True:
            process, spare = await self.spares.take()
            attempt = AsyncExitStack()
            try:
                transport = await attempt.enter_async_context(open_pipe(process, name=spec.name))
                model = await attempt.enter_async_context(RunnerClient.connect(transport, runner, name=spec.name))
            except RuntimeFailure as error:
                await attempt.aclose()
                if spare and "has terminated" in str(error):
                    log.debug("the spare runner for %s had died (%s); starting a fresh one", spec.name, error)
                    continue  # a fresh process next: the spare may have died while it waited
                raise
            except BaseException:
                await attempt.aclose()
                raise
            stack.push_async_callback(attempt.aclose)
            return model

    async def close(self) -> None:
        await self.spares.aclose()
