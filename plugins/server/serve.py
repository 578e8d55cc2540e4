"""Running the server: Hypercorn embedded in the process, bound per OLLAMA_HOST, with our own
signal handling so in-flight streams end cleanly and every runner stops before we exit."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from typing import Any

from corral import __version__
from corral.errors import CorralError

from .app import create_app
from .binds import listen_binds
from .http import OpenStreams

log = logging.getLogger("corral.server")

GRACEFUL_SECONDS = 5.0
RESERVED_FILES = 128  # runners' pipes, the store, logs


def configure_logging(debug: int) -> None:
    level = logging.DEBUG if debug else logging.INFO
    logging.basicConfig(level=level, format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s")
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)


def _raise_open_file_limit(connections: int) -> None:
    """Every connection is a file descriptor: lift the soft limit to the hard one, as Go programs
    do at start, and warn when the connection cap cannot be reached (accept would then fail and
    stall every client, not only the one over the limit)."""
    try:
        import resource
    except ImportError:  # Windows has no resource module
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and connections + RESERVED_FILES > soft:
        log.warning("server.max_connections=%d is near the open file limit (%d): lower it or raise the limit",
                    connections, soft)


async def serve(kernel: Any) -> None:
    """Serve until SIGINT or SIGTERM."""
    from hypercorn.asyncio import serve as hypercorn_serve

    from .limits import ConnectionCaps, LimitedConfig

    settings = kernel.settings
    configure_logging(settings.debug)
    _raise_open_file_limit(settings.max_connections)
    config = LimitedConfig()
    config.caps = ConnectionCaps(settings.max_connections, settings.max_client_connections)
    config.bind = [bind.address for bind in listen_binds(kernel)]
    config.graceful_timeout = GRACEFUL_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    config.h11_max_incomplete_size = 64 * 1024

    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    streams = OpenStreams()

    async def shutdown_trigger() -> None:
        """After a signal, end every stream at its next chunk and wait for them (a little) before
        Hypercorn starts closing connections."""
        await signalled.wait()
        streams.stopping = True
        deadline = loop.time() + GRACEFUL_SECONDS
        while streams.count and loop.time() < deadline:
            await asyncio.sleep(0.02)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    store = kernel.store  # configuration errors surface here, before any task starts
    app = create_app(kernel, streams)
    try:
        async with kernel.running():
            pruned = await store.prune()
            if pruned:
                log.info("removed %d unused or abandoned files from %s", pruned, store.location)
            log.info("corral %s listening on %s (models in %s)", __version__, settings.host.bind, store.location)
            try:
                await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise CorralError(f"listen tcp {', '.join(config.bind)}: bind: address already in use") from None
                raise CorralError(f"listen tcp {', '.join(config.bind)}: {error.strerror or error}") from None
        log.info("corral stopped")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
