"""Pulling from Hugging Face: a local fake Hub serving the real SmolLM2 GGUF through HF_ENDPOINT."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from corral import DigestMismatch, InvalidRequest, ModelNotFound, PullError
from corral.kernel import Kernel
from hub_fakes import FakeHuggingFace, HubFile, pull, store_files
from servers import running_server
from support import clean_environ, run_corral

REPO = "test-user/SmolLM2-135M-Instruct-GGUF"
Q4_K_M = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smol_file(smollm2_gguf: Path) -> HubFile:
    return HubFile(source=smollm2_gguf)


@contextmanager
def hub_with(files: dict[str, HubFile], **private: str):
    hub = FakeHuggingFace(repos={REPO: files}, private={REPO: private["token"]} if private else {})
    with hub.running():
        yield hub


def make_kernel(tmp_path: Path, hub: FakeHuggingFace, **extra: str) -> Kernel:
    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "HF_ENDPOINT": hub.url,
               "HF_HOME": str(tmp_path / "hf-home"), "PATH": os.environ.get("PATH", ""), **extra}
    return Kernel.create(environ=environ, load_entry_points=False)


def statuses(progress) -> list[str]:
    return list(dict.fromkeys(item.status for item in progress))


@pytest.mark.slow
def test_pull_picks_q4_k_m_stores_the_model_and_it_generates(tmp_path, smol_file):
    junk = HubFile(data=b"not a model")
    with hub_with({Q4_K_M: smol_file, "SmolLM2-135M-Instruct-Q8_0.gguf": junk, "README.md": HubFile(data=b"# hi", lfs=False)}) as hub:
        kernel = make_kernel(tmp_path, hub)
        progress = pull(kernel, f"hf.co/{REPO}")
    sha = smol_file.sha256()
    assert statuses(progress)[:3] == ["pulling manifest", f"pulling {sha[:12]}", "verifying sha256 digest"]
    assert progress[-1].status == "success"
    downloads = [item for item in progress if item.digest == f"sha256:{sha}"]
    assert downloads[-1].total == downloads[-1].completed == smol_file.size
    assert hub.gets("Q8_0") == []  # only the chosen quantization is fetched
    assert (tmp_path / "models" / "blobs" / f"sha256-{sha}").stat().st_size == smol_file.size
    assert (tmp_path / "models" / "manifests" / "hf.co" / "test-user" / "SmolLM2-135M-Instruct-GGUF" / "latest").is_file()
    assert not any((tmp_path / "models" / ".downloads").rglob("*.gguf"))

    env = {**clean_environ(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")}
    with running_server(env) as url, httpx.Client(base_url=url, timeout=300) as client:
        tags = client.get("/api/tags").json()["models"]
        assert [model["name"] for model in tags] == [f"hf.co/{REPO}:latest"]
        reply = client.post("/api/generate", json={"model": f"hf.co/{REPO}", "prompt": "Say hello.", "stream": False,
                                                   "options": {"num_predict": 8, "temperature": 0}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["response"].strip()


@pytest.mark.slow
def test_corral_pull_from_the_hub_as_a_user_runs_it(tmp_path, smol_file):
    with hub_with({Q4_1: smol_file}) as hub:
        env = {**clean_environ(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "HF_ENDPOINT": hub.url}
        with running_server(env) as url:
            env["OLLAMA_HOST"] = url
            result = run_corral("pull", f"hf.co/{REPO}:Q4_1", env=env, timeout=300)
            assert result.returncode == 0, result.stderr
            assert "success" in result.stdout
            missing = run_corral("pull", f"hf.co/{REPO}:Q2_K", env=env, timeout=300)
            push = httpx.post(f"{url}/api/push", json={"model": f"hf.co/{REPO}:Q4_1", "stream": False}, timeout=60)
    assert push.status_code == 400 and "pushing to Hugging Face is not supported" in push.json()["error"]
    assert missing.returncode == 1
    assert 'Error: hf.co/test-user/SmolLM2-135M-Instruct-GGUF:Q2_K: no GGUF file for quantization "Q2_K" (available: Q4_1)' in missing.stderr


@pytest.mark.slow
def test_tag_picks_the_quantization_case_insensitively_and_names_the_model(tmp_path, smol_file):
    with hub_with({Q4_K_M: HubFile(data=b"wrong one"), Q4_1: smol_file}) as hub:
        kernel = make_kernel(tmp_path, hub)
        progress = pull(kernel, f"huggingface.co/{REPO}:q4_1")
    assert progress[-1].status == "success"
    assert hub.gets("Q4_K_M") == []
    assert (tmp_path / "models" / "manifests" / "huggingface.co" / "test-user" / "SmolLM2-135M-Instruct-GGUF" / "q4_1").is_file()


def test_unknown_quantization_lists_the_available_ones(tmp_path):
    with hub_with({Q4_K_M: HubFile(data=b"a"), "x-Q8_0.gguf": HubFile(data=b"b")}) as hub:
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(ModelNotFound) as caught:
            pull(kernel, f"hf.co/{REPO}:Q2_K")
    assert caught.value.status == 404
    assert 'no GGUF file for quantization "Q2_K" (available: Q4_K_M, Q8_0)' in str(caught.value)
    assert hub.gets("/resolve/") == []
    assert store_files(tmp_path / "models") == set()


def test_unknown_repository_is_not_found(tmp_path):
    with hub_with({Q4_K_M: HubFile(data=b"a")}) as hub:
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(ModelNotFound) as caught:
            pull(kernel, "hf.co/test-user/no-such-repo")
    assert caught.value.status == 404
    assert 'no repository "test-user/no-such-repo"' in str(caught.value)
    assert str(caught.value).startswith("pull model manifest: file does not exist")


def test_a_repository_without_models_is_a_clear_error(tmp_path):
    with hub_with({"README.md": HubFile(data=b"# nothing", lfs=False)}) as hub:
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(InvalidRequest, match="no GGUF file and no safetensors checkpoint"):
            pull(kernel, f"hf.co/{REPO}")


@pytest.mark.slow
def test_private_repository_needs_hf_token_which_never_reaches_the_cdn(tmp_path, smol_file):
    with hub_with({Q4_1: smol_file}, token="hf_secret") as hub:
        with pytest.raises(ModelNotFound, match="needs HF_TOKEN"):
            pull(make_kernel(tmp_path, hub), f"hf.co/{REPO}")
        progress = pull(make_kernel(tmp_path, hub, HF_TOKEN="hf_secret"), f"hf.co/{REPO}")
    assert progress[-1].status == "success"
    cdn = [headers for method, path, headers in hub.log if path.startswith("/cdn/")]
    assert cdn and not any("Authorization" in headers for headers in cdn)


def test_wrong_digest_never_reaches_the_store(tmp_path):
    data = HubFile(data=os.urandom(300_000))
    with hub_with({Q4_K_M: data}) as hub:
        hub.faults.wrong_sha256 = True
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(DigestMismatch) as caught:
            pull(kernel, f"hf.co/{REPO}")
    assert "digest mismatch" in str(caught.value) and Q4_K_M in str(caught.value)
    assert store_files(tmp_path / "models") == set()
    assert not any(path.is_file() and path.suffix == ".gguf" for path in (tmp_path / "models" / ".downloads").rglob("*"))


def test_a_dropped_connection_is_resumed_with_range(tmp_path):
    data = HubFile(data=os.urandom(12 * 2**20))  # huggingface-hub resumes from its 10 MiB chunks
    with hub_with({Q4_K_M: data}) as hub:
        hub.faults.drop_after, hub.faults.drop_times = 11 * 2**20, 1
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(InvalidRequest):  # the bytes are no GGUF: creating the model refuses them
            pull(kernel, f"hf.co/{REPO}")
    ranges = [headers.get("Range") for method, path, headers in hub.log if path.startswith("/cdn/") and method == "GET"]
    assert ranges[0] is None and ranges[1] == f"bytes={10 * 2**20}-"
    # the download itself arrived whole and verified: it is in the store, only no manifest uses it
    assert store_files(tmp_path / "models") == {f"blobs/sha256-{data.sha256()}"}


def test_a_connection_that_always_drops_fails_clearly_and_stores_nothing(tmp_path):
    with hub_with({Q4_K_M: HubFile(data=os.urandom(2_000_000))}) as hub:
        hub.faults.drop_after, hub.faults.drop_times = 500_000, 1000
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(PullError) as caught:
            pull(kernel, f"hf.co/{REPO}")
    assert f"hf.co/{REPO}:latest" in str(caught.value)
    assert store_files(tmp_path / "models") == set()


@pytest.mark.slow
def test_a_hub_answering_500_fails_clearly(tmp_path):
    with hub_with({Q4_K_M: HubFile(data=b"x")}) as hub:
        hub.faults.status = 500
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(PullError) as caught:
            pull(kernel, f"hf.co/{REPO}")
    assert "500" in str(caught.value)
    assert store_files(tmp_path / "models") == set()


@pytest.mark.slow
def test_a_safetensors_only_repository_goes_through_the_converter(tmp_path, minilm_folder):
    files = {str(path.relative_to(minilm_folder)): HubFile(source=path, lfs=path.suffix == ".safetensors")
             for path in minilm_folder.rglob("*") if path.is_file()}
    with hub_with(files) as hub:
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(ModelNotFound, match='no GGUF files, so no quantization "Q4_K_M"'):
            pull(kernel, f"hf.co/{REPO}:Q4_K_M")
        progress = pull(kernel, f"hf.co/{REPO}")
    assert "converting model" in [item.status for item in progress]
    assert progress[-1].status == "success"
    assert hub.gets("README.md") == []  # only what converting needs is fetched
    assert any("1_Pooling/config.json" in path for path in hub.gets("/resolve/"))
    env = {**clean_environ(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")}
    with running_server(env) as url, httpx.Client(base_url=url, timeout=300) as client:
        reply = client.post("/api/embed", json={"model": f"hf.co/{REPO}", "input": ["hello", "world"]})
        assert reply.status_code == 200, reply.text
        assert [len(vector) for vector in reply.json()["embeddings"]] == [384, 384]
