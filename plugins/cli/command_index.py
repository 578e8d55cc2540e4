"""The command table of ``corral``, cached so that the command line starts without every plugin.

Learning the commands means building the plugin manager: importing pluggy, attrs, the settings,
every bundled and installed plugin and the entry points, a few hundred milliseconds. After such a
build the table is saved (``$XDG_CACHE_HOME/corral/commands.json``, default ``~/.cache``): each
command's name, help and hidden and deprecated flags, and the module attribute that holds it.
``corral --help`` then prints from the table, and ``corral list`` imports the module that defines
``list`` and nothing else.

The table is used only while everything it was built from is unchanged, checked by a stat of each
file and compared on every start (about a millisecond): the Python executable and ``sys.path``,
each directory on it (installing or removing a distribution changes its directory) but the first
(the script's: the ``corral`` script's folder, or the current directory for ``python -c`` and
``-m``, which changes all the time and holds no plugins), the config
file (which chooses plugins), the ``CORRAL_*`` variables and ``HOME``, and every module file
outside the standard library that the build loaded (an editable install's sources included). A
build that printed warnings (a plugin that failed to load) is not saved, so they show every time.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # not typing's: this module runs on every start of the command line
if TYPE_CHECKING:
    from typing import Any

    import click

FORMAT = 1


def cache_file() -> str:
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "corral", "commands.json")


def _key() -> dict[str, Any]:
    environ = {name: value for name, value in os.environ.items() if name.startswith("CORRAL_")}
    environ["HOME"] = os.environ.get("HOME", "")
    return {"format": FORMAT, "executable": sys.executable, "python": sys.version, "path": sys.path[1:],
            "environ": environ}


def _stamp(path: str) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_mtime_ns, status.st_size]


def read() -> dict[str, dict[str, Any]] | None:
    """The saved commands by name, or None when there are none or anything they depend on changed."""
    try:
        with open(cache_file(), "rb") as handle:
            saved = json.load(handle)
        if saved["key"] != _key():
            return None
        for path, stamp in saved["files"]:
            if _stamp(path) != stamp:
                return None
        commands = saved["commands"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return commands if isinstance(commands, dict) else None


def write(commands: dict[str, click.Command], config_file: str | None) -> None:
    """Save the commands of a full build, with the stamps of what it depended on (best effort: a
    cache that cannot be written only means the next start builds again)."""
    import sysconfig

    standard = tuple(os.path.join(os.path.realpath(sysconfig.get_paths()[name]), "")
                     for name in ("stdlib", "platstdlib"))
    files = {os.path.realpath(entry) for entry in sys.path[1:] if entry}
    if config_file:
        files.add(config_file)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and not os.path.realpath(path).startswith(standard):
            files.add(path)
    saved = {
        "key": _key(),
        "files": [[path, _stamp(path)] for path in sorted(files)],
        "commands": {name: _entry(command) for name, command in commands.items()},
    }
    target = cache_file()
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(saved, handle)
        os.replace(temporary, target)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _entry(command: click.Command) -> dict[str, Any]:
    module, attribute = _where(command)
    return {"help": command.help, "short_help": command.short_help, "hidden": command.hidden,
            "deprecated": command.deprecated, "module": module, "attribute": attribute}


def _where(command: click.Command) -> tuple[str | None, str | None]:
    """The module global that holds the command: in its callback's module, else in any module
    (a command made in the hook itself is in none; running it builds every plugin)."""
    home = getattr(command.callback, "__module__", None)
    modules = [home] if home in sys.modules else []
    modules += [name for name in list(sys.modules) if name != home]
    for name in modules:
        for attribute, value in list(vars(sys.modules[name]).items()):
            if value is command:
                return name, attribute
    return None, None


def placeholder(name: str, entry: dict[str, Any]) -> click.Command:
    """A stand-in that lists the command in ``--help`` as the real one would."""
    import click

    return click.Command(name, help=entry["help"], short_help=entry["short_help"], hidden=entry["hidden"],
                         deprecated=entry["deprecated"])


def load(entry: dict[str, Any]) -> click.Command | None:
    """The real command, from the module that defines it; None when it is not where it was."""
    import importlib

    import click

    if not entry.get("module"):
        return None
    try:
        command = getattr(importlib.import_module(entry["module"]), entry["attribute"])
    except (ImportError, AttributeError):
        return None
    return command if isinstance(command, click.Command) else None
