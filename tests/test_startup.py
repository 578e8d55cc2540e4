"""The command line starts fast: `import corral` loads nothing, `corral --help` prints a saved
command table, `corral list` and `corral ps` import only what they run, and the saved table follows
every change of plugins, config and code. (Timings are benchmarks' business; these check imports.)"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import empty_ollama
from support import REPO, clean_environ

PROBE = """
import json, sys
from corral.plugins.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""
HEAVY = ("quart", "hypercorn", "llama_cpp", "numpy", "jinja2", "gguf", "rich")
BUILD = ("pluggy", "attrs", "importlib.metadata", "tomllib", "corral.types", "corral.manager",
         "corral.plugins.server", "corral.plugins.source_hf", "corral.plugins.runtime_llamacpp")
"""What only building the plugin manager imports."""


def probe(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)
    head, _, modules = result.stderr.rpartition("\nMODULES ")
    result.stderr = head
    return result, set(json.loads(modules))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_environ(tmp_path / "home")


def test_import_corral_loads_nothing_until_a_name_is_used() -> None:
    script = ("import sys, corral\nbefore = sorted(m for m in sys.modules if m.startswith('corral'))\n"
              "from corral import hookimpl\nprint(before, 'attrs' in sys.modules, 'pluggy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["['corral',", "'corral._lazy']", "False", "True"], result.stderr


def test_every_public_name_is_listed_for_type_checkers_where_it_lives() -> None:
    import corral

    tree = ast.parse((REPO / "core" / "__init__.py").read_text())
    block = next(node for node in tree.body
                 if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING")
    typed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) and node.level == 1
             for alias in node.names}
    assert typed == corral._HOME
    for name, module in corral._HOME.items():
        assert getattr(corral, name) is getattr(sys.modules[f"corral.{module}"], name)


def test_help_from_the_saved_commands_imports_only_the_command_line(env: dict[str, str]) -> None:
    first, built = probe("--help", env=env)
    second, modules = probe("--help", env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "Usage: corral" in first.stdout and "serve" in first.stdout and "list" in first.stdout
    assert second.stdout == first.stdout and second.stderr == first.stderr == ""
    assert not built & set(HEAVY) and "pluggy" in built
    assert not modules & {*HEAVY, *BUILD, "httpx", "anyio"}, modules & {*HEAVY, *BUILD, "httpx", "anyio"}
    assert (Path(env["HOME"]) / ".cache" / "corral" / "commands.json").is_file()


@pytest.fixture
def ollama_stub() -> Iterator[str]:
    with empty_ollama() as host:
        yield host


@pytest.mark.parametrize("command", ["list", "ps", "ls"])
def test_list_and_ps_import_only_what_they_run(env: dict[str, str], ollama_stub: str, command: str) -> None:
    env["OLLAMA_HOST"] = ollama_stub
    probe("--help", env=env)  # saves the commands
    result, modules = probe(command, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NAME ")
    assert "httpx" in modules and "corral.plugins.cli.model_commands" in modules
    unneeded = {*HEAVY[:-1], "pluggy", "corral.types", "corral.manager", "corral.plugins.server",
                "corral.plugins.source_hf", "corral.plugins.runtime_llamacpp", "corral.store", "corral.sdk.hub",
                "corral.gotemplate.template", "corral.plugins.cli.run_command", "corral.plugins.cli.create_command"}
    assert not modules & unneeded, modules & unneeded


def plugin(site: Path, help_text: str) -> None:
    """An installed plugin with two commands: one defined at module level, one made in the hook."""
    site.mkdir(exist_ok=True)
    (site / "corral_hello_plugin.py").write_text(f'''
import click
from corral import hookimpl

@click.command("hello")
def hello_command():
    """{help_text}"""
    click.echo("hello from the plugin")

@hookimpl
def register_commands(cli):
    cli.add_command(hello_command)

    @cli.command("wave")
    def wave():
        """Wave."""
        click.echo("waving")
''')
    info = site / "corral_hello_plugin-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-hello-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[corral]\nhello = corral_hello_plugin\n")


def commands_listed(env: dict[str, str]) -> set[str]:
    result = subprocess.run([sys.executable, "-c", "from corral.plugins.cli import main; main()", "--help"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listing = result.stdout.partition("Commands:\n")[2]
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def test_the_saved_commands_follow_plugins_config_and_code(env: dict[str, str], tmp_path: Path) -> None:
    from support import run_corral

    assert {"serve", "list"} <= commands_listed(env) and "hello" not in commands_listed(env)

    site = tmp_path / "site"
    plugin(site, "Say hello.")
    env["PYTHONPATH"] = str(site)  # a new directory on the path: learnt again
    assert {"hello", "wave", "serve"} <= commands_listed(env)
    assert "Say hello." in run_corral("--help", env=env).stdout
    assert run_corral("hello", env=env).stdout == "hello from the plugin\n"
    assert run_corral("wave", env=env).stdout == "waving\n"  # made in the hook: found by building again

    plugin(site, "Say hello, politely.")  # the plugin's code changed
    assert "Say hello, politely." in run_corral("--help", env=env).stdout

    config = Path(env["HOME"]) / ".corral" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[plugins]\ndisable = ["hello"]\n')  # a config file appears
    assert not {"hello", "wave"} & commands_listed(env)
    assert "No such command 'hello'" in run_corral("hello", env=env).stderr
    config.write_text("")  # and changes
    assert {"serve", "hello"} <= commands_listed(env)

    cache = Path(env["HOME"]) / ".cache" / "corral" / "commands.json"
    cache.write_text("{not json")
    assert {"serve", "hello"} <= commands_listed(env)
    saved = json.loads(cache.read_text())
    saved["commands"]["hello"]["module"] = "corral_hello_plugin_gone"  # a table that lies: built again
    cache.write_text(json.dumps(saved))
    assert run_corral("hello", env=env).stdout == "hello from the plugin\n"


def test_plugin_warnings_show_on_every_start(env: dict[str, str], tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "corral_broken_plugin-0.3.dist-info"
    info.mkdir(parents=True)
    (site / "corral_broken_plugin.py").write_text("raise ImportError('needs libfoo 2.0')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-broken-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[corral]\nbroken = corral_broken_plugin\n")
    env["PYTHONPATH"] = str(site)
    for _ in range(2):
        result, _modules = probe("--help", env=env)
        assert result.returncode == 0 and "Usage: corral" in result.stdout
        assert 'Warning: plugin "broken" from corral-broken-plugin 0.3 failed to load' in result.stderr
