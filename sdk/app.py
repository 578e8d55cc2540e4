"""Hosting corral: build a kernel or a plugin manager the way ``corral`` itself does.

The command line uses this; so can an application that embeds corral (build a kernel, then
``async with kernel.running():``). Plugins never need it: hooks hand them the kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.interfaces import Kernel
from corral.manager import PluginLoadWarning, hooks_of, make_plugin_manager

__all__ = ["PluginLoadWarning", "create_kernel", "hooks_of", "make_plugin_manager"]


def create_kernel(
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    plugins: tuple[Any, ...] = (),
    load_entry_points: bool = True,
) -> Kernel:
    """Read the settings (``environ``, default the process's; the config file; ``overrides`` such
    as ``{"server.keep_alive": "10m"}``), build a fresh plugin manager with the bundled, enabled
    contrib and installed plugins plus ``plugins``, and return the kernel."""
    from corral.kernel import Kernel as KernelImplementation

    return KernelImplementation.create(environ, config_path, overrides, plugins=plugins,
                                       load_entry_points=load_entry_points)

