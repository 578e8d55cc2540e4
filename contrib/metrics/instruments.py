"""The metrics of one kernel, in a registry of their own, and how each event moves them.

Labels stay low-cardinality: ``endpoint`` is a route pattern, ``model`` is set only for models
that exist in the store (an unknown name a client sends is counted with ``model=""``), status,
reason, runtime and direction come from short fixed lists.
"""

from __future__ import annotations

import platform
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral import (
    Event,
    ModelLoaded,
    ModelUnloaded,
    RequestFinished,
    RunnerStarted,
    RunnerStopped,
    TransferFinished,
    TransferProgress,
    __version__,
)

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TOKEN = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LOAD = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TOKENS_PER_SECOND = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0)


class _Scheduler(Collector):
    """Read at scrape time: how many requests wait now, and how many may."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = weakref.ref(kernel)  # the registry lives as long as the kernel, not longer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        kernel = self.kernel()
        if kernel is None:
            return
        yield GaugeMetricFamily("corral_queue_depth", "Requests waiting for a model slot or a load now.",
                                value=kernel.scheduler.waiting)
        yield GaugeMetricFamily("corral_queue_capacity", "Requests that may wait before the server answers 503 "
                                "(OLLAMA_MAX_QUEUE).", value=kernel.settings.max_queue)


class Instruments:
    """Every corral_* metric of one kernel; ``observe(event)`` is all the plugin does per event."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.requests = counter("corral_requests", "HTTP requests answered.", ("endpoint", "method", "model", "status"))
        self.duration = histogram("corral_request_duration_seconds", "From a request's arrival to its last byte.",
                                  ("endpoint", "model"), SECONDS)
        self.rejected = counter("corral_requests_rejected", "Requests refused before any work, by reason "
                                "(busy, too_large, unauthorized, forbidden, invalid).", ("reason",))
        self.first_token = histogram("corral_time_to_first_token_seconds", "From a request's arrival to its "
                                     "first generated token.", ("model",), FIRST_TOKEN)
        self.prompt_tokens = counter("corral_prompt_tokens", "Prompt tokens evaluated.", ("model",))
        self.generated_tokens = counter("corral_generated_tokens", "Tokens generated.", ("model",))
        self.speed = histogram("corral_generation_tokens_per_second", "Generation speed of each answer: tokens "
                               "after the first over the time after the first.", ("model",), TOKENS_PER_SECOND)
        self.queue_wait = histogram("corral_queue_wait_seconds", "Time a request waited for a slot, for room, or "
                                    "for another request's load.", ("model",), SECONDS)
        self.models_loaded = Gauge("corral_models_loaded", "Models loaded now.", registry=registry)
        self.loads = counter("corral_model_loads", "Models loaded.", ("model", "runtime"))
        self.load_duration = histogram("corral_model_load_duration_seconds", "Time to load a model.",
                                       ("runtime",), LOAD)
        self.unloads = counter("corral_model_unloads", "Models unloaded, by reason.", ("reason",))
        self.runner_starts = counter("corral_runner_starts", "Runner processes (or actors) started.", ("runtime",))
        self.runner_crashes = counter("corral_runner_crashes", "Runners that died on their own.", ("runtime",))
        self.runner_restarts = counter("corral_runner_restarts", "Runners started for a model whose last runner "
                                       "crashed.", ("runtime",))
        self.transfer_bytes = counter("corral_transfer_bytes", "Bytes moved by pulls and pushes.", ("direction",))
        self.transfers = counter("corral_transfers", "Pulls and pushes finished.", ("direction",))
        self.transfer_failures = counter("corral_transfer_failures", "Pulls and pushes that failed.", ("direction",))
        self._crashed: set[str] = set()
        self._handlers: dict[type, Callable[[Any], None]] = {
            RequestFinished: self._request, ModelLoaded: self._loaded, ModelUnloaded: self._unloaded,
            RunnerStarted: self._runner_started, RunnerStopped: self._runner_stopped,
            TransferProgress: self._progress, TransferFinished: self._transfer_finished,
        }

    @classmethod
    def for_kernel(cls, kernel: Any) -> Instruments:
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(_Scheduler(kernel))
        info = Gauge("corral_build_info", "corral's version and the Python running it; always 1.",
                     ("version", "python"), registry=registry)
        info.labels(__version__, platform.python_version()).set(1)
        return cls(registry)

    def observe(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _request(self, event: RequestFinished) -> None:
        model = event.model or ""
        self.requests.labels(event.endpoint, event.method, model, str(event.status)).inc()
        self.duration.labels(event.endpoint, model).observe(event.total_seconds)
        if event.rejected is not None:
            self.rejected.labels(event.rejected).inc()
        if not event.model:
            return
        if event.queue_seconds or event.load_seconds:  # it held (or waited for) a slot
            self.queue_wait.labels(model).observe(event.queue_seconds)
        if event.prompt_tokens:
            self.prompt_tokens.labels(model).inc(event.prompt_tokens)
        if event.completion_tokens:
            self.generated_tokens.labels(model).inc(event.completion_tokens)
        if event.ttft_seconds is not None:
            self.first_token.labels(model).observe(event.ttft_seconds)
            decoding = event.total_seconds - event.ttft_seconds
            if event.completion_tokens > 1 and decoding > 0:
                self.speed.labels(model).observe((event.completion_tokens - 1) / decoding)

    def _loaded(self, event: ModelLoaded) -> None:
        self.models_loaded.inc()
        self.loads.labels(event.name, event.runtime).inc()
        self.load_duration.labels(event.runtime).observe(event.seconds)

    def _unloaded(self, event: ModelUnloaded) -> None:
        self.models_loaded.dec()
        self.unloads.labels(event.reason).inc()

    def _runner_started(self, event: RunnerStarted) -> None:
        self.runner_starts.labels(event.runtime).inc()
        if event.name in self._crashed:
            self._crashed.discard(event.name)
            self.runner_restarts.labels(event.runtime).inc()

    def _runner_stopped(self, event: RunnerStopped) -> None:
        if event.crashed:
            self.runner_crashes.labels(event.runtime).inc()
            self._crashed.add(event.name)

    def _progress(self, event: TransferProgress) -> None:
        self.transfer_bytes.labels(event.direction).inc(event.bytes)

    def _transfer_finished(self, event: TransferFinished) -> None:
        self.transfers.labels(event.direction).inc()
        if event.error is not None:
            self.transfer_failures.labels(event.direction).inc()
