"""Every hook is documented: docs/plugin_hooks.md has a section for each one."""

from __future__ import annotations

import re

from corral.manager import make_plugin_manager
from support import REPO


def documented_hooks() -> set[str]:
    text = (REPO / "docs" / "plugin_hooks.md").read_text()
    return set(re.findall(r"^## (\w+)$", text, flags=re.MULTILINE))


def test_every_hook_has_a_section() -> None:
    pm = make_plugin_manager(load_entry_points=False)
    hooks = {name for name in dir(pm.hook) if not name.startswith("_")}
    assert hooks, "no hooks found"
    missing = hooks - documented_hooks()
    assert not missing, f"docs/plugin_hooks.md lacks a section for: {sorted(missing)}"


def test_every_section_is_a_real_hook() -> None:
    pm = make_plugin_manager(load_entry_points=False)
    hooks = {name for name in dir(pm.hook) if not name.startswith("_")}
    assert documented_hooks() <= hooks


def test_every_hookspec_has_a_docstring() -> None:
    pm = make_plugin_manager(load_entry_points=False)
    for name in dir(pm.hook):
        if not name.startswith("_"):
            spec = getattr(pm.hook, name).spec
            assert spec and spec.function.__doc__ and len(spec.function.__doc__.strip()) > 40, name
