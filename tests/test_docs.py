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


def hook_sections() -> dict[str, str]:
    text = (REPO / "docs" / "plugin_hooks.md").read_text()
    parts = re.split(r"^## (\w+)$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_section_opens_with_its_hooks_signature() -> None:
    """The first line of a hook's section is its call, with exactly the hookspec's parameters, and
    its return type unless the hook returns nothing."""
    import inspect

    pm = make_plugin_manager(load_entry_points=False)
    sections = hook_sections()
    for name, section in sections.items():
        spec = getattr(pm.hook, name).spec
        parameters = ", ".join(inspect.signature(spec.function).parameters)
        first = section.strip().splitlines()[0]
        assert first.startswith(f"`{name}({parameters})"), f"{name}: {first!r}"
        returns = inspect.signature(spec.function).return_annotation
        assert (" -> " in first.split("`")[1]) == (returns not in ("None", None)), f"{name}: {first!r}"


def test_the_testing_example_runs(tmp_path) -> None:
    """docs/plugin_hooks.md's example of corral.testing is a working test."""
    section = (REPO / "docs" / "plugin_hooks.md").read_text().split("## Testing a plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "plugin_hooks.md", "exec"), namespace)
    namespace["test_two_requests_share_one_load"](tmp_path)


def test_every_core_setting_is_in_the_readme() -> None:
    from corral.settings import CORE_SETTINGS

    readme = (REPO / "README.md").read_text()
    missing = [setting.key for setting in CORE_SETTINGS if f"`{setting.key}`" not in readme]
    assert not missing, f"README.md's settings table lacks: {missing}"


def test_every_limit_is_in_the_security_page() -> None:
    """docs/security.md lists every limit on what a client may send, with its default."""
    from corral.settings import CORE_SETTINGS

    page = (REPO / "docs" / "security.md").read_text()
    limits = [setting for setting in CORE_SETTINGS
              if setting.key.startswith(("server.max_", "server.body_", "server.template_"))]
    assert len(limits) >= 7
    for setting in limits:
        assert f"`{setting.key}`" in page, setting.key
        default = setting.default if isinstance(setting.default, int) else f"{setting.default:g}"
        assert f"`{default}`" in page, (setting.key, default)
