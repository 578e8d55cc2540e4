"""Pushing to a registry and pulling back: /api/push and ``corral push`` on a real ``corral serve``
holding the real SmolLM2 model, against the fake registry (token challenge, upload sessions)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fake_registry import FakeRegistry
from registry_support import SMOL_PARTS, corral_env, layers_of, stream
from servers import running_server, store_with_smollm2
from support import run_corral

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(tmp_path: Path):
    with FakeRegistry(root=tmp_path / "registry-blobs") as fake:
        yield fake


@pytest.fixture
def source_env(clean_env: dict[str, str], tmp_path: Path, smollm2_gguf: Path) -> dict[str, str]:
    models = store_with_smollm2(tmp_path / "source-models", smollm2_gguf)
    return corral_env(clean_env, models)


def local_manifest(env: dict[str, str], parts: tuple[str, ...] = SMOL_PARTS) -> bytes:
    return Path(env["OLLAMA_MODELS"]).joinpath("manifests", *parts).read_bytes()


def test_push_then_pull_round_trips_a_model(source_env: dict[str, str], clean_env: dict[str, str],
                                            registry: FakeRegistry, tmp_path: Path) -> None:
    target = f"{registry.host}/me/smol:v1"
    with running_server(source_env) as url, httpx.Client(timeout=120) as client:
        assert client.post(url + "/api/copy", json={"source": "smol", "destination": target}).status_code == 200
        status, lines = stream(url, "/api/push", {"model": target, "insecure": True})
    assert status == 200
    raw = local_manifest(source_env)
    manifest = json.loads(raw)
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    for layer in layers_of(manifest):
        mine = [line for line in lines if line.get("digest") == layer["digest"]]
        assert mine[-1] == {"status": f"pushing {layer['digest'][7:19]}", "digest": layer["digest"],
                            "total": layer["size"], "completed": layer["size"]}
        assert registry.blob_file(layer["digest"]).stat().st_size == layer["size"]
    assert registry.manifests[("me/smol", "v1")] == raw
    assert all(r["authorization"] for r in registry.requests if r["method"] in ("POST", "PATCH", "PUT"))

    # a second push sends no blob: the registry has them all
    uploads = len([r for r in registry.requests if r["method"] == "POST"])
    with running_server(source_env) as url:
        _, lines = stream(url, "/api/push", {"model": target, "insecure": True})
    assert lines[-1] == {"status": "success"}
    assert len([r for r in registry.requests if r["method"] == "POST"]) == uploads

    # and another user pulls it back, byte for byte, and runs it
    pull_env = corral_env(clean_env, tmp_path / "other-models")
    with running_server(pull_env) as url, httpx.Client(timeout=120) as client:
        _, lines = stream(url, "/api/pull", {"model": target, "insecure": True})
        assert lines[-1] == {"status": "success"}, lines[-3:]
        answer = client.post(url + "/api/chat", json={
            "model": target, "messages": [{"role": "user", "content": "Say hi."}], "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}).json()
    assert answer["message"]["content"].strip()
    assert local_manifest(pull_env, (registry.host, "me", "smol", "v1")) == raw


def test_corral_push_prints_progress(source_env: dict[str, str], registry: FakeRegistry) -> None:
    target = f"{registry.host}/me/smol"
    with running_server(source_env) as url:
        env = {**source_env, "OLLAMA_HOST": url[7:]}
        assert run_corral("cp", "smol", target, env=env).returncode == 0
        result = run_corral("push", "--insecure", target, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "retrieving manifest" and lines[-2:] == ["pushing manifest", "success"]
    assert any(line.startswith("pushing ") and line.endswith(": 100% 98 MB") for line in lines)
    assert ("me/smol", "latest") in registry.manifests


def test_push_errors(source_env: dict[str, str], registry: FakeRegistry) -> None:
    with running_server(source_env) as url, httpx.Client(timeout=120) as client:
        response = client.post(url + "/api/push", json={})
        assert (response.status_code, response.json()) == (400, {"error": "model is required"})
        response = client.post(url + "/api/push", json={"model": f"{registry.host}/me/nothing",
                                                        "insecure": True, "stream": False})
        assert response.status_code == 404 and "not found" in response.json()["error"]
        env = {**source_env, "OLLAMA_HOST": url[7:]}
        result = run_corral("push", "--insecure", f"{registry.host}/me/nothing", env=env)
    assert result.returncode == 1 and result.stderr.startswith("Error: ") and "not found" in result.stderr
    assert registry.manifests == {}
