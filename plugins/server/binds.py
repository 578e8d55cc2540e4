"""Where ``corral serve`` listens: OLLAMA_HOST, then every plugin's ``register_binds``."""

from __future__ import annotations

from typing import Any

from corral import ConfigError
from corral.sdk.http import Bind, bind_port


def listen_binds(kernel: Any) -> list[Bind]:
    """OLLAMA_HOST first (always behind the API key), then the plugins' binds, each once.

    A plain string from ``register_binds`` is ``Bind(address)``. The same address declared with
    and without ``requires_key`` keeps the key. A port may not be both keyed and keyless, since
    requests are told apart by the port they arrive on.
    """
    binds = {kernel.settings.host.bind: Bind(kernel.settings.host.bind)}
    for declared in kernel.pm.hook.register_binds(kernel=kernel):
        for item in declared or ():
            try:
                bind = item if isinstance(item, Bind) else Bind(item)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"register_binds: {error}") from None
            known = binds.get(bind.address)
            binds[bind.address] = bind if known is None else Bind(bind.address, known.requires_key or bind.requires_key)
    keyed = {bind_port(bind.address) for bind in binds.values() if bind.requires_key}
    for bind in binds.values():
        if not bind.requires_key and bind_port(bind.address) in keyed:
            raise ConfigError(f"port {bind_port(bind.address)} is declared both with and without an API key "
                              f"({bind.address}); give the keyless bind a port of its own")
    return list(binds.values())


def keyless_ports(binds: list[Bind]) -> frozenset[int]:
    """The ports whose requests skip the API-key check."""
    return frozenset(bind_port(bind.address) for bind in binds if not bind.requires_key)
