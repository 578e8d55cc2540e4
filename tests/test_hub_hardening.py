"""The hub sources under the outbound policy, against the local fakes of tests/hub_fakes.py:
credentials only to the hub's own host, redirects only to http(s), link-local (and optionally
private) addresses refused, listings read with a cap, unverifiable files refused, resumed
downloads checked before they are appended to."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from corral import InvalidRequest, PullError
from corral.kernel import Kernel
from hub_fakes import FakeHuggingFace, FakeModelScope, HubFile, pull, store_files

MS_REPO = "test-user/Tiny-GGUF"
HF_REPO = "test-user/Tiny-GGUF"
GGUF = "tiny-Q4_K_M.gguf"
BOMB = 256 * 1024 * 1024


def make_kernel(tmp_path: Path, **environ: str) -> Kernel:
    config = tmp_path / "corral.toml"
    config.write_text("[sources]\nblock_private_addresses = true\n" if environ.pop("BLOCK", None) else "")
    base = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "PATH": os.environ.get("PATH", ""),
            "CORRAL_CONFIG": str(config), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return Kernel.create(environ={**base, **environ}, load_entry_points=False)


def not_a_gguf() -> HubFile:
    return HubFile(data=b"not really a gguf " * 1000)


def downloads(tmp_path: Path) -> list[Path]:
    return sorted(path for path in (tmp_path / "models" / ".downloads").rglob("*") if path.is_file())


# -- ModelScope ------------------------------------------------------------------------------------


def test_modelscope_session_cookie_never_follows_a_redirect_to_another_host(tmp_path: Path) -> None:
    hub = FakeModelScope(repos={MS_REPO: {GGUF: not_a_gguf()}})
    with hub.running():
        hub.faults.redirect = hub.url.replace("127.0.0.1", "localhost") + "{path}"
        kernel = make_kernel(tmp_path, MODELSCOPE_DOMAIN=hub.url, MODELSCOPE_API_TOKEN="ms-secret")
        with pytest.raises(InvalidRequest):  # the file is no GGUF: it got as far as the create
            pull(kernel, f"modelscope.cn/{MS_REPO}")
    api = [headers for method, path, headers in hub.log if path.startswith("/api/")]
    cdn = [headers for method, path, headers in hub.log if path.startswith("/cdn/")]
    assert api and all("m_session_id=ms-secret" in headers.get("Cookie", "") for headers in api)
    assert cdn and not any("ms-secret" in str(headers) for headers in cdn)


def test_modelscope_files_without_a_checksum_are_refused(tmp_path: Path) -> None:
    hub = FakeModelScope(repos={MS_REPO: {GGUF: not_a_gguf()}})
    with hub.running():
        hub.faults.no_sha256 = True
        with pytest.raises(PullError, match=f"lists no sha256 for {GGUF}, so it cannot be verified"):
            pull(make_kernel(tmp_path, MODELSCOPE_DOMAIN=hub.url), f"modelscope.cn/{MS_REPO}")
        assert not hub.gets("FilePath=")  # refused before a byte was fetched
    assert store_files(tmp_path / "models") == set()


def test_a_resumed_modelscope_download_checks_the_range_before_appending(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    hub = FakeModelScope(repos={MS_REPO: {GGUF: HubFile(data=data)}})
    with hub.running():
        hub.faults.drop_after, hub.faults.drop_times, hub.faults.status_after_drop = 1_000_000, 1, 503
        kernel = make_kernel(tmp_path, MODELSCOPE_DOMAIN=hub.url)
        with pytest.raises(PullError, match="answered 503"):
            pull(kernel, f"modelscope.cn/{MS_REPO}")
        assert [path.stat().st_size for path in downloads(tmp_path)] == [1_000_000]
        hub.faults.file_status = None
        hub.faults.wrong_range = True  # a 206 whose bytes start at 0, not where the partial file ends
        with pytest.raises(InvalidRequest, match="not a GGUF file"):  # verified, stored, then refused by create
            pull(kernel, f"modelscope.cn/{MS_REPO}")
    ranges = [headers.get("Range") for path, headers in hub.gets("FilePath=")]
    assert ranges[-2:] == ["bytes=1000000-", None]  # the bad answer was thrown away, the file fetched whole
    blob = tmp_path / "models" / "blobs" / f"sha256-{HubFile(data=data).sha256()}"
    assert blob.read_bytes() == data


def bomb_peak(tmp_path: Path, hub: FakeModelScope | FakeHuggingFace, reference: str, error: str) -> int:
    """Pull ``reference`` from a hub that answers its listing with a gzip bomb; the error must
    match ``error``; return the most memory the pull held (tracemalloc)."""
    from fake_registry import gzip_bomb

    gzip_bomb(BOMB)
    with hub.running():
        hub.faults.bomb = BOMB
        endpoint = {"HF_ENDPOINT" if isinstance(hub, FakeHuggingFace) else "MODELSCOPE_DOMAIN": hub.url}
        kernel = make_kernel(tmp_path, **endpoint)
        tracemalloc.start()
        try:
            with pytest.raises(PullError, match=error):
                pull(kernel, reference)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_a_modelscope_listing_bomb_is_read_only_up_to_its_limit(tmp_path: Path) -> None:
    hub = FakeModelScope(repos={MS_REPO: {GGUF: not_a_gguf()}})
    peak = bomb_peak(tmp_path, hub, f"modelscope.cn/{MS_REPO}", "larger than 16777216 bytes")
    assert peak < 64 * 1024 * 1024


@pytest.mark.parametrize(("setting", "reference"), [("MODELSCOPE_DOMAIN", f"modelscope.cn/{MS_REPO}"),
                                                   ("HF_ENDPOINT", f"hf.co/{HF_REPO}")])
def test_a_hub_on_a_link_local_address_is_refused_always(tmp_path: Path, no_outside_traffic: list,
                                                         setting: str, reference: str) -> None:
    with pytest.raises(InvalidRequest, match=r"refusing to connect to metadata\.test \(169\.254\.169\.254\): a link-local"):
        pull(make_kernel(tmp_path, **{setting: "http://metadata.test"}), reference)
    # (huggingface-hub also asks huggingface.co for its list of coding agents, once a day)
    assert [host for host in no_outside_traffic if host != "huggingface.co"] == []


def test_modelscope_on_loopback_is_refused_when_private_addresses_are_blocked(tmp_path: Path) -> None:
    hub = FakeModelScope(repos={MS_REPO: {GGUF: not_a_gguf()}})
    with hub.running():
        with pytest.raises(InvalidRequest, match="a loopback address; sources.block_private_addresses is on"):
            pull(make_kernel(tmp_path, MODELSCOPE_DOMAIN=hub.url, BLOCK="1"), f"modelscope.cn/{MS_REPO}")
        assert hub.log == []


# -- Hugging Face ----------------------------------------------------------------------------------


def test_the_hf_token_never_follows_a_redirect_to_another_host(tmp_path: Path) -> None:
    hub = FakeHuggingFace(repos={HF_REPO: {GGUF: not_a_gguf()}})
    with hub.running():
        hub.faults.redirect = hub.url.replace("127.0.0.1", "localhost") + "{path}"
        with pytest.raises(InvalidRequest):  # no GGUF: it got as far as the create
            pull(make_kernel(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN="hf_secret"), f"hf.co/{HF_REPO}")
    lowered = [(path, {key.lower(): value for key, value in headers.items()}) for _, path, headers in hub.log]
    listings = [(headers.get("host", ""), headers.get("authorization")) for path, headers in lowered
                if path.startswith("/api/")]
    assert ("127.0.0.1", "Bearer hf_secret") in [(host.partition(":")[0], auth) for host, auth in listings]
    assert [auth for host, auth in listings if host.startswith("localhost")] == [None]


def test_hf_redirects_go_only_to_http_urls(tmp_path: Path) -> None:
    hub = FakeHuggingFace(repos={HF_REPO: {GGUF: not_a_gguf()}})
    with hub.running():
        hub.faults.redirect = "ftp://127.0.0.1/{path}"
        with pytest.raises(InvalidRequest, match="refusing a redirect to a ftp: URL"):
            pull(make_kernel(tmp_path, HF_ENDPOINT=hub.url), f"hf.co/{HF_REPO}")


def test_a_hf_listing_bomb_is_refused_without_being_unpacked(tmp_path: Path) -> None:
    hub = FakeHuggingFace(repos={HF_REPO: {GGUF: not_a_gguf()}})
    peak = bomb_peak(tmp_path, hub, f"hf.co/{HF_REPO}", "gzip-encoded answer where a plain one was asked for")
    assert peak < 64 * 1024 * 1024
