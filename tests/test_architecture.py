"""The architecture contract (pyproject.toml's [tool.importlinter]), checked with import-linter.

grimp, which import-linter builds its graph with, walks the root package's folder; the editable
install maps four repository folders into ``corral``, so the check runs on a copy of the sources
laid out as an installed ``corral`` package.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from support import REPO

FOLDERS = {"core": "", "sdk": "sdk", "plugins": "plugins", "contrib": "contrib"}
PUBLIC = {"corral", "corral.testing"}
"""The modules of core/ plugins may import (with every module of corral.sdk)."""
KERNEL_FORBIDDEN = ("quart", "hypercorn", "werkzeug", "click", "llama_cpp")


def contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {contract["id"]: contract for contract in config["tool"]["importlinter"]["contracts"]}


def core_modules() -> set[str]:
    """``corral.<name>`` for each module and package at the top of core/."""
    found = set()
    for path in (REPO / "core").iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            found.add(f"corral.{path.stem}")
        elif (path / "__init__.py").exists():
            found.add(f"corral.{path.name}")
    return found


def installed_layout(target: Path) -> Path:
    """The Python files of the four folders, copied to ``target/corral`` as they install."""
    root = target / "corral"
    for folder, package in FOLDERS.items():
        shutil.copytree(REPO / folder, root / package, dirs_exist_ok=True,
                        ignore=lambda _dir, names: [n for n in names if n == "__pycache__" or
                                                    (not n.endswith(".py") and "." in n)])
    return target


def test_the_internal_module_lists_name_every_internal_module() -> None:
    internal = core_modules() - PUBLIC
    assert set(contracts()["public-surface"]["forbidden_modules"]) == internal
    assert set(contracts()["kernel"]["source_modules"]) == internal | {"corral.testing"}


def test_corral_itself_imports_no_framework() -> None:
    """``corral/__init__.py`` (not covered by the kernel contract, whose packages would include
    the plugins) imports only kernel modules."""
    tree = ast.parse((REPO / "core" / "__init__.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.split(".")[0] in KERNEL_FORBIDDEN}
    assert not {name for name in imported if name.startswith(("plugins", "sdk", "contrib"))}


def test_import_contracts_are_kept(tmp_path: Path) -> None:
    installed_layout(tmp_path)
    scripts = Path(sysconfig.get_paths()["scripts"])
    lint = shutil.which("lint-imports", path=str(scripts)) or shutil.which("lint-imports")
    assert lint, "import-linter is not installed (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([lint, str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_copy_is_what_python_imports(tmp_path: Path) -> None:
    """The check would pass vacuously if the copy were not the ``corral`` that gets imported."""
    installed_layout(tmp_path)
    script = "import corral.plugins.server, corral.sdk.http; print(corral.__file__, corral.sdk.http.__file__)"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(str(tmp_path)) for path in result.stdout.split())


def test_examples_import_only_the_public_surface() -> None:
    """Third-party code as the examples show it: ``corral``, ``corral.sdk.*``, ``corral.testing``."""
    files = [path for path in (REPO / "examples").rglob("*.py") if "build" not in path.parts]
    assert files
    for path in files:
        tree = ast.parse(path.read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        for module in modules:
            if module.split(".")[0] == "corral":
                assert module == "corral" or module.startswith(("corral.sdk", "corral.testing")), f"{path}: {module}"
