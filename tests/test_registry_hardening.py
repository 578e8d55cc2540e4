"""An Ollama registry that is hostile or unreachable: bombs, lies, redirects it has no business
making, and failures no retry can mend. Pulls and pushes through the kernel's ollama source, as
/api/pull and /api/push drive them, against tests/fake_registry.py."""

from __future__ import annotations

import json
import logging
import os
import time
import tracemalloc
from pathlib import Path

import anyio
import pytest

from corral import InvalidRequest, PullError, parse_reference
from corral.errors import NoSpace
from corral.kernel import Kernel
from fake_registry import FakeRegistry, gzip_bomb
from ollama_store import ollama_model

REPO = "library/tiny"
CONFIG = """\
[registry]
stall_timeout = 5
backoff = {backoff}
retries = {retries}
[sources]
block_private_addresses = {block}
"""


def make_kernel(tmp_path: Path, *, retries: int = 3, backoff: float = 0.05, block: bool = False) -> Kernel:
    config = tmp_path / "corral.toml"
    config.write_text(CONFIG.format(retries=retries, backoff=backoff, block=str(block).lower()))
    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models"), "CORRAL_CONFIG": str(config),
               "PATH": os.environ.get("PATH", "")}
    return Kernel.create(environ=environ, load_entry_points=False)


@pytest.fixture
def registry(tmp_path: Path):
    publisher = tmp_path / "publisher"
    ollama_model(publisher, ("registry.ollama.ai", "library", "tiny", "latest"), os.urandom(300_000),
                 template="{{ .Prompt }}", system="Be brief.")
    fake = FakeRegistry(root=tmp_path / "registry-blobs").start()
    fake.publish_store(publisher, ("registry.ollama.ai", "library", "tiny", "latest"), REPO, "latest")
    yield fake
    fake.stop()


def pull(kernel: Kernel, name: str, *, insecure: bool = True) -> list:
    async def run() -> list:
        source = kernel.source_for(name)
        return [item async for item in source.pull(parse_reference(name), insecure=insecure)]

    return anyio.run(run)


def push(kernel: Kernel, name: str) -> list:
    async def run() -> list:
        source = kernel.source_for(name)
        return [item async for item in source.push(parse_reference(name), insecure=True)]

    return anyio.run(run)


def store_is_empty(tmp_path: Path) -> bool:
    models = tmp_path / "models"
    return not (models / "manifests").exists() and not [
        path for path in (models / "blobs").glob("sha256-*") if not path.name.endswith("partial")
    ] if (models / "blobs").exists() else not (models / "manifests").exists()


