"""Limits on prompt templates: time, loop iterations and output size.

A prompt template is code that comes from a model file or a request, so rendering one must not
freeze or exhaust the server. Templates are parsed, compiled and rendered off the event loop, in a
daemon thread (``run_template``), under a ``Budget``: both executors (the Go one in
``corral.gotemplate`` and the Jinja sandbox in ``corral.jinja_template``) call ``budget.step()``
at every loop iteration and template or macro call, and ``budget.output(n)`` / ``budget.size(n)``
for what they write or build. Going over a limit raises ``TemplateLimitExceeded``, a 400 that
names the setting. Each ``run_template`` call (a parse, a compile or a render) starts the budget
afresh; a chat being truncated renders about log2(messages) times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs

from .errors import TemplateError

T = TypeVar("T")

# Seconds a render may overrun its deadline (a step in C code cannot be interrupted) before the
# request is answered anyway and the thread is left to stop at its next step.
GRACE_SECONDS = 1.0


@attrs.frozen(kw_only=True)
class TemplateLimits:
    timeout: float = 2.0
    """Seconds one render (or parse) may take (``server.template_timeout``)."""
    max_iterations: int = 1_000_000
    """Loop iterations plus template and macro calls in one render (``server.template_max_iterations``)."""
    max_output: int = 32 * 1024 * 1024
    """Characters one render may write, and the largest string or list it may build
    (``server.template_max_output``)."""

    @classmethod
    def from_settings(cls, settings: Any) -> TemplateLimits:
        return cls(timeout=settings.template_timeout, max_iterations=settings.template_max_iterations,
                   max_output=settings.template_max_output)


class TemplateLimitExceeded(TemplateError):
    """A render that went over one of the TemplateLimits (HTTP 400)."""


class Budget:
    """What is left of TemplateLimits for the render under way; safe to ``cancel()`` from another
    thread, which stops this render and every later one."""

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        self.cancelled = False
        self.start_render()

    def start_render(self) -> None:
        self.deadline = time.monotonic() + self.limits.timeout
        self.steps = 0
        self.written = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_iterations:
            raise TemplateLimitExceeded(
                f"rendering took more than {self.limits.max_iterations} loop iterations and template calls "
                "(server.template_max_iterations)")
        self.check_time()

    def check_time(self) -> None:
        if self.cancelled:
            raise TemplateLimitExceeded("rendering was stopped: the request ended")
        if time.monotonic() > self.deadline:
            raise self.timed_out()

    def output(self, size: int) -> None:
        self.written += size
        if self.written > self.limits.max_output:
            raise self.too_large()

    def size(self, size: int) -> None:
        """Check a string or list about to be built (or just built) against the output limit."""
        if size > self.limits.max_output:
            raise self.too_large()

    def timed_out(self) -> TemplateLimitExceeded:
        return TemplateLimitExceeded(
            f"rendering took longer than {self.limits.timeout:g}s (server.template_timeout)")

    def too_large(self) -> TemplateLimitExceeded:
        return TemplateLimitExceeded(
            f"rendering produced or built more than {self.limits.max_output} characters "
            "(server.template_max_output)")

    def cancel(self) -> None:
        self.cancelled = True


async def run_template(budget: Budget, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``, a render (or parse) within ``budget`` started afresh, in a daemon
    thread; the caller waits at most until the budget's deadline (plus a grace second).
    Cancelling the caller, or running out of time, stops the render at its next step; the thread
    never holds up the process's exit."""
    budget.start_render()
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the waiting task
            outcome["error"] = error
        finally:
            try:
                anyio.from_thread.run_sync(done.set, token=token)
            except RuntimeError:  # the event loop has gone: nobody is waiting
                pass

    threading.Thread(target=run, name="corral-template", daemon=True).start()
    try:
        with anyio.fail_after(max(budget.deadline - time.monotonic(), 0) + GRACE_SECONDS):
            await done.wait()
    except TimeoutError:
        budget.cancel()
        raise budget.timed_out() from None
    except BaseException:
        budget.cancel()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
