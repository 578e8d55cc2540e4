"""Extra binds from ``register_binds``: plain addresses and ``Bind`` records, with or without the key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from corral import hookimpl
from corral.errors import ConfigError
from corral.kernel import Kernel
from corral.plugins.server.binds import keyless_ports, listen_binds
from corral.sdk.http import Bind
from servers import free_port, running_server
from support import clean_environ


class BindPlugin:
    def __init__(self, *binds: object) -> None:
        self.binds = binds

    @hookimpl
    def register_binds(self, kernel):
        return list(self.binds)


def kernel(tmp_path: Path, *plugins: object, host: str = "127.0.0.1:11434") -> Kernel:
    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "OLLAMA_HOST": host}
    return Kernel.create(environ, plugins=plugins, load_entry_points=False)


def test_strings_and_records_become_binds_and_ollama_host_comes_first(tmp_path: Path) -> None:
    binds = listen_binds(kernel(tmp_path, BindPlugin("127.0.0.1:3000", Bind("127.0.0.1:9090", requires_key=False),
                                                     "127.0.0.1:3000")))
    assert binds == [Bind("127.0.0.1:11434"), Bind("127.0.0.1:3000"), Bind("127.0.0.1:9090", requires_key=False)]
    assert keyless_ports(binds) == {9090}


def test_the_same_address_with_and_without_the_key_keeps_the_key(tmp_path: Path) -> None:
    binds = listen_binds(kernel(tmp_path, BindPlugin(Bind("127.0.0.1:11434", requires_key=False)),
                                BindPlugin(Bind("127.0.0.1:9090", requires_key=False), "127.0.0.1:9090")))
    assert binds == [Bind("127.0.0.1:11434"), Bind("127.0.0.1:9090")]
    assert keyless_ports(binds) == frozenset()


def test_a_port_both_keyed_and_keyless_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port 11434 is declared both with and without an API key"):
        listen_binds(kernel(tmp_path, BindPlugin(Bind("0.0.0.0:11434", requires_key=False))))


@pytest.mark.parametrize("address", ["", "localhost", "unix:/tmp/corral.sock", "127.0.0.1:http", "[::1]:70000", 3000])
def test_a_bind_that_is_not_host_and_port_is_refused(tmp_path: Path, address: object) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        Bind(address)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="register_binds: bind"):
        listen_binds(kernel(tmp_path, BindPlugin(address)))


def test_a_keyless_bind_needs_a_fixed_port(tmp_path: Path) -> None:
    assert Bind("127.0.0.1:0").requires_key
    with pytest.raises(ValueError, match="needs a port of its own, not 0"):
        Bind("127.0.0.1:0", requires_key=False)


def plugin_distribution(site: Path, module: str, source: str) -> None:
    """An installed plugin distribution (module + entry point), for a server started with
    ``PYTHONPATH=site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[corral]\n{module} = {module}\n")


def test_a_real_server_listens_on_every_bind(tmp_path: Path) -> None:
    keyed, keyless = free_port(), free_port()
    plugin_distribution(tmp_path / "site", "corral_binds_plugin", f"""
from corral import hookimpl
from corral.sdk.http import Bind

@hookimpl
def register_binds(kernel):
    return ["127.0.0.1:{keyed}", Bind("127.0.0.1:{keyless}", requires_key=False)]
""")
    env = {**clean_environ(tmp_path / "home"), "OLLAMA_MODELS": str(tmp_path / "models"),
           "PYTHONPATH": str(tmp_path / "site")}
    with running_server(env) as url:
        for base in (url, f"http://127.0.0.1:{keyed}", f"http://127.0.0.1:{keyless}"):
            assert httpx.get(base).text == "Ollama is running"
