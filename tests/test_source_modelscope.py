"""Pulling from ModelScope: a local fake of its HTTP API, reached through MODELSCOPE_DOMAIN."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral import DigestMismatch, InvalidRequest, ModelNotFound, PullError
from corral.kernel import Kernel
from hub_fakes import FakeModelScope, HubFile, pull, store_files

REPO = "test-user/SmolLM2-135M-Instruct-GGUF"
Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextmanager
def modelscope_with(files: dict[str, HubFile]):
    hub = FakeModelScope(repos={REPO: files})
    with hub.running():
        yield hub


def make_kernel(tmp_path: Path, hub: FakeModelScope, **extra: str) -> Kernel:
    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "MODELSCOPE_DOMAIN": hub.url,
               "PATH": os.environ.get("PATH", ""), **extra}
    return Kernel.create(environ=environ, load_entry_points=False)


def partials(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "models" / ".downloads").rglob("*.partial"))


@pytest.mark.slow
def test_pull_stores_the_model_with_verified_bytes(tmp_path, smollm2_gguf):
    smol = HubFile(source=smollm2_gguf)
    with modelscope_with({Q4_1: smol, "README.md": HubFile(data=b"# hi")}) as hub:
        kernel = make_kernel(tmp_path, hub, MODELSCOPE_API_TOKEN="ms-token")
        progress = pull(kernel, f"modelscope.cn/{REPO}")
    sha = smol.sha256()
    assert [item.status for item in progress][:2] == ["pulling manifest", f"pulling {sha[:12]}"]
    assert progress[-1].status == "success"
    assert progress[-2].status == "writing manifest"
    listing, download = hub.gets("/repo/files"), hub.gets("FilePath=")
    assert "Revision=master" in listing[0][0] and "Recursive=True" in listing[0][0]
    assert "m_session_id=ms-token" in download[0][1]["Cookie"]
    assert (tmp_path / "models" / "manifests" / "modelscope.cn" / "test-user" / "SmolLM2-135M-Instruct-GGUF" / "latest").is_file()
    assert (tmp_path / "models" / "blobs" / f"sha256-{sha}").is_file()
    assert partials(tmp_path) == []


def test_an_interrupted_pull_resumes_from_its_partial_file(tmp_path):
    data = HubFile(data=os.urandom(3_000_000))
    with modelscope_with({"m-Q4_K_M.gguf": data}) as hub:
        hub.faults.drop_after, hub.faults.drop_times, hub.faults.status_after_drop = 1_000_000, 1, 503
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(PullError, match="answered 503"):
            pull(kernel, f"modelscope.cn/{REPO}")
        [partial] = partials(tmp_path)
        assert partial.stat().st_size >= 1_000_000
        assert store_files(tmp_path / "models") == set()

        hub.faults.file_status = None
        hub.log.clear()
        with pytest.raises(InvalidRequest):  # random bytes are no GGUF: creating the model refuses them
            pull(kernel, f"modelscope.cn/{REPO}")
    [(_, headers)] = hub.gets("FilePath=")
    assert int(headers["Range"].removeprefix("bytes=").rstrip("-")) >= 1_000_000
    assert store_files(tmp_path / "models") == {f"blobs/sha256-{data.sha256()}"}
    assert partials(tmp_path) == []


def test_a_connection_that_keeps_dropping_fails_after_retries(tmp_path):
    with modelscope_with({"m-Q4_K_M.gguf": HubFile(data=os.urandom(500_000))}) as hub:
        hub.faults.drop_after, hub.faults.drop_times, hub.faults.ignore_range = 100_000, 1000, True
        with pytest.raises(PullError, match="failed 6 times"):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
    assert store_files(tmp_path / "models") == set()


def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(tmp_path):
    data = HubFile(data=os.urandom(2_000_000))
    with modelscope_with({"m-Q4_K_M.gguf": data}) as hub:
        hub.faults.drop_after, hub.faults.drop_times, hub.faults.ignore_range = 700_000, 1, True
        with pytest.raises(InvalidRequest):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
    assert store_files(tmp_path / "models") == {f"blobs/sha256-{data.sha256()}"}


def test_wrong_digest_never_reaches_the_store(tmp_path):
    with modelscope_with({"m-Q4_K_M.gguf": HubFile(data=os.urandom(100_000))}) as hub:
        hub.faults.wrong_sha256 = True
        with pytest.raises(DigestMismatch, match="digest mismatch"):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
    assert store_files(tmp_path / "models") == set()
    assert partials(tmp_path) == []


def test_unknown_model_and_unknown_quantization_are_not_found(tmp_path):
    with modelscope_with({"m-Q4_K_M.gguf": HubFile(data=b"a"), "m-Q8_0.gguf": HubFile(data=b"b")}) as hub:
        kernel = make_kernel(tmp_path, hub)
        with pytest.raises(ModelNotFound, match='no model "test-user/nothing"') as caught:
            pull(kernel, "modelscope.cn/test-user/nothing")
        assert caught.value.status == 404
        with pytest.raises(ModelNotFound, match=r"available: Q4_K_M, Q8_0"):
            pull(kernel, f"modelscope.cn/{REPO}:IQ2_XS")
    assert hub.gets("FilePath=") == []


def test_a_server_answering_500_fails_clearly_and_keeps_the_store(tmp_path):
    with modelscope_with({"m-Q4_K_M.gguf": HubFile(data=b"a")}) as hub:
        hub.faults.status = 500
        with pytest.raises(PullError, match="answered 500"):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
        hub.faults.status, hub.faults.file_status = None, 503
        with pytest.raises(PullError, match="answered 503"):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
    assert store_files(tmp_path / "models") == set()


def test_garbage_listing_is_a_clear_error(tmp_path):
    with modelscope_with({"m-Q4_K_M.gguf": HubFile(data=b"a")}) as hub:
        hub.faults.garbage = True
        with pytest.raises(PullError, match="file list that makes no sense"):
            pull(make_kernel(tmp_path, hub), f"modelscope.cn/{REPO}")
