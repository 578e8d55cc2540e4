"""The bundled ``cli`` plugin: registers corral's own commands. Each command imports what it
needs when it runs, so building the command line stays cheap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from corral import hookimpl

from .convert_command import convert_command
from .create_command import create_command, quantize_command
from .model_commands import cp_command, list_command, ls_command, ps_command, rm_command, show_command, stop_command
from .prune_command import prune_command
from .run_command import run_command
from .table import columns
from .transfer_commands import pull_command, push_command


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(config_command)
    cli.add_command(plugins_command)
    cli.add_command(run_command)
    cli.add_command(convert_command)
    cli.add_command(create_command)
    cli.add_command(quantize_command)
    for command in (list_command, show_command, cp_command, rm_command, ps_command, stop_command,
                    pull_command, push_command, prune_command, ls_command):
        cli.add_command(command)


def _shown(key: str, value: Any) -> Any:
    """A setting's value as ``corral config`` shows it: seconds as a Go duration, unless the key
    names another unit (``llamacpp.stream_interval_ms``)."""
    from corral import FOREVER, HostSpec, format_go_duration

    if isinstance(value, HostSpec):
        return value.url
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and (value == FOREVER or value.is_integer()) and not key.endswith("_ms"):
        return format_go_duration(value)
    return value


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def config_command(state: Any, as_json: bool) -> None:
    """Print the effective settings and where each value came from.

    \b
    Example:
      OLLAMA_HOST=0.0.0.0:8080 corral config
    """
    kernel = state.kernel()
    settings = kernel.settings
    keys = list(settings.origin_of)
    values = {key: _hidden(settings.value_of(key)) if settings.is_secret(key) else _shown(key, settings.value_of(key))
              for key in keys}
    warnings = list(settings.exposure_warnings())
    if as_json:
        report = {
            "config_file": str(settings.config_path) if settings.config_path else None,
            "settings": {key: {"value": values[key], "from": settings.origin_of[key]} for key in keys},
            "warnings": warnings,
        }
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"config file: {settings.config_path or 'none (CORRAL_CONFIG or ~/.corral/config.toml)'}")
    rows = [[key, json.dumps(values[key]) if not isinstance(values[key], str) else values[key],
             settings.origin_of[key]] for key in keys]
    click.echo(columns(["KEY", "VALUE", "FROM"], rows))
    for warning in warnings:
        click.echo(f"\nWarning: {warning}")


def _hidden(value: Any) -> str:
    """A secret setting as ``corral config`` shows it: whether it is set, never its value."""
    if isinstance(value, tuple):
        return f"({len(value)} hidden)" if value else ""
    return "(hidden)" if value else ""


@click.command("plugins")
@click.option("--hook", "hook_name", metavar="NAME", help="Only plugins that implement this hook.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def plugins_command(state: Any, hook_name: str | None, as_json: bool) -> None:
    """List the active plugins, where each comes from, and the hooks it implements.

    \b
    Example:
      corral plugins --hook register_runtimes
    """
    from corral import InvalidRequest
    from corral.sdk.app import hooks_of

    pm = state.kernel().pm
    known_hooks = {name for name in dir(pm.hook) if not name.startswith("_")}
    if hook_name is not None and hook_name not in known_hooks:
        raise InvalidRequest(f'unknown hook "{hook_name}" (known: {", ".join(sorted(known_hooks))})')
    entries = []
    for name, plugin in pm.list_name_plugin():
        hooks = hooks_of(pm, plugin)
        if hook_name is None or hook_name in hooks:
            entries.append({"name": name, "from": pm.origins.get(name, "?"), "hooks": hooks})
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    rows = [[entry["name"], entry["from"], ", ".join(entry["hooks"])] for entry in entries]
    click.echo(columns(["NAME", "FROM", "HOOKS"], rows))
