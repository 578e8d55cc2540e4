"""Running the server: Hypercorn embedded in the process, bound per OLLAMA_HOST, with our own
signal handling so in-flight streams end cleanly and every runner stops before we exit."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import ssl
from typing import Any

from corral import ConfigError, CorralError, __version__, is_loopback_host
from corral.sdk.http import OpenStreams

from .app import create_app
from .binds import listen_binds
from .logs import configure_logging

log = logging.getLogger("corral.server")

GRACEFUL_SECONDS = 5.0
H2_STREAMS_PER_CONNECTION = 8
RESERVED_FILES = 128  # runners' pipes, the store, logs


def tls_files(settings: Any) -> tuple[str, str] | None:
    """The certificate and key files to serve HTTPS with, checked here so that a bad pair is a
    clear error at start-up (and an encrypted key never makes OpenSSL prompt for a password)."""
    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("server.tls_cert and server.tls_key go together: set both "
                          "(CORRAL_TLS_CERT, CORRAL_TLS_KEY)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        raise ConfigError(f"server.tls_cert={cert}, server.tls_key={key}: not a PEM certificate chain and its "
                          f"unencrypted private key ({error.reason or error})") from None
    except OSError as error:
        raise ConfigError(f"server.tls_cert={cert}, server.tls_key={key}: cannot read "
                          f"{error.filename or 'them'}: {error.strerror or error}") from None
    return str(cert), str(key)


def bound_tls_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """Make every TLS listener Hypercorn opens on ``loop`` give up on a client's close_notify after
    GRACEFUL_SECONDS. Hypercorn passes no ``ssl_shutdown_timeout``, so asyncio's 30 s default
    applied: one idle keep-alive client that never read again held SIGTERM up for 30 s."""
    create_server = loop.create_server

    async def create_bounded_server(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_shutdown_timeout", GRACEFUL_SECONDS)
        return await create_server(*args, **kwargs)

    loop.create_server = create_bounded_server  # type: ignore[method-assign]


def check_exposure(settings: Any) -> None:
    """Warn about an address other machines reach with no key (or keys over plain HTTP); with
    ``server.require_keys``, refuse to start without a key there."""
    if settings.require_keys and not settings.has_keys and not is_loopback_host(settings.host.host):
        raise ConfigError(f"server.require_keys is on and no API key is set: refusing to listen on "
                          f"{settings.host.bind}, which other machines can reach. Set server.api_keys "
                          "(CORRAL_API_KEYS), or listen on 127.0.0.1")
    for warning in settings.exposure_warnings():
        log.warning("%s", warning)


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
    configure_logging(settings.debug, settings.log_format)
    check_exposure(settings)
    _raise_open_file_limit(settings.max_connections)
    config = LimitedConfig()
    config.caps = ConnectionCaps(settings.max_connections, settings.max_client_connections)
    config.bind = [bind.address for bind in listen_binds(kernel)]
    tls = tls_files(settings)
    if tls is not None:
        config.certfile, config.keyfile = tls
    config.graceful_timeout = GRACEFUL_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    config.h11_max_incomplete_size = 64 * 1024
    # HTTP/2 (with TLS, or in clear text with prior knowledge) carries many requests on one
    # connection: the connection caps would not bound requests without a cap per connection.
    config.h2_max_concurrent_streams = H2_STREAMS_PER_CONNECTION

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
    if tls is not None:
        bound_tls_shutdown(loop)
    store = kernel.store  # configuration errors surface here, before any task starts
    app = create_app(kernel, streams)
    try:
        async with kernel.running():
            pruned = await store.prune()
            if pruned:
                log.info("removed %d unused or abandoned files from %s", pruned, store.location)
            scheme = "https" if tls else "http"
            log.info("corral %s listening on %s (models in %s)", __version__,
                     ", ".join(f"{scheme}://{bind}" for bind in config.bind), store.location)
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
