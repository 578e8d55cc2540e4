"""The plugin manager: bundled plugins first, contrib on demand, tolerant entry points, conflicts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from corral import RuntimeSpec, SettingSpec, SourceSpec, StoreSpec, hookimpl
from corral.errors import ConfigError, PluginError
from corral.kernel import Kernel
from corral.manager import BUNDLED_PLUGINS, make_plugin_manager
from support import run_corral


def kernel(tmp_path: Path, *plugins: object, config: str = "", **env: str) -> Kernel:
    path = tmp_path / "config.toml"
    path.write_text(config)
    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), **env}
    return Kernel.create(environ, path, plugins=plugins, load_entry_points=False)


class RuntimePlugin:
    def __init__(self, name: str, priority: int = 0, formats: tuple[str, ...] = ("gguf",)) -> None:
        self.spec = RuntimeSpec(name=name, formats=formats, priority=priority, factory=lambda kernel: None)

    @hookimpl
    def register_runtimes(self, settings):
        return [self.spec]


def test_each_manager_is_fresh() -> None:
    first, second = make_plugin_manager(load_entry_points=False), make_plugin_manager(load_entry_points=False)
    assert first is not second
    first.set_blocked("cli")
    assert second.has_plugin("cli")


def test_bundled_plugins_are_registered_by_name_first() -> None:
    pm = make_plugin_manager(load_entry_points=False)
    names = pm.plugin_names()
    assert names[: len(BUNDLED_PLUGINS)] == ["defaults", "store_fs", "outbound", "source_ollama", "cli", "server",
                                             "runtime_llamacpp", "openai", "source_hf", "source_modelscope", "source_pip",
                                             "webui"]
    assert all(pm.origins[name] == "bundled" for name in names)


def test_later_plugins_run_first(tmp_path: Path) -> None:
    class Override:
        @hookimpl
        def select_runtime(self, model, candidates, settings):
            return next(spec for spec in candidates if spec.name == "low")

    low, high = RuntimePlugin("low", 1, ("test",)), RuntimePlugin("high", 9, ("test",))
    k = kernel(tmp_path, low, high)
    model = SimpleNamespace(config={"model_format": "test"})
    assert k.runtime_for(model).name == "high"  # the default picks the highest priority
    assert kernel(tmp_path, low, high, Override()).runtime_for(model).name == "low"


def test_runtime_for_a_format_nobody_loads(tmp_path: Path) -> None:
    with pytest.raises(Exception, match='no runtime can load models of format "onnx"'):
        kernel(tmp_path, RuntimePlugin("r")).runtime_for(SimpleNamespace(config={"model_format": "onnx"}))


@pytest.mark.parametrize(("hook", "record", "what"), [
    ("register_runtimes", RuntimeSpec(name="dup", formats=("gguf",), factory=print), "runtime"),
    ("register_sources", SourceSpec(name="dup", factory=print), "source"),
    ("register_stores", StoreSpec(name="dup", factory=print), "store"),
])
def test_a_name_claimed_twice_names_both_plugins(tmp_path: Path, hook: str, record: object, what: str) -> None:
    def make(plugin_name: str):
        plugin = type(plugin_name, (), {hook: hookimpl(lambda self, settings: [record])})()
        return plugin

    k = kernel(tmp_path)
    k.pm.register(make("first"), name="first-plugin")
    k.pm.register(make("second"), name="second-plugin")
    with pytest.raises(PluginError) as error:
        getattr(k, {"runtime": "runtimes", "source": "sources", "store": "stores"}[what])
    message = str(error.value)
    assert f'{what} "dup" is registered by both' in message
    assert "first-plugin" in message and "second-plugin" in message


def test_a_store_name_claimed_by_a_bundled_plugin(tmp_path: Path) -> None:
    class Shadow:
        @hookimpl
        def register_stores(self, settings):
            return [StoreSpec(name="fs", factory=print)]

    with pytest.raises(PluginError, match='store "fs" is registered by both plugin ".*"') as error:
        kernel(tmp_path, Shadow()).stores
    assert 'plugin "store_fs"' in str(error.value)


def test_setting_declared_twice(tmp_path: Path) -> None:
    class Declares:
        @hookimpl
        def register_settings(self):
            return [SettingSpec(key="x.y", default=1, help="")]

    with pytest.raises(PluginError, match='setting "x.y" is registered by both'):
        kernel(tmp_path, Declares(), Declares())


def test_disable_a_bundled_plugin(tmp_path: Path) -> None:
    k = kernel(tmp_path, config='[plugins]\ndisable = ["cli"]\n')
    assert not k.pm.has_plugin("cli") and k.pm.has_plugin("store_fs")


def test_unknown_plugin_names_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match='plugins.enable: unknown plugin "nonesuch"'):
        kernel(tmp_path, config='[plugins]\nenable = ["nonesuch"]\n')
    with pytest.raises(PluginError, match='plugins.disable: unknown plugin "webgui"'):
        kernel(tmp_path, config='[plugins]\ndisable = ["webgui"]\n')


def test_contrib_plugins_are_off_until_enabled(tmp_path: Path) -> None:
    assert not kernel(tmp_path).pm.has_plugin("event_log")
    k = kernel(tmp_path, config=f'[plugins]\nenable = ["event_log"]\n[event_log]\npath = "{tmp_path}/ev.jsonl"\n')
    assert k.pm.origins["event_log"] == "contrib"
    assert k.settings.plugin["event_log.path"] == tmp_path / "ev.jsonl"


def test_enabled_contrib_plugin_sees_kernel_events(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    k = kernel(tmp_path, config=f'[plugins]\nenable = ["event_log"]\n[event_log]\npath = "{log}"\n')

    async def scenario() -> None:
        async with k.running():
            layer = await k.store.add_bytes(b"{}", "application/vnd.docker.container.image.v1+json")
            from corral.types import Manifest

            await k.store.put("demo", Manifest(config=layer, layers=[]))
            await k.store.delete("demo")

    anyio.run(scenario)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [event["event"] for event in events] == ["ModelStored", "ModelDeleted"]
    assert events[0]["name"] == "demo:latest"


def test_a_failing_observer_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @hookimpl
        def on_event(self, event):
            raise RuntimeError("observer bug")

    seen = []

    class Watcher:
        @hookimpl
        def on_event(self, event):
            seen.append(event.kind)

    from corral.types import ModelDeleted

    k = kernel(tmp_path, Watcher(), Broken())
    k.emit(ModelDeleted(name="m", blobs_removed=0))
    assert seen == ["ModelDeleted"]
    assert "observer bug" in caplog.text


def test_lifespans_enter_in_order_and_exit_in_reverse(tmp_path: Path) -> None:
    from contextlib import asynccontextmanager

    trail: list[str] = []

    def plugin(name: str):
        class Plugin:
            @hookimpl
            def lifespan(self, kernel):
                @asynccontextmanager
                async def life():
                    trail.append(f"enter {name}")
                    yield
                    trail.append(f"exit {name}")

                return life()

        return Plugin()

    k = kernel(tmp_path, plugin("a"), plugin("b"))

    async def scenario() -> None:
        async with k.running():
            trail.append("running")

    anyio.run(scenario)
    assert trail == ["enter b", "enter a", "running", "exit a", "exit b"]


def test_unknown_store_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='server.store="s3": no such store \\(available: fs\\)'):
        kernel(tmp_path, config='[server]\nstore = "s3"\n').store


def test_third_party_hook_without_spec_only_warns(tmp_path: Path) -> None:
    class Typo:
        @hookimpl
        def register_runtime(self, settings):  # missing "s"
            return []

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = make_plugin_manager(load_entry_points=False, extra=(Typo(),))
    assert any("unknown hook 'register_runtime'" in str(w.message) for w in caught)
    assert len(pm.plugin_names()) == len(BUNDLED_PLUGINS)


# -- installed third-party plugins, through the real command line ------------------------------


def broken_distribution(site: Path) -> None:
    """A plugin distribution whose module raises on import, as a real broken install would."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "corral_broken_plugin.py").write_text("raise ImportError('needs libfoo 2.0')\n")
    info = site / "corral_broken_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-broken-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[corral]\nbroken = corral_broken_plugin\n")


