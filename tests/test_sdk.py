"""The public surface: what ``corral`` and ``corral.sdk.*`` promise exists and is what the kernel is."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import corral
import corral.sdk
from corral.sdk.app import create_kernel


def test_every_public_name_resolves() -> None:
    for name in corral.__all__:
        assert getattr(corral, name) is not None, name
    modules = [info.name for info in pkgutil.iter_modules(corral.sdk.__path__)]
    assert {"http", "hub", "transport", "app", "gguf", "modelfile", "options", "gofmt", "convert", "templates"} <= set(modules)
    for module_name in modules:
        module = importlib.import_module(f"corral.sdk.{module_name}")
        assert module.__doc__, module_name
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"corral.sdk.{module_name}.{name}"


def test_the_sdk_package_lists_each_module() -> None:
    modules = {info.name for info in pkgutil.iter_modules(corral.sdk.__path__)}
    for name in modules:
        assert f"``corral.sdk.{name}``" in corral.sdk.__doc__, name


def test_the_kernel_is_what_the_protocols_promise(tmp_path: Path) -> None:
    kernel = create_kernel({"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")},
                           None, load_entry_points=False)
    assert isinstance(kernel, corral.Kernel)
    assert isinstance(kernel.store, corral.Store)
    assert isinstance(kernel.inference, corral.Inference)
    assert isinstance(kernel.scheduler, corral.Scheduler)
    assert isinstance(kernel.store.blobs, corral.BlobStore)
