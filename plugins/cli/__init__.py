"""The ``corral`` command line. Commands come from the ``register_commands`` hook.

Building the plugin manager to learn the commands costs a few hundred milliseconds, so its result
is cached (``command_index.py``): ``corral --help`` prints the saved table, and a command is
imported from the module that defines it, nothing else. The plugins are built only when the table
is missing or out of date, or when a command needs the kernel (``state.kernel()``).
"""

from __future__ import annotations

import sys
import warnings

import click

from corral import ConfigError, CorralError

from . import command_index

TYPE_CHECKING = False  # not typing's: this module runs on every start of the command line
if TYPE_CHECKING:
    from typing import Any


class CliState:
    """Per-invocation state: the ``--set`` overrides and a kernel built on first use. (A plain
    class: attrs would cost the command line's start more than the rest of this module.)"""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._kernel: Any = None

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


class CorralGroup(click.Group):
    """The top-level command: its commands come from the saved table when it is valid (each one
    imported when it runs), else from every plugin's ``register_commands``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index: dict[str, dict[str, Any]] | None = None
        self.listing = False

    def load(self) -> None:
        """Take the commands from the saved table, or from the plugins (and save them)."""
        self.index = command_index.read()
        if self.index is None:
            self.register_all()

    def register_all(self) -> None:
        self.index = None
        pm, config_file, clean = _command_plugin_manager()
        pm.hook.register_commands(cli=self)
        if clean:
            command_index.write(self.commands, config_file)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.index) if self.index is not None else super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if self.index is None:
            return super().get_command(ctx, name)
        entry = self.index.get(name)
        if entry is None:
            return None
        if self.listing:
            return command_index.placeholder(name, entry)
        command = command_index.load(entry)
        if command is None:  # not where the table says: learn the commands again
            self.register_all()
            return super().get_command(ctx, name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True  # the help lists the commands without importing them
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.listing = False


def build_cli() -> click.Group:
    @click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(None, "-v", "--version", package_name="corral", message="corral version is %(version)s")
    @click.option("--set", "overrides", multiple=True, callback=_parse_set, metavar="KEY=VALUE",
                  help="Override a setting for this command, e.g. --set server.keep_alive=10m.")
    @click.pass_context
    def cli(ctx: click.Context, overrides: dict[str, str]) -> None:
        """corral: run, create and serve models, with Ollama's API and store."""
        ctx.obj = CliState(overrides=overrides)

    cli.load()
    return cli


def _command_plugin_manager() -> tuple[Any, str | None, bool]:
    """The plugins whose commands are offered, per the environment and config file; the config
    file the choice depends on; and whether all went well (no warning, a readable config), so
    that the commands may be saved.

    A broken config file must not hide ``--help``: then the defaults are used here and the error
    is reported by the first command that needs settings.
    """
    from corral import Settings
    from corral.sdk.app import make_plugin_manager

    clean = True
    try:
        settings = Settings.load()
        enable, disable = settings.enable, settings.disable
    except ConfigError:
        enable, disable, clean = (), (), False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pm = make_plugin_manager(enable, disable)
        except CorralError:
            pm, clean = make_plugin_manager(), False
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    return pm, str(Settings.config_file()), clean and not caught


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