# -- bombs and long answers ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["manifest", "token", "error"])
def test_a_gzip_bomb_is_read_only_up_to_its_limit(tmp_path: Path, registry: FakeRegistry, where: str) -> None:
    registry.bomb = where
    gzip_bomb(registry.bomb_size)  # made before the measurement
    kernel = make_kernel(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(PullError) as caught:
            pull(kernel, f"{registry.host}/{REPO}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 1024 * 1024, f"{peak} bytes held for a {registry.bomb_size}-byte bomb"
    message = caught.value.message
    assert len(message) < 300 and "\n" not in message and "\x00" not in message
    assert store_is_empty(tmp_path)


def test_an_error_body_reaches_the_client_only_as_a_short_clean_summary(tmp_path: Path, registry: FakeRegistry) -> None:
    registry.error_text = json.dumps({"errors": [{"code": "DENIED", "message": "\x1b[31mred\x1b[0m\nforged: line\r"
                                                                               + "x" * 10_000}]})
    with pytest.raises(PullError) as caught:
        pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")
    message = caught.value.message
    assert message.startswith("pull model manifest: 400: red forged: line xxx")
    assert len(message) <= 260 and "\x1b" not in message and "\n" not in message and "\r" not in message
    assert message.endswith("…")


# -- lies -------------------------------------------------------------------------------------------


def test_a_registry_lying_about_a_blobs_size_is_not_retried_and_stores_nothing(tmp_path: Path,
                                                                               registry: FakeRegistry) -> None:
    manifest = json.loads(registry.manifests[(REPO, "latest")])
    model = manifest["layers"][0]
    registry.lie[model["digest"]] = model["size"] * 10
    kernel = make_kernel(tmp_path, retries=6, backoff=1)
    started = time.monotonic()
    with pytest.raises(PullError, match=f"the registry says the blob has {model['size'] * 10} bytes"):
        pull(kernel, f"{registry.host}/{REPO}")
    assert time.monotonic() - started < 5
    assert not (tmp_path / "models" / "manifests").exists()


# -- what is never retried -----------------------------------------------------------------------------


def test_a_name_that_does_not_resolve_fails_at_once_and_the_log_names_the_limit_in_force(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kernel = make_kernel(tmp_path, retries=6, backoff=1)
    ollama_model(tmp_path / "models", ("corral-test.invalid", "me", "tiny", "latest"), b"weights")
    started = time.monotonic()
    with pytest.raises(PullError, match="host not found"):
        push(kernel, "corral-test.invalid/me/tiny")
    assert time.monotonic() - started < 5  # it was 63 s: six retries with backoff
    with pytest.raises(PullError, match="host not found"):
        pull(kernel, "corral-test.invalid/me/other")

    # a failure worth retrying says which retry of how many, with the limit that applies (the
    # manifest is tried at most twice again, whatever registry.retries says)
    dead = FakeRegistry(root=tmp_path / "dead").start()
    host = dead.host
    dead.stop()
    with caplog.at_level(logging.INFO, logger="corral.registry"), pytest.raises(PullError, match="max retries"):
        pull(kernel, f"{host}/{REPO}")
    lines = [record.getMessage() for record in caplog.records if "retry" in record.getMessage()]
    assert lines and all(" of 2 in " in line for line in lines), lines


def test_plain_http_without_insecure_is_a_bad_request(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path)
    with pytest.raises(InvalidRequest, match="insecure protocol http"):
        pull(kernel, "http://127.0.0.1:1/library/x", insecure=False)


# -- redirects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "reason"), [
    ("ftp://{cdn}/blobs/{digest}", "refusing a redirect to a ftp: URL"),
    ("file:///etc/passwd", "refusing a redirect to a file: URL"),
])
def test_blob_redirects_go_only_to_http_urls(tmp_path: Path, registry: FakeRegistry, target: str, reason: str) -> None:
    registry.redirect_to = target
    kernel = make_kernel(tmp_path)
    with pytest.raises(InvalidRequest, match=reason):
        pull(kernel, f"{registry.host}/{REPO}")
    assert not (tmp_path / "models" / "manifests").exists()


def test_the_registry_token_never_follows_a_redirect_to_another_host(tmp_path: Path, registry: FakeRegistry) -> None:
    registry.redirect_to = "http://localhost:%d/blobs/{digest}" % registry.cdn_port
    pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")
    cdn = [request for request in registry.requests if request["cdn"]]
    assert cdn and all(request["authorization"] is None for request in cdn)
    assert any(request["authorization"] for request in registry.requests if not request["cdn"])


# -- where connections may go ---------------------------------------------------------------------------


def test_private_addresses_are_refused_when_the_setting_says_so(tmp_path: Path, registry: FakeRegistry) -> None:
    with pytest.raises(InvalidRequest, match=r"refusing to connect to 127\.0\.0\.1: a loopback address; "
                                             r"sources.block_private_addresses is on"):
        pull(make_kernel(tmp_path, block=True), f"{registry.host}/{REPO}")
    assert not [request for request in registry.requests]  # not one byte went there
    with pytest.raises(InvalidRequest, match=r"refusing to connect to localhost \((127\.0\.0\.1|::1)\): a loopback"):
        pull(make_kernel(tmp_path, block=True), f"localhost:{registry.port}/{REPO}")
    assert pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")[-1].status == "success"  # off by default


def test_a_redirect_to_a_private_address_is_refused_at_that_hop(tmp_path: Path, registry: FakeRegistry,
                                                                 no_outside_traffic: list) -> None:
    registry.redirect_to = "http://metadata.test/latest/meta-data/{digest}"
    with pytest.raises(InvalidRequest, match=r"refusing to connect to metadata\.test \(169\.254\.169\.254\): "
                                             r"a link-local address"):
        pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")  # link-local: refused with the setting off
    assert no_outside_traffic == []


# -- sizes a manifest claims -------------------------------------------------------------------------


def claiming(registry: FakeRegistry, size: int) -> dict:
    """Republish the model with its weights claimed to be ``size`` bytes."""
    manifest = json.loads(registry.manifests[(REPO, "latest")])
    manifest["layers"][0]["size"] = size
    registry.manifests[(REPO, "latest")] = json.dumps(manifest).encode()
    return manifest["layers"][0]


def test_a_pull_that_cannot_fit_is_refused_before_a_byte_is_fetched(tmp_path: Path, registry: FakeRegistry) -> None:
    import shutil

    claimed = claiming(registry, shutil.disk_usage(tmp_path).free + 10**12)
    with pytest.raises(NoSpace, match=r"pull model: not enough free space in .*: it needs [\d.]+ GB, [\d.]+ GB is free"):
        pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")
    assert registry.bytes_served() == 0
    blobs = tmp_path / "models" / "blobs"
    assert not blobs.exists() or not list(blobs.glob(claimed["digest"].replace(":", "-") + "*"))


def test_partial_data_a_failed_pull_reserved_can_be_pruned_and_ages_out(tmp_path: Path, registry: FakeRegistry) -> None:
    """The finding: a manifest claiming 1 GiB with a blob that 404s left 1.1 GB for good."""
    claimed = claiming(registry, 1 << 30)
    registry.blob_file(claimed["digest"]).unlink()  # the blob 404s
    with pytest.raises(Exception, match="file does not exist"):
        pull(make_kernel(tmp_path), f"{registry.host}/{REPO}")
    partial = tmp_path / "models" / "blobs" / (claimed["digest"].replace(":", "-") + "-partial")
    assert partial.stat().st_size == 1 << 30  # reserved, and resumable by a later pull

    kernel = make_kernel(tmp_path)
    assert anyio.run(kernel.store.prune) == 0  # recent: kept for a resume
    old = time.time() - 8 * 24 * 3600
    os.utime(partial, (old, old))
    for record in partial.parent.glob(partial.name + "-*"):
        os.utime(record, (old, old))
    assert anyio.run(kernel.store.prune) == 1  # no pull touched it for longer than store.partial_max_age
    assert not list(partial.parent.glob(partial.name + "*"))


@pytest.mark.parametrize(("name", "message"), [
    ("localhost:99999/library/x", "port '99999' is not 1-65535"),
    ("localhost:0/library/x", "port '0' is not 1-65535"),
    ("host:port/library/x", "port 'port' is not 1-65535"),
    ("x..y/library/x", '"x..y" is not a valid host name'),
    ("a" * 70 + ".com/library/x", "is not a valid host name"),
])
def test_a_host_no_connection_can_be_made_to_is_a_bad_request(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):  # these were 500s: a crash in the client library
        pull(make_kernel(tmp_path), name)


def test_a_redirect_from_https_down_to_plain_http_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(tls)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # the client trusts the test CA, verifying
    publisher = tmp_path / "publisher"
    ollama_model(publisher, ("registry.ollama.ai", "library", "tiny", "latest"), b"weights" * 1000)
    fake = FakeRegistry(root=tmp_path / "registry-blobs", tls=tls).start()
    try:
        fake.publish_store(publisher, ("registry.ollama.ai", "library", "tiny", "latest"), REPO, "latest")
        with pytest.raises(InvalidRequest, match="refusing a redirect from https down to plain http"):
            pull(make_kernel(tmp_path), f"https://{fake.host}/{REPO}", insecure=False)  # the CDN is plain http
        assert not [request for request in fake.requests if request["cdn"]]
        fake.redirect_to = "https://{cdn}/blobs/{digest}"
        with pytest.raises(PullError):  # https all the way is followed (the CDN only speaks http: it fails there)
            pull(make_kernel(tmp_path), f"https://{fake.host}/{REPO}", insecure=False)
    finally:
        fake.stop()
