"""The distribution maps repo folders onto one import package, and nothing else is importable."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from support import REPO

FOLDERS = {"core": "corral", "sdk": "corral.sdk", "plugins": "corral.plugins", "contrib": "corral.contrib"}


def declared_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def tree_packages() -> set[str]:
    found = set()
    for folder, package in FOLDERS.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            if "__pycache__" not in relative:
                found.add(".".join((package, *relative)))
    return found


def test_declared_packages_match_the_folder_tree() -> None:
    assert declared_packages() == tree_packages()


def test_package_dir_maps_the_four_folders() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_repo_folder_names_are_not_importable(tmp_path) -> None:
    for name in FOLDERS:
        result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True)
        assert result.returncode != 0, f"'import {name}' must fail outside the source tree"


def test_help_imports_nothing_heavy(tmp_path) -> None:
    script = (
        "import sys\n"
        "from corral.plugins.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ['llama_cpp', 'quart', 'hypercorn', 'httpx', 'numpy', 'rich', 'jinja2', 'gguf']\n"
        "import json\nprint(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: corral" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
