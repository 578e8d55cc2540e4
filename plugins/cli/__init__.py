"""The ``corral`` command line. Commands come from the ``register_commands`` hook.

Starting the CLI builds a plugin manager but no kernel, and imports nothing heavy: ``corral
--help`` must stay fast. Commands that need settings or the store ask the context for the kernel.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import attrs
import click

from corral import ConfigError, CorralError, __version__


@attrs.define(eq=False)
class CliState:
    """Per-invocation state: the ``--set`` overrides and a kernel built on first use."""

    overrides: dict[str, str] = attrs.field(factory=dict)
    _kernel: Any = None

    def kernel(self) -> Any:
        if self._kernel is None:
            from corral.sdk.app import create_kernel

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._kernel = create_kernel(overrides=self.overrides)
            for warning in caught:
                click.echo(f"Warning: {warning.message}", err=True)
        return self._kernel


def _parse_set(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for item in values:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    return overrides


def build_cli() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "-v", "--version", message="corral version is %(version)s")
    @click.option("--set", "overrides", multiple=True, callback=_parse_set, metavar="KEY=VALUE",
                  help="Override a setting for this command, e.g. --set server.keep_alive=10m.")
    @click.pass_context
    def cli(ctx: click.Context, overrides: dict[str, str]) -> None:
        """corral: run, create and serve models, with Ollama's API and store."""
        ctx.obj = CliState(overrides=overrides)

    pm = _command_plugin_manager()
    pm.hook.register_commands(cli=cli)
    return cli


def _command_plugin_manager() -> Any:
    """The plugins whose commands are offered, per the environment and config file.

    A broken config file must not hide ``--help``: then the defaults are used here and the error
    is reported by the first command that needs settings.
    """
    from corral import Settings
    from corral.sdk.app import make_plugin_manager

    try:
        settings = Settings.load()
        enable, disable = settings.enable, settings.disable
    except ConfigError:
        enable, disable = (), ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pm = make_plugin_manager(enable, disable)
        except CorralError:
            pm = make_plugin_manager()
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    return pm


def _first_leaf(group: BaseExceptionGroup) -> Any:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def main(argv: list[str] | None = None) -> None:
    try:
        cli = build_cli()
        cli.main(args=argv, prog_name="corral", standalone_mode=False)
    except CorralError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(error.exit_code)
    except BaseExceptionGroup as group:  # an error raised inside a task group
        matched, _rest = group.split(CorralError)
        if matched is None:
            raise
        error = _first_leaf(matched)
        click.echo(f"Error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