def test_installed_example_plugin_is_listed(clean_env: dict[str, str]) -> None:
    result = run_corral("plugins", "--json", env=clean_env)
    assert result.returncode == 0, result.stderr
    plugins = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert plugins["echo"]["from"] == "corral-echo-runtime 0.1.0"
    assert plugins["echo"]["hooks"] == ["register_runtimes", "register_settings"]
    assert plugins["store_fs"]["from"] == "bundled"


def test_broken_plugin_next_to_it_only_warns(tmp_path: Path, clean_env: dict[str, str]) -> None:
    broken_distribution(tmp_path / "site")
    clean_env["PYTHONPATH"] = str(tmp_path / "site")
    result = run_corral("plugins", env=clean_env)
    assert result.returncode == 0, result.stderr
    assert "echo" in result.stdout and "broken" not in result.stdout
    assert ('Warning: plugin "broken" from corral-broken-plugin 0.3 failed to load: '
            "ImportError: needs libfoo 2.0") in result.stderr
    assert "Traceback" not in result.stderr


def test_strict_plugins_make_it_fatal(tmp_path: Path, clean_env: dict[str, str]) -> None:
    broken_distribution(tmp_path / "site")
    clean_env.update(PYTHONPATH=str(tmp_path / "site"), CORRAL_STRICT_PLUGINS="1")
    result = run_corral("plugins", env=clean_env)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        'Error: plugin "broken" from corral-broken-plugin 0.3 failed to load: ImportError: needs libfoo 2.0')
    assert "Traceback" not in result.stderr


def test_disabled_broken_plugin_is_not_even_imported(tmp_path: Path, clean_env: dict[str, str]) -> None:
    broken_distribution(tmp_path / "site")
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\ndisable = ["broken"]\n')
    clean_env.update(PYTHONPATH=str(tmp_path / "site"), CORRAL_CONFIG=str(config))
    result = run_corral("plugins", env=clean_env)
    assert result.returncode == 0 and result.stderr == ""


def test_echo_runtime_works_through_the_kernel(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[echo]\nprefix = "you said: "\n')
    k = Kernel.create({"HOME": str(tmp_path)}, path)
    spec = k.runtime_for(SimpleNamespace(config={"model_format": "echo"}))
    assert spec.name == "echo"

    async def scenario() -> list[str]:
        from corral import CompletionRequest, LoadSpec

        runtime = spec.factory(k)
        async with runtime.load(LoadSpec(name="e", model_path="/dev/null", format="echo")) as model:
            return [chunk.text async for chunk in model.complete(CompletionRequest(prompt="hello there"))]

    assert "".join(anyio.run(scenario)) == "you said: hello there"


def test_plugins_hook_filter(clean_env: dict[str, str]) -> None:
    result = run_corral("plugins", "--hook", "register_stores", env=clean_env)
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["store_fs"]
    result = run_corral("plugins", "--hook", "no_such_hook", env=clean_env)
    assert result.returncode == 1
    assert result.stderr.startswith('Error: unknown hook "no_such_hook"')


